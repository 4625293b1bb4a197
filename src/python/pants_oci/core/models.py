"""Pydantic models of OCI and Docker image documents: manifests, indexes, configs.

JSON uses the specs' names (``mediaType``, ``os.version``, Docker's ``Env`` and ``Cmd``)
while Python uses snake_case (``media_type``, ``os_version``, ``env``, ``cmd``); either
name is accepted on input. Optional fields that are unset are left out of the JSON rather
than written as ``null``, and fields we do not model are kept (``extra="allow"``).

A document's identity is its bytes, so documents are frozen and keep the bytes they were
parsed from:

* ``OCIManifest.from_bytes(raw).to_bytes() == raw``, byte for byte, so a pulled manifest
  or config is pushed again under the same digest whatever its whitespace or key order;
* a document built or changed in code (``replace(...)``, ``model_copy(update=...)``)
  has no stored bytes and serialises canonically: compact JSON, keys in the order the
  model declares them (unknown fields last, in their original order), UTF-8, no trailing
  newline. The same content therefore always gives the same bytes and digest.

Sequences are tuples so they cannot be changed under the stored bytes. Mappings
(annotations, labels) are plain dicts; treat them as read-only, and use ``replace`` to
change them.

Field annotations say ``Optional[...]``, not ``... | None``: pydantic evaluates them, and the
core runs on Python 3.9 (see :mod:`pants_oci.core._compat`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    field_validator,
)
from typing_extensions import Self, TypeAlias

from pants_oci.core import media_types
from pants_oci.core.digest import Digest, sha256_of_bytes, verify_bytes
from pants_oci.core.errors import DocumentError, UnsupportedMediaTypeError
from pants_oci.core.platforms import PlatformParts, check_platform, host_linux, matching_entries

__all__ = [
    "MAX_CONFIG_SIZE",
    "MAX_DESCRIPTOR_SIZE",
    "MAX_MANIFEST_SIZE",
    "AnyManifest",
    "ContainerConfig",
    "Descriptor",
    "DigestField",
    "DockerManifest",
    "DockerManifestList",
    "DocumentError",
    "History",
    "ImageConfig",
    "OCIIndex",
    "OCIManifest",
    "Platform",
    "RootFS",
    "UnsupportedMediaTypeError",
    "parse_manifest",
]


def _validate_digest(value: object) -> Digest:
    if isinstance(value, Digest):
        return value
    if isinstance(value, str):
        return Digest.parse(value)  # InvalidDigestError is a ValueError: pydantic reports it
    raise ValueError(f"a digest must be a string like 'sha256:<hex>', got {type(value).__name__}")


# A Digest in Python, its 'algorithm:encoded' string in JSON.
DigestField: TypeAlias = Annotated[
    Digest,
    PlainValidator(_validate_digest, json_schema_input_type=str),
    PlainSerializer(str, return_type=str),
]


def _is_none(value: object) -> bool:
    return value is None


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="allow",
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


# --- Platforms ------------------------------------------------------------------------------


class Platform(_Model):
    """The platform an image runs on (``linux/arm64/v8``). Reading, matching and choosing
    platforms is :mod:`pants_oci.core.platforms`' job."""

    architecture: str
    os: str
    os_version: Optional[str] = Field(default=None, alias="os.version", exclude_if=_is_none)
    os_features: Optional[tuple[str, ...]] = Field(
        default=None, alias="os.features", exclude_if=_is_none
    )
    variant: Optional[str] = Field(default=None, exclude_if=_is_none)
    features: Optional[tuple[str, ...]] = Field(default=None, exclude_if=_is_none)

    @classmethod
    def host_linux(cls) -> Platform:
        """Linux on this machine's CPU: what a container built here would run as."""
        host = host_linux()
        return cls(architecture=host.architecture, os=host.os, variant=host.variant)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse a known ``os/architecture[/variant]``, e.g. ``linux/arm64/v8`` (see
        :func:`~pants_oci.core.platforms.check_platform`; InvalidValueError otherwise)."""
        os_name, architecture, variant = check_platform(text)
        return cls(os=os_name, architecture=architecture, variant=variant)

    def __str__(self) -> str:
        return str(PlatformParts(self.os, self.architecture, self.variant))


# --- Size limits ----------------------------------------------------------------------------

# The largest blob a descriptor may describe: 1 TiB, far beyond any real layer, so that an
# absurd size (a corrupt or hostile manifest saying 1 PB) is refused when it is parsed rather
# than carried into progress totals, layouts and pushed manifests.
MAX_DESCRIPTOR_SIZE = 1 << 40
# The largest manifest or index read: 4 MiB, what the distribution spec asks registries to
# accept at least (and CNCF distribution's own limit).
MAX_MANIFEST_SIZE = 4 * 1024 * 1024
# The largest image config read (into memory, whole): 64 MiB, hundreds of times what a config
# with thousands of history entries and environment variables takes.
MAX_CONFIG_SIZE = 64 * 1024 * 1024


# --- Descriptors ----------------------------------------------------------------------------


class Descriptor(_Model):
    """A typed, sized, content-addressed pointer to a blob or another document."""

    media_type: str = Field(alias="mediaType")
    digest: DigestField
    size: int = Field(ge=0, strict=True)
    urls: Optional[tuple[str, ...]] = Field(default=None, exclude_if=_is_none)
    annotations: Optional[dict[str, str]] = Field(default=None, exclude_if=_is_none)
    # Base64 of the content itself, embedded (image-spec 1.1).
    data: Optional[str] = Field(default=None, exclude_if=_is_none)
    platform: Optional[Platform] = Field(default=None, exclude_if=_is_none)
    artifact_type: Optional[str] = Field(default=None, alias="artifactType", exclude_if=_is_none)

    @field_validator("size")
    @classmethod
    def _size_is_sane(cls, value: int) -> int:
        if value > MAX_DESCRIPTOR_SIZE:
            raise ValueError(
                f"size {value} is absurd: no blob is larger than {MAX_DESCRIPTOR_SIZE} bytes "
                "(1 TiB)"
            )
        return value

    @field_validator("data")
    @classmethod
    def _data_is_base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"data must be standard base64: {exc}") from None
        return value

    @classmethod
    def for_bytes(
        cls, media_type: str, data: bytes, *, embed: bool = False, **fields: Any
    ) -> Descriptor:
        """Describe ``data``: its sha256 digest and size, and the content too if ``embed``."""
        if embed:
            fields["data"] = base64.b64encode(data).decode("ascii")
        return cls(media_type=media_type, digest=sha256_of_bytes(data), size=len(data), **fields)

    def embedded_data(self) -> bytes | None:
        """The embedded content, checked against the digest and size; None if absent."""
        if self.data is None:
            return None
        content = base64.b64decode(self.data, validate=True)
        verify_bytes(content, self.digest, subject=f"data embedded in descriptor {self.digest}")
        if len(content) != self.size:
            raise ValueError(
                f"data embedded in descriptor {self.digest} is {len(content)} bytes, "
                f"but the descriptor says {self.size}"
            )
        return content


# --- Documents ------------------------------------------------------------------------------


class _Document(_Model):
    """A JSON document that is stored by digest, so keeps the exact bytes it came from."""

    default_media_type: ClassVar[str]
    _raw: Optional[bytes] = PrivateAttr(default=None)

    @classmethod
    def from_bytes(cls, raw: bytes | bytearray | memoryview) -> Self:
        """Parse ``raw``, keeping it so that ``to_bytes()`` returns it unchanged."""
        data = bytes(raw)
        try:
            document = cls.model_validate_json(data)
        except ValidationError as exc:
            raise DocumentError(
                f"not a valid {cls.__name__} document: {describe_validation_error(exc)}"
            ) from None
        document._raw = data
        return document

    @property
    def raw(self) -> bytes | None:
        """The bytes this document was parsed from; None if it was built in code."""
        return self._raw

    def to_bytes(self) -> bytes:
        """The document's bytes: as parsed if it was parsed, else canonical."""
        return self._raw if self._raw is not None else self.canonical_bytes()

    def canonical_bytes(self) -> bytes:
        """Compact JSON in the model's key order, ignoring any stored bytes."""
        return self.model_dump_json(by_alias=True).encode("utf-8")

    @property
    def digest(self) -> Digest:
        """The sha256 digest of ``to_bytes()``: the name a registry stores this under."""
        return sha256_of_bytes(self.to_bytes())

    @property
    def size(self) -> int:
        return len(self.to_bytes())

    def descriptor(
        self,
        *,
        media_type: str | None = None,
        platform: Platform | None = None,
        annotations: dict[str, str] | None = None,
        artifact_type: str | None = None,
    ) -> Descriptor:
        """A descriptor pointing at this document's current bytes.

        Media type and artifact type default to the document's own, as the OCI spec asks.
        """
        own_media_type = getattr(self, "media_type", None)
        return Descriptor(
            media_type=media_type or own_media_type or self.default_media_type,
            digest=self.digest,
            size=self.size,
            platform=platform,
            annotations=annotations,
            artifact_type=artifact_type or getattr(self, "artifact_type", None),
        )

    def replace(self, **changes: Any) -> Self:
        """A validated copy with ``changes`` (by field name or JSON name), serialised anew."""
        model_fields = type(self).model_fields
        fields: dict[str, Any] = {name: getattr(self, name) for name in model_fields}
        fields.update(self.model_extra or {})
        # Changes may use JSON names ("mediaType"); file them under the field's name so
        # they replace the current value rather than competing with it.
        field_by_alias = {info.alias: name for name, info in model_fields.items() if info.alias}
        for key, value in changes.items():
            fields[field_by_alias.get(key, key)] = value
        return type(self).model_validate(fields)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """Pydantic's copy, except that changed content drops the stored bytes.

        Like pydantic's, ``update`` is not validated; prefer :meth:`replace`.
        """
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy._raw = None
        return copy

    def __eq__(self, other: object) -> bool:
        # Documents are the same when their bytes, and so their digests, are.
        if not isinstance(other, _Document):
            return NotImplemented
        return type(self) is type(other) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash((type(self), self.to_bytes()))


