"""pants_oci.core: a Pants-free library for building and moving OCI container images.

Names are re-exported lazily (PEP 562), so that ``import pants_oci.core.reference`` from
the Pants backend, on Python 3.9, does not import pydantic or anything else it has not
asked for. This module itself imports only the standard library.

Type checkers see the stdlib-only names precisely; everything else (the pydantic models,
the :class:`Image` builder, the registry client, keychains...) is typed here only as ``Any``,
so typed code should import those from their modules (``pants_oci.core.image`` and so on).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Dict, List

if TYPE_CHECKING:
    from pants_oci.core.base_spec import BaseKind, BaseSpec, parse_base
    from pants_oci.core.digest import (
        Digest,
        HashingReader,
        HashingWriter,
        sha256_of_bytes,
        sha256_of_file,
    )
    from pants_oci.core.errors import (
        CredentialError,
        DeniedError,
        DigestMismatchError,
        DocumentError,
        ImageArchiveError,
        ImageBuildError,
        InputFileError,
        InvalidDigestError,
        InvalidReferenceError,
        InvalidValueError,
        LayerError,
        NotFoundError,
        OCIError,
        PlatformNotFoundError,
        RefNotFoundError,
        RegistryError,
        SizeMismatchError,
        TransportError,
        UnauthorizedError,
        UnsupportedMediaTypeError,
    )
    from pants_oci.core.platforms import platform_matches
    from pants_oci.core.reference import Reference, parse_reference, parse_repository

# Exported name -> the submodule that defines it.
_EXPORTS: Dict[str, str] = {
    "Reference": "reference",
    "parse_reference": "reference",
    "parse_repository": "reference",
    "BaseKind": "base_spec",
    "BaseSpec": "base_spec",
    "parse_base": "base_spec",
    "Digest": "digest",
    "HashingReader": "digest",
    "HashingWriter": "digest",
    "sha256_of_bytes": "digest",
    "sha256_of_file": "digest",
    "OCIError": "errors",
    "InvalidReferenceError": "errors",
    "InvalidDigestError": "errors",
    "InvalidValueError": "errors",
    "DigestMismatchError": "errors",
    "SizeMismatchError": "errors",
    "DocumentError": "errors",
    "UnsupportedMediaTypeError": "errors",
    "PlatformNotFoundError": "errors",
    "LayerError": "errors",
    "ImageArchiveError": "errors",
    "RefNotFoundError": "errors",
    "ImageBuildError": "errors",
    "InputFileError": "errors",
    "CredentialError": "errors",
    "TransportError": "errors",
    "RegistryError": "errors",
    "UnauthorizedError": "errors",
    "DeniedError": "errors",
    "NotFoundError": "errors",
    # The image builder and the command line's building blocks.
    "Image": "image",
    "ImageData": "image",
    "ImageIndex": "index",
    "RunConfig": "run_config",
    "build_index": "index",
    "copy_image": "remote",
    "pull_image": "remote",
    "push_layout": "remote",
    "CustomFile": "layer",
    "LayerBuilder": "layer",
    "ImageLayout": "layout",
    "RegistryClient": "registry",
    "TransportOptions": "transport",
    "ChainKeychain": "auth",
    "Credential": "auth",
    "DockerConfigKeychain": "auth",
    "GoogleKeychain": "auth",
    "RegistryAuth": "auth",
    "StaticKeychain": "auth",
    "default_keychain": "auth",
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
    "platform_matches": "platforms",
}

__all__ = [
    "AnyManifest",
    "BaseKind",
    "BaseSpec",
    "ChainKeychain",
    "ContainerConfig",
    "Credential",
    "CredentialError",
    "CustomFile",
    "DeniedError",
    "Descriptor",
    "Digest",
    "DigestMismatchError",
    "DockerConfigKeychain",
    "DockerManifest",
    "DockerManifestList",
    "DocumentError",
    "GoogleKeychain",
    "HashingReader",
    "HashingWriter",
    "History",
    "Image",
    "ImageArchiveError",
    "ImageBuildError",
    "ImageConfig",
    "ImageData",
    "ImageIndex",
    "ImageLayout",
    "InputFileError",
    "InvalidDigestError",
    "InvalidReferenceError",
    "InvalidValueError",
    "LayerBuilder",
    "LayerError",
    "NotFoundError",
    "OCIError",
    "OCIIndex",
    "OCIManifest",
    "Platform",
    "PlatformNotFoundError",
    "RefNotFoundError",
    "Reference",
    "RegistryAuth",
    "RegistryClient",
    "RegistryError",
    "RootFS",
    "RunConfig",
    "SizeMismatchError",
    "StaticKeychain",
    "TransportError",
    "TransportOptions",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "build_index",
    "copy_image",
    "default_keychain",
    "parse_base",
    "parse_manifest",
    "parse_reference",
    "parse_repository",
    "platform_matches",
    "pull_image",
    "push_layout",
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
