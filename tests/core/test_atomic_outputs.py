"""Outputs appear whole or not at all (issue 15, item 11), and `image assemble` checks each
layer's metadata against its blob (item 12): the command line run against a real registry,
through the fault proxy where a failure is wanted, its layouts read back by umoci."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core import cli, media_types
from tests.core.registry_support import (
    hermetic_cli_environment,
    proxy_fixture,  # noqa: F401 - the `proxy` fixture
)
from tests.harness import tools
from tests.harness.busybox import PushedImage, host_architecture
from tests.harness.proxies import FaultProxy

REPO_ROOT = Path(__file__).resolve().parents[2]
PLATFORM = f"linux/{host_architecture()}"


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hermetic_cli_environment(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)


def _cli(capsys: pytest.CaptureFixture[str], *argv: str, expect: int = 0) -> tuple[str, str]:
    status = cli.main(["-q", *argv])
    captured = capsys.readouterr()
    assert status == expect, captured.err
    return captured.out, captured.err


def _pull(capsys: pytest.CaptureFixture[str], ref: str, output: str, expect: int = 0) -> str:
    _out, err = _cli(
        capsys,
        "--retries", "0",
        "base", "pull", ref, "--platform", PLATFORM, "--output", output, "--with-layers",
        expect=expect,
    )  # fmt: skip
    return err


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _siblings(path: Path) -> list[str]:
    """What is beside `path` other than the inputs these tests write: no leftovers."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}"))


def _unpacks(layout: Path, tag: str, bundle: Path) -> None:
    tools.umoci_unpack(layout, tag, bundle)
    assert (bundle / "rootfs/bin/busybox").is_file()


# --- item 11: base pull -------------------------------------------------------------------------