class _VersionedDocument(_Document):
    """Manifests and indexes: ``schemaVersion`` 2 and a ``mediaType`` of the class's own."""

    schema_version: Literal[2] = Field(default=2, alias="schemaVersion")
    media_type: Optional[str] = Field(default=None, alias="mediaType", exclude_if=_is_none)

    @field_validator("media_type")
    @classmethod
    def _media_type_is_ours(cls, value: str | None) -> str | None:
        if value is not None and value != cls.default_media_type:
            raise ValueError(
                f"{cls.__name__} documents have mediaType {cls.default_media_type!r}, not {value!r}"
            )
        return value


class OCIManifest(_VersionedDocument):
    """An OCI image manifest: a config and an ordered list of layers."""

    default_media_type: ClassVar[str] = media_types.OCI_MANIFEST

    media_type: Optional[str] = Field(
        default=media_types.OCI_MANIFEST, alias="mediaType", exclude_if=_is_none
    )
    artifact_type: Optional[str] = Field(default=None, alias="artifactType", exclude_if=_is_none)
    config: Descriptor
    layers: tuple[Descriptor, ...]
    subject: Optional[Descriptor] = Field(default=None, exclude_if=_is_none)
    annotations: Optional[dict[str, str]] = Field(default=None, exclude_if=_is_none)


