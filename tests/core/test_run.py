"""`run_layout` and `pants-oci run`: images built on the harness busybox, written to OCI
layouts, unpacked and run for real by runc (the tests run as root)."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core import media_types
from pants_oci.core.auth import StaticKeychain
from pants_oci.core.errors import RefNotFoundError, RunError, RuntimeNotFoundError
from pants_oci.core.image import Image
from pants_oci.core.layer import CustomFile, LayerBuilder
from pants_oci.core.layout import ImageLayout
from pants_oci.core.run import Mount, RunSettings, run_layout
from tests.core.images import add_busybox_base
from tests.core.registry_support import options_for
from tests.harness.busybox import ImageBlobs, PushedImage
from tests.harness.processes import require_binary

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _runc_as_root() -> None:
    require_binary("runc")
    if os.geteuid() != 0:
        pytest.fail("these tests run images with runc, which needs root (./test runs as root)")


@pytest.fixture
def run_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory run_layout makes its bundle in: tests check it is left empty."""
    directory = tmp_path / "run-tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def _layout(
    tmp_path: Path, busybox: ImageBlobs, configure: Callable[[Image], None], tag: str = "app"
) -> Path:
    """A complete layout of busybox + whatever ``configure`` adds, tagged ``tag``."""
    base = ImageLayout.create(tmp_path / "base")
    add_busybox_base(base, busybox)
    with Image(base.root) as image:
        configure(image)
        image.write_layout(tmp_path / tag, [tag])
    return tmp_path / tag


def _run(capfd: pytest.CaptureFixture[str], layout: Path, **kwargs: Any) -> tuple[int, str, str]:
    capfd.readouterr()
    status = run_layout(layout, **kwargs)
    out, err = capfd.readouterr()
    return status, out, err


