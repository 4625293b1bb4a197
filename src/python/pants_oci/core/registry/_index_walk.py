"""From an index (or Docker manifest list) down to the image manifest for one platform.

Registries, the image builder's bases and ``pants-oci base pull`` all follow an index the same
way: the entry for the platform (see :func:`pants_oci.core.platforms.resolve_platform`), and
again when that entry is an index too, up to ``MAX_INDEX_DEPTH`` indexes deep.

Private: import walk_to_image_manifest from :mod:`pants_oci.core.registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Union

from pants_oci.core.errors import DocumentError, PlatformNotFoundError
from pants_oci.core.models import (
    AnyManifest,
    Descriptor,
    DockerManifest,
    DockerManifestList,
    OCIIndex,
    OCIManifest,
    Platform,
)
from pants_oci.core.platforms import MAX_INDEX_DEPTH, resolve_platform

__all__ = ["ImageManifest", "Index", "walk_to_image_manifest"]

ImageManifest = Union[OCIManifest, DockerManifest]
Index = Union[OCIIndex, DockerManifestList]


def walk_to_image_manifest(
    document: AnyManifest,
    platform: Platform | None,
    fetch: Callable[[Descriptor], AnyManifest],
    where: str,
) -> ImageManifest:
    """The image manifest ``document`` means for ``platform`` (default: this machine's Linux).

    An image manifest is returned as it is. An index is followed to its entry for
    ``platform`` (else :class:`~pants_oci.core.errors.PlatformNotFoundError`, naming ``where``
    and the platforms there are), which ``fetch`` gets (verified against the entry's digest
    and size), and so on down nested indexes; more than ``MAX_INDEX_DEPTH`` of them is a
    DocumentError naming ``where``.
    """
    for _depth in range(MAX_INDEX_DEPTH):
        if isinstance(document, (OCIManifest, DockerManifest)):
            return document
        try:
            entry = resolve_platform(document, platform)
        except PlatformNotFoundError as error:  # name what the user asked for, not a digest
            raise PlatformNotFoundError(
                f"{where}: {error}", wanted=error.wanted, available=error.available
            ) from None
        document = fetch(entry)
    if isinstance(document, (OCIManifest, DockerManifest)):
        return document
    raise DocumentError(f"{where}: indexes nested more than {MAX_INDEX_DEPTH} deep")