class OCIIndex(_VersionedDocument):
    """An OCI image index: manifests for several platforms (or other artifacts)."""

    default_media_type: ClassVar[str] = media_types.OCI_INDEX

    media_type: Optional[str] = Field(
        default=media_types.OCI_INDEX, alias="mediaType", exclude_if=_is_none
    )
    artifact_type: Optional[str] = Field(default=None, alias="artifactType", exclude_if=_is_none)
    manifests: tuple[Descriptor, ...]
    subject: Optional[Descriptor] = Field(default=None, exclude_if=_is_none)
    annotations: Optional[dict[str, str]] = Field(default=None, exclude_if=_is_none)

    def manifests_for(self, platform: Platform) -> list[Descriptor]:
        """The entries whose platform satisfies ``platform`` (see
        :func:`~pants_oci.core.platforms.platform_matches`)."""
        return matching_entries(self.manifests, platform)


class DockerManifest(_VersionedDocument):
    """A Docker image manifest, version 2 schema 2."""

    default_media_type: ClassVar[str] = media_types.DOCKER_MANIFEST

    media_type: Optional[str] = Field(
        default=media_types.DOCKER_MANIFEST, alias="mediaType", exclude_if=_is_none
    )
    config: Descriptor
    layers: tuple[Descriptor, ...]