def _add_raw_layer(
    image: Image, directory: Path, members: list[tuple[tarfile.TarInfo, bytes]]
) -> None:
    """An uncompressed layer of exactly these tar members (no checks: they may be hostile)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    path = directory / f"layer-{len(image.layers)}.tar"
    path.write_bytes(raw)
    digest = f"sha256:{hashlib.sha256(raw).hexdigest()}"
    image.add_layer(digest, digest, len(raw), media_type=media_types.OCI_LAYER, blob=path)


def _member(name: str, kind: bytes = tarfile.REGTYPE, **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o777 if kind == tarfile.SYMTYPE else 0o644
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def test_entrypoint_cmd_args_env_and_workdir_as_docker_run_has_them(
    tmp_path: Path,
    busybox_image_blobs: ImageBlobs,
    run_tmp: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    def configure(image: Image) -> None:
        image.entrypoint = ["/bin/sh", "-c"]
        image.cmd = ["echo from cmd in $(pwd)"]
        image.workdir = "/srv/app"  # no layer has it: it is made, as docker makes it
        image.set_env("GREETING", "hello")
        image.set_env("MODE", "image")

    layout = _layout(tmp_path, busybox_image_blobs, configure)

    assert _run(capfd, layout) == (0, "from cmd in /srv/app\n", "")
    # Arguments replace cmd and keep the entrypoint; env is added over the image's.
    status, out, _err = _run(capfd, layout, args=["env"], env={"MODE": "override", "EXTRA": "x=y"})
    assert status == 0
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert env["GREETING"] == "hello"
    assert env["MODE"] == "override"
    assert env["EXTRA"] == "x=y"
    assert env["HOME"] == "/root"  # root's home from the image's /etc/passwd
    assert env["PWD"] == "/srv/app"
    assert _run(capfd, layout, args=["exit 7"])[0] == 7
    assert list(run_tmp.iterdir()) == []  # each run's bundle and runc state are gone


def test_user_numeric_or_named_in_the_images_passwd(
    tmp_path: Path,
    busybox_image_blobs: ImageBlobs,
    run_tmp: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    passwd = b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n"
    group = b"root:x:0:\napp:x:1000:\nextra:x:2000:app\n"

    def configure(image: Image) -> None:
        image.add_files(
            {"/etc/passwd": CustomFile(data=passwd), "/etc/group": CustomFile(data=group)}
        )
        image.entrypoint = ["/bin/sh", "-c", 'echo "$(id -u) $(id -g) $(id -G) $HOME"']

    def as_user(user: str) -> Path:
        def configure_user(image: Image) -> None:
            configure(image)
            image.user = user

        return _layout(tmp_path / user.replace(":", "-"), busybox_image_blobs, configure_user)

    assert _run(capfd, as_user("1000:1000"))[1] == "1000 1000 1000 2000 /home/app\n"
    assert _run(capfd, as_user("app"))[1] == "1000 1000 1000 2000 /home/app\n"
    assert _run(capfd, as_user("app:extra"))[1] == "1000 2000 2000 /home/app\n"
    assert _run(capfd, as_user("4242"))[1] == "4242 0 0 /\n"  # not in passwd: gid 0, home /
    with pytest.raises(RunError, match=r"user 'nobody-here'.*/etc/passwd has no user"):
        run_layout(as_user("nobody-here"))

    # A passwd that is a symlink to a host file is read inside the image, where it leads nowhere.
    host_passwd = tmp_path / "host-passwd"
    host_passwd.write_bytes(passwd)

    def linked_passwd(image: Image) -> None:
        _add_raw_layer(
            image,
            tmp_path,
            [(_member("etc/passwd", tarfile.SYMTYPE, linkname=str(host_passwd)), b"")],
        )
        image.user = "app"

    with pytest.raises(RunError, match=r"user 'app'.*/etc/passwd has no user"):
        run_layout(_layout(tmp_path / "linked", busybox_image_blobs, linked_passwd))
    assert list(run_tmp.iterdir()) == []


def test_whiteouts_delete_and_opaque_whiteouts_empty_lower_layer_content(
    tmp_path: Path,
    busybox_image_blobs: ImageBlobs,
    run_tmp: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    upper = LayerBuilder()
    upper.add_whiteout("/data/gone.txt")
    upper.add_whiteout("/data/gone-dir")
    upper.add_opaque_whiteout("/opaque")
    upper.add_files({"/opaque/new.txt": CustomFile(data=b"new\n")})
    blob = upper.write_file(tmp_path / "upper.tar", compression="none")

    def configure(image: Image) -> None:
        image.add_files(
            {
                "/data/keep.txt": CustomFile(data=b"keep\n"),
                "/data/gone.txt": CustomFile(data=b"gone\n"),
                "/data/gone-dir/file": CustomFile(data=b"gone\n"),
                "/opaque/old.txt": CustomFile(data=b"old\n"),
                "/opaque/sub/old.txt": CustomFile(data=b"old\n"),
            },
            compression="zstd",
        )
        image.add_layer(
            blob.digest,
            blob.diff_id,
            blob.size,
            media_type=blob.media_type,
            blob=tmp_path / "upper.tar",
        )

    layout = _layout(tmp_path, busybox_image_blobs, configure)
    status, out, _err = _run(capfd, layout, args=["sh", "-c", "ls /data; echo --; ls -R /opaque"])
    assert status == 0
    assert out == "keep.txt\n--\n/opaque:\nnew.txt\n"


def test_members_that_would_leave_the_root_filesystem_write_nothing_outside_it(
    tmp_path: Path,
    busybox_image_blobs: ImageBlobs,
    run_tmp: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    climb = "../" * 40  # more `..` than the path is deep: a naive join reaches `/`

    def symlinks(image: Image) -> None:
        _add_raw_layer(
            image,
            tmp_path,
            [
                (_member("escape", tarfile.SYMTYPE, linkname=str(outside)), b""),
                (_member("escape/absolute"), b"via an absolute symlink\n"),
                (_member("up", tarfile.SYMTYPE, linkname=climb + str(outside).lstrip("/")), b""),
                (_member("up/relative"), b"via a relative symlink\n"),
                (_member("hostetc", tarfile.SYMTYPE, linkname="/etc"), b""),
                (_member("leak", tarfile.LNKTYPE, linkname="hostetc/passwd"), b""),
            ],
        )
        image.entrypoint = ["cat"]

    layout = _layout(tmp_path, busybox_image_blobs, symlinks)
    # Symlinks are resolved as if the root filesystem were `/`: what they lead to is inside it.
    status, out, _err = _run(
        capfd, layout, args=[f"{outside}/absolute", f"{outside}/relative", "/leak"]
    )
    assert status == 0
    assert out == (
        "via an absolute symlink\nvia a relative symlink\nroot:x:0:0:root:/root:/bin/sh\n"
    )
    assert list(outside.iterdir()) == []

    def dotdot(image: Image) -> None:
        _add_raw_layer(
            image, tmp_path, [(_member(climb + str(outside / "dotdot").lstrip("/")), b"x\n")]
        )

    bad = _layout(tmp_path / "dotdot", busybox_image_blobs, dotdot)
    with pytest.raises(RunError, match=r"layer 2 .*'\.\./.*dotdot'.*would leave the root"):
        run_layout(bad, args=["true"])
    assert list(outside.iterdir()) == []
    assert list(run_tmp.iterdir()) == []


def test_base_layers_missing_from_the_layout_are_fetched_from_the_recorded_registry(
    tmp_path: Path, busybox_image: PushedImage, run_tmp: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    options = options_for(busybox_image.registry)
    with Image(busybox_image.ref, keychain=StaticKeychain({}), options=options) as image:
        image.cmd = ["echo", "sparse"]
        image.write_layout(tmp_path / "sparse", ["app"], include_base_layers=False)
    layout = ImageLayout.open(tmp_path / "sparse")
    assert not layout.has_blob(busybox_image.layer_digest)

    assert _run(capfd, tmp_path / "sparse", options=options) == (0, "sparse\n", "")
    assert not layout.has_blob(busybox_image.layer_digest)  # the layout is left as it was
    assert list(run_tmp.iterdir()) == []


def test_a_missing_blob_without_a_registry_to_fetch_it_from_is_a_clear_error(
    tmp_path: Path, busybox_image_blobs: ImageBlobs, run_tmp: Path
) -> None:
    layout = _layout(tmp_path, busybox_image_blobs, lambda image: None)
    ImageLayout.open(layout).blob_path(busybox_image_blobs.layer_digest).unlink()
    with pytest.raises(RunError, match=rf"lacks layer blob {busybox_image_blobs.layer_digest}"):
        run_layout(layout)
    assert list(run_tmp.iterdir()) == []


def test_a_corrupt_layer_blob_is_a_clear_error(
    tmp_path: Path, busybox_image_blobs: ImageBlobs, run_tmp: Path
) -> None:
    garbage = b"\x1f\x8b\x08\x00" + b"not deflate data" * 64
    (tmp_path / "garbage").write_bytes(garbage)
    digest = f"sha256:{hashlib.sha256(garbage).hexdigest()}"

    def corrupt(image: Image) -> None:
        image.add_layer(digest, digest, len(garbage), blob=tmp_path / "garbage")

    layout = _layout(tmp_path, busybox_image_blobs, corrupt)
    with pytest.raises(
        RunError, match=rf"layer 2 \({digest}\): not a readable gzip, zstd or plain"
    ):
        run_layout(layout, args=["true"])
    assert list(run_tmp.iterdir()) == []


def test_unknown_ref_nothing_to_run_and_no_runtime_are_clear_errors(
    tmp_path: Path,
    busybox_image_blobs: ImageBlobs,
    run_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_command(image: Image) -> None:
        image.cmd = None

    layout = _layout(tmp_path, busybox_image_blobs, no_command)
    with pytest.raises(RefNotFoundError, match=r"has no image 'nope'; it has app"):
        run_layout(layout, ref="nope")
    with pytest.raises(RunError, match="no entrypoint and no cmd: there is nothing to run"):
        run_layout(layout)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    with pytest.raises(
        RuntimeNotFoundError, match=r"needs runc \(as root\) or podman.*apt install"
    ):
        run_layout(layout, args=["true"])
    with pytest.raises(RuntimeNotFoundError, match="podman is not on PATH"):
        run_layout(layout, args=["true"], runtime="podman")
    assert list(run_tmp.iterdir()) == []


def _cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **(env or {}),
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "PYTHONPATH": str(REPO_ROOT / "src/python"),
        "HOME": str(cwd),
        "TMPDIR": str(cwd / "run-tmp"),
    }
    return subprocess.run(
        [sys.executable, "-m", "pants_oci.core", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_prints_the_containers_output_and_exits_with_its_status(
    tmp_path: Path, busybox_image_blobs: ImageBlobs
) -> None:
    layout = _layout(tmp_path, busybox_image_blobs, lambda image: None)
    (tmp_path / "run-tmp").mkdir()

    result = _cli("run", str(layout), "--", "echo", "hi", cwd=tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "hi\n", "")
    # Options after LAYOUT_DIR, and option-like words after `--` that are the container's.
    result = _cli(
        "run", str(layout), "--ref", "app", "--env", "WHO=cli", "--",
        "sh", "-c", 'echo "$WHO $0"; echo oops >&2; exit 5', "--ref", cwd=tmp_path,
    )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (5, "cli --ref\n", "oops\n")
    assert list((tmp_path / "run-tmp").iterdir()) == []

    # A pass-through variable comes from PREFIX+NAME when a prefix is given, never from NAME.
    result = _cli(
        "run", str(layout), "--env", "WHO", "--pass-env-prefix", "FOR_CONTAINER_", "--",
        "sh", "-c", 'echo "$WHO"', cwd=tmp_path,
        env={"WHO": "the tool's own", "FOR_CONTAINER_WHO": "the container's"},
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "the container's\n"), result.stderr

    result = _cli("run", str(layout), "--ref", "nope", "--", "true", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"pants-oci: error: {layout} has no image 'nope'; it has app\n"


def test_mounts_are_read_only_and_workdir_and_user_override_the_images(
    tmp_path: Path,
    busybox_image_blobs: ImageBlobs,
    run_tmp: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    def configure(image: Image) -> None:
        image.entrypoint = ["/bin/sh", "-c"]
        image.workdir = "/srv"
        image.user = "0"

    layout = _layout(tmp_path, busybox_image_blobs, configure)
    (tmp_path / "config").mkdir()
    (tmp_path / "config/app.conf").write_text("from the host\n")
    (tmp_path / "token").write_text("secret file\n")
    settings = RunSettings(
        mounts=(
            Mount.parse(f"{tmp_path / 'config'}:/etc/app"),
            Mount.parse(f"{tmp_path / 'token'}:/run/token"),
        ),
        workdir="/tmp",
        user="1000:1000",
    )
    script = (
        'cat /etc/app/app.conf /run/token; echo "$(id -u):$(id -g) in $(pwd)"; '
        "touch /etc/app/new 2>/dev/null || echo read-only"
    )
    status, out, _err = _run(capfd, layout, args=[script], settings=settings)
    assert (status, out) == (0, "from the host\nsecret file\n1000:1000 in /tmp\nread-only\n")
    assert not (tmp_path / "config/new").exists()
    assert list(run_tmp.iterdir()) == []
    with pytest.raises(RunError, match="expected SOURCE:DESTINATION"):
        Mount.parse("config")
    with pytest.raises(RunError, match="does not exist"):
        Mount.parse(f"{tmp_path / 'nope'}:/x")


def test_an_image_that_unpacks_past_its_limit_is_refused_before_it_fills_the_disk(
    tmp_path: Path,
    busybox_image_blobs: ImageBlobs,
    run_tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A layer of 24 MiB of zeros is a few KiB compressed: refused from its tar header, with
    an explicit limit, and by default when the free space (less 1 GiB) cannot hold it."""
    (tmp_path / "bomb").mkdir()
    (tmp_path / "bomb/zeros").write_bytes(bytes(24 << 20))

    def configure(image: Image) -> None:
        image.add_files({"/data": str(tmp_path / "bomb")})
        image.entrypoint = ["/bin/true"]

    layout = _layout(tmp_path, busybox_image_blobs, configure)
    with pytest.raises(RunError, match=r"'data/zeros' \(25165824 bytes\) would take") as limited:
        run_layout(layout, settings=RunSettings(max_unpacked_size=16 << 20))
    assert "over its limit of 16777216 bytes" in str(limited.value)
    assert "max_unpacked_size" in str(limited.value)
    assert list(run_tmp.iterdir()) == []

    real_usage = shutil.disk_usage

    def little_free(path: Any) -> Any:
        usage = real_usage(path)
        return usage._replace(free=(1 << 30) + (20 << 20))  # 20 MiB over the margin

    monkeypatch.setattr(shutil, "disk_usage", little_free)
    with pytest.raises(RunError, match="free space of"):
        run_layout(layout)
    assert list(run_tmp.iterdir()) == []


