"""An image's SBOM (SPDX 2.3 and CycloneDX 1.6 JSON) and provenance (an in-toto statement
with a SLSA provenance v1 predicate), from what the build knows rather than what a scanner
guesses from files: the base image by digest, each third-party distribution as the resolve
installed it (name, version, the lockfile's sha256, the license its metadata declares), the
first-party code, the interpreter that runs it, and the layers by digest.

Every document is a function of its inputs alone, byte for byte: keys sorted, lists in a fixed
order, identifiers (SPDX namespace, CycloneDX serial number) derived from the content with
UUIDv5, and the only time the image's own `created` (``SOURCE_DATE_EPOCH``, else the epoch).
The same build gives the same digests on any machine.

    documents = supply_chain_documents(subject, facts, licenses)
    documents.spdx, documents.cyclonedx, documents.provenance      # bytes
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pants_oci import __version__
from pants_oci.core import wire

if TYPE_CHECKING:
    from pants_oci.core.auth import Keychain
    from pants_oci.core.layout import ImageLayout
    from pants_oci.core.models import Descriptor, Platform
    from pants_oci.core.reference import Reference
    from pants_oci.core.referrers import Artifact
    from pants_oci.core.transport import TransportOptions

__all__ = [
    "CYCLONEDX_MEDIA_TYPE",
    "IN_TOTO_MEDIA_TYPE",
    "SLSA_PROVENANCE_V1",
    "SPDX_MEDIA_TYPE",
    "SubjectImage",
    "SupplyChainDocuments",
    "attach_supply_chain",
    "read_sbom",
    "supply_chain_artifacts",
    "supply_chain_documents",
]

SPDX_MEDIA_TYPE = "application/spdx+json"
CYCLONEDX_MEDIA_TYPE = "application/vnd.cyclonedx+json"
IN_TOTO_MEDIA_TYPE = "application/vnd.in-toto+json"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/pants-oci/pants-oci/blob/main/docs/supply-chain.md#build-type-v1"
_NAMESPACE = uuid.UUID("6b0f3c4e-2a8d-5f57-9d0c-0c1c9e3f6a11")  # pants-oci's UUIDv5 namespace
_SPDX_ID_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")
_NORMALIZE = re.compile(r"[-_.]+")


@dataclass(frozen=True)
class SubjectImage:
    """The image the documents describe, as assembly sees it."""

    name: str  # the target's address, or the reference it was built for
    manifest_digest: str
    platform: str  # os/arch[/variant]
    layers: tuple[str, ...]  # layer digests, bottom first
    created: str  # RFC 3339, the image config's `created`
    base_reference: str | None = None  # pinned by digest
    base_digest: str | None = None  # the base's manifest digest


@dataclass(frozen=True)
class SupplyChainDocuments:
    spdx: bytes
    cyclonedx: bytes
    provenance: bytes


@dataclass(frozen=True)
class _Component:
    """One thing the image is made of, in the terms both SBOM formats share."""

    ref: str  # unique within the document
    kind: str  # container | library | application | file
    name: str
    version: str | None = None
    purl: str | None = None
    sha256: str | None = None
    license_expression: str | None = None
    license_text: str | None = None
    description: str | None = None
    properties: tuple[tuple[str, str], ...] = field(default=())


def _hex(digest: str) -> str:
    return digest.split(":", 1)[1] if ":" in digest else digest


def _pypi_name(name: str) -> str:
    return _NORMALIZE.sub("-", name).lower()


def _oci_purl(reference: str, digest: str) -> str:
    """`pkg:oci/<name>@sha256%3A<hex>?repository_url=<registry>/<repository>`."""
    repository = reference.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:  # a tag
        repository = repository[: repository.rindex(":")]
        last = last.split(":", 1)[0]
    location = quote(repository, safe="/:")
    return f"pkg:oci/{quote(last)}@{quote(digest, safe='')}?repository_url={location}"


def _components(
    subject: SubjectImage,
    facts: wire.BuildFacts | None,
    licenses: Mapping[str, wire.LayerDistribution],
) -> list[_Component]:
    found: list[_Component] = []
    if subject.base_reference and subject.base_digest:
        found.append(
            _Component(
                "base",
                "container",
                subject.base_reference.split("@", 1)[0],
                version=subject.base_digest,
                purl=_oci_purl(subject.base_reference, subject.base_digest),
                sha256=_hex(subject.base_digest),
                description="the base image",
                properties=(("pants-oci:lockfile", facts.base_lockfile),)
                if facts and facts.base_lockfile
                else (),
            )
        )
    python = facts.python if facts else None
    if python is not None:
        found.append(
            _Component(
                "python",
                "application",
                "python",
                version=python.version,
                purl=f"pkg:generic/python@{python.version}",
                description="the base image's interpreter that runs the image's Python code",
                properties=(("pants-oci:path", python.interpreter),) if python.interpreter else (),
            )
        )
        ordered = sorted(python.distributions, key=lambda d: (_pypi_name(d.name), d.version))
        for distribution in ordered:
            name = _pypi_name(distribution.name)
            metadata = licenses.get(name)
            properties = [("pants-oci:resolve", python.resolve)] if python.resolve else []
            if distribution.archive:
                properties.append(("pants-oci:archive", distribution.archive))
            found.append(
                _Component(
                    f"pypi-{name}-{distribution.version}",
                    "library",
                    name,
                    version=distribution.version,
                    purl=f"pkg:pypi/{name}@{quote(distribution.version)}",
                    sha256=distribution.sha256,
                    license_expression=metadata.license_expression if metadata else None,
                    license_text=metadata.license if metadata else None,
                    properties=tuple(properties),
                )
            )
        if python.sources_layer:
            found.append(
                _Component(
                    "sources",
                    "application",
                    python.pex_binary,
                    version=python.sources_layer,
                    sha256=_hex(python.sources_layer),
                    description="the pex_binary's first-party sources: the layer that holds them",
                )
            )
    for number, digest in enumerate(subject.layers):
        found.append(
            _Component(
                f"layer-{number}",
                "file",
                f"layer {number}",
                version=digest,
                sha256=_hex(digest),
                description="an image layer (compressed), bottom first",
            )
        )
    return found


def _identity(kind: str, subject: SubjectImage, components: Sequence[_Component]) -> uuid.UUID:
    """A UUID that is the same exactly when the document's content is."""
    content = json.dumps(
        [kind, subject.name, subject.manifest_digest, subject.platform]
        + [sorted(vars(component).items(), key=str) for component in components],
        sort_keys=True,
        default=str,
    )
    return uuid.uuid5(_NAMESPACE, content)


