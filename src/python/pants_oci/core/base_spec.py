"""What a base image is, as text: the one grammar the Image API, the CLI and the Pants backend
read a ``base`` by.

    base := "scratch"                                  an empty image
          | ("oci-layout:" | "oci:") PATH [":" REF]     an OCI image layout directory
          | "docker-archive:" PATH [":" REF]           a `docker save` tar
          | REFERENCE                                  an image in a registry

The prefixes are skopeo's transport names. For the local kinds, ``location`` is the text after
the prefix; where a ``:REF`` ends it (paths may hold ``:`` too) is decided by the reader that
can look at the file system. The Pants backend adds one kind of its own on top: the address of
another ``oci_image`` target.

Stdlib only, and valid on Python 3.9: the Pants backend imports this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional

from pants_oci.core.errors import InvalidReferenceError
from pants_oci.core.reference import Reference, parse_reference

__all__ = [
    "DOCKER_ARCHIVE_PREFIX",
    "OCI_LAYOUT_PREFIX",
    "SCRATCH",
    "BaseKind",
    "BaseSpec",
    "parse_base",
]

SCRATCH = "scratch"
OCI_LAYOUT_PREFIX = "oci-layout:"
DOCKER_ARCHIVE_PREFIX = "docker-archive:"
# skopeo's own spelling of the layout transport; accepted, never written.
_OCI_LAYOUT_ALIAS = "oci:"


class BaseKind(enum.Enum):
    SCRATCH = "scratch"
    OCI_LAYOUT = "oci-layout"
    DOCKER_ARCHIVE = "docker-archive"
    REGISTRY = "registry"


@dataclass(frozen=True)
class BaseSpec:
    kind: BaseKind
    # The local kinds: what follows the prefix (PATH, or PATH:REF).
    location: str = ""
    # REGISTRY: the image's reference.
    reference: Optional[Reference] = None

    @property
    def is_local(self) -> bool:
        return self.kind in (BaseKind.OCI_LAYOUT, BaseKind.DOCKER_ARCHIVE)

    @property
    def unpinned_reference(self) -> Optional[Reference]:
        """The reference of a registry base named by tag only (what a lockfile pins)."""
        if self.reference is not None and self.reference.digest is None:
            return self.reference
        return None


def parse_base(text: str) -> BaseSpec:
    """Read ``text`` as a base; :class:`InvalidReferenceError` says what is wrong with it."""
    text = text.strip()
    if text == SCRATCH:
        return BaseSpec(BaseKind.SCRATCH)
    for prefix, kind in (
        (OCI_LAYOUT_PREFIX, BaseKind.OCI_LAYOUT),
        (_OCI_LAYOUT_ALIAS, BaseKind.OCI_LAYOUT),
        (DOCKER_ARCHIVE_PREFIX, BaseKind.DOCKER_ARCHIVE),
    ):
        if text.startswith(prefix):
            location = text[len(prefix) :]
            if not location:
                raise InvalidReferenceError(
                    f"base {text!r} names no path after {prefix!r}: write {prefix}PATH"
                )
            return BaseSpec(kind, location=location)
    return BaseSpec(BaseKind.REGISTRY, reference=parse_reference(text))
