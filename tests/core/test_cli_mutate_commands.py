"""crane's commands that make images (`append`, `mutate`, `flatten`, `export`, `rebase`), run
in-process against a real loopback registry, each held to what skopeo, umoci and runc make of
the images they push."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core import cli
from tests.core.cli_support import Capture, cli_bytes, cli_json, cli_text
from tests.harness import tools
from tests.harness.busybox import ImageBlobs, PushedImage, host_architecture, write_oci_layout
from tests.harness.registry import Registry


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.core.registry_support import hermetic_cli_environment

    hermetic_cli_environment(monkeypatch, tmp_path)


def _fails(capsys: Capture, *argv: str) -> str:
    status = cli.main(["-q", *argv])
    _, err = capsys.readouterr()
    assert status == 1, err.decode()
    return err.decode()


def _tar(path: Path, members: dict[str, bytes | None], *, gzip: bool = False) -> Path:
    """A tar file: ``name: content`` (None: a directory, or an empty whiteout file)."""
    with tarfile.open(path, "w:gz" if gzip else "w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if content is None and not name.rsplit("/", 1)[-1].startswith(".wh."):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            data = content or b""
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def _rootfs(ref: str, registry: Registry, where: Path) -> Path:
    """The image unpacked by umoci (from skopeo's copy of it): its bundle."""
    layout = tools.skopeo_copy_to_oci_layout(ref, where / "layout", "t", registry=registry)
    return tools.umoci_unpack(layout, "t", where / "bundle")


def _files(root: Path) -> set[str]:
    found = set()
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            found.add(os.path.relpath(os.path.join(directory, name), root))
    return found


def _manifest(ref: str, registry: Registry) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads(tools.skopeo_inspect(ref, raw=True, registry=registry))
    return raw


def _config(ref: str, registry: Registry) -> dict[str, Any]:
    raw = tools.skopeo_inspect(ref, raw=True, config=True, registry=registry)
    config: dict[str, Any] = json.loads(raw)
    return config


@pytest.fixture
def layered(
    capsysbinary: Capture,
    busybox_image: PushedImage,
    registry_anonymous: Registry,
    unique_repo: str,
    tmp_path: Path,
) -> str:
    """busybox + a directory layer + a gzip tar layer that deletes etc/group and replaces
    a file of the directory layer: three layers, as `append` pushes them."""
    tree = tmp_path / "tree"
    (tree / "app").mkdir(parents=True)
    (tree / "app/hello.txt").write_text("hello from a directory\n")
    (tree / "app/old.txt").write_text("old\n")
    tarball = _tar(
        tmp_path / "edit.tar.gz",
        {"etc/.wh.group": None, "app/old.txt": b"new\n", "srv": None, "srv/data": b"data\n"},
        gzip=True,
    )
    ref = f"{registry_anonymous.host}/{unique_repo}/layered:1"
    document = cli_json(
        capsysbinary,
        "append",
        busybox_image.tag_ref,
        "--new-layer",
        str(tree),
        "--new-layer",
        str(tarball),
        "-t",
        ref,
    )
    assert document["reference"] == ref
    manifest = _manifest(ref, registry_anonymous)
    assert manifest["layers"][0]["digest"] == busybox_image.image.layer_digest
    assert len(manifest["layers"]) == 3
    assert document["digest"] == tools.skopeo_inspect(ref, registry=registry_anonymous)["Digest"]
    return ref


def test_append_puts_tar_and_directory_layers_on_the_base(
    capsysbinary: Capture, layered: str, registry_anonymous: Registry, tmp_path: Path
) -> None:
    bundle = _rootfs(layered, registry_anonymous, tmp_path / "unpacked")
    rootfs = bundle / "rootfs"
    assert (rootfs / "bin/busybox").is_file()
    assert (rootfs / "etc/passwd").is_file()
    assert not (rootfs / "etc/group").exists()  # the tar layer's whiteout
    assert (rootfs / "app/old.txt").read_text() == "new\n"
    result = tools.runc_run(bundle, ["cat", "/app/hello.txt", "/srv/data"])
    assert result.stdout == "hello from a directory\ndata\n"
    config = _config(layered, registry_anonymous)
    manifest = _manifest(layered, registry_anonymous)
    assert len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]) == 3

    # An uncompressed tar goes in as it is; plain output is the digest alone.
    plain = _tar(tmp_path / "plain.tar", {"opt": None, "opt/x": b"x\n"})
    again = layered.replace(":1", ":2")
    digest = cli_text(capsysbinary, "append", layered, "--new-layer", str(plain), "-t", again)
    top = _manifest(again, registry_anonymous)["layers"][-1]
    assert top["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
    assert top["size"] == plain.stat().st_size
    assert digest.strip() == tools.skopeo_inspect(again, registry=registry_anonymous)["Digest"]


def test_append_refuses_what_is_not_a_layer(
    capsysbinary: Capture, busybox_image: PushedImage, unique_repo: str, tmp_path: Path
) -> None:
    target = f"{busybox_image.registry.host}/{unique_repo}/x:1"
    missing = tmp_path / "missing.tar"
    err = _fails(
        capsysbinary, "append", busybox_image.tag_ref, "--new-layer", str(missing), "-t", target
    )
    assert str(missing) in err
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    err = _fails(
        capsysbinary, "append", busybox_image.tag_ref, "--new-layer", str(junk), "-t", target
    )
    assert str(junk) in err and "not a readable tar" in err
    missing_ref = f"{busybox_image.registry.host}/{unique_repo}/nothing:here"
    err = _fails(capsysbinary, "append", missing_ref, "--new-layer", str(tmp_path), "-t", target)
    assert "nothing" in err
    with pytest.raises(SystemExit) as exited:  # -t is required
        cli.main(["append", busybox_image.tag_ref, "--new-layer", str(tmp_path)])
    assert exited.value.code == 2


def test_mutate_edits_the_config_skopeo_sees(
    capsysbinary: Capture,
    busybox_image: PushedImage,
    unique_repo: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = busybox_image.registry
    target = f"{registry.host}/{unique_repo}/mutated:1"
    document = cli_json(
        capsysbinary,
        "mutate",
        busybox_image.tag_ref,
        "-t",
        target,
        "--entrypoint",
        '["/bin/sh", "-c"]',
        "--cmd",
        "echo $GREETING,ignored",
        "--env",
        "GREETING=hi there",
        "--label",
        "org.example.team=build",
        "--annotation",
        "org.example.note=mutated",
        "--user",
        "1000:1000",
        "--workdir",
        "/tmp",
    )
    assert document["reference"] == target
    config = _config(target, registry)["config"]
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["Cmd"] == ["echo $GREETING", "ignored"]
    assert "GREETING=hi there" in config["Env"]
    assert config["Labels"] == {"org.example.team": "build"}
    assert config["User"] == "1000:1000"
    assert config["WorkingDir"] == "/tmp"
    manifest = _manifest(target, registry)
    assert manifest["annotations"]["org.example.note"] == "mutated"
    assert document["digest"] == tools.skopeo_inspect(target, registry=registry)["Digest"]

    created = _config(target, registry)["created"]

    # Without -t, the image's own tag moves; an entrypoint alone keeps the cmd, as crane does.
    # An edit keeps the image's manifest annotations and its `created`, whatever the epoch.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    digest = cli_text(capsysbinary, "mutate", target, "--entrypoint", "/bin/sh")
    config = _config(target, registry)["config"]
    assert config["Entrypoint"] == ["/bin/sh"]
    assert config["Cmd"] == ["echo $GREETING", "ignored"]
    assert _manifest(target, registry)["annotations"]["org.example.note"] == "mutated"
    assert _config(target, registry)["created"] == created != "2023-11-14T22:13:20Z"
    assert digest.strip() == tools.skopeo_inspect(target, registry=registry)["Digest"]

    assert "--env 'NOVALUE'" in _fails(capsysbinary, "mutate", target, "--env", "NOVALUE")
    err = _fails(capsysbinary, "mutate", target, "--entrypoint", "[1, 2]")
    assert "--entrypoint" in err


def test_flatten_squashes_the_layers_into_the_same_filesystem(
    capsysbinary: Capture, layered: str, registry_anonymous: Registry, tmp_path: Path
) -> None:
    flat = layered.replace(":1", ":flat")
    document = cli_json(capsysbinary, "flatten", layered, "-t", flat)
    assert document["digest"] == tools.skopeo_inspect(flat, registry=registry_anonymous)["Digest"]
    manifest = _manifest(flat, registry_anonymous)
    config = _config(flat, registry_anonymous)
    assert len(manifest["layers"]) == 1
    assert len(config["rootfs"]["diff_ids"]) == 1
    assert config["config"] == _config(layered, registry_anonymous)["config"]
    made_layers = [entry for entry in config.get("history", []) if not entry.get("empty_layer")]
    assert len(made_layers) == 1

    original = _rootfs(layered, registry_anonymous, tmp_path / "original") / "rootfs"
    flat_bundle = _rootfs(flat, registry_anonymous, tmp_path / "flat")
    assert _files(flat_bundle / "rootfs") == _files(original)
    assert (flat_bundle / "rootfs/app/old.txt").read_text() == "new\n"
    result = tools.runc_run(flat_bundle, ["cat", "/app/hello.txt", "/app/old.txt"])
    assert result.stdout == "hello from a directory\nnew\n"


def test_export_writes_the_filesystem_as_one_tar(
    capsysbinary: Capture, layered: str, registry_anonymous: Registry, tmp_path: Path
) -> None:
    output = tmp_path / "fs.tar"
    assert cli_text(capsysbinary, "export", layered, str(output)) == ""
    with tarfile.open(output) as tar:
        members = {member.name.rstrip("/"): member for member in tar.getmembers()}
        assert tar.extractfile(members["app/old.txt"]).read() == b"new\n"  # type: ignore[union-attr]
    assert "etc/group" not in members
    assert not any(".wh." in name for name in members)
    original = _rootfs(layered, registry_anonymous, tmp_path / "original") / "rootfs"
    assert set(members) == _files(original)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".fs.tar")] == []

    streamed = cli_bytes(capsysbinary, "export", layered, "-")
    with tarfile.open(fileobj=io.BytesIO(streamed)) as tar:
        assert {member.name.rstrip("/") for member in tar.getmembers()} == set(members)

    err = _fails(capsysbinary, "export", layered, str(tmp_path / "no/such/dir/fs.tar"))
    assert "no/such/dir" in err
    err = _fails(capsysbinary, "export", layered, str(tmp_path))
    assert f"OUTPUT {tmp_path} is a directory; give the path of a file to write" in err