def _dumps(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, indent=1, ensure_ascii=False).encode() + b"\n"


def _creators(facts: wire.BuildFacts | None) -> list[str]:
    creators = [f"Tool: pants-oci-{__version__}"]
    if facts is not None:
        creators.append(f"Tool: pants-{facts.pants_version}")
    return creators


def _spdx(
    subject: SubjectImage, facts: wire.BuildFacts | None, components: Sequence[_Component]
) -> bytes:
    def spdx_id(ref: str) -> str:
        return "SPDXRef-" + _SPDX_ID_UNSAFE.sub("-", ref)

    image_id = spdx_id("image")
    image = {
        "SPDXID": image_id,
        "name": subject.name,
        "versionInfo": subject.manifest_digest,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": _hex(subject.manifest_digest)}],
        "comment": f"the image manifest for {subject.platform}",
    }
    packages = [image]
    relationships = [
        {
            "spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES",
            "relatedSpdxElement": image_id,
        }
    ]
    purposes = {"container": "CONTAINER", "library": "LIBRARY", "application": "APPLICATION"}
    for component in components:
        package: dict[str, Any] = {
            "SPDXID": spdx_id(component.ref),
            "name": component.name,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False,
            "primaryPackagePurpose": purposes.get(component.kind, "ARCHIVE"),
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": component.license_expression or "NOASSERTION",
        }
        if component.version:
            package["versionInfo"] = component.version
        if component.sha256:
            package["checksums"] = [{"algorithm": "SHA256", "checksumValue": component.sha256}]
        if component.purl:
            package["externalRefs"] = [
                {
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": component.purl,
                }
            ]
        if component.license_text and not component.license_expression:
            package["licenseComments"] = f"License (package metadata): {component.license_text}"
        notes = [component.description] if component.description else []
        notes += [f"{key}={value}" for key, value in component.properties]
        if notes:
            package["comment"] = "; ".join(notes)
        packages.append(package)
        relationship = {
            "base": "DESCENDANT_OF",
            "python": "DEPENDS_ON",
        }.get(component.ref, "CONTAINS")
        relationships.append(
            {
                "spdxElementId": image_id,
                "relationshipType": relationship,
                "relatedSpdxElement": spdx_id(component.ref),
            }
        )
    identity = _identity("spdx", subject, components)
    document = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{subject.name} ({subject.platform})",
        "documentNamespace": f"https://pants-oci.invalid/spdx/{identity}",
        "creationInfo": {"created": subject.created, "creators": _creators(facts)},
        "packages": packages,
        "relationships": relationships,
    }
    return _dumps(document)


