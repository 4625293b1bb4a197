"""The `pants-oci` command line, run as the Pants backend runs it: a subprocess, credentials
in a DOCKER_CONFIG directory (never on argv), JSON on stdout."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import tools
from tests.harness.busybox import PushedImage, host_architecture
from tests.harness.fixtures import RegistryFactory
from tests.harness.registry import Registry

REPO_ROOT = Path(__file__).resolve().parents[2]
PLATFORM = f"linux/{host_architecture()}"


def _docker_config(directory: Path, auths: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(auths))
    return directory


def run_cli(
    *args: str,
    cwd: Path,
    docker_config: Path,
    expect: int = 0,
    preexec: Callable[[], Any] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO_ROOT / "src/python"),
        "DOCKER_CONFIG": str(docker_config),
        "HOME": str(cwd),  # no host logins, no ~/.docker
    }
    result = subprocess.run(
        [sys.executable, "-m", "pants_oci.core", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=preexec,
        check=False,
    )
    assert result.returncode == expect, f"exit {result.returncode}\n{result.stderr}"
    if expect == 0:
        assert "Traceback" not in result.stderr
    return result


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def _write_app(root: Path, umask: int = 0o022) -> None:
    (root / "app/bin").mkdir(parents=True, exist_ok=True)
    (root / "app/bin/hello.sh").write_text('#!/bin/sh\necho "hello, $WHO"\n')
    (root / "app/bin/hello.sh").chmod(0o755 & ~umask)
    (root / "app/message.txt").write_text("from the cli\n")
    (root / "app/scratch.tmp").write_text("ignored\n")


def _build_image(
    work: Path,
    base_ref: str,
    docker_config: Path,
    *,
    preexec: Callable[[], Any] | None = None,
    extra_assemble: tuple[str, ...] = (),
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """layer build -> base pull -> image assemble, in `work` (which holds the app sources);
    the three JSON outputs."""
    spec = {
        "entries": [
            {"source": "app", "target": "/srv/app", "mode": None, "uid": None, "gid": None},
            {"source": "app/message.txt", "target": "/etc/message", "mode": "0600", "uid": 1000,
             "gid": 1000},
        ],
        "compression": "gzip",
        "level": None,
        "source_date_epoch": None,
        "ignore": ["*.tmp"],
        "follow_symlinks": False,
    }  # fmt: skip
    (work / "spec.json").write_text(json.dumps(spec))
    layer = _json(
        run_cli(
            "layer", "build", "--spec", "spec.json", "--output", "layer.tar.gz",
            cwd=work, docker_config=docker_config, preexec=preexec,
        )
    )  # fmt: skip
    (work / "layer.json").write_text(json.dumps(layer))
    base = _json(
        run_cli(
            "base", "pull", base_ref, "--platform", PLATFORM, "--output", "base",
            cwd=work, docker_config=docker_config, preexec=preexec,
        )
    )  # fmt: skip
    config = {
        "entrypoint": None,
        "cmd": ["/srv/app/bin/hello.sh"],
        "env": {"WHO": "runc"},
        "workdir": "/srv/app",
        "user": None,
        "labels": {"org.example.built-by": "pants-oci"},
        "annotations": {"org.opencontainers.image.title": "app"},
        "exposed_ports": ["8080"],
        "volumes": [],
        "stop_signal": None,
        "platform": PLATFORM,
    }
    (work / "config.json").write_text(json.dumps(config))
    assembled = _json(
        run_cli(
            "image", "assemble", "--base", "base", "--layer", "layer.tar.gz=layer.json",
            "--config", "config.json", "--output", "out", "--tag", "v1",
            "--source-date-epoch", "1700000000", *extra_assemble,
            cwd=work, docker_config=docker_config, preexec=preexec,
        )
    )  # fmt: skip
    return layer, base, assembled


def test_build_pull_assemble_push_to_a_token_registry_then_run_under_runc(
    busybox_image: PushedImage,
    registry_factory: RegistryFactory,
    unique_repo: str,
    tmp_path: Path,
) -> None:
    target = registry_factory("token")
    assert target.password is not None
    work = tmp_path / "work"
    work.mkdir()
    docker_config = _docker_config(tmp_path / "docker", target.auth_json())

    _write_app(work)
    layer, base, assembled = _build_image(work, busybox_image.tag_ref, docker_config)
    assert set(layer) == {"digest", "diff_id", "size", "media_type", "uncompressed_size"}
    assert layer["media_type"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert base["manifest_digest"] == busybox_image.manifest_digest
    assert base["config_digest"] == busybox_image.config_digest
    assert base["index_digest"] is None and base["platform"] == PLATFORM
    assert base["layers"][0]["digest"] == busybox_image.layer_digest
    # Without --with-layers the base layout holds no layer: push copies it registry to registry.
    assert not (work / "base/blobs/sha256" / busybox_image.layer_digest.split(":")[1]).exists()
    assert assembled["layers"][-1] == {
        key: layer[key] for key in ("digest", "diff_id", "size", "media_type")
    }
    assert assembled["base"] == {
        "reference": f"{busybox_image.registry.host}/base/busybox@{busybox_image.manifest_digest}",
        "manifest_digest": busybox_image.manifest_digest,
    }
    assert assembled["tags"] == ["v1"]

    destinations = [
        target.ref(unique_repo, "v1"),
        target.ref(unique_repo, "latest"),
        target.ref(f"{unique_repo}-mirror", "v1"),
    ]
    argv = ["push", "out", *(arg for ref in destinations for arg in ("--to", ref))]
    pushed = _json(run_cli(*argv, cwd=work, docker_config=docker_config))
    assert target.password not in " ".join(argv)
    assert pushed == {
        "pushed": [
            {"reference": ref, "digest": assembled["manifest_digest"]} for ref in destinations
        ]
    }
    # The token service issued tokens to the user from DOCKER_CONFIG.
    assert target.token_service is not None
    assert any(r.get("user") == target.username for r in target.token_service.stats())

    for ref in destinations:
        info = tools.skopeo_inspect(ref, registry=target)
        assert info["Digest"] == assembled["manifest_digest"]
    layout = tools.skopeo_copy_to_oci_layout(
        destinations[2], tmp_path / "pulled", "app", registry=target
    )
    tools.umoci_unpack(layout, "app", tmp_path / "bundle")
    process = json.loads((tmp_path / "bundle/config.json").read_text())["process"]
    assert process["args"] == ["/srv/app/bin/hello.sh"] and process["cwd"] == "/srv/app"
    result = tools.runc_run(tmp_path / "bundle", process["args"])
    assert result.stdout == "hello, runc\n"
    rootfs = tmp_path / "bundle/rootfs"
    assert not (rootfs / "srv/app/scratch.tmp").exists()
    message = (rootfs / "etc/message").stat()
    assert (message.st_mode & 0o7777, message.st_uid, message.st_gid) == (0o600, 1000, 1000)

    raw = _json(run_cli("inspect", "--raw", destinations[0], cwd=work, docker_config=docker_config))
    assert raw["annotations"] == {"org.opencontainers.image.title": "app"}
    config = _json(
        run_cli("inspect", "--config", destinations[0], cwd=work, docker_config=docker_config)
    )
    assert config["config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert config["created"] == "2023-11-14T22:13:20Z"


def test_same_inputs_in_different_directories_give_the_same_digest(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    docker_config = _docker_config(tmp_path / "docker", {"auths": {}})
    outputs = []
    for name, umask, mtime in (("first", 0o022, 1_000_000_000), ("second", 0o077, 1_600_000_000)):
        work = tmp_path / name / "nested"
        work.mkdir(parents=True)
        # The checkout's umask shapes the modes on disk (0644/0755 vs 0600/0700) ...
        old = os.umask(umask)
        try:
            _write_app(work, umask)
        finally:
            os.umask(old)
        for path in (work / "app").rglob("*"):  # ... and its time, the mtimes
            os.utime(path, (mtime, mtime))
        outputs.append(
            _build_image(
                work,
                busybox_image.tag_ref,
                docker_config,
                preexec=lambda umask=umask: os.umask(umask),
            )
        )
    assert oct(os.stat(tmp_path / "second/nested/app/message.txt").st_mode & 0o777) == "0o600"
    (first_layer, _, first), (second_layer, _, second) = outputs
    assert first_layer == second_layer
    assert first["manifest_digest"] == second["manifest_digest"]
    assert first["config_digest"] == second["config_digest"]


def test_errors_are_one_line_per_cause_exit_1_and_never_a_traceback(
    busybox_image: PushedImage,
    registry_token: Registry,
    unique_repo: str,
    tmp_path: Path,
) -> None:
    docker_config = _docker_config(tmp_path / "docker", {"auths": {}})

    def fails(*args: str, config: Path = docker_config) -> str:
        # -q: no progress lines, so stderr is the error report alone.
        result = run_cli("-q", *args, cwd=tmp_path, docker_config=config, expect=1)
        assert "Traceback" not in result.stderr
        assert result.stdout == ""
        assert result.stderr.startswith("pants-oci: error: ")
        return result.stderr

    missing = f"{busybox_image.registry.host}/base/no-such-image:nope"
    stderr = fails("inspect", missing)
    assert "base/no-such-image" in stderr and "404" in stderr
    assert "hint: check the reference" in stderr

    (tmp_path / "bad.json").write_text('{"entries": [')
    stderr = fails("layer", "build", "--spec", "bad.json", "--output", "x.tar.gz")
    assert "layer spec bad.json is not valid JSON" in stderr
    (tmp_path / "typo.json").write_text(json.dumps({"entries": [], "compresion": "gzip"}))
    stderr = fails("layer", "build", "--spec", "typo.json", "--output", "x.tar.gz")
    assert "unknown keys ['compresion']" in stderr

    wrong = _docker_config(
        tmp_path / "wrong",
        registry_token.auth_json((registry_token.username, "not-the-password")),
    )
    stderr = fails("copy", busybox_image.ref, registry_token.ref(unique_repo, "v1"), config=wrong)
    assert registry_token.host in stderr and "401" in stderr
    assert "docker login" in stderr and "not-the-password" not in stderr

    # A docker archive needs every layer; the base was pulled without them.
    work = tmp_path / "archive"
    work.mkdir()
    run_cli(
        "base", "pull", busybox_image.tag_ref, "--platform", PLATFORM, "--output", "base",
        cwd=work, docker_config=docker_config,
    )  # fmt: skip
    (work / "config.json").write_text("{}")
    result = run_cli(
        "image", "assemble", "--base", "base", "--config", "config.json", "--output", "out",
        "--docker-archive", "image.tar",
        cwd=work, docker_config=docker_config, expect=1,
    )  # fmt: skip
    assert busybox_image.layer_digest in result.stderr and "--with-layers" in result.stderr
    assert "Traceback" not in result.stderr

    usage = run_cli("push", cwd=tmp_path, docker_config=docker_config, expect=2)
    assert "the following arguments are required" in usage.stderr


def test_image_index_combines_platform_layouts_and_pushes_as_one_reference(
    busybox_image: PushedImage, registry_anonymous: Registry, unique_repo: str, tmp_path: Path
) -> None:
    """A sparse image on a registry base (host platform) and a scratch image for another
    platform become one index; push copies the base layer from the base's repository."""
    work = tmp_path / "work"
    work.mkdir()
    docker_config = _docker_config(tmp_path / "docker", {"auths": {}})
    _write_app(work)
    _, _, host_image = _build_image(work, busybox_image.tag_ref, docker_config)
    other = "linux/riscv64"
    config = json.loads((work / "config.json").read_text()) | {"platform": other}
    (work / "other.json").write_text(json.dumps(config))
    other_image = _json(
        run_cli(
            "image", "assemble", "--base", "scratch", "--layer", "layer.tar.gz=layer.json",
            "--config", "other.json", "--output", "other", "--source-date-epoch", "0",
            cwd=work, docker_config=docker_config,
        )
    )  # fmt: skip
    # --omit-layers: the same documents from the layer's metadata alone, and no layer blob.
    documents = _json(
        run_cli(
            "image", "assemble", "--base", "scratch", "--layer", "layer.json", "--omit-layers",
            "--config", "other.json", "--output", "documents", "--source-date-epoch", "0",
            cwd=work, docker_config=docker_config,
        )
    )  # fmt: skip
    assert documents == other_image
    [layer] = other_image["layers"]
    blobs = {path.name for path in (work / "documents/blobs/sha256").iterdir()}
    assert layer["digest"].split(":")[1] not in blobs and len(blobs) == 2  # config, manifest
    # Metadata alone without --omit-layers, or for a docker-archive (which holds every blob).
    for extra in ((), ("--omit-layers", "--docker-archive", "x.tar")):
        failed = run_cli(
            "image", "assemble", "--base", "scratch", "--layer", "layer.json", *extra,
            "--config", "other.json", "--output", "refused",
            cwd=work, docker_config=docker_config, expect=1,
        )  # fmt: skip
        assert "BLOB_PATH=META_JSON_PATH" in failed.stderr, failed.stderr
    assert not (work / "refused").exists() and not (work / "x.tar").exists()

    indexed = _json(
        run_cli(
            "image", "index", "--image", "out", "--image", "other", "--output", "both",
            "--tag", "v2", cwd=work, docker_config=docker_config,
        )
    )  # fmt: skip
    assert indexed["platforms"] == {
        PLATFORM: host_image["manifest_digest"],
        other: other_image["manifest_digest"],
    }
    # The same inputs give the same index, byte for byte.
    again = _json(
        run_cli(
            "image", "index", "--image", "out", "--image", "other", "--output", "again",
            "--tag", "v2", cwd=work, docker_config=docker_config,
        )
    )  # fmt: skip
    assert again["manifest_digest"] == indexed["manifest_digest"]

    destination = registry_anonymous.ref(unique_repo, "v2")
    pushed = _json(
        run_cli("push", "both", "--to", destination, cwd=work, docker_config=docker_config)
    )
    assert pushed["pushed"] == [{"reference": destination, "digest": indexed["manifest_digest"]}]
    raw = json.loads(tools.skopeo_inspect(destination, raw=True, registry=registry_anonymous))
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [(m["digest"], m["platform"]) for m in raw["manifests"]] == [
        (host_image["manifest_digest"], {"architecture": host_architecture(), "os": "linux"}),
        (other_image["manifest_digest"], {"architecture": "riscv64", "os": "linux"}),
    ]
    for entry in raw["manifests"]:
        by_digest = f"{registry_anonymous.host}/{unique_repo}@{entry['digest']}"
        manifest = json.loads(
            tools.skopeo_inspect(by_digest, raw=True, registry=registry_anonymous)
        )
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    # The host platform's image is complete in the registry: base layer included.
    layout = tools.skopeo_copy_to_oci_layout(
        destination, tmp_path / "pulled", "app", registry=registry_anonymous
    )
    tools.umoci_unpack(layout, "app", tmp_path / "bundle")
    assert tools.runc_run(tmp_path / "bundle", None).stdout == "hello, runc\n"


