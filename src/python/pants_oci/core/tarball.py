"""Docker-archive tars: what ``docker save`` writes and ``docker load`` reads.

An archive holds, in this order (sorted by name, every entry mode 0644, owner 0:0, mtime 0,
so the same image and tags always give the same archive bytes)::

    <config hex>.json     the image config, byte for byte as in the image
    <diff_id hex>.tar     each layer, UNCOMPRESSED (as docker save writes them; its digest is
                          the diff_id), once even if the image lists it twice
    manifest.json         [{"Config": "<hex>.json", "RepoTags": ["name:tag"],
                            "Layers": ["<diff_id hex>.tar", ...]}]
    repositories          optional, legacy: {"name": {"tag": "<top layer diff_id hex>"}}

``docker load``, ``podman load`` and ``skopeo copy docker-archive:...`` read it. Gzip and
zstd layers are decompressed into the archive; each is read twice (once to learn its size,
which a tar header needs first, and to check it against the config's diff_id; once to copy
it), so memory stays constant and nothing is staged on disk.

Reading an archive (:func:`read_docker_archive`) turns one of its images into an image in an
OCI layout, so it can serve as a base. The config keeps its exact bytes, so the image ID
(config digest) stays the same. Layers are kept UNCOMPRESSED by default, media type
``application/vnd.oci.image.layer.v1.tar``: their digests are their diff_ids on every machine,
independent of compressor versions, and nothing is spent compressing what may never be
pushed. ``compression="gzip"`` (or ``"zstd"``) compresses them as
:class:`~pants_oci.core.layer.LayerBuilder` does instead, for smaller pushes. Either way each
layer is checked against the config's diff_id.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, cast

from pants_oci.core import media_types, tar_format
from pants_oci.core._compat import zip_strict
from pants_oci.core.compression import Compression, GzipEngine, decompressed
from pants_oci.core.digest import Digest, HashingWriter
from pants_oci.core.errors import (
    DigestMismatchError,
    DocumentError,
    ImageArchiveError,
    RefNotFoundError,
)
from pants_oci.core.layer import compress_layer
from pants_oci.core.layout import ImageLayout, LocalImage
from pants_oci.core.models import Descriptor, ImageConfig, OCIManifest
from pants_oci.core.outputs import replacing
from pants_oci.core.reference import DEFAULT_TAG

__all__ = [
    "ArchiveImage",
    "archive_member",
    "list_docker_archive",
    "read_docker_archive",
    "write_docker_archive",
]

_MANIFEST_FILE = "manifest.json"
_REPOSITORIES_FILE = "repositories"
_CHUNK = 1 << 20
_ENTRY_MODE = 0o644
_COMPRESSED_MAGIC = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd")


# --- Writing ------------------------------------------------------------------------------------


def write_docker_archive(
    path: str | os.PathLike[str],
    image: LocalImage,
    repo_tags: Sequence[str] = (),
    *,
    repositories: bool = False,
) -> None:
    """Write ``image`` as a docker-archive tar at ``path`` (via a temporary file and a
    rename). ``repo_tags`` are full names with tags (``"example.com/app:1.2"``) that
    ``docker load`` will tag the image with; ``repositories`` adds the legacy file."""
    diff_ids = image.diff_ids
    config_bytes = image.layout.read_blob(image.config_descriptor.digest)
    config_name = f"{image.config_descriptor.digest.hex}.json"
    layer_names = [f"{diff_id.hex}.tar" for diff_id in diff_ids]
    manifest = [{"Config": config_name, "RepoTags": list(repo_tags), "Layers": layer_names}]

    # Each distinct layer once, named by its diff_id; the blob that holds it.
    layers: dict[str, tuple[Descriptor, Digest]] = {}
    for name, descriptor, diff_id in zip_strict(layer_names, image.layers, diff_ids):
        layers.setdefault(name, (descriptor, diff_id))

    small_files = {config_name: config_bytes, _MANIFEST_FILE: _json_bytes(manifest)}
    if repositories:
        small_files[_REPOSITORIES_FILE] = _json_bytes(_repositories(repo_tags, diff_ids))

    with replacing(path) as out:
        for name in sorted({*small_files, *layers}):
            if name in small_files:
                data = small_files[name]
                out.write(_file_header(name, len(data)))
                out.write(data)
                out.write(tar_format.padding(len(data)))
            else:
                descriptor, diff_id = layers[name]
                _write_layer(out, name, image, descriptor, diff_id)
        out.write(tar_format.END_OF_ARCHIVE)


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def _file_header(name: str, size: int) -> bytes:
    return tar_format.header(name, tar_format.REGULAR, _ENTRY_MODE, size)


def _repositories(
    repo_tags: Sequence[str], diff_ids: Sequence[Digest]
) -> dict[str, dict[str, str]]:
    top = diff_ids[-1].hex if diff_ids else ""
    result: dict[str, dict[str, str]] = {}
    for repo_tag in repo_tags:
        repository, tag = _split_repo_tag(repo_tag)
        result.setdefault(repository, {})[tag] = top
    return result


def _split_repo_tag(repo_tag: str) -> tuple[str, str]:
    repository, colon, tag = repo_tag.rpartition(":")
    if not colon or "/" in tag:  # "host:5000/app" has no tag
        return repo_tag, DEFAULT_TAG
    return repository, tag


def _write_layer(
    out: BinaryIO, name: str, image: LocalImage, descriptor: Descriptor, diff_id: Digest
) -> None:
    with image.open_blob(descriptor.digest) as blob:
        compressed = blob.read(4).startswith(_COMPRESSED_MAGIC)
    if compressed:
        # A tar header needs the size first: measure (and check) the tar, then copy it.
        with image.open_blob(descriptor.digest) as blob:
            measured = HashingWriter()
            _copy(decompressed(blob), measured)
        measured.verify(diff_id, subject=f"layer {descriptor.digest} (its diff_id)")
        size = measured.size
    else:
        size = image.blob_path(descriptor.digest).stat().st_size
    out.write(_file_header(name, size))
    with image.open_blob(descriptor.digest) as blob:
        copied = HashingWriter(out)
        _copy(decompressed(blob), copied)
    # Checked again: the blob could have changed since it was measured.
    copied.verify(diff_id, size, subject=f"layer {descriptor.digest} (its diff_id)")
    out.write(tar_format.padding(size))


def _copy(source: BinaryIO, sink: HashingWriter) -> None:
    while chunk := source.read(_CHUNK):
        sink.write(chunk)


# --- Reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveImage:
    """One entry of an archive's manifest.json."""

    config: str  # member name of the config
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]  # member names of the layer tars, base first