def _cyclonedx(
    subject: SubjectImage, facts: wire.BuildFacts | None, components: Sequence[_Component]
) -> bytes:
    def entry(component: _Component) -> dict[str, Any]:
        rendered: dict[str, Any] = {
            "bom-ref": component.ref,
            "type": component.kind,
            "name": component.name,
        }
        if component.version:
            rendered["version"] = component.version
        if component.purl:
            rendered["purl"] = component.purl
        if component.sha256:
            rendered["hashes"] = [{"alg": "SHA-256", "content": component.sha256}]
        if component.license_expression:
            rendered["licenses"] = [{"expression": component.license_expression}]
        elif component.license_text:
            rendered["licenses"] = [{"license": {"name": component.license_text}}]
        if component.description:
            rendered["description"] = component.description
        if component.properties:
            rendered["properties"] = [
                {"name": key, "value": value} for key, value in component.properties
            ]
        return rendered

    tools = [{"type": "application", "name": "pants-oci", "version": __version__}]
    if facts is not None:
        tools.append({"type": "application", "name": "pants", "version": facts.pants_version})
    document = {
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": f"urn:uuid:{_identity('cyclonedx', subject, components)}",
        "version": 1,
        "metadata": {
            "timestamp": subject.created,
            "tools": {"components": tools},
            "component": {
                "bom-ref": "image",
                "type": "container",
                "name": subject.name,
                "version": subject.manifest_digest,
                "hashes": [{"alg": "SHA-256", "content": _hex(subject.manifest_digest)}],
                "properties": [{"name": "pants-oci:platform", "value": subject.platform}],
            },
        },
        "components": [entry(component) for component in components],
        "dependencies": [
            {"ref": "image", "dependsOn": [component.ref for component in components]},
            *({"ref": component.ref} for component in components),
        ],
    }
    return _dumps(document)


def _provenance(
    subject: SubjectImage, facts: wire.BuildFacts | None, components: Sequence[_Component]
) -> bytes:
    resolved: list[dict[str, Any]] = []
    for component in components:
        if component.kind == "file" or component.ref == "python":
            continue  # layers are outputs; the interpreter is part of the base
        dependency: dict[str, Any] = {"name": component.name}
        if component.ref == "base" and subject.base_reference:
            dependency["uri"] = f"oci://{subject.base_reference}"
        elif component.purl:
            dependency["uri"] = component.purl
        if component.sha256:
            dependency["digest"] = {"sha256": component.sha256}
        if component.properties:
            dependency["annotations"] = dict(component.properties)
        resolved.append(dependency)
    python = facts.python if facts else None
    if python is not None and python.lockfile and python.lockfile_sha256:
        resolved.append(
            {
                "name": python.lockfile,
                "uri": f"file:{python.lockfile}",
                "digest": {"sha256": python.lockfile_sha256},
                "annotations": {"pants-oci:resolve": python.resolve or ""},
            }
        )
    external: dict[str, Any] = {"platform": subject.platform}
    if facts is not None:
        external.update(target=facts.image, targets=list(facts.targets))
        if facts.base:
            external["base"] = facts.base
    builder_version = {"pants-oci": __version__}
    if facts is not None:
        builder_version["pants"] = facts.pants_version
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": subject.name, "digest": {"sha256": _hex(subject.manifest_digest)}}],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": {"created": subject.created},
                "resolvedDependencies": resolved,
            },
            "runDetails": {
                "builder": {
                    "id": f"https://github.com/pants-oci/pants-oci@{__version__}",
                    "version": builder_version,
                },
                "metadata": {"invocationId": str(_identity("provenance", subject, components))},
                "byproducts": [
                    {"name": component.name, "digest": {"sha256": component.sha256}}
                    for component in components
                    if component.kind == "file" and component.sha256
                ],
            },
        },
    }
    return _dumps(statement)


