"""An image's root filesystem as its layers leave it, read from an OCI layout without unpacking.

Layers apply in order: each one's whiteouts hide what the layers below have (a directory's
whole tree; an opaque whiteout, a directory's content), never what the same layer adds, so each
layer is read whole before it is applied. Only the paths a caller asks about are kept, so a
large base costs one streaming read of its layers and little memory.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from pants_oci.core.compression import decompressed
from pants_oci.core.digest import Digest
from pants_oci.core.errors import ImageArchiveError
from pants_oci.core.layer import member_parts
from pants_oci.core.layout import ImageLayout
from pants_oci.core.whiteouts import Whiteout, lower_entries_left, parse_whiteout

__all__ = ["RootfsEntry", "directory_paths", "rootfs_entries"]


@dataclass(frozen=True)
class RootfsEntry:
    """What the final filesystem has at a path (relative, no leading `/`)."""

    kind: str  # "dir", "symlink", "file", "hardlink" or "other"
    mode: int
    uid: int
    gid: int
    executable: bool


def _kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return "file" if member.isfile() else "other"


def rootfs_entries(
    layout_dir: str | os.PathLike[str], keep: Callable[[str], bool], ref: str | None = None
) -> dict[str, RootfsEntry]:
    """The entries whose paths ``keep`` accepts, as the image's layers leave them: of image
    ``ref`` of an OCI layout, or of its only image. The layout must hold the layers."""
    layout = ImageLayout.open(layout_dir)
    if ref is None:
        needs = "reading the filesystem of an image needs a ref naming it, or a layout of one image"
        ref = str(layout.only_image(needs).digest)
    manifest = layout.manifest(ref)
    found: dict[str, RootfsEntry] = {}
    for descriptor in manifest.layers:
        if not layout.has_blob(descriptor.digest):
            raise ImageArchiveError(
                f"{layout.root}: layer {descriptor.digest} is missing; an image's filesystem "
                "can only be read when all its layers are present"
            )
        whiteouts, added = _read_layer(layout, descriptor.digest, keep)
        found = lower_entries_left(found, whiteouts)
        found.update(added)
    return found


def _read_layer(
    layout: ImageLayout, digest: Digest, keep: Callable[[str], bool]
) -> tuple[list[Whiteout], dict[str, RootfsEntry]]:
    """One layer's whiteouts, and the entries it adds whose paths ``keep`` accepts."""
    whiteouts: list[Whiteout] = []
    added: dict[str, RootfsEntry] = {}
    with (
        layout.open_blob(digest) as blob,
        decompressed(blob) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        for member in tar:
            parts = member_parts(member.name)
            if parts is None:
                raise ImageArchiveError(
                    f"{layout.root}: layer {digest} has a member {member.name!r} "
                    "with a '..' component, which would leave the root filesystem; "
                    "refusing to read the image"
                )
            name = "/".join(parts)
            whiteout = parse_whiteout(parts)
            if whiteout is not None:
                whiteouts.append(whiteout)
            elif name and keep(name):
                added[name] = RootfsEntry(
                    kind=_kind(member),
                    mode=member.mode & 0o7777,
                    uid=member.uid,
                    gid=member.gid,
                    executable=bool(member.mode & 0o111) and not member.isdir(),
                )
    return whiteouts, added


def directory_paths(layout_dir: str | os.PathLike[str], ref: str | None = None) -> list[str]:
    """The paths of the image that are directories, or symlinks (a layer must not replace
    either with a directory of its own), sorted."""
    entries = rootfs_entries(layout_dir, lambda _path: True, ref)
    return sorted(path for path, entry in entries.items() if entry.kind in ("dir", "symlink"))
