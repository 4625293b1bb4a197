"""The busybox base image is well formed, deterministic and runs under real tools."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import httpx
import pytest

from tests.harness import tools
from tests.harness.busybox import ImageBlobs, PushedImage, build_busybox_image, host_architecture
from tests.harness.distribution import OCI_MANIFEST, sha256_digest


def test_layer_is_deterministic_and_well_formed(busybox_image_blobs: ImageBlobs) -> None:
    again = build_busybox_image()
    assert again.manifest_digest == busybox_image_blobs.manifest_digest
    layer = busybox_image_blobs.layer
    assert layer[4:8] == b"\0\0\0\0"  # gzip header mtime
    tar_bytes = gzip.decompress(layer)
    assert sha256_digest(tar_bytes) == busybox_image_blobs.diff_id
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        names = [m.name for m in tar.getmembers()]
    assert names == sorted(names)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode == 0o755
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert {"etc/passwd", "etc/group"} <= members.keys()

    config = json.loads(busybox_image_blobs.config)
    assert config["rootfs"] == {"type": "layers", "diff_ids": [busybox_image_blobs.diff_id]}
    assert config["architecture"] == host_architecture()
    assert config["config"]["Cmd"] == ["sh"]


def test_pushed_manifest_is_served_as_pushed(busybox_image: PushedImage) -> None:
    registry = busybox_image.registry
    response = httpx.get(
        f"{registry.url}/v2/{busybox_image.repository}/manifests/{busybox_image.tag}",
        headers={"Accept": OCI_MANIFEST},
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"] == OCI_MANIFEST
    assert response.headers["Docker-Content-Digest"] == busybox_image.manifest_digest
    assert response.content == busybox_image.manifest
    assert busybox_image.ref == f"{registry.host}/base/busybox@{busybox_image.manifest_digest}"


def test_skopeo_inspects_busybox(busybox_image: PushedImage) -> None:
    registry = busybox_image.registry
    info = tools.skopeo_inspect(busybox_image.tag_ref, registry=registry)
    assert info["Digest"] == busybox_image.manifest_digest
    assert info["Architecture"] == host_architecture()
    assert info["Os"] == "linux"
    assert info["Layers"] == [busybox_image.layer_digest]
    assert tools.skopeo_inspect(busybox_image.ref, raw=True, registry=registry) == (
        busybox_image.manifest
    )
    raw_config = tools.skopeo_inspect(busybox_image.ref, raw=True, config=True, registry=registry)
    assert raw_config == busybox_image.config


def test_skopeo_error_carries_stderr(busybox_image: PushedImage) -> None:
    missing = f"{busybox_image.registry.host}/base/no-such-image:latest"
    with pytest.raises(tools.ToolError) as failed:
        tools.skopeo_inspect(missing, registry=busybox_image.registry)
    assert "manifest unknown" in str(failed.value)


@pytest.mark.parametrize("fixture", ["registry_basic", "registry_token", "registry_tls"])
def test_push_to_every_mode_and_inspect_with_its_auth(
    fixture: str, request: pytest.FixtureRequest, busybox_image: PushedImage, unique_repo: str
) -> None:
    registry = request.getfixturevalue(fixture)
    copy = busybox_image.push_to(registry, unique_repo, "v1")
    assert copy.manifest_digest == busybox_image.manifest_digest
    info = tools.skopeo_inspect(copy.tag_ref, registry=registry)
    assert info["Digest"] == busybox_image.manifest_digest
    # Without the registry's credentials (or, for TLS, its CA), skopeo is refused.
    with pytest.raises(tools.ToolError) as refused:
        tools.skopeo_inspect(copy.tag_ref, tls_verify=registry.tls)
    expected = "certificate signed by unknown authority" if registry.tls else "unauthorized"
    assert expected in str(refused.value).lower()


def test_busybox_runs_under_runc(busybox_image: PushedImage, tmp_path: Path) -> None:
    layout = tools.skopeo_copy_to_oci_layout(
        busybox_image.ref, tmp_path / "layout", "base", registry=busybox_image.registry
    )
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == busybox_image.manifest_digest

    # An oci: source works too (layout to layout).
    copied = tools.skopeo_copy_to_oci_layout(f"oci:{layout}:base", tmp_path / "copy", "again")
    assert (copied / "blobs/sha256" / busybox_image.layer_digest.split(":")[1]).exists()

    bundle = tools.umoci_unpack(layout, "base", tmp_path / "bundle")
    assert (bundle / "rootfs/bin/busybox").is_file()
    result = tools.runc_run(
        bundle,
        ["sh", "-c", 'echo hello from busybox; id -u; echo "$GREETING"; cat /etc/passwd'],
        env={"GREETING": "hi there"},
    )
    lines = result.stdout.splitlines()
    assert lines[:3] == ["hello from busybox", "0", "hi there"]
    assert lines[3].startswith("root:x:0:0:")

    failed = tools.runc_run(bundle, ["sh", "-c", "echo oops >&2; exit 3"], check=False)
    assert failed.returncode == 3
    assert failed.stderr.strip() == "oops"
