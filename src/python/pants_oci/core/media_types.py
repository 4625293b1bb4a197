"""Media types of OCI and Docker image documents and blobs, and how to classify them.

Stdlib only, and valid on Python 3.9: the Pants backend imports this module.
"""

from __future__ import annotations

from typing import FrozenSet, Optional, Tuple

__all__ = [
    "CONFIG_TYPES",
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_LAYER",
    "DOCKER_LAYER_UNCOMPRESSED",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_MANIFEST_SCHEMA1",
    "DOCKER_MANIFEST_SCHEMA1_SIGNED",
    "INDEX_TYPES",
    "LAYER_TYPES",
    "MANIFEST_ACCEPT",
    "MANIFEST_ACCEPT_HEADER",
    "MANIFEST_TYPES",
    "OCI_CONFIG",
    "OCI_EMPTY_JSON",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE",
    "OCI_LAYER_NONDISTRIBUTABLE_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE_ZSTD",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "SCHEMA1_TYPES",
    "base_media_type",
    "is_config",
    "is_index",
    "is_layer",
    "is_manifest",
    "is_schema1",
]

# OCI image spec.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
# Deprecated by image-spec 1.1 but still found in the wild (Windows base images).
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
# The two-byte `{}` blob that artifacts use as a placeholder config or layer.
OCI_EMPTY_JSON = "application/vnd.oci.empty.v1+json"

# Docker image manifest v2, schema 2.
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_UNCOMPRESSED = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

# Docker image manifest v2, schema 1: deprecated, and unsupported here.
DOCKER_MANIFEST_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES: FrozenSet[str] = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_TYPES: FrozenSet[str] = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
SCHEMA1_TYPES: FrozenSet[str] = frozenset({DOCKER_MANIFEST_SCHEMA1, DOCKER_MANIFEST_SCHEMA1_SIGNED})
CONFIG_TYPES: FrozenSet[str] = frozenset({OCI_CONFIG, DOCKER_CONFIG})
LAYER_TYPES: FrozenSet[str] = frozenset(
    {
        OCI_LAYER,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        OCI_LAYER_NONDISTRIBUTABLE,
        OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
        DOCKER_LAYER,
        DOCKER_LAYER_UNCOMPRESSED,
        DOCKER_FOREIGN_LAYER,
    }
)

# What a manifest GET accepts, indexes first so a multi-platform tag resolves to its
# index rather than to whichever single-platform manifest the registry picks. Schema 1 is
# left out on purpose: asking for it invites registries to down-convert.
MANIFEST_ACCEPT: Tuple[str, ...] = (
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_MANIFEST,
)
MANIFEST_ACCEPT_HEADER = ", ".join(MANIFEST_ACCEPT)


def base_media_type(media_type: Optional[str]) -> str:
    """Strip parameters and case from a media type or Content-Type header value.

    ``"Application/VND.oci.image.index.v1+json; charset=utf-8"`` becomes
    ``"application/vnd.oci.image.index.v1+json"``; None becomes ``""``.
    """
    if not media_type:
        return ""
    return media_type.split(";", 1)[0].strip().lower()


def is_index(media_type: Optional[str]) -> bool:
    """Whether ``media_type`` is an OCI index or a Docker manifest list."""
    return base_media_type(media_type) in INDEX_TYPES


def is_manifest(media_type: Optional[str]) -> bool:
    """Whether ``media_type`` is a single-image OCI or Docker schema 2 manifest."""
    return base_media_type(media_type) in MANIFEST_TYPES


def is_schema1(media_type: Optional[str]) -> bool:
    """Whether ``media_type`` is a (signed or unsigned) Docker schema 1 manifest."""
    return base_media_type(media_type) in SCHEMA1_TYPES


def is_config(media_type: Optional[str]) -> bool:
    """Whether ``media_type`` is an OCI or Docker image configuration."""
    return base_media_type(media_type) in CONFIG_TYPES


def is_layer(media_type: Optional[str]) -> bool:
    """Whether ``media_type`` is one of the known OCI or Docker filesystem layer types."""
    return base_media_type(media_type) in LAYER_TYPES
