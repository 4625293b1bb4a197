"""Docker-archive tars: deterministic writing, real tools loading them, reading them back."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from pants_oci.core import media_types
from pants_oci.core.errors import DigestMismatchError, RefNotFoundError
from pants_oci.core.layer import CustomFile, LayerBlob, LayerBuilder
from pants_oci.core.layout import ImageLayout, LocalImage
from pants_oci.core.tarball import list_docker_archive, read_docker_archive, write_docker_archive
from tests.core.images import add_busybox_base, stack_layer
from tests.harness import tools
from tests.harness.busybox import ImageBlobs


def _image(tmp_path: Path, busybox: ImageBlobs) -> tuple[LocalImage, LayerBlob]:
    builder = LayerBuilder()
    builder.add_files(
        {
            "app/hello.txt": CustomFile(data=b"hello from the archive\n"),
            "app/run.sh": CustomFile(data=b"#!/bin/sh\necho archived\n", mode=0o755),
        }
    )
    layout = ImageLayout.create(tmp_path / "layout")
    base = add_busybox_base(layout, busybox)
    layer = layout.write_layer(builder)
    return stack_layer(layout, base, layer, "app"), layer


def test_archive_is_what_docker_save_writes_and_deterministic(
    tmp_path: Path, busybox_image_blobs: ImageBlobs
) -> None:
    image, _ = _image(tmp_path, busybox_image_blobs)
    archive = tmp_path / "image.tar"
    write_docker_archive(archive, image, ["example.com/app:1.0"], repositories=True)

    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        files = {m.name: tar.extractfile(m).read() for m in members}  # type: ignore[union-attr]
    config_name = f"{image.config_descriptor.digest.hex}.json"
    layer_names = [f"{d.hex}.tar" for d in image.diff_ids]
    assert names == sorted([config_name, *layer_names, "manifest.json", "repositories"])
    assert all((m.mtime, m.uid, m.gid, m.mode) == (0, 0, 0, 0o644) for m in members)
    assert json.loads(files["manifest.json"]) == [
        {"Config": config_name, "RepoTags": ["example.com/app:1.0"], "Layers": layer_names}
    ]
    assert json.loads(files["repositories"]) == {"example.com/app": {"1.0": image.diff_ids[-1].hex}}
    assert files[config_name] == image.layout.read_blob(image.config_descriptor.digest)
    # Layers are the uncompressed tars: their sha256 are the diff_ids.
    for name, diff_id in zip(layer_names, image.diff_ids, strict=True):
        assert hashlib.sha256(files[name]).hexdigest() == diff_id.hex

    again = tmp_path / "again.tar"
    write_docker_archive(again, image, ["example.com/app:1.0"], repositories=True)
    assert again.read_bytes() == archive.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.tar", "image.tar", "layout"]


def test_skopeo_loads_our_archive_and_it_runs(
    tmp_path: Path, busybox_image_blobs: ImageBlobs
) -> None:
    image, _ = _image(tmp_path, busybox_image_blobs)
    archive = tmp_path / "image.tar"
    write_docker_archive(archive, image, ["app:latest"])

    info = tools.skopeo_inspect(f"docker-archive:{archive}")
    assert info["Layers"] == [str(d) for d in image.diff_ids]
    # skopeo finds the image by the tag we gave it in manifest.json.
    by_tag = tools.skopeo_inspect(f"docker-archive:{archive}:app:latest")
    assert by_tag["Digest"] == info["Digest"]
    copy = tools.skopeo_copy_to_oci_layout(f"docker-archive:{archive}", tmp_path / "copy", "app")
    config = json.loads(tools.skopeo_inspect(f"oci:{copy}:app", config=True, raw=True))
    assert config["rootfs"]["diff_ids"] == [str(d) for d in image.diff_ids]

    bundle = tools.umoci_unpack(copy, "app", tmp_path / "bundle")
    result = tools.runc_run(bundle, ["sh", "-c", "cat /app/hello.txt; /app/run.sh"])
    assert result.stdout == "hello from the archive\narchived\n"


def test_round_trip_keeps_config_and_diff_ids(
    tmp_path: Path, busybox_image_blobs: ImageBlobs
) -> None:
    image, layer = _image(tmp_path, busybox_image_blobs)
    archive = tmp_path / "image.tar"
    write_docker_archive(archive, image, ["app:1"])
    assert list_docker_archive(archive)[0].repo_tags == ("app:1",)

    # Kept uncompressed: digests are the diff_ids.
    plain = read_docker_archive(archive, ImageLayout.create(tmp_path / "plain"), tag="base")
    assert plain.config_descriptor.digest == image.config_descriptor.digest
    assert plain.layout.read_blob(plain.config_descriptor.digest) == image.layout.read_blob(
        image.config_descriptor.digest
    )
    assert plain.diff_ids == image.diff_ids
    assert [d.digest for d in plain.layers] == list(image.diff_ids)
    assert {d.media_type for d in plain.layers} == {media_types.OCI_LAYER}
    assert plain.layout.resolve("base").digest == plain.manifest_descriptor.digest
    info = tools.skopeo_inspect(f"oci:{plain.layout.root}:base")
    assert info["Layers"] == [str(d) for d in image.diff_ids]

    # Recompressed: the very layer blob we built, byte for byte.
    gz = read_docker_archive(
        archive, ImageLayout.create(tmp_path / "gz"), repo_tag="app:1", compression="gzip"
    )
    assert gz.layers[-1].digest == layer.digest
    assert (
        gz.layout.blob_path(layer.digest).read_bytes() == image.blob_path(layer.digest).read_bytes()
    )
    assert gz.diff_ids == image.diff_ids


def test_reads_archives_made_with_tar_c_dir_dot(
    tmp_path: Path, busybox_image_blobs: ImageBlobs
) -> None:
    """`tar -C DIR -cf x.tar .` names members `./manifest.json`: docker and skopeo read such
    archives, and so do read_docker_archive and validate."""
    from pants_oci.core.image_check import check_docker_archive

    image, _ = _image(tmp_path, busybox_image_blobs)
    archive = tmp_path / "image.tar"
    write_docker_archive(archive, image, ["app:1"])
    dotted = tmp_path / "dotted.tar"
    with tarfile.open(archive) as tar, tarfile.open(dotted, "w") as out:
        for member in tar.getmembers():
            data = tar.extractfile(member)
            member.name = f"./{member.name}"
            out.addfile(member, data)
    assert tools.skopeo_inspect(f"docker-archive:{dotted}")["Layers"] == [
        str(d) for d in image.diff_ids
    ]
    read = read_docker_archive(dotted, ImageLayout.create(tmp_path / "read"))
    assert read.config_descriptor.digest == image.config_descriptor.digest
    assert read.diff_ids == image.diff_ids
    assert check_docker_archive(dotted) == []


def test_reads_archives_skopeo_writes(tmp_path: Path, busybox_image_blobs: ImageBlobs) -> None:
    image, _ = _image(tmp_path, busybox_image_blobs)
    archive = tmp_path / "skopeo.tar"
    tools.run_tool(
        [
            "skopeo",
            "--insecure-policy",
            "copy",
            f"oci:{image.layout.root}:app",
            f"docker-archive:{archive}:example.com/skopeo:7",
        ]
    )
    imported = read_docker_archive(
        archive, ImageLayout.create(tmp_path / "imported"), repo_tag="example.com/skopeo:7"
    )
    assert imported.diff_ids == image.diff_ids
    assert imported.config.rootfs == image.config.rootfs
    with pytest.raises(RefNotFoundError, match=r"example\.com/skopeo:7"):
        read_docker_archive(archive, ImageLayout.create(tmp_path / "x"), repo_tag="other:1")


def _archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_bad_archives_are_refused(tmp_path: Path, busybox_image_blobs: ImageBlobs) -> None:
    image, _ = _image(tmp_path, busybox_image_blobs)
    config = image.layout.read_blob(image.config_descriptor.digest)
    entry = {"Config": "c.json", "RepoTags": ["a:1"], "Layers": ["l0.tar", "l1.tar"]}
    # A layer whose content does not match the config's diff_id.
    corrupt = _archive(
        tmp_path / "corrupt.tar",
        {
            "manifest.json": json.dumps([entry]).encode(),
            "c.json": config,
            "l0.tar": b"\0" * 1024,
            "l1.tar": b"\0" * 1024,
        },
    )
    layout = ImageLayout.create(tmp_path / "target")
    with pytest.raises(DigestMismatchError):
        read_docker_archive(corrupt, layout)
    assert list((layout.root / "blobs/sha256").iterdir()) == []  # nothing half-imported

    two = _archive(
        tmp_path / "two.tar",
        {"manifest.json": json.dumps([entry, {**entry, "RepoTags": ["b:1"]}]).encode()},
    )
    with pytest.raises(RefNotFoundError, match="a:1, b:1"):
        read_docker_archive(two, layout)