def test_interrupting_a_run_sends_the_images_stop_signal(
    tmp_path: Path, busybox_image_blobs: ImageBlobs
) -> None:
    """Ctrl-C or SIGTERM to `pants-oci run` stops the container as `docker stop` does: with the
    image's StopSignal (here SIGUSR1, which the container's script traps)."""

    def configure(image: Image) -> None:
        image.stop_signal = "SIGUSR1"
        image.entrypoint = ["/bin/sh", "-c"]
        image.cmd = [
            "trap 'echo stopped by usr1; exit 3' USR1; echo ready; "
            "while true; do sleep 1 & wait $!; done"
        ]

    layout = _layout(tmp_path, busybox_image_blobs, configure)
    (tmp_path / "run-tmp").mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "PYTHONPATH": str(REPO_ROOT / "src/python"),
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path / "run-tmp"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "pants_oci.core", "run", str(layout)],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"  # the trap is set
    process.send_signal(signal.SIGTERM)
    rest = process.stdout.read()
    assert process.wait(timeout=60) == 3
    assert rest == "stopped by usr1\n"
    assert list((tmp_path / "run-tmp").iterdir()) == []


def test_podman_gets_a_ref_name_for_a_digest_in_a_layout_with_several_tags(
    tmp_path: Path, busybox_image_blobs: ImageBlobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in podman on PATH records the command line it gets (real podman runs in
    tests/core/test_run_podman.py)."""
    layout = _layout(tmp_path, busybox_image_blobs, lambda image: None, tag="v1")
    ImageLayout.open(layout).set_refs({"latest": [ImageLayout.open(layout).resolve("v1")]})
    digest = str(ImageLayout.open(layout).resolve("v1").digest)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.txt"
    (bin_dir / "podman").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nexit 4\n')
    (bin_dir / "podman").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    status = run_layout(layout, ref=digest, args=["echo", "hi"], env={"A": "1"}, runtime="podman")
    assert status == 4
    argv = record.read_text().splitlines()
    assert argv[-3:] == ["oci:pants-oci-run:v1", "echo", "hi"]  # a link to the layout
    assert "--env=A=1" in argv and argv[:2] == ["run", "--rm"]
