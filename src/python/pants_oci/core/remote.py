"""Images in registries: pull one into an OCI layout, push a layout's image (or index) to
registries, copy an image between registries, and read what a reference names; the
``pants-oci`` commands ``base pull``, ``push``, ``copy`` and ``inspect`` are these functions.

Every push puts the blobs a manifest needs in place first (see :mod:`pants_oci.core._transfer`),
then the manifest under its first tag, then the same bytes under each other tag, so that no
tag ever names a manifest whose blobs are not all there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pants_oci.core._clients import Clients
from pants_oci.core._transfer import Blob, transfer_blobs
from pants_oci.core._transport_options import ProgressCallback, TransportOptions
from pants_oci.core.auth import Keychain
from pants_oci.core.digest import Digest, sha256_of_bytes
from pants_oci.core.errors import DocumentError, ImageBuildError, OCIError, PartialPushError
from pants_oci.core.layout import (
    BASE_REF_NAME,
    BLOB_SOURCE_ANNOTATION,
    ImageLayout,
    staged_directory,
)
from pants_oci.core.models import (
    AnyManifest,
    Descriptor,
    DockerManifest,
    DockerManifestList,
    ImageConfig,
    OCIIndex,
    OCIManifest,
    Platform,
    parse_manifest,
)
from pants_oci.core.platforms import MAX_INDEX_DEPTH, require_platform
from pants_oci.core.reference import DEFAULT_TAG, Reference, parse_reference

# The registry client and httpx are imported where a registry is reached.
if TYPE_CHECKING:
    from pants_oci.core.blob_cache import CachedRegistrySource
    from pants_oci.core.push_ledger import PushLedger
    from pants_oci.core.registry import RegistryClient

__all__ = [
    "PulledImage",
    "copy_image",
    "download_layers",
    "pull_image",
    "push_layout",
    "put_manifest_tags",
    "read_document",
]

_log = logging.getLogger(__name__)


def put_manifest_tags(
    target: RegistryClient,
    raw: bytes,
    media_type: str,
    tags: Sequence[str],
    updated: list[str] | None = None,
) -> Digest:
    """One manifest PUT under the first tag (or by digest), then the same bytes per tag;
    each tag that now points at it is added to ``updated``."""
    first: str | None = tags[0] if tags else None
    digest = target.put_manifest(raw, media_type, tag=first)
    moved = updated if updated is not None else []
    if first is not None:
        moved.append(f"{target.registry}/{target.repository}:{first}")
    for tag in tags[1:]:
        target.put_manifest(raw, media_type, tag=tag)
        moved.append(f"{target.registry}/{target.repository}:{tag}")
    _log.info(
        "pushed %s/%s@%s%s",
        target.registry,
        target.repository,
        digest,
        f" as {', '.join(tags)}" if tags else "",
    )
    return digest


# --- Pull ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PulledImage:
    """What :func:`pull_image` wrote: the image manifest it chose, its config, and the digest
    of the index it was chosen from (None when the reference names an image manifest)."""

    reference: Reference
    index_digest: Digest | None
    manifest: OCIManifest | DockerManifest
    config: ImageConfig


def pull_image(
    reference: Reference | str,
    directory: str | os.PathLike[str],
    *,
    platform: Platform | None = None,
    with_layers: bool = False,
    blob_cache: str | os.PathLike[str] | None = None,
    options: TransportOptions | None = None,
    progress: ProgressCallback | None = None,
) -> PulledImage:
    """Write one platform's image of a registry image (``platform``, default this machine's
    Linux) into a new OCI layout at ``directory``, named :data:`BASE_REF_NAME`; its entry
    records the registry image it came from (:data:`BLOB_SOURCE_ANNOTATION`), which has the
    blobs the layout leaves out. ``with_layers`` downloads the layers too (never foreign
    ones), ``options.max_concurrency`` at a time. ``blob_cache`` keeps blobs by digest in
    that directory (verified on every read) and downloads only what it lacks. The layout is
    built beside ``directory`` and renamed into place only when complete
    (:func:`~pants_oci.core.layout.staged_directory`)."""
    from pants_oci.core.blob_cache import CachedRegistrySource

    reference = parse_reference(reference) if isinstance(reference, str) else reference
    platform = platform or Platform.host_linux()
    options = options or TransportOptions()
    with CachedRegistrySource(reference, options, blob_cache) as source:
        manifest, index_digest = _image_manifest(source, reference, platform)
        config_bytes = source.blob(manifest.config.digest, size=manifest.config.size)
        config = ImageConfig.from_bytes(config_bytes)
        require_platform(config, platform, str(reference))
        with staged_directory(directory) as staged:
            layout = ImageLayout.create(staged)
            layout.write_blob(config_bytes)
            layout.write_blob(manifest.to_bytes())
            if with_layers:
                download_layers(source, [manifest], layout, progress)
            descriptor = manifest.descriptor(
                platform=config.platform,
                annotations={BLOB_SOURCE_ANNOTATION: f"{reference.name}@{manifest.digest}"},
            )
            layout.tag(BASE_REF_NAME, descriptor)
    return PulledImage(reference, index_digest, manifest, config)


def _image_manifest(
    source: CachedRegistrySource, reference: Reference, platform: Platform
) -> tuple[OCIManifest | DockerManifest, Digest | None]:
    """The image manifest ``reference`` names for ``platform``, and the digest of the index
    it was chosen from, if any."""
    from pants_oci.core.registry import walk_to_image_manifest

    document = source.manifest(reference.identifier)
    is_image = isinstance(document, (OCIManifest, DockerManifest))
    index_digest: Digest | None = None if is_image else document.digest
    manifest = walk_to_image_manifest(
        document,
        platform,
        lambda entry: source.manifest(entry.digest, size=entry.size),
        str(reference),
    )
    return manifest, index_digest


def download_layers(
    source: CachedRegistrySource,
    images: Sequence[OCIManifest | DockerManifest],
    layout: ImageLayout,
    progress: ProgressCallback | None,
) -> None:
    """Download the layers of ``images`` the layout lacks, each once, ``max_concurrency`` at
    a time (foreign layers stay where their urls are)."""
    from pants_oci.core.registry import map_bounded

    layers = list(
        {
            layer.digest: layer
            for image in images
            for layer in image.layers
            if not layer.urls and not layout.has_blob(layer.digest)
        }.values()
    )
    total = sum(layer.size for layer in layers)
    done = [0]

    def advance(count: int) -> None:
        done[0] += count
        if progress is not None:
            progress(done[0], total)

    map_bounded(
        lambda layer: source.copy_blob(layer.digest, layout, advance, size=layer.size),
        layers,
        source.options.max_concurrency,
    )


# --- Push ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Document:
    """A manifest or index to PUT, with the blobs it needs in place first."""

    raw: bytes
    media_type: str
    blobs: tuple[Blob, ...] = ()


def _layout_documents(
    layout: ImageLayout,
    descriptor: Descriptor,
    remote: RegistryClient | None,
    base_layers: frozenset[Digest] = frozenset(),
    depth: int = 0,
) -> list[_Document]:
    """The root document of ``descriptor`` and everything under it, children first
    (``base_layers``: the blobs ``remote`` has as the base's, to mount rather than upload)."""
    if depth > MAX_INDEX_DEPTH:
        raise DocumentError(f"{layout.root}: indexes nested more than {MAX_INDEX_DEPTH} deep")
    raw = layout.read_blob(descriptor.digest)
    document: AnyManifest = parse_manifest(raw, descriptor.media_type)
    media_type = document.media_type or type(document).default_media_type
    if isinstance(document, (OCIIndex, DockerManifestList)):
        children = [
            item
            for child in document.manifests
            for item in _layout_documents(layout, child, remote, base_layers, depth + 1)
        ]
        return [*children, _Document(raw, media_type)]
    blobs = []
    for item in (document.config, *document.layers):
        present = layout.has_blob(item.digest)
        # A blob the layout lacks (a sparse layout's base layer) is in ``remote``'s
        # repository: mounted from there where the registry is the same.
        blobs.append(
            Blob(
                item,
                path=layout.blob_path(item.digest) if present else None,
                remote=remote,
                mountable=item.digest in base_layers or not present,
            )
        )
    return [_Document(raw, media_type, tuple(blobs))]


def _base_layers(source: RegistryClient, reference: Reference) -> frozenset[Digest]:
    """The layers of the base image a layout records, pinned by digest (none if it cannot be
    read: the push then uploads them, as for a base on another registry)."""
    if reference.digest is None:
        return frozenset()
    try:
        document = source.get_manifest(reference.digest)
    except OCIError as e:
        _log.debug("not mounting base layers: cannot read %s: %s", reference, e)
        return frozenset()
    if isinstance(document, (OCIManifest, DockerManifest)):
        return frozenset(layer.digest for layer in document.layers)
    return frozenset()


def push_layout(
    directory: str | os.PathLike[str],
    references: Sequence[Reference | str],
    *,
    base_reference: Reference | str | None = None,
    keychain: Keychain | None = None,
    options: TransportOptions | None = None,
    copy_foreign_layers: bool = False,
    progress: ProgressCallback | None = None,
    ledger: PushLedger | None = None,
) -> list[tuple[Reference, Digest]]:
    """Push the one image (or index) of an OCI layout to each of ``references``, exactly as
    it is (same bytes, same digest).

    Per repository: blobs first (skipping what it has; mounted from a repository pushed to
    before on the same registry; blobs the layout lacks copied from ``base_reference`` or the
    registry image the layout records), then the manifest under the first tag, then the same
    bytes under the others. Returns (reference, digest) per reference, in order.

    With a ``ledger`` (:class:`~pants_oci.core.push_ledger.PushLedger`), a blob the first
    repository of a registry lacks is mounted from another repository of that registry the
    ledger says has it (uploaded when the registry declines); the blobs of every repository
    pushed to are recorded in it, and it is saved, when the push ends.
    """
    layout = ImageLayout.open(directory)
    root = layout.only_image("push needs a layout with exactly one image (or one index)")
    refs = [parse_reference(r) if isinstance(r, str) else r for r in references]
    if not refs:
        raise ImageBuildError("push needs at least one destination reference")
    clients = Clients(keychain, options or TransportOptions())
    try:
        source_text = base_reference or (root.annotations or {}).get(BLOB_SOURCE_ANNOTATION)
        documents = _documents_to_push(layout, root, refs, clients, source_text)
        layout_digest = sha256_of_bytes(documents[-1].raw)
        for ref in refs:  # before anything is sent
            if ref.digest is not None and Digest.parse(ref.digest) != layout_digest:
                raise ImageBuildError(
                    f"cannot push to {ref}: the layout's image is {layout_digest}, not "
                    f"{ref.digest}; nothing was sent"
                )
        by_repository: dict[str, list[Reference]] = {}
        for ref in refs:
            by_repository.setdefault(ref.name, []).append(ref)
        results: dict[int, Digest] = {}
        updated: list[str] = []
        try:
            _push_groups(
                clients,
                by_repository,
                documents,
                results,
                updated,
                copy_foreign_layers=copy_foreign_layers,
                progress=progress,
                ledger=ledger,
            )
        except OCIError as error:
            if not updated:
                raise
            raise _partial_push_error(error, refs, clients, updated, layout_digest) from error
        _push_referrers(layout, documents, clients, by_repository)
        return [(ref, results[id(ref)]) for ref in refs]
    finally:
        clients.close()
        if ledger is not None:
            ledger.save()


def _documents_to_push(
    layout: ImageLayout,
    root: Descriptor,
    refs: Sequence[Reference],
    clients: Clients,
    source_text: Reference | str | None,
) -> list[_Document]:
    """The documents of the layout's image (or index), children first, each with the blobs
    it needs: from the layout, else from ``source_text``'s repository (mounted, for the base's
    layers, where a destination shares its registry)."""
    source = clients.get(source_text) if source_text else None
    base_layers: frozenset[Digest] = frozenset()
    if source is not None and any(clients.get(r).base_url == source.base_url for r in refs):
        base_layers = _base_layers(source, parse_reference(str(source_text)))
    return _layout_documents(layout, root, source, base_layers)


def _push_referrers(
    layout: ImageLayout,
    documents: Sequence[_Document],
    clients: Clients,
    by_repository: dict[str, list[Reference]],
) -> None:
    """The layout's artifacts attached to the pushed image (or its index's images): after
    the image, into each repository, as referrers (see :mod:`pants_oci.core.referrers`)."""
    from pants_oci.core.referrers import layout_artifacts, push_referrers

    attached = []
    for document in documents:
        for _, manifest in layout_artifacts(layout, sha256_of_bytes(document.raw)):
            blobs = [layout.read_blob(layer.digest) for layer in manifest.layers]
            attached.append((manifest, blobs))
    if not attached:
        return
    for group in by_repository.values():
        target = clients.get(group[0])
        try:
            how = push_referrers(target, attached)
        except OCIError as error:
            raise ImageBuildError(
                f"{target.registry}/{target.repository} received the image, but not the "
                f"{len(attached)} artifacts attached to it (its SBOMs and provenance): "
                f"{error}. Pushing again resumes where this stopped; to publish without them, "
                "build the image with its supply chain off"
            ) from error
        _log.info(
            "attached %d artifacts in %s/%s by %s",
            len(attached),
            target.registry,
            target.repository,
            "the referrers API" if how == "api" else "the fallback tag",
        )


def _partial_push_error(
    error: OCIError,
    refs: Sequence[Reference],
    clients: Clients,
    updated: Sequence[str],
    layout_digest: Digest,
) -> PartialPushError:
    """``error``, which stopped a push after the tags ``updated`` had moved: which did not."""
    wanted: list[str] = []
    for ref in refs:
        if ref.digest is None or ref.tag:
            client = clients.get(ref)
            wanted.append(f"{client.registry}/{client.repository}:{ref.tag or DEFAULT_TAG}")
    not_updated = tuple(name for name in wanted if name not in updated)
    return PartialPushError(
        f"{error}; before that, {', '.join(updated)} had moved to {layout_digest}, and "
        f"{', '.join(not_updated) or 'no other tag'} still point where they did",
        updated=tuple(updated),
        not_updated=not_updated,
    )


def _push_groups(
    clients: Clients,
    by_repository: dict[str, list[Reference]],
    documents: list[_Document],
    results: dict[int, Digest],
    updated: list[str],
    *,
    copy_foreign_layers: bool,
    progress: ProgressCallback | None,
    ledger: PushLedger | None = None,
) -> None:
    """Each repository in turn: blobs, child manifests, then the root under its tags."""
    first_in_registry: dict[str, RegistryClient] = {}
    for name, group in by_repository.items():
        target = clients.get(group[0])
        earlier = first_in_registry.setdefault(target.registry, target)
        sources: dict[str, RegistryClient] = {}
        for document in documents:
            blobs = document.blobs
            if earlier is not target:  # the registry has them already: mount, not upload
                blobs = tuple(Blob(blob.descriptor, remote=earlier) for blob in blobs)
            elif ledger is not None:
                blobs = tuple(_from_ledger(ledger, target, blob, sources) for blob in blobs)
            transfer_blobs(
                target, blobs, copy_foreign_layers=copy_foreign_layers, progress=progress
            )
            if document is not documents[-1]:
                target.put_manifest(document.raw, document.media_type)
        tags = [ref.tag or DEFAULT_TAG for ref in group if ref.digest is None or ref.tag]
        root_doc = documents[-1]
        digest = put_manifest_tags(target, root_doc.raw, root_doc.media_type, tags, updated)
        _log.debug("pushed %s", name)
        if ledger is not None:
            pushed = (
                str(blob.digest)
                for document in documents
                for blob in document.blobs
                if copy_foreign_layers or not blob.foreign
            )
            ledger.record(str(target.base_url), target.repository, pushed)
        for ref in group:
            results[id(ref)] = digest


def _from_ledger(
    ledger: PushLedger, target: RegistryClient, blob: Blob, sources: dict[str, RegistryClient]
) -> Blob:
    """``blob``, to be mounted from the repository of ``target``'s registry that the ledger
    last saw it in, with its local bytes to upload when the registry declines (a blob with
    no local bytes, or a base's blob mounted from the base's repository, is left as it is)."""
    if blob.data is None and blob.path is None:
        return blob
    if blob.mountable and blob.remote is not None and blob.remote.base_url == target.base_url:
        return blob
    for repository in ledger.sources(str(target.base_url), str(blob.digest)):
        if repository != target.repository:
            if repository not in sources:
                sources[repository] = target.for_repository(repository)
            remote = sources[repository]
            return Blob(blob.descriptor, blob.data, blob.path, remote=remote, mountable=True)
    return blob


# --- Copy ---------------------------------------------------------------------------------------


def copy_image(
    source: Reference | str,
    destination: Reference | str,
    *,
    keychain: Keychain | None = None,
    options: TransportOptions | None = None,
    copy_foreign_layers: bool = False,
    progress: ProgressCallback | None = None,
    platform: Platform | None = None,
) -> Digest:
    """Copy an image, or an index with every platform's image, from one repository to
    another; the same bytes under the same digests. Returns the root digest. With
    ``platform``, only that platform's image of an index (the destination gets the image
    manifest, not the index); an image for another platform is a PlatformNotFoundError."""
    src = parse_reference(source) if isinstance(source, str) else source
    dst = parse_reference(destination) if isinstance(destination, str) else destination
    clients = Clients(keychain, options or TransportOptions())
    try:
        source_client, target = clients.get(src), clients.get(dst)

        def copy(identifier: str, depth: int, size: int | None = None) -> tuple[bytes, str]:
            if depth > MAX_INDEX_DEPTH:
                raise DocumentError(f"{src}: indexes nested more than {MAX_INDEX_DEPTH} deep")
            document = source_client.get_manifest(identifier, size=size)
            media_type = document.media_type or type(document).default_media_type
            if isinstance(document, (OCIIndex, DockerManifestList)):
                for child in document.manifests:
                    raw, child_type = copy(str(child.digest), depth + 1, child.size)
                    target.put_manifest(raw, child_type)
            else:
                blobs = [
                    Blob(item, remote=source_client) for item in (document.config, *document.layers)
                ]
                transfer_blobs(
                    target, blobs, copy_foreign_layers=copy_foreign_layers, progress=progress
                )
            return document.to_bytes(), media_type

        identifier = src.identifier
        if platform is not None:
            image = source_client.get_image_manifest(identifier, platform)
            config = source_client.read_blob(image.config.digest, size=image.config.size)
            require_platform(ImageConfig.from_bytes(config), platform, str(src))
            identifier = str(image.digest)
        raw, media_type = copy(identifier, 0)
        tags = [dst.tag or DEFAULT_TAG] if dst.digest is None or dst.tag else []
        return put_manifest_tags(target, raw, media_type, tags)
    finally:
        clients.close()


# --- Read ---------------------------------------------------------------------------------------


def read_document(
    reference: Reference,
    *,
    platform: Platform | None = None,
    image_only: bool = False,
    read_config: bool = True,
    options: TransportOptions | None = None,
) -> tuple[AnyManifest, bytes | None]:
    """The manifest or index ``reference`` names, as it is; or, when a ``platform`` is given
    or ``image_only``, the image manifest for ``platform`` (default: this machine's Linux)
    that an index lists. With an image manifest come its config's bytes, when
    ``read_config``; with a ``platform``, they are read always, and an image for another
    platform is refused (PlatformNotFoundError)."""
    from pants_oci.core.registry import RegistryClient

    with RegistryClient.from_reference(reference, options=options) as client:
        document = client.get_manifest(reference.identifier)
        is_index = isinstance(document, (OCIIndex, DockerManifestList))
        if is_index and (platform is not None or image_only):
            document = client.get_image_manifest(reference.identifier, platform)
        if not isinstance(document, (OCIManifest, DockerManifest)):
            return document, None
        if not read_config and platform is None:
            return document, None
        # An image manifest, not an index: it is that image, or it is not (exit non-zero).
        config = client.read_blob(document.config.digest, size=document.config.size)
        if platform is not None:
            require_platform(ImageConfig.from_bytes(config), platform, str(reference))
        return document, config