def test_progress_shows_on_a_terminal_only_unless_asked(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    """As crane: progress lines when stderr is a terminal; none in captured output (a CI log,
    a Pants process) unless `--progress always`; `-q` and `--progress never` silence it."""
    docker_config = _docker_config(tmp_path / "docker", {"auths": {}})

    def pull(*flags: str, terminal: bool = False) -> str:
        output = tmp_path / f"base{len(list(tmp_path.iterdir()))}"
        args = ("base", "pull", busybox_image.ref, "--with-layers", "--output", str(output))
        if not terminal:
            result = run_cli(*flags, *args, cwd=tmp_path, docker_config=docker_config)
            assert json.loads(result.stdout)["manifest_digest"] == busybox_image.manifest_digest
            return result.stderr
        leader, follower = pty.openpty()
        try:
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "PYTHONPATH": str(REPO_ROOT / "src/python"),
                "DOCKER_CONFIG": str(docker_config),
                "HOME": str(tmp_path),
            }
            result = subprocess.run(
                [sys.executable, "-m", "pants_oci.core", *flags, *args],
                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=follower, timeout=300,
                check=True,
            )  # fmt: skip
            assert json.loads(result.stdout)["manifest_digest"] == busybox_image.manifest_digest
        finally:
            os.close(follower)
        seen = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end is closed, everything read
                break
            if not chunk:
                break
            seen += chunk
        os.close(leader)
        return seen.decode()

    line = f"pants-oci: pulling {busybox_image.ref}: "
    assert line not in pull()
    assert line not in pull("--progress", "never", terminal=True)
    assert line not in pull("-q", terminal=True)
    assert line in pull(terminal=True)
    shown = pull("--progress", "always")
    assert line in shown and shown.rstrip().endswith("MiB")
