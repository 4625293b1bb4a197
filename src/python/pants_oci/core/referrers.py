"""Artifacts attached to an image as OCI 1.1 referrers: an SBOM or a provenance statement
stored as an image manifest whose ``artifactType`` says what it is, whose config is the empty
descriptor, whose one layer is the document, and whose ``subject`` is the image manifest.

In an OCI layout, each artifact's manifest is an untagged ``index.json`` entry carrying its
``artifactType`` and annotations (as oras and the image-layout spec keep them), beside the
image it refers to.

In a registry, the artifact manifest is PUT by digest. A registry with the referrers API
(``GET /v2/<name>/referrers/<digest>``) answers that PUT with ``OCI-Subject`` and indexes it
itself. Any other registry (Docker Hub, GHCR, distribution 2.x) gets the fallback tag
scheme of distribution-spec 1.1: an image index tagged ``sha256-<hex of the subject>``
listing each referrer's descriptor with its ``artifactType`` and annotations. It is read,
extended and written back, keeping every entry others put there.

    attach_to_layout(layout, image_descriptor, [Artifact(SPDX_MEDIA_TYPE, spdx_bytes, ...)])
    push_referrers(client, [(manifest, [document])])    # "api" or "fallback"
    registry_referrers(client, image_digest)            # descriptors, by either way

Reading back by reference (what ``pants-oci referrers`` and ``pants-oci sbom`` do)::

    list_referrers("registry.example/app:1.0")          # [Referrer(subject, descriptor)]
    attached_document("registry.example/app:1.0", SPDX_MEDIA_TYPE, platform="linux/arm64")
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pants_oci.core import media_types
from pants_oci.core._transfer import Blob, transfer_blobs
from pants_oci.core.digest import Digest, sha256_of_bytes
from pants_oci.core.errors import DocumentError, NotFoundError
from pants_oci.core.models import Descriptor, OCIIndex, OCIManifest, parse_manifest

if TYPE_CHECKING:
    from pants_oci.core.auth import Keychain
    from pants_oci.core.layout import ImageLayout
    from pants_oci.core.models import Platform
    from pants_oci.core.reference import Reference
    from pants_oci.core.registry import RegistryClient
    from pants_oci.core.transport import TransportOptions

__all__ = [
    "EMPTY_CONFIG",
    "TITLE_ANNOTATION",
    "Artifact",
    "Referrer",
    "artifact_manifest",
    "attach_to_layout",
    "attached_document",
    "fallback_tag",
    "layout_artifacts",
    "layout_referrers",
    "list_referrers",
    "push_referrers",
    "registry_referrers",
]

_log = logging.getLogger(__name__)

_EMPTY_JSON = b"{}"
# The two-byte config every artifact manifest points at, embedded so no reader fetches it.
EMPTY_CONFIG = Descriptor.for_bytes(media_types.OCI_EMPTY_JSON, _EMPTY_JSON, embed=True)
TITLE_ANNOTATION = "org.opencontainers.image.title"
CREATED_ANNOTATION = "org.opencontainers.image.created"


@dataclass(frozen=True)
class Artifact:
    """A document to attach: its media type (also the artifact's type), bytes, the file name
    a puller gives it (``org.opencontainers.image.title``), and the manifest's annotations."""

    media_type: str
    data: bytes
    title: str
    annotations: tuple[tuple[str, str], ...] = ()


def fallback_tag(digest: Digest | str) -> str:
    """The tag of the referrers index for ``digest`` on a registry without the API."""
    digest = Digest.coerce(digest)
    return f"{digest.algorithm}-{digest.hex}"


def artifact_manifest(artifact: Artifact, subject: Descriptor) -> OCIManifest:
    """The manifest that attaches ``artifact`` to the image ``subject``."""
    layer = Descriptor.for_bytes(
        artifact.media_type, artifact.data, annotations={TITLE_ANNOTATION: artifact.title}
    )
    return OCIManifest(
        artifact_type=artifact.media_type,
        config=EMPTY_CONFIG,
        layers=(layer,),
        subject=Descriptor(media_type=subject.media_type, digest=subject.digest, size=subject.size),
        annotations=dict(artifact.annotations) or None,
    )


def _entry(manifest: OCIManifest) -> Descriptor:
    """A referrer's descriptor as a referrers list holds it: with the artifact type and the
    manifest's annotations."""
    return manifest.descriptor(
        annotations=dict(manifest.annotations) if manifest.annotations else None
    )


# --- In an OCI layout ---------------------------------------------------------------------


def attach_to_layout(
    layout: ImageLayout, subject: Descriptor, artifacts: Sequence[Artifact]
) -> list[Descriptor]:
    """Write each artifact (document, empty config, manifest) into ``layout`` and list its
    manifest in ``index.json``, untagged; returns their descriptors."""
    attached = []
    for artifact in artifacts:
        manifest = artifact_manifest(artifact, subject)
        layout.write_blob(artifact.data)
        layout.write_blob(_EMPTY_JSON)
        layout.write_blob(manifest.to_bytes())
        attached.append(_entry(manifest))
    layout.add_untagged(attached)
    return attached


def layout_referrers(
    layout: ImageLayout, digest: Digest | str, artifact_type: str | None = None
) -> list[Descriptor]:
    """The artifacts in ``layout``'s ``index.json`` whose subject is ``digest``."""
    return [entry for entry, _ in layout_artifacts(layout, digest, artifact_type)]


def layout_artifacts(
    layout: ImageLayout, digest: Digest | str, artifact_type: str | None = None
) -> list[tuple[Descriptor, OCIManifest]]:
    """As :func:`layout_referrers`, each with its manifest (which finding it had to read)."""
    wanted = Digest.coerce(digest)
    found = []
    for entry in layout.index().manifests:
        if entry.artifact_type is None or entry.media_type != media_types.OCI_MANIFEST:
            continue
        if artifact_type is not None and entry.artifact_type != artifact_type:
            continue
        manifest = parse_manifest(layout.read_blob(entry.digest), entry.media_type)
        if not isinstance(manifest, OCIManifest) or manifest.subject is None:
            continue
        if manifest.subject.digest == wanted:
            found.append((entry, manifest))
    return found


# --- In a registry ------------------------------------------------------------------------


def push_referrers(
    client: RegistryClient, attached: Sequence[tuple[OCIManifest, Sequence[bytes]]]
) -> str:
    """Push artifact manifests, each with its documents (the bytes of its layers; the empty
    config is added), to ``client``'s repository, and make them findable from their subject:
    "api" when the registry indexed them, "fallback" when the fallback tag's index of each
    subject now lists them (read once, extended, written back once)."""
    unindexed: dict[Digest, list[Descriptor]] = {}
    for manifest, documents in attached:
        if manifest.subject is None:
            raise DocumentError("a referrer's manifest needs a subject")
        blobs = [Blob(EMPTY_CONFIG, data=_EMPTY_JSON)]
        by_digest = {sha256_of_bytes(data): data for data in documents}
        for layer in manifest.layers:
            data = by_digest.get(layer.digest)
            if data is None:
                raise DocumentError(f"the artifact's layer {layer.digest} was not given")
            blobs.append(Blob(layer, data=data))
        transfer_blobs(client, blobs)
        if not client.put_referrer(manifest):
            unindexed.setdefault(manifest.subject.digest, []).append(_entry(manifest))
    for subject, entries in unindexed.items():
        _add_to_fallback_index(client, subject, entries)
    return "fallback" if unindexed else "api"


def _add_to_fallback_index(
    client: RegistryClient, subject: Digest, entries: Sequence[Descriptor]
) -> None:
    """Read the fallback tag's index (if any), add the ``entries`` it does not list, write it
    back: entries others put there stay."""
    tag = fallback_tag(subject)
    current = _fallback_index(client, subject)
    manifests = list(current.manifests) if current else []
    listed = {entry.digest for entry in manifests}
    added = [entry for entry in entries if entry.digest not in listed]
    if not added:
        return
    client.put_manifest(OCIIndex(manifests=(*manifests, *added)), tag=tag)
    _log.info("listed %d referrers of %s in %s:%s", len(added), subject, client.repository, tag)


def _fallback_index(client: RegistryClient, subject: Digest) -> OCIIndex | None:
    try:
        document = client.get_manifest(fallback_tag(subject))
    except NotFoundError:
        return None
    if not isinstance(document, OCIIndex):
        raise DocumentError(
            f"{client.registry}/{client.repository}:{fallback_tag(subject)} is not an OCI "
            "index, so it cannot be the referrers list of the fallback tag scheme; it was "
            "left as it is"
        )
    return document


def registry_referrers(
    client: RegistryClient, digest: Digest | str, artifact_type: str | None = None
) -> list[Descriptor]:
    """The referrers of ``digest`` in ``client``'s repository: from the referrers API, or,
    when the registry has none, from the fallback tag's index (none if neither exists)."""
    digest = Digest.coerce(digest)
    index = client.get_referrers(digest, artifact_type)
    if index is None:
        index = _fallback_index(client, digest)
    if index is None:
        return []
    return [
        entry
        for entry in index.manifests
        if artifact_type is None or entry.artifact_type == artifact_type
    ]


# --- By reference -------------------------------------------------------------------------


@dataclass(frozen=True)
class Referrer:
    """An artifact attached to ``subject`` (an image manifest or index digest)."""

    subject: Digest
    descriptor: Descriptor


def _subjects(client: RegistryClient, identifier: str, platform: Platform | None) -> list[Digest]:
    """What the reference names: its image for ``platform``; else the manifest or index it
    names, with an index's images after it."""
    if platform is not None:
        return [client.get_image_manifest(identifier, platform).digest]
    document = client.get_manifest(identifier)
    children = list(getattr(document, "manifests", ()) or ())
    return [document.digest, *(child.digest for child in children)]


def list_referrers(
    reference: Reference | str,
    *,
    artifact_type: str | None = None,
    platform: Platform | str | None = None,
    keychain: Keychain | None = None,
    options: TransportOptions | None = None,
) -> list[Referrer]:
    """The artifacts attached to the image ``reference`` names (to its image for
    ``platform``; to an index and each of its images, without one), by the referrers API or
    the fallback tag, whichever the registry has."""
    from pants_oci.core._clients import Clients
    from pants_oci.core.models import Platform
    from pants_oci.core.reference import parse_reference
    from pants_oci.core.transport import TransportOptions

    ref = parse_reference(reference) if isinstance(reference, str) else reference
    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    clients = Clients(keychain, options or TransportOptions())
    try:
        client = clients.get(ref)
        return [
            Referrer(subject, entry)
            for subject in _subjects(client, ref.identifier, wanted)
            for entry in registry_referrers(client, subject, artifact_type)
        ]
    finally:
        clients.close()


def attached_document(
    reference: Reference | str,
    artifact_type: str,
    *,
    platform: Platform | str | None = None,
    keychain: Keychain | None = None,
    options: TransportOptions | None = None,
) -> bytes:
    """The document of the ``artifact_type`` artifact attached to the image ``reference``
    names for ``platform`` (default: this machine's Linux, for an index); verified against
    its digest. RefNotFoundError when none is attached."""
    from pants_oci.core._clients import Clients
    from pants_oci.core.errors import RefNotFoundError
    from pants_oci.core.models import Platform
    from pants_oci.core.reference import parse_reference
    from pants_oci.core.transport import TransportOptions

    ref = parse_reference(reference) if isinstance(reference, str) else reference
    wanted = Platform.parse(platform) if isinstance(platform, str) else platform
    clients = Clients(keychain, options or TransportOptions())
    try:
        client = clients.get(ref)
        image = client.get_image_manifest(ref.identifier, wanted)
        found = registry_referrers(client, image.digest, artifact_type)
        if not found:
            raise RefNotFoundError(
                f"{ref} ({image.digest}) has no {artifact_type} artifact attached, by the "
                "referrers API or the fallback tag; publish it with pants_oci's supply chain "
                "on (`[oci].supply_chain`)",
                wanted=artifact_type,
                available=[],
            )
        manifest = client.get_manifest(found[0].digest)
        if not isinstance(manifest, OCIManifest) or len(manifest.layers) != 1:
            raise DocumentError(f"artifact {found[0].digest} is not a one-document artifact")
        return client.read_blob(manifest.layers[0].digest)
    finally:
        clients.close()