def supply_chain_documents(
    subject: SubjectImage,
    facts: wire.BuildFacts | None = None,
    licenses: Mapping[str, wire.LayerDistribution] | None = None,
) -> SupplyChainDocuments:
    """The image's SBOMs and provenance. ``licenses``: what the layers' distributions'
    metadata declares, by normalized name (see ``layer build``'s ``distributions``)."""
    normalized = {_pypi_name(name): value for name, value in (licenses or {}).items()}
    components = _components(subject, facts, normalized)
    return SupplyChainDocuments(
        spdx=_spdx(subject, facts, components),
        cyclonedx=_cyclonedx(subject, facts, components),
        provenance=_provenance(subject, facts, components),
    )


# The file names a puller (oras pull) gives the documents.
SPDX_TITLE = "sbom.spdx.json"
CYCLONEDX_TITLE = "sbom.cdx.json"
PROVENANCE_TITLE = "provenance.intoto.json"


def supply_chain_artifacts(
    subject: SubjectImage, documents: SupplyChainDocuments
) -> list[Artifact]:
    """The documents as artifacts to attach to the image, in a fixed order."""
    from pants_oci.core.referrers import CREATED_ANNOTATION, Artifact

    created = ((CREATED_ANNOTATION, subject.created),)
    return [
        Artifact(SPDX_MEDIA_TYPE, documents.spdx, SPDX_TITLE, created),
        Artifact(CYCLONEDX_MEDIA_TYPE, documents.cyclonedx, CYCLONEDX_TITLE, created),
        Artifact(
            IN_TOTO_MEDIA_TYPE,
            documents.provenance,
            PROVENANCE_TITLE,
            (*created, ("in-toto.io/predicate-type", SLSA_PROVENANCE_V1)),
        ),
    ]


def attach_supply_chain(
    layout: ImageLayout,
    image: Descriptor,
    subject: SubjectImage,
    facts: wire.BuildFacts | None = None,
    licenses: Mapping[str, wire.LayerDistribution] | None = None,
) -> tuple[wire.AttachedReferrer, ...]:
    """Write the image's SBOMs and provenance into ``layout`` as artifacts whose subject is
    the image manifest ``image`` (see :mod:`pants_oci.core.referrers`)."""
    from pants_oci.core.referrers import attach_to_layout

    documents = supply_chain_documents(subject, facts, licenses)
    attached = attach_to_layout(layout, image, supply_chain_artifacts(subject, documents))
    return tuple(
        wire.AttachedReferrer(
            digest=str(entry.digest),
            artifact_type=entry.artifact_type or "",
            subject=str(image.digest),
        )
        for entry in attached
    )


def read_sbom(
    reference: Reference | str,
    *,
    format: str = "spdx",
    platform: Platform | str | None = None,
    keychain: Keychain | None = None,
    options: TransportOptions | None = None,
) -> bytes:
    """The SBOM (``format`` "spdx" or "cyclonedx") attached to the image ``reference`` names
    for ``platform`` (default: this machine's Linux, for an index), exactly as pushed."""
    from pants_oci.core.errors import InvalidValueError
    from pants_oci.core.referrers import attached_document

    media_types = {"spdx": SPDX_MEDIA_TYPE, "cyclonedx": CYCLONEDX_MEDIA_TYPE}
    if format not in media_types:
        raise InvalidValueError("the SBOM format", format, 'is not "spdx" or "cyclonedx"')
    return attached_document(
        reference, media_types[format], platform=platform, keychain=keychain, options=options
    )
