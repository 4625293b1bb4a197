"""pants_oci.core: a Pants-free library for building and moving OCI container images.

The public API, by job (everything else is importable from its module, but may change):

* Building images -- what the npm package container-image-builder offers, in Python:
  :class:`Image` (a base, layers added with ``add_files``/``add_layer``, the run
  configuration, then ``save`` to a registry or ``write_layout``/``write_docker_archive``),
  :class:`CustomFile` (in-memory files for ``add_files``), :class:`RunConfig`,
  :class:`ImageData`, :class:`ImageIndex`/:func:`build_index` (multi-platform images),
  :class:`LayerBuilder` (deterministic layers on their own).
* Moving images: :func:`pull_image` (registry to layout), :func:`push_layout` (layout to
  registries, with the artifacts attached to the image), :func:`copy_image` (registry to
  registry), :func:`list_referrers` and :func:`read_sbom` (artifacts attached to an image,
  its SBOMs and provenance), :class:`RegistryClient` (the OCI
  distribution API), :class:`ImageLayout` (OCI image layouts), :class:`TransportOptions`
  (timeouts, retries, TLS, insecure registries).
* Credentials: :func:`default_keychain` (docker's ``config.json``, credential helpers, then
  Google's application default credentials), :class:`DockerConfigKeychain`,
  :class:`GoogleKeychain`, :class:`StaticKeychain`, :class:`ChainKeychain`,
  :class:`Credential`, :class:`RegistryAuth` (the 401 -> token -> retry handshake).
* Names and documents: :class:`Reference`/:func:`parse_reference`/:func:`parse_repository`,
  :class:`Digest`, :class:`BaseSpec`/:func:`parse_base` (what a ``base`` names), the OCI and
  Docker models (:class:`OCIManifest`, :class:`OCIIndex`, :class:`ImageConfig`,
  :class:`Descriptor`, :class:`Platform`..., :func:`parse_manifest`), :func:`platform_matches`.
* Errors: every exception class of :mod:`pants_oci.core.errors`, whose docstring draws the
  tree; catch :class:`OCIError` for all of them.

tests/core/test_public_api.py lists this API: a name added or dropped is a decision.

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
    from pants_oci.core.digest import Digest
    from pants_oci.core.errors import (
        CorruptLayerError,
        CredentialError,
        CredentialHelperError,
        DeniedError,
        DigestMismatchError,
        DocumentError,
        ImageArchiveError,
        ImageBuildError,
        InputFileError,
        InsecureTokenServiceError,
        InvalidDigestError,
        InvalidReferenceError,
        InvalidValueError,
        LayerError,
        NotFoundError,
        OCIError,
        PartialPushError,
        PlatformNotFoundError,
        RangeError,
        RefNotFoundError,
        RegistryError,
        RunError,
        RuntimeNotFoundError,
        SizeMismatchError,
        TooManyRequestsError,
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
    "CorruptLayerError": "errors",
    "ImageArchiveError": "errors",
    "RefNotFoundError": "errors",
    "ImageBuildError": "errors",
    "PartialPushError": "errors",
    "InputFileError": "errors",
    "RunError": "errors",
    "RuntimeNotFoundError": "errors",
    "CredentialError": "errors",
    "CredentialHelperError": "errors",
    "TransportError": "errors",
    "RegistryError": "errors",
    "UnauthorizedError": "errors",
    "InsecureTokenServiceError": "errors",
    "DeniedError": "errors",
    "NotFoundError": "errors",
    "RangeError": "errors",
    "TooManyRequestsError": "errors",
    # The image builder and the command line's building blocks.
    "Image": "image",
    "ImageData": "image",
    "ImageIndex": "index",
    "RunConfig": "run_config",
    "build_index": "index",
    "copy_image": "remote",
    "pull_image": "remote",
    "push_layout": "remote",
    "list_referrers": "referrers",
    "read_sbom": "supply_chain",
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
    "CorruptLayerError",
    "Credential",
    "CredentialError",
    "CredentialHelperError",
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
    "History",
    "Image",
    "ImageArchiveError",
    "ImageBuildError",
    "ImageConfig",
    "ImageData",
    "ImageIndex",
    "ImageLayout",
    "InputFileError",
    "InsecureTokenServiceError",
    "InvalidDigestError",
    "InvalidReferenceError",
    "InvalidValueError",
    "LayerBuilder",
    "LayerError",
    "NotFoundError",
    "OCIError",
    "OCIIndex",
    "OCIManifest",
    "PartialPushError",
    "Platform",
    "PlatformNotFoundError",
    "RangeError",
    "RefNotFoundError",
    "Reference",
    "RegistryAuth",
    "RegistryClient",
    "RegistryError",
    "RootFS",
    "RunConfig",
    "RunError",
    "RuntimeNotFoundError",
    "SizeMismatchError",
    "StaticKeychain",
    "TooManyRequestsError",
    "TransportError",
    "TransportOptions",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "build_index",
    "copy_image",
    "default_keychain",
    "list_referrers",
    "parse_base",
    "parse_manifest",
    "parse_reference",
    "parse_repository",
    "platform_matches",
    "pull_image",
    "push_layout",
    "read_sbom",
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
