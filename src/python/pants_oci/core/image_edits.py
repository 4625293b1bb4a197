"""Edits of whole images that the builder (:class:`~pants_oci.core.image.Image`) does not make
by itself: a layer from a tarball someone else wrote, an image's filesystem as one tar (its
layers squashed, whiteouts applied), and an image moved from one base onto another.

The ``pants-oci`` commands ``append``, ``export``, ``flatten`` and ``rebase`` are these
functions and the builder.
"""

from __future__ import annotations

import copy
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, cast

from pants_oci.core import media_types
from pants_oci.core._clients import Clients
from pants_oci.core._transfer import Blob, transfer_blobs
from pants_oci.core._transport_options import ProgressCallback, TransportOptions
from pants_oci.core.compression import (
    Compression,
    LayerStream,
    Writable,
    decompressed,
    inspect_layer_blob,
    media_type_for,
)
from pants_oci.core.digest import Digest, sha256_of_bytes
from pants_oci.core.errors import ImageArchiveError, ImageBuildError, InputFileError
from pants_oci.core.image import oci_layer_descriptor
from pants_oci.core.layer import LayerBlob, member_parts
from pants_oci.core.layout import BASE_DIGEST_ANNOTATION, BASE_NAME_ANNOTATION, ImageLayout
from pants_oci.core.models import ImageConfig, OCIManifest, Platform, RootFS
from pants_oci.core.outputs import replacing
from pants_oci.core.reference import DEFAULT_TAG, Reference
from pants_oci.core.remote import put_manifest_tags
from pants_oci.core.whiteouts import Whiteout, lower_entries_left, parse_whiteout

if TYPE_CHECKING:
    from pants_oci.core.registry import ImageManifest, RegistryClient

__all__ = [
    "RemoteImage",
    "layer_tarball",
    "rebase_image",
    "squashed_layer",
    "write_filesystem_tar",
]


# --- A layer from a tarball ---------------------------------------------------------------------


def layer_tarball(path: str | os.PathLike[str]) -> LayerBlob:
    """A tar file (uncompressed, gzip or zstd) as the layer blob it is, measured: added to an
    image as it is, no new compression. Refuses a file that holds no tar (InputFileError)."""
    try:
        with (
            open(path, "rb") as handle,
            decompressed(handle) as stream,
            tarfile.open(fileobj=stream, mode="r|") as tar,
        ):
            tar.next()
        facts = inspect_layer_blob(path)
    except (tarfile.TarError, EOFError, OSError) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InputFileError(
            f"layer {os.fspath(path)} is not a readable tar file ({detail}); give a tar "
            "(uncompressed, gzip or zstd) or a directory"
        ) from None
    compression: Compression = facts.compression
    return LayerBlob(
        digest=facts.digest,
        diff_id=facts.diff_id,
        size=facts.size,
        uncompressed_size=0,  # not measured: unused by the image builder
        media_type=media_type_for(compression),
    )


# --- An image's filesystem ----------------------------------------------------------------------

# Where the final filesystem's entry at a path comes from: (layer, member number in it).
_Origin = tuple[int, int]


