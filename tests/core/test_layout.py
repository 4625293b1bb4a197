"""OCI image layouts: writing, tagging, reading back, multi-platform, and real tools."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pants_oci.core import media_types
from pants_oci.core.digest import Digest
from pants_oci.core.errors import (
    DigestMismatchError,
    ImageArchiveError,
    PlatformNotFoundError,
    RefNotFoundError,
)
from pants_oci.core.layer import CustomFile, LayerBuilder
from pants_oci.core.layout import REF_NAME_ANNOTATION, ImageLayout
from pants_oci.core.models import OCIIndex, Platform
from tests.core.images import add_busybox_base, single_layer_image, stack_layer
from tests.harness import tools
from tests.harness.busybox import ImageBlobs


def _layer(text: str) -> LayerBuilder:
    builder = LayerBuilder()
    builder.add_files({"hello.txt": CustomFile(data=text.encode())})
    return builder


def test_create_writes_the_layout_marker_and_open_requires_it(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path / "img")
    assert json.loads((layout.root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert (layout.root / "blobs/sha256").is_dir()
    assert layout.index().manifests == () and layout.refs() == []
    ImageLayout.create(layout.root)  # an existing layout is reused
    assert ImageLayout.open(layout.root).root == layout.root
    with pytest.raises(ImageArchiveError, match="not an OCI image layout"):
        ImageLayout.open(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other/oci-layout").write_text('{"imageLayoutVersion":"2.0.0"}')
    with pytest.raises(ImageArchiveError, match=r"2\.0\.0"):
        ImageLayout.open(tmp_path / "other")


def test_blobs_are_written_atomically_once(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path)
    digest = layout.write_blob(b"content")
    path = layout.blob_path(digest)
    inode = path.stat().st_ino
    assert layout.write_blob(b"content") == digest
    assert path.stat().st_ino == inode  # left alone the second time
    assert path.read_bytes() == b"content" and (path.stat().st_mode & 0o777) == 0o644
    assert sorted(p.name for p in path.parent.iterdir()) == [digest.hex]  # no temp files

    with pytest.raises(DigestMismatchError), layout.ingest(expected=digest) as writer:
        writer.write(b"something else")
    assert sorted(p.name for p in path.parent.iterdir()) == [digest.hex]

    path.write_bytes(b"tampered")
    with pytest.raises(DigestMismatchError):
        layout.read_blob(digest)


def test_tags_live_in_index_json_annotations(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path)
    one = single_layer_image(layout, layout.write_layer(_layer("1")), "one", "amd64")
    two = single_layer_image(layout, layout.write_layer(_layer("2")), "two", "amd64")
    layout.tag("latest", one)
    index = json.loads((layout.root / "index.json").read_bytes())
    assert index["schemaVersion"] == 2
    assert [(m["digest"], m["annotations"][REF_NAME_ANNOTATION]) for m in index["manifests"]] == [
        (str(one.digest), "one"),
        (str(two.digest), "two"),
        (str(one.digest), "latest"),
    ]
    layout.tag("latest", two)  # retagging replaces
    assert layout.refs() == ["latest", "one", "two"]
    assert layout.resolve("latest").digest == two.digest
    assert layout.resolve(str(one.digest)).digest == one.digest
    assert sorted(p.name for p in layout.root.iterdir()) == ["blobs", "index.json", "oci-layout"]

    with pytest.raises(RefNotFoundError, match="latest, one, two") as caught:
        layout.resolve("missing")
    assert caught.value.available == ["latest", "one", "two"]
    missing = one.model_copy(update={"digest": Digest.parse("sha256:" + "0" * 64)})
    with pytest.raises(ImageArchiveError, match="not in"):
        layout.tag("ghost", missing)
    assert "ghost" not in layout.refs()


def test_multi_platform_index_resolves_by_platform(tmp_path: Path) -> None:
    layout = ImageLayout.create(tmp_path)
    amd64 = single_layer_image(layout, layout.write_layer(_layer("amd64")), "amd64", "amd64")
    arm64 = single_layer_image(layout, layout.write_layer(_layer("arm64")), "arm64", "arm64")
    index = OCIIndex(
        manifests=(
            amd64.model_copy(update={"platform": Platform(os="linux", architecture="amd64")}),
            arm64.model_copy(
                update={"platform": Platform(os="linux", architecture="arm64", variant="v8")}
            ),
        )
    )
    layout.tag("multi", layout.write_document(index))

    assert layout.resolve("multi", Platform.parse("linux/arm64")).digest == arm64.digest
    assert layout.resolve("multi", Platform.parse("linux/amd64")).digest == amd64.digest
    host = Platform.host_linux()
    expected = arm64 if host.architecture == "arm64" else amd64
    assert layout.resolve("multi").digest == expected.digest
    image = layout.image("multi", Platform.parse("linux/arm64"))
    assert image.config.architecture == "arm64"
    assert image.manifest_descriptor.digest == arm64.digest
    with pytest.raises(PlatformNotFoundError, match="linux/amd64, linux/arm64/v8"):
        layout.resolve("multi", Platform.parse("linux/s390x"))

    # The flat form: per-platform manifests named directly in index.json.
    layout.set_refs(
        {
            "flat": [
                amd64.model_copy(update={"platform": Platform(os="linux", architecture="amd64")}),
                arm64.model_copy(update={"platform": Platform(os="linux", architecture="arm64")}),
            ]
        }
    )
    assert layout.resolve("flat", Platform.parse("linux/arm64/v8")).digest == arm64.digest


def test_skopeo_and_umoci_read_our_layout_and_we_read_skopeos(
    tmp_path: Path, busybox_image_blobs: ImageBlobs
) -> None:
    layout = ImageLayout.create(tmp_path / "ours")
    base = add_busybox_base(layout, busybox_image_blobs)
    layer = layout.write_layer(_layer("from pants_oci\n"))
    image = stack_layer(layout, base, layer, "v1")

    info = tools.skopeo_inspect(f"oci:{layout.root}:v1")
    assert info["Digest"] == str(image.manifest_descriptor.digest)
    assert info["Layers"] == [str(d.digest) for d in image.layers]
    assert tools.skopeo_inspect(f"oci:{layout.root}:v1", config=True, raw=True) == (
        layout.read_blob(image.config_descriptor.digest)
    )

    # skopeo writes a layout of its own; we read it as a base.
    theirs = tools.skopeo_copy_to_oci_layout(
        f"oci:{layout.root}:v1", tmp_path / "theirs", "copied", extra_args=["--preserve-digests"]
    )
    read_back = ImageLayout.open(theirs).image("copied")
    assert read_back.manifest_descriptor.digest == image.manifest_descriptor.digest
    assert read_back.diff_ids == image.diff_ids
    assert read_back.layers[-1].media_type == media_types.OCI_LAYER_GZIP
    assert (
        read_back.blob_path(layer.digest).read_bytes()
        == layout.blob_path(layer.digest).read_bytes()
    )

    bundle = tools.umoci_unpack(layout.root, "v1", tmp_path / "bundle")
    result = tools.runc_run(bundle, ["cat", "/hello.txt"])
    assert result.stdout == "from pants_oci\n"
