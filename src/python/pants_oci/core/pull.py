"""Pull a registry image whole, as ``crane pull`` does: into an OCI image layout (an index
with every platform's image, or the one image a platform picks), or into a docker-archive tar
(``docker load``'s, one image). Layers included; every document and blob is verified against
its digest on the way in; the output appears only complete (a failed pull leaves nothing, and
what was at the path before stays as it was).

:func:`~pants_oci.core.remote.pull_image` is the other pull: one platform's image, for a base,
its layers left in the registry unless asked for.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pants_oci.core._transport_options import ProgressCallback, TransportOptions
from pants_oci.core.blob_cache import CachedRegistrySource
from pants_oci.core.digest import Digest
from pants_oci.core.errors import DocumentError, PlatformNotFoundError
from pants_oci.core.layout import ImageLayout, staged_directory
from pants_oci.core.models import (
    AnyManifest,
    Descriptor,
    DockerManifest,
    DockerManifestList,
    ImageConfig,
    OCIIndex,
    OCIManifest,
    Platform,
)
from pants_oci.core.platforms import MAX_INDEX_DEPTH, require_platform
from pants_oci.core.reference import DEFAULT_TAG, Reference, parse_reference
from pants_oci.core.remote import download_layers
from pants_oci.core.tarball import write_docker_archive

if TYPE_CHECKING:
    from pants_oci.core.registry import ImageManifest

__all__ = ["Pulled", "archive_repo_tags", "pull_docker_archive", "pull_layout"]

_UNKNOWN_OS = "unknown"  # what attestation manifests in an index say they are for


@dataclass(frozen=True)
class Pulled:
    """What a pull wrote: the digest and media type of its root document (the index, or the
    image manifest) and the platforms of its images, in the order the index lists them."""

    reference: Reference
    digest: Digest
    media_type: str
    platforms: tuple[Platform, ...]


def pull_layout(
    reference: Reference | str,
    directory: str | os.PathLike[str],
    *,
    platform: Platform | None = None,
    options: TransportOptions | None = None,
    progress: ProgressCallback | None = None,
) -> Pulled:
    """Write the image ``reference`` names into a new OCI layout at ``directory``, with every
    layer: an index with all its images (and any index nested in it), or, given
    ``platform``, that platform's image alone (an image manifest for another platform is a
    PlatformNotFoundError). ``index.json`` names the root by the reference's tag (``latest``
    when it has neither tag nor digest; by digest alone, it is listed unnamed). The layout is
    built beside ``directory`` and swapped into place once complete; what it replaces must be
    an OCI layout."""
    reference = _parsed(reference)
    with CachedRegistrySource(reference, options or TransportOptions()) as source:
        root = _root(source, reference, platform, single=False)
        with staged_directory(directory) as staged:
            return _write(
                source,
                reference,
                root,
                ImageLayout.create(staged),
                platform=platform,
                progress=progress,
            )


def pull_docker_archive(
    reference: Reference | str,
    path: str | os.PathLike[str],
    *,
    platform: Platform | None = None,
    repo_tags: Sequence[str] | None = None,
    options: TransportOptions | None = None,
    progress: ProgressCallback | None = None,
) -> Pulled:
    """Write the image ``reference`` names as a docker-archive tar at ``path`` (written
    beside it and renamed into place once whole). An index is resolved to ``platform``'s
    image; without ``platform``, an index of images for several platforms is a
    PlatformNotFoundError listing them (an archive holds one image). ``repo_tags`` (default
    :func:`archive_repo_tags`) are the names ``docker load`` gives it. The layers pass
    through a temporary directory, removed after."""
    reference = _parsed(reference)
    tags = archive_repo_tags(reference) if repo_tags is None else list(repo_tags)
    with CachedRegistrySource(reference, options or TransportOptions()) as source:
        root = _root(source, reference, platform, single=True)
        with tempfile.TemporaryDirectory(prefix="pants-oci-pull-") as temporary:
            layout = ImageLayout.create(temporary)
            pulled = _write(source, reference, root, layout, platform=platform, progress=progress)
            write_docker_archive(path, layout.image(str(pulled.digest)), tags)
    return pulled


def archive_repo_tags(reference: Reference) -> list[str]:
    """The name a docker-archive of ``reference`` gives its image: the reference with its tag
    (``latest`` when it has none), without a digest; none for a reference by digest alone."""
    if reference.tag is None and reference.digest is not None:
        return []
    named = Reference(reference.registry, reference.repository, reference.tag or DEFAULT_TAG)
    return [str(named)]


def _parsed(reference: Reference | str) -> Reference:
    return parse_reference(reference) if isinstance(reference, str) else reference


def _images_listed(index: OCIIndex | DockerManifestList) -> list[Descriptor]:
    """The entries of an index that are images (not attestations, which say unknown/unknown)."""
    return [
        entry
        for entry in index.manifests
        if entry.platform is None or entry.platform.os != _UNKNOWN_OS
    ]


def _root(
    source: CachedRegistrySource, reference: Reference, platform: Platform | None, *, single: bool
) -> AnyManifest:
    """What to pull: the document ``reference`` names, or ``platform``'s image of it; with
    ``single``, always one image (an index must then list one, or ``platform`` pick one)."""
    from pants_oci.core.registry import walk_to_image_manifest

    document = source.manifest(reference.identifier)
    if isinstance(document, (OCIManifest, DockerManifest)):
        return document

    def fetch(entry: Descriptor) -> AnyManifest:
        return source.manifest(entry.digest, size=entry.size)

    if platform is not None:
        return walk_to_image_manifest(document, platform, fetch, str(reference))
    if not single:
        return document
    images = _images_listed(document)
    if len(images) == 1:
        return walk_to_image_manifest(fetch(images[0]), None, fetch, str(reference))
    available = [str(entry.platform) for entry in images if entry.platform is not None]
    raise PlatformNotFoundError(
        f"{reference} is an index of {len(images)} images "
        f"({', '.join(available) or 'none of them for a platform'}), and a docker-archive "
        "holds one image: choose a platform",
        wanted="",
        available=available,
    )


def _write(
    source: CachedRegistrySource,
    reference: Reference,
    root: AnyManifest,
    layout: ImageLayout,
    *,
    platform: Platform | None,
    progress: ProgressCallback | None,
) -> Pulled:
    """``root`` and everything under it into ``layout`` (manifests, configs, layers), the
    root listed in its ``index.json``; an image's config must be for ``platform``, if given."""
    images: list[ImageManifest] = []

    def put(document: AnyManifest, depth: int) -> None:
        if depth > MAX_INDEX_DEPTH:
            raise DocumentError(f"{reference}: indexes nested more than {MAX_INDEX_DEPTH} deep")
        if isinstance(document, (OCIIndex, DockerManifestList)):
            for entry in document.manifests:
                put(source.manifest(entry.digest, size=entry.size), depth + 1)
        else:
            descriptor = document.config
            layout.write_blob(source.blob(descriptor.digest, size=descriptor.size))
            images.append(document)
        layout.write_blob(document.to_bytes())

    put(root, 0)
    media_type = root.media_type or type(root).default_media_type
    if isinstance(root, (OCIIndex, DockerManifestList)):
        platforms = tuple(entry.platform for entry in _images_listed(root) if entry.platform)
        descriptor = root.descriptor()
    else:
        config = ImageConfig.from_bytes(layout.read_blob(root.config.digest))
        require_platform(config, platform, str(reference))
        platforms = (config.platform,)
        descriptor = root.descriptor(platform=config.platform)
    download_layers(source, images, layout, progress)
    if reference.tag is None and reference.digest is not None:
        layout.add_untagged([descriptor])
    else:
        layout.tag(reference.tag or DEFAULT_TAG, descriptor)
    return Pulled(reference, descriptor.digest, media_type, platforms)