@contextmanager
def _members(layout: ImageLayout, digest: Digest) -> Iterator[tarfile.TarFile]:
    """A layer's tar, read as a stream."""
    with (
        layout.open_blob(digest) as blob,
        decompressed(blob) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        yield tar


def _path(layout: ImageLayout, digest: Digest, name: str) -> tuple[str, ...]:
    """A member's (or a hardlink's target's) path, as components."""
    parts = member_parts(name)
    if parts is None:
        raise ImageArchiveError(
            f"{layout.root}: layer {digest} has a member {name!r} with a '..' "
            "component, which would leave the root filesystem; refusing to read the image"
        )
    return parts


@dataclass
class _Survivors:
    """The final filesystem of an image's layers: which member of which layer each path is
    (``paths``), and, for each hardlink among them, the regular file member it shares its
    inode with when the link was made (``link_sources``; absent: it pointed at nothing)."""

    paths: dict[str, _Origin]
    link_sources: dict[_Origin, _Origin]

    def orphaned(self) -> set[_Origin]:
        """The link sources that an upper layer deleted or replaced: a tar can only link to a
        member it holds, so their content must go into the links themselves."""
        surviving = set(self.paths.values())
        return {
            source
            for link, source in self.link_sources.items()
            if link in surviving and source not in surviving
        }


def _survivors(layout: ImageLayout, layers: Sequence[Digest]) -> _Survivors:
    """Which member of which layer each path of the final filesystem is."""
    found: dict[str, _Origin] = {}
    link_sources: dict[_Origin, _Origin] = {}
    for number, digest in enumerate(layers):
        whiteouts: list[Whiteout] = []
        added: dict[str, tuple[int, int, bool]] = {}
        with _members(layout, digest) as tar:
            for ordinal, member in enumerate(tar):
                parts = _path(layout, digest, member.name)
                whiteout = parse_whiteout(parts)
                if whiteout is not None:
                    whiteouts.append(whiteout)
                    continue
                if not parts:
                    continue
                if member.islnk():
                    # What the link's target is as this layer makes it: an earlier member of
                    # the layer, else the layers below (this layer's whiteouts hide those only
                    # from the layers above, and a tar links only to what it already holds).
                    target = "/".join(_path(layout, digest, member.linkname))
                    earlier = added.get(target)
                    source = earlier[:2] if earlier else found.get(target)
                    if source is not None:
                        link_sources[(number, ordinal)] = link_sources.get(source, source)
                added["/".join(parts)] = (number, ordinal, member.isdir())
        # A non-directory replaces a lower directory whole, as a whiteout of it would.
        replaced = [path for path, (_, _, is_dir) in added.items() if not is_dir]
        found = {
            path: origin
            for path, origin in lower_entries_left(found, whiteouts).items()
            if not any(path.startswith(top + "/") for top in replaced)
        }
        found.update({path: (layer, ordinal) for path, (layer, ordinal, _) in added.items()})
    return _Survivors(found, link_sources)


def write_filesystem_tar(
    layout_dir: str | os.PathLike[str], sink: Writable, ref: str | None = None
) -> int:
    """Write the filesystem image ``ref`` of an OCI layout (default: its only image) leaves,
    whiteouts applied, as one uncompressed tar into ``sink``; the number of entries. Each
    entry is the member of the layer that has the final say on its path, as it is (mode,
    owner, times, extended headers), in layer order. A hardlink whose target an upper layer
    deleted or replaced keeps the content it had: the first such link becomes a regular file
    with it, and the others link to that one. The layout must hold every layer."""
    layout = ImageLayout.open(layout_dir)
    if ref is None:
        needs = "reading the filesystem of an image needs a ref naming it, or a layout of one image"
        ref = str(layout.only_image(needs).digest)
    layers = [descriptor.digest for descriptor in layout.manifest(ref).layers]
    for digest in layers:
        if not layout.has_blob(digest):
            raise ImageArchiveError(
                f"{layout.root}: layer {digest} is missing; an image's filesystem can only "
                "be read when all its layers are present"
            )
    survivors = _survivors(layout, layers)
    keep = {origin: path for path, origin in survivors.paths.items()}
    orphaned = survivors.orphaned()
    # An orphaned source's member and content, read where it is, until its first link is
    # written (then: the path that link has, for the next ones).
    held: dict[_Origin, tuple[tarfile.TarInfo, IO[bytes]]] = {}
    written_as: dict[_Origin, str] = {}
    with (
        ExitStack() as spools,
        tarfile.open(fileobj=cast("IO[bytes]", sink), mode="w|", format=tarfile.PAX_FORMAT) as out,
    ):
        for number, digest in enumerate(layers):
            with _members(layout, digest) as tar:
                for ordinal, member in enumerate(tar):
                    origin = (number, ordinal)
                    if origin in orphaned:
                        spool = spools.enter_context(tempfile.SpooledTemporaryFile(1 << 22))
                        if member.isreg():
                            shutil.copyfileobj(cast("IO[bytes]", tar.extractfile(member)), spool)
                        held[origin] = (copy.copy(member), spool)
                    path = keep.get(origin)
                    if path is None:
                        continue
                    member.name = path
                    source = survivors.link_sources.get(origin)
                    if member.islnk() and source in held:
                        _write_orphaned_link(out, path, *held.pop(source))
                        written_as[source] = path
                        continue
                    if member.islnk():
                        linkname = "/".join(_path(layout, digest, member.linkname))
                        member.linkname = written_as.get(source, linkname) if source else linkname
                    out.addfile(member, tar.extractfile(member) if member.isreg() else None)
    return len(keep)


def _write_orphaned_link(
    out: tarfile.TarFile, path: str, source: tarfile.TarInfo, content: IO[bytes]
) -> None:
    """A hardlink whose source no longer exists, as that source's file (a hardlink shares its
    source's inode: mode, owner and times are the source's)."""
    entry = copy.copy(source)
    entry.name = path
    content.seek(0)
    out.addfile(entry, content if entry.isreg() else None)


def squashed_layer(
    layout_dir: str | os.PathLike[str], path: str | os.PathLike[str], ref: str | None = None
) -> LayerBlob:
    """The filesystem of an image of an OCI layout as one gzip layer blob, written to
    ``path`` (whole or not at all): :func:`write_filesystem_tar`, compressed."""
    with replacing(path) as handle:
        stream = LayerStream(handle, compression="gzip")
        count = write_filesystem_tar(layout_dir, stream, ref)
        stream.finish()
    return LayerBlob.of_stream(stream, count)


# --- Rebase -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemoteImage:
    """One platform's image in a registry: its manifest, its config, and its repository."""

    reference: Reference
    manifest: ImageManifest
    config: ImageConfig
    client: RegistryClient

    @classmethod
    def read(cls, clients: Clients, reference: Reference, platform: Platform | None) -> RemoteImage:
        client = clients.get(reference)
        manifest = client.get_image_manifest(reference.identifier, platform)
        raw = client.read_blob(manifest.config.digest, size=manifest.config.size)
        return cls(reference, manifest, ImageConfig.from_bytes(raw), client)

    def blobs(self, start: int = 0) -> list[Blob]:
        """Its layers from ``start`` up, as blobs to copy from its repository."""
        return [
            Blob(descriptor, remote=self.client, mountable=True)
            for descriptor in self.manifest.layers[start:]
        ]


def rebase_image(
    reference: Reference,
    old_base: Reference,
    new_base: Reference,
    target: Reference,
    *,
    platform: Platform | None = None,
    options: TransportOptions | None = None,
    progress: ProgressCallback | None = None,
) -> Digest:
    """Push to ``target`` the image ``reference`` names with ``old_base``'s layers (its
    lowest ones) replaced by ``new_base``'s: its config with the new base's diff_ids and
    history below its own; its manifest's base annotations name the new base. Returns the
    new manifest's digest. ImageBuildError when the image is not built on ``old_base``."""
    clients = Clients(None, options or TransportOptions())
    try:
        image, old, new = (
            RemoteImage.read(clients, ref, platform) for ref in (reference, old_base, new_base)
        )
        count = len(old.manifest.layers)
        ours = [layer.digest for layer in image.manifest.layers[:count]]
        if ours != [layer.digest for layer in old.manifest.layers]:
            raise ImageBuildError(
                f"{reference} is not built on {old_base}: its lowest {count} layers are not "
                f"that image's layers; give the base it was built on as --old-base"
            )
        old_history = len(old.config.history or ())
        history = (*(new.config.history or ()), *(image.config.history or ())[old_history:])
        config = image.config.replace(
            rootfs=RootFS(
                diff_ids=(*new.config.rootfs.diff_ids, *image.config.rootfs.diff_ids[count:])
            ),
            history=history or None,
        )
        own = image.manifest.annotations if isinstance(image.manifest, OCIManifest) else None
        annotations = dict(own or {})
        annotations.update(
            {BASE_NAME_ANNOTATION: str(new_base), BASE_DIGEST_ANNOTATION: str(new.manifest.digest)}
        )
        layers = (*new.manifest.layers, *image.manifest.layers[count:])
        manifest = OCIManifest(
            config=config.descriptor(media_type=media_types.OCI_CONFIG),
            layers=tuple(oci_layer_descriptor(layer) for layer in layers),
            annotations=annotations,
        )
        destination = clients.get(target)
        transfer_blobs(destination, [*new.blobs(), *image.blobs(count)], progress=progress)
        config_bytes = config.to_bytes()
        destination.upload_blob(config_bytes, digest=sha256_of_bytes(config_bytes))
        tags = [target.tag or DEFAULT_TAG] if target.digest is None or target.tag else []
        raw = manifest.to_bytes()
        return put_manifest_tags(destination, raw, media_types.OCI_MANIFEST, tags)
    finally:
        clients.close()