class DockerManifestList(_VersionedDocument):
    """A Docker manifest list: Docker's multi-platform index."""

    default_media_type: ClassVar[str] = media_types.DOCKER_MANIFEST_LIST

    media_type: Optional[str] = Field(
        default=media_types.DOCKER_MANIFEST_LIST, alias="mediaType", exclude_if=_is_none
    )
    manifests: tuple[Descriptor, ...]

    def manifests_for(self, platform: Platform) -> list[Descriptor]:
        """The entries whose platform satisfies ``platform`` (see
        :func:`~pants_oci.core.platforms.platform_matches`)."""
        return matching_entries(self.manifests, platform)


# --- Image configuration --------------------------------------------------------------------


class ContainerConfig(_Model):
    """How to run the image (``config`` in the image config), with Docker's field names."""

    user: Optional[str] = Field(default=None, alias="User", exclude_if=_is_none)
    exposed_ports: Optional[dict[str, dict[str, Any]]] = Field(
        default=None, alias="ExposedPorts", exclude_if=_is_none
    )
    env: Optional[tuple[str, ...]] = Field(default=None, alias="Env", exclude_if=_is_none)
    entrypoint: Optional[tuple[str, ...]] = Field(
        default=None, alias="Entrypoint", exclude_if=_is_none
    )
    cmd: Optional[tuple[str, ...]] = Field(default=None, alias="Cmd", exclude_if=_is_none)
    volumes: Optional[dict[str, dict[str, Any]]] = Field(
        default=None, alias="Volumes", exclude_if=_is_none
    )
    working_dir: Optional[str] = Field(default=None, alias="WorkingDir", exclude_if=_is_none)
    labels: Optional[dict[str, str]] = Field(default=None, alias="Labels", exclude_if=_is_none)
    stop_signal: Optional[str] = Field(default=None, alias="StopSignal", exclude_if=_is_none)
    args_escaped: Optional[bool] = Field(default=None, alias="ArgsEscaped", exclude_if=_is_none)
    # Docker extensions that OCI does not define.
    healthcheck: Optional[dict[str, Any]] = Field(
        default=None, alias="Healthcheck", exclude_if=_is_none
    )
    on_build: Optional[tuple[str, ...]] = Field(default=None, alias="OnBuild", exclude_if=_is_none)
    shell: Optional[tuple[str, ...]] = Field(default=None, alias="Shell", exclude_if=_is_none)


class RootFS(_Model):
    """The uncompressed digests (diff IDs) of the layers, base layer first."""

    type: Literal["layers"] = "layers"
    diff_ids: tuple[DigestField, ...] = ()


class History(_Model):
    """How one layer (or an empty step) was made."""

    # Times are kept as the strings they were: Python's datetime cannot hold nanoseconds.
    created: Optional[str] = Field(default=None, exclude_if=_is_none)
    created_by: Optional[str] = Field(default=None, exclude_if=_is_none)
    author: Optional[str] = Field(default=None, exclude_if=_is_none)
    comment: Optional[str] = Field(default=None, exclude_if=_is_none)
    empty_layer: Optional[bool] = Field(default=None, exclude_if=_is_none)


