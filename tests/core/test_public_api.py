"""pants_oci.core's public API, listed: adding or dropping a name is a decision made here.

The seed library (container-image-builder) offered Image, CustomFile, RegistryClient and auth;
ours adds the names a Python user needs around them (see core/__init__.py's docstring), and
every exception class of the error tree.
"""

from __future__ import annotations

import importlib
import inspect

import pants_oci.core
from pants_oci.core import errors

PUBLIC_API = {
    "AnyManifest",
    "BaseKind",
    "BaseSpec",
    "ChainKeychain",
    "ContainerConfig",
    "Credential",
    "CustomFile",
    "Descriptor",
    "Digest",
    "DockerConfigKeychain",
    "DockerManifest",
    "DockerManifestList",
    "GoogleKeychain",
    "History",
    "Image",
    "ImageConfig",
    "ImageData",
    "ImageIndex",
    "ImageLayout",
    "LayerBuilder",
    "OCIIndex",
    "OCIManifest",
    "Platform",
    "Reference",
    "RegistryAuth",
    "RegistryClient",
    "RootFS",
    "RunConfig",
    "StaticKeychain",
    "TransportOptions",
    "build_index",
    "copy_image",
    "list_referrers",
    "default_keychain",
    "parse_base",
    "parse_manifest",
    "parse_reference",
    "parse_repository",
    "platform_matches",
    "pull_image",
    "push_layout",
    "read_sbom",
}
ERROR_TREE = {
    "CorruptLayerError",
    "CredentialError",
    "CredentialHelperError",
    "DeniedError",
    "DigestMismatchError",
    "DocumentError",
    "ImageArchiveError",
    "ImageBuildError",
    "InputFileError",
    "InsecureTokenServiceError",
    "InvalidDigestError",
    "InvalidReferenceError",
    "InvalidValueError",
    "LayerError",
    "NotFoundError",
    "OCIError",
    "PartialPushError",
    "PlatformNotFoundError",
    "RangeError",
    "RefNotFoundError",
    "RegistryError",
    "RunError",
    "RuntimeNotFoundError",
    "SizeMismatchError",
    "TooManyRequestsError",
    "TransportError",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
}


def test_the_public_api_is_exactly_the_listed_names() -> None:
    assert set(pants_oci.core.__all__) == PUBLIC_API | ERROR_TREE
    assert len(pants_oci.core.__all__) == len(set(pants_oci.core.__all__))


def test_every_public_name_resolves_to_a_core_object() -> None:
    for name in pants_oci.core.__all__:
        value = getattr(pants_oci.core, name)
        # Type aliases (AnyManifest) have typing's module: look where core/__init__ found it.
        module = f"pants_oci.core.{pants_oci.core._EXPORTS[name]}"
        assert getattr(importlib.import_module(module), name) is value
        defined_in = getattr(value, "__module__", module)
        assert defined_in.startswith(("pants_oci.core", "typing")), (name, defined_in)


def test_every_exception_class_of_the_error_tree_is_public() -> None:
    classes = {
        name
        for name, value in inspect.getmembers(errors, inspect.isclass)
        if issubclass(value, errors.OCIError) and value.__module__ == errors.__name__
    }
    assert classes == ERROR_TREE
    for name in classes:
        assert name in (errors.__doc__ or ""), f"{name} is missing from the tree drawn in errors.py"


def test_the_seed_libraries_names_are_there() -> None:
    assert {"Image", "CustomFile", "RegistryClient", "RegistryAuth"} <= PUBLIC_API