def list_docker_archive(path: str | os.PathLike[str]) -> list[ArchiveImage]:
    """The images a docker-archive holds, as its manifest.json lists them."""
    with _open_archive(path) as archive:
        return _archive_images(archive, path)


def read_docker_archive(
    path: str | os.PathLike[str],
    layout: ImageLayout,
    *,
    repo_tag: str | None = None,
    tag: str | None = None,
    compression: Compression = "none",
    level: int | None = None,
    gzip_engine: GzipEngine = "auto",
) -> LocalImage:
    """Import one image of a docker-archive into ``layout`` and return it.

    ``repo_tag`` picks the image by one of its RepoTags (``"app"`` means ``"app:latest"``);
    without it the archive must hold exactly one image. ``tag`` also names the image in the
    layout's index.json. See the module docs for ``compression``.
    """
    with _open_archive(path) as archive:
        entry = _select(_archive_images(archive, path), repo_tag, path)
        config_bytes = _read_member(archive, entry.config, path)
        config = ImageConfig.from_bytes(config_bytes)
        diff_ids = config.rootfs.diff_ids
        if len(diff_ids) != len(entry.layers):
            raise DocumentError(
                f"{path}: the config lists {len(diff_ids)} diff_ids but manifest.json lists "
                f"{len(entry.layers)} layers"
            )
        layers = [
            _import_layer(archive, path, member, diff_id, layout, compression, level, gzip_engine)
            for member, diff_id in zip_strict(entry.layers, diff_ids)
        ]
    config_descriptor = Descriptor(
        media_type=media_types.OCI_CONFIG,
        digest=layout.write_blob(config_bytes),
        size=len(config_bytes),
    )
    manifest = OCIManifest(config=config_descriptor, layers=tuple(layers))
    manifest_descriptor = layout.write_document(manifest)
    if tag is not None:
        layout.tag(tag, manifest_descriptor)
    return LocalImage(
        layout=layout, manifest=manifest, manifest_descriptor=manifest_descriptor, config=config
    )