def test_rebase_moves_the_image_onto_a_new_base(
    capsysbinary: Capture,
    busybox_image: PushedImage,
    registry_anonymous: Registry,
    unique_repo: str,
    tmp_path: Path,
) -> None:
    host = registry_anonymous.host
    app, new_base = f"{host}/{unique_repo}/app:1", f"{host}/{unique_repo}/newbase:1"
    own = _tar(tmp_path / "app.tar.gz", {"app": None, "app/run": b"app\n"}, gzip=True)
    extra = _tar(tmp_path / "base.tar.gz", {"base": None, "base/v2": b"v2\n"}, gzip=True)
    old = busybox_image.tag_ref
    cli_text(capsysbinary, "append", old, "--new-layer", str(own), "-t", app)
    cli_text(capsysbinary, "mutate", app, "--env", "APP=1")
    cli_text(capsysbinary, "append", old, "--new-layer", str(extra), "-t", new_base)

    rebased = f"{host}/{unique_repo}/rebased:1"
    document = cli_json(
        capsysbinary, "rebase", app, "--old-base", old, "--new-base", new_base, "-t", rebased
    )
    assert (
        document["digest"] == tools.skopeo_inspect(rebased, registry=registry_anonymous)["Digest"]
    )
    layers = [layer["digest"] for layer in _manifest(rebased, registry_anonymous)["layers"]]
    base_layers = [layer["digest"] for layer in _manifest(new_base, registry_anonymous)["layers"]]
    app_layers = [layer["digest"] for layer in _manifest(app, registry_anonymous)["layers"]]
    assert layers == [*base_layers, *app_layers[1:]]
    config = _config(rebased, registry_anonymous)
    base_config = _config(new_base, registry_anonymous)
    app_config = _config(app, registry_anonymous)
    diff_ids = config["rootfs"]["diff_ids"]
    assert diff_ids == [*base_config["rootfs"]["diff_ids"], *app_config["rootfs"]["diff_ids"][1:]]
    assert "APP=1" in config["config"]["Env"]
    bundle = _rootfs(rebased, registry_anonymous, tmp_path / "rebased")
    assert tools.runc_run(bundle, ["cat", "/base/v2", "/app/run"]).stdout == "v2\napp\n"

    # An image not built on --old-base is refused, naming both.
    err = _fails(
        capsysbinary, "rebase", app, "--old-base", new_base, "--new-base", old, "-t", rebased
    )
    assert app in err and new_base in err and "--old-base" in err


