"""Helpers for the layer, layout and tarball tests: put images into OCI layouts."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from pants_oci.core.layer import LayerBlob
from pants_oci.core.layout import ImageLayout, LocalImage
from pants_oci.core.models import Descriptor, History, ImageConfig, OCIManifest, RootFS
from tests.harness.busybox import ImageBlobs


def add_busybox_base(layout: ImageLayout, busybox: ImageBlobs, tag: str = "base") -> LocalImage:
    """Store the busybox base image's blobs in ``layout`` and tag it."""
    for data in (busybox.config, busybox.layer, busybox.manifest):
        layout.write_blob(data)
    manifest = OCIManifest.from_bytes(busybox.manifest)
    layout.tag(tag, manifest.descriptor())
    return layout.image(tag)


def stack_layer(
    layout: ImageLayout, base: LocalImage, layer: LayerBlob, tag: str, *, cmd: str = "layer"
) -> LocalImage:
    """An image of ``base`` plus ``layer`` (already in the layout), tagged ``tag``."""
    config = base.config.replace(
        rootfs=RootFS(diff_ids=(*base.diff_ids, layer.diff_id)),
        history=(*(base.config.history or ()), History(created_by=cmd)),
    )
    config_descriptor = layout.write_document(config)
    manifest = OCIManifest(config=config_descriptor, layers=(*base.layers, layer.descriptor()))
    layout.tag(tag, layout.write_document(manifest))
    return layout.image(tag)


def single_layer_image(layout: ImageLayout, layer: LayerBlob, tag: str, arch: str) -> Descriptor:
    """A one-layer image (no base) for ``arch``; returns its manifest descriptor."""
    config = ImageConfig(architecture=arch, os="linux", rootfs=RootFS(diff_ids=(layer.diff_id,)))
    manifest = OCIManifest(config=layout.write_document(config), layers=(layer.descriptor(),))
    descriptor = layout.write_document(manifest)
    layout.tag(tag, descriptor)
    return descriptor


def tar_members(tar_bytes: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        return tar.getmembers()


def tar_contents(tar_bytes: bytes) -> dict[str, bytes]:
    """Regular files' contents by name."""
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                out[member.name] = handle.read()
    return out


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}