def _open_archive(path: str | os.PathLike[str]) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as exc:
        raise ImageArchiveError(f"cannot read docker archive {os.fspath(path)}: {exc}") from None


def _read_member(archive: tarfile.TarFile, name: str, path: str | os.PathLike[str]) -> bytes:
    with _member_stream(archive, name, path) as stream:
        return stream.read()


def archive_member(archive: tarfile.TarFile, name: str) -> tarfile.TarInfo:
    """The member ``name`` of a docker-archive, also when the archive was made with ``tar -C
    DIR .`` (``./manifest.json``), as docker and skopeo read them too (KeyError: no such)."""
    try:
        return archive.getmember(name)
    except KeyError:
        return archive.getmember(f"./{name}")


def _member_stream(archive: tarfile.TarFile, name: str, path: str | os.PathLike[str]) -> BinaryIO:
    try:
        member = archive_member(archive, name)
        stream = archive.extractfile(member)  # follows the links older docker saves use
    except (KeyError, tarfile.TarError) as exc:
        raise ImageArchiveError(f"{os.fspath(path)} has no usable member {name!r}: {exc}") from None
    if stream is None:
        raise ImageArchiveError(f"{os.fspath(path)}: member {name!r} is not a file")
    return cast(BinaryIO, stream)


def _archive_images(archive: tarfile.TarFile, path: str | os.PathLike[str]) -> list[ArchiveImage]:
    try:
        entries = json.loads(_read_member(archive, _MANIFEST_FILE, path))
        return [
            ArchiveImage(
                config=entry["Config"],
                repo_tags=tuple(entry.get("RepoTags") or ()),
                layers=tuple(entry["Layers"]),
            )
            for entry in entries
        ]
    except (ValueError, TypeError, KeyError) as exc:
        raise ImageArchiveError(f"{os.fspath(path)}: malformed manifest.json: {exc!r}") from None


def _select(
    images: list[ArchiveImage], repo_tag: str | None, path: str | os.PathLike[str]
) -> ArchiveImage:
    available = [name for image in images for name in image.repo_tags]
    if repo_tag is None:
        if len(images) == 1:
            return images[0]
        raise RefNotFoundError(
            f"{os.fspath(path)} holds {len(images)} images; say which with repo_tag= "
            f"(one of {', '.join(available) or 'no tags'})",
            wanted="",
            available=available,
        )
    wanted = {repo_tag, f"{repo_tag}:latest"}
    for image in images:
        if wanted & set(image.repo_tags):
            return image
    raise RefNotFoundError(
        f"{os.fspath(path)} has no image tagged {repo_tag!r}; "
        f"it has {', '.join(available) or 'none'}",
        wanted=repo_tag,
        available=available,
    )


def _import_layer(  # noqa: PLR0917 - private, one call site
    archive: tarfile.TarFile,
    path: str | os.PathLike[str],
    member: str,
    diff_id: Digest,
    layout: ImageLayout,
    compression: Compression,
    level: int | None,
    gzip_engine: GzipEngine,
) -> Descriptor:
    subject = f"layer {member} of {os.fspath(path)} (its config's diff_id)"
    if compression == "none":
        if not layout.has_blob(diff_id):
            with _member_stream(archive, member, path) as stream, layout.ingest() as writer:
                _copy(decompressed(stream), writer)
                # Checked before the blob is renamed into place, so a bad one is never kept.
                writer.verify(diff_id, subject=subject)
        size = layout.blob_path(diff_id).stat().st_size
        return Descriptor(media_type=media_types.OCI_LAYER, digest=diff_id, size=size)

    def compress(out: BinaryIO) -> Descriptor:
        with _member_stream(archive, member, path) as stream:
            layer = compress_layer(
                decompressed(stream),
                out,
                compression=compression,
                level=level,
                gzip_engine=gzip_engine,
            )
        if layer.diff_id != diff_id:
            raise DigestMismatchError(
                f"digest mismatch for {subject}: expected {diff_id}, got {layer.diff_id}",
                expected=str(diff_id),
                actual=str(layer.diff_id),
            )
        return layer.descriptor()

    return layout.write_blob_with(compress)
