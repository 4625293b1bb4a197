"""pants_oci.core: a Pants-free library for building and moving OCI container images.

Names are re-exported lazily (PEP 562), so that ``import pants_oci.core.reference`` from
the Pants backend, on Python 3.9, does not import pydantic or anything else it has not
asked for. This module itself imports only the standard library.

Type checkers see the stdlib-only names precisely; the pydantic models are typed here only
as ``Any``, so typed code should import them from ``pants_oci.core.models``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:
    from pants_oci.core.digest import (
        Digest,
        HashingReader,
        HashingWriter,
        sha256_of_bytes,
        sha256_of_file,
    )
    from pants_oci.core.errors import (
        DigestMismatchError,
        DocumentError,
        InvalidDigestError,
        InvalidReferenceError,
        OCIError,
        UnsupportedMediaTypeError,
    )
    from pants_oci.core.reference import Reference, parse_reference, parse_repository

# Exported name -> the submodule that defines it.
_EXPORTS: Dict[str, str] = {
    "Reference": "reference",
    "parse_reference": "reference",
    "parse_repository": "reference",
    "Digest": "digest",
    "HashingReader": "digest",
    "HashingWriter": "digest",
    "sha256_of_bytes": "digest",
    "sha256_of_file": "digest",
    "OCIError": "errors",
    "InvalidReferenceError": "errors",
    "InvalidDigestError": "errors",
    "DigestMismatchError": "errors",
    "DocumentError": "errors",
    "UnsupportedMediaTypeError": "errors",
    "AnyManifest": "models",
    "ContainerConfig": "models",
    "Descriptor": "models",
    "DockerManifest": "models",
    "DockerManifestList": "models",
    "History": "models",
    "ImageConfig": "models",
    "OCIIndex": "models",
    "OCIManifest": "models",
    "Platform": "models",
    "RootFS": "models",
    "parse_manifest": "models",
    "platform_matches": "models",
}

__all__ = [
    "AnyManifest",
    "ContainerConfig",
    "Descriptor",
    "Digest",
    "DigestMismatchError",
    "DockerManifest",
    "DockerManifestList",
    "DocumentError",
    "HashingReader",
    "HashingWriter",
    "History",
    "ImageConfig",
    "InvalidDigestError",
    "InvalidReferenceError",
    "OCIError",
    "OCIIndex",
    "OCIManifest",
    "Platform",
    "Reference",
    "RootFS",
    "UnsupportedMediaTypeError",
    "parse_manifest",
    "parse_reference",
    "parse_repository",
    "platform_matches",
    "sha256_of_bytes",
    "sha256_of_file",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))