def _linked_tar(path: Path) -> Path:
    """data/a with two hardlinks (b, c) to it; data/keep with one (k2)."""
    with tarfile.open(path, "w") as tar:
        for name, content in (("data/a", b"one\n"), ("data/keep", b"keep-old\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o640
            tar.addfile(info, io.BytesIO(content))
        for name, target in (("data/b", "data/a"), ("data/c", "data/a"), ("data/k2", "data/keep")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.LNKTYPE, target
            tar.addfile(info)
    return path


def test_export_and_flatten_keep_hardlinks_whose_target_an_upper_layer_removed(
    capsysbinary: Capture,
    busybox_image: PushedImage,
    registry_anonymous: Registry,
    unique_repo: str,
    tmp_path: Path,
) -> None:
    """A tar can only link to a member it holds: a hardlink whose target an upper layer deleted
    (data/a) or replaced (data/keep) keeps the content it had, as unpacking the layers gives."""
    upper = _tar(tmp_path / "upper.tar", {"data/.wh.a": None, "data/keep": b"keep-new\n"})
    ref = f"{registry_anonymous.host}/{unique_repo}/links:1"
    cli_text(
        capsysbinary, "append", busybox_image.tag_ref, "--new-layer",
        str(_linked_tar(tmp_path / "links.tar")), "--new-layer", str(upper), "-t", ref,
    )  # fmt: skip
    unpacked = _rootfs(ref, registry_anonymous, tmp_path / "original") / "rootfs"
    expected = {name: (unpacked / "data" / name).read_bytes() for name in ("b", "c", "keep", "k2")}
    assert expected == {"b": b"one\n", "c": b"one\n", "keep": b"keep-new\n", "k2": b"keep-old\n"}
    assert not (unpacked / "data/a").exists()

    output = tmp_path / "fs.tar"
    cli_text(capsysbinary, "export", ref, str(output))
    with tarfile.open(output) as tar:
        members = {member.name: member for member in tar.getmembers()}
        assert "data/a" not in members
        assert members["data/b"].isreg() and members["data/b"].mode == 0o640
        assert members["data/c"].islnk() and members["data/c"].linkname == "data/b"
        assert members["data/k2"].isreg()
        tar.extractall(tmp_path / "exported", filter="tar")
    exported = tmp_path / "exported/data"
    assert {name: (exported / name).read_bytes() for name in expected} == expected
    assert (exported / "b").stat().st_ino == (exported / "c").stat().st_ino

    flat = ref.replace(":1", ":flat")
    cli_text(capsysbinary, "flatten", ref, "-t", flat)
    squashed = _rootfs(flat, registry_anonymous, tmp_path / "flat") / "rootfs/data"
    assert {name: (squashed / name).read_bytes() for name in expected} == expected


def test_append_starts_from_scratch_or_a_local_base_and_other_commands_say_registry_only(
    capsysbinary: Capture,
    busybox_image_blobs: ImageBlobs,
    registry_anonymous: Registry,
    unique_repo: str,
    tmp_path: Path,
) -> None:
    """A first image without docker: `append scratch`, as `crane append` without a base; and
    a base from an OCI layout. Commands that read registry images refuse local ones clearly."""
    tree = tmp_path / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/motd").write_text("from scratch\n")
    first = f"{registry_anonymous.host}/{unique_repo}/tiny:1"
    cli_text(capsysbinary, "append", "scratch", "--new-layer", str(tree), "-t", first)
    manifest = _manifest(first, registry_anonymous)
    assert len(manifest["layers"]) == 1
    config = _config(first, registry_anonymous)
    assert (config["os"], config["architecture"]) == ("linux", host_architecture())
    unpacked = _rootfs(first, registry_anonymous, tmp_path / "tiny") / "rootfs"
    assert _files(unpacked) == {"etc", "etc/motd"}

    layout = write_oci_layout(busybox_image_blobs, tmp_path / "layout")
    on_layout = f"{registry_anonymous.host}/{unique_repo}/on-layout:1"
    cli_text(
        capsysbinary, "append", f"oci-layout:{layout}", "--new-layer", str(tree), "-t", on_layout
    )
    layers = _manifest(on_layout, registry_anonymous)["layers"]
    assert [layer["digest"] for layer in layers][:1] == [busybox_image_blobs.layer_digest]
    assert len(layers) == 2

    err = _fails(capsysbinary, "mutate", f"oci-layout:{layout}", "--env", "A=1")
    assert f"invalid image reference 'oci-layout:{layout}'" in err
    assert "reads registry images only" in err