def test_a_pull_failing_mid_blob_leaves_no_output(
    capsys: pytest.CaptureFixture[str],
    busybox_image: PushedImage,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    rule = proxy.cut("GET", rf"/blobs/{busybox_image.layer_digest}", after_bytes=512, times=None)
    ref = f"{proxy.host}/{busybox_image.repository}:{busybox_image.tag}"
    _pull(capsys, ref, "base", expect=1)
    assert rule.hits >= 1
    assert not (tmp_path / "base").exists()
    assert _siblings(tmp_path / "base") == []


def test_a_failed_pull_leaves_the_previous_complete_output_intact(
    capsys: pytest.CaptureFixture[str],
    busybox_image: PushedImage,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    ref = f"{proxy.host}/{busybox_image.repository}:{busybox_image.tag}"
    _pull(capsys, ref, "base")
    before = _tree(tmp_path / "base")
    assert f"blobs/sha256/{busybox_image.layer_digest.split(':')[1]}" in before
    proxy.cut("GET", rf"/blobs/{busybox_image.layer_digest}", after_bytes=512, times=None)
    _pull(capsys, ref, "base", expect=1)
    assert _tree(tmp_path / "base") == before
    assert _siblings(tmp_path / "base") == []
    _unpacks(tmp_path / "base", "base", tmp_path / "bundle")


def test_a_pull_will_not_replace_a_directory_that_is_not_a_layout(
    capsys: pytest.CaptureFixture[str], busybox_image: PushedImage, tmp_path: Path
) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base/precious.txt").write_text("mine")
    err = _pull(capsys, busybox_image.tag_ref, "base", expect=1)
    assert "is not an OCI image layout; refusing to replace it" in err
    assert _tree(tmp_path / "base") == {"precious.txt": b"mine"}


def test_concurrent_pulls_into_one_output_all_succeed_and_leave_a_complete_layout(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO_ROOT / "src/python"),
        "DOCKER_CONFIG": str(tmp_path / "docker"),
        "HOME": str(tmp_path),
    }
    argv = [
        sys.executable, "-m", "pants_oci.core", "-q", "base", "pull", busybox_image.tag_ref,
        "--platform", PLATFORM, "--output", "base", "--with-layers",
    ]  # fmt: skip
    pulls = [
        subprocess.Popen(
            argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = [(pull.wait(timeout=300), *pull.communicate()) for pull in pulls]
    for status, out, err in results:
        assert status == 0, err
        assert json.loads(out)["manifest_digest"] == busybox_image.manifest_digest
    assert _siblings(tmp_path / "base") == []
    index = json.loads((tmp_path / "base/index.json").read_text())
    assert [entry["digest"] for entry in index["manifests"]] == [busybox_image.manifest_digest]
    _unpacks(tmp_path / "base", "base", tmp_path / "bundle")


# --- item 11: image assemble --------------------------------------------------------------------


def _layer(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "app").mkdir()
    (tmp_path / "app/hello.txt").write_text("hello\n")
    spec = {"entries": [{"source": "app", "target": "/srv/app"}], "compression": "gzip"}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out, _ = _cli(capsys, "layer", "build", "--spec", "spec.json", "--output", "layer.tar.gz")
    meta: dict[str, Any] = json.loads(out)
    (tmp_path / "layer.json").write_text(json.dumps(meta))
    (tmp_path / "config.json").write_text(json.dumps({"platform": PLATFORM}))
    return meta


def _assemble(capsys: pytest.CaptureFixture[str], *extra: str, expect: int = 0) -> str:
    _out, err = _cli(
        capsys,
        "image", "assemble", "--base", "scratch", "--layer", "layer.tar.gz=layer.json",
        "--config", "config.json", "--output", "out", "--tag", "v1", *extra,
        expect=expect,
    )  # fmt: skip
    return err


def test_assemble_whose_docker_archive_fails_writes_neither_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _layer(capsys, tmp_path)
    (tmp_path / "image.tar").mkdir()  # the archive's path is taken by a directory
    _assemble(capsys, "--docker-archive", "image.tar", expect=1)
    assert not (tmp_path / "out").exists()
    assert _siblings(tmp_path / "out") == []
    assert list((tmp_path / "image.tar").iterdir()) == []
    assert _siblings(tmp_path / "image.tar") == []


def test_assemble_replaces_a_previous_output_whole(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _layer(capsys, tmp_path)
    _assemble(capsys, "--docker-archive", "image.tar")
    _assemble(capsys, "--docker-archive", "image.tar")
    assert _siblings(tmp_path / "out") == [] and _siblings(tmp_path / "image.tar") == []
    tools.umoci_unpack(tmp_path / "out", "v1", tmp_path / "bundle")
    assert (tmp_path / "bundle/rootfs/srv/app/hello.txt").read_text() == "hello\n"


# --- item 12: layer metadata is checked against the blob ---------------------------------------


def _other_digest() -> str:
    return f"sha256:{hashlib.sha256(b'not this layer').hexdigest()}"


@pytest.mark.parametrize(
    ("key", "lie", "complaint"),
    [
        ("digest", _other_digest(), "the blob's digest is sha256:"),
        ("diff_id", _other_digest(), "the tar in the blob has diff_id sha256:"),
        ("media_type", media_types.OCI_LAYER_ZSTD, "the blob is gzip-compressed"),
        ("media_type", media_types.OCI_LAYER, "the blob is gzip-compressed"),
        ("size", 12, "the blob is "),
    ],
)
def test_assemble_refuses_layer_metadata_that_lies_about_its_blob(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key: str, lie: Any, complaint: str
) -> None:
    meta = _layer(capsys, tmp_path)
    (tmp_path / "layer.json").write_text(json.dumps({**meta, key: lie}))
    err = _assemble(capsys, "--docker-archive", "image.tar", expect=1)
    assert "--layer layer.tar.gz=layer.json" in err
    assert "the layer metadata does not match the blob" in err
    assert complaint in err and str(lie) in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "image.tar").exists()
    assert _siblings(tmp_path / "out") == []


def test_assemble_refuses_a_media_type_that_is_no_layer_type(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    meta = _layer(capsys, tmp_path)
    (tmp_path / "layer.json").write_text(json.dumps({**meta, "media_type": "text/plain"}))
    err = _assemble(capsys, expect=1)
    assert "media_type 'text/plain' is not a layer media type" in err
    assert not (tmp_path / "out").exists()


def test_assemble_takes_true_metadata_and_umoci_unpacks_the_result(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    meta = _layer(capsys, tmp_path)
    _assemble(capsys)
    manifest_digest = json.loads((tmp_path / "out/index.json").read_text())["manifests"][0]
    manifest = json.loads(
        (tmp_path / "out/blobs/sha256" / manifest_digest["digest"].split(":")[1]).read_text()
    )
    assert manifest["layers"][0]["digest"] == meta["digest"]
    tools.umoci_unpack(tmp_path / "out", "v1", tmp_path / "bundle")
    assert (tmp_path / "bundle/rootfs/srv/app/hello.txt").read_text() == "hello\n"


# --- item 11: the Image API ---------------------------------------------------------------------


def test_image_write_layout_makes_a_new_layout_whole_and_adds_to_an_existing_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from pants_oci.core.base_spec import SCRATCH
    from pants_oci.core.image import Image
    from pants_oci.core.models import Platform

    meta = _layer(capsys, tmp_path)
    with Image(SCRATCH, platform=Platform.parse(PLATFORM)) as image:
        image.add_layer(meta["digest"], meta["diff_id"], meta["size"], blob="layer.tar.gz")
        image.write_layout(tmp_path / "api", ["one"])
        image.write_layout(tmp_path / "api", ["two"])  # an existing layout: a tag added
        (tmp_path / "layer.tar.gz").rename(tmp_path / "gone.tar.gz")
        with pytest.raises(OSError):
            image.write_layout(tmp_path / "fresh", ["one"])  # its layer blob is gone
    assert not (tmp_path / "fresh").exists() and _siblings(tmp_path / "fresh") == []
    assert _siblings(tmp_path / "api") == []
    refs = [
        entry["annotations"]["org.opencontainers.image.ref.name"]
        for entry in json.loads((tmp_path / "api/index.json").read_text())["manifests"]
    ]
    assert refs == ["one", "two"]
    tools.umoci_unpack(tmp_path / "api", "two", tmp_path / "bundle")