class ImageConfig(_Document):
    """An OCI (or Docker) image configuration: platform, run config and layer diff IDs."""

    default_media_type: ClassVar[str] = media_types.OCI_CONFIG

    created: Optional[str] = Field(default=None, exclude_if=_is_none)
    author: Optional[str] = Field(default=None, exclude_if=_is_none)
    architecture: str
    os: str
    os_version: Optional[str] = Field(default=None, alias="os.version", exclude_if=_is_none)
    os_features: Optional[tuple[str, ...]] = Field(
        default=None, alias="os.features", exclude_if=_is_none
    )
    variant: Optional[str] = Field(default=None, exclude_if=_is_none)
    config: Optional[ContainerConfig] = Field(default=None, exclude_if=_is_none)
    rootfs: RootFS
    history: Optional[tuple[History, ...]] = Field(default=None, exclude_if=_is_none)

    @property
    def platform(self) -> Platform:
        """The platform this configuration declares."""
        return Platform(
            architecture=self.architecture,
            os=self.os,
            os_version=self.os_version,
            os_features=self.os_features,
            variant=self.variant,
        )


# --- Dispatch -------------------------------------------------------------------------------

AnyManifest: TypeAlias = Union[OCIManifest, OCIIndex, DockerManifest, DockerManifestList]

_MANIFEST_CLASSES: dict[str, type[AnyManifest]] = {
    media_types.OCI_MANIFEST: OCIManifest,
    media_types.OCI_INDEX: OCIIndex,
    media_types.DOCKER_MANIFEST: DockerManifest,
    media_types.DOCKER_MANIFEST_LIST: DockerManifestList,
}

_SCHEMA1_MESSAGE = (
    "this image's manifest is Docker image manifest v2 schema 1 ({media_type}), a format "
    "that has been deprecated since 2017 and is not supported. Use a tag of the image that "
    "was pushed as Docker schema 2 or OCI; or rebuild the image and push it with a current "
    "docker, buildah or other OCI tool; or convert it in place with "
    "'skopeo copy --format v2s2 docker://IMAGE docker://IMAGE'."
)


def parse_manifest(
    raw: bytes | bytearray | memoryview, content_type: str | None = None
) -> AnyManifest:
    """Parse a manifest or index, choosing its class by its media type.

    The ``mediaType`` inside the document wins, since the digest covers it and not the
    HTTP ``Content-Type``; ``content_type`` is used when the document has none, and failing
    both, the document's shape decides (OCI allows ``mediaType`` to be left out). Docker
    schema 1 raises :class:`UnsupportedMediaTypeError` saying how to fix the image.
    """
    data = bytes(raw)
    try:
        document = json.loads(data)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both are
        raise DocumentError(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise DocumentError(f"manifest must be a JSON object, got a JSON {type(document).__name__}")

    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise DocumentError(f"manifest mediaType must be a string, got {declared!r}")
    header = media_types.base_media_type(content_type)

    if document.get("schemaVersion") == 1 or media_types.is_schema1(declared):
        raise UnsupportedMediaTypeError(
            _SCHEMA1_MESSAGE.format(
                media_type=declared or header or media_types.DOCKER_MANIFEST_SCHEMA1
            )
        )
    if declared is None and media_types.is_schema1(header):
        raise UnsupportedMediaTypeError(_SCHEMA1_MESSAGE.format(media_type=header))

    if declared is not None:
        media_type = declared
    elif header in _MANIFEST_CLASSES:
        media_type = header
    elif "manifests" in document:
        media_type = media_types.OCI_INDEX
    else:
        media_type = media_types.OCI_MANIFEST

    manifest_class = _MANIFEST_CLASSES.get(media_type)
    if manifest_class is None:
        supported = ", ".join(sorted(_MANIFEST_CLASSES))
        raise UnsupportedMediaTypeError(
            f"unsupported manifest media type {media_type!r}; supported types are {supported}"
        )
    return manifest_class.from_bytes(data)


def describe_validation_error(error: ValidationError, limit: int = 5) -> str:
    """pydantic's errors in a line: each field's path and problem (no input dumps, no URLs)."""
    problems = []
    for item in error.errors(include_url=False)[:limit]:
        path = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "json_invalid":
            message = f"not valid JSON ({message.removeprefix('Invalid JSON: ')})"
        problems.append(f"{path}: {message}" if path else message)
    more = error.error_count() - limit
    if more > 0:
        problems.append(f"and {more} more")
    return "; ".join(problems)
