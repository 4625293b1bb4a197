"""Platforms: which ``os/architecture[/variant]`` values are known, how architecture names are
spelled, which image of an index a platform means, and whether an image is for a platform.

Everything platform-related has its one definition here: the BUILD fields, the command line,
the :class:`~pants_oci.core.image.Image` API, the registry client, image layouts and the
base-image lockfile all call it, so a platform is read and matched the same way everywhere.

Stdlib only, and valid on Python 3.9: the Pants backend imports this module. So it works on
anything shaped like the pydantic models (:class:`~pants_oci.core.models.Platform`, its
descriptors and indexes, see the protocols below) without importing them, and on
:class:`PlatformParts`, the plain-strings form the backend uses.
"""

from __future__ import annotations

import platform as stdlib_platform
from typing import Any, Dict, NamedTuple, Optional, Protocol, Sequence, Tuple, TypeVar

from pants_oci.core.errors import InvalidValueError, PlatformNotFoundError

__all__ = [
    "DEFAULT_VARIANTS",
    "KNOWN_PLATFORMS",
    "MAX_INDEX_DEPTH",
    "ConfiguredImage",
    "PlatformEntry",
    "PlatformIndex",
    "PlatformLike",
    "PlatformParts",
    "check_platform",
    "host_linux",
    "matching_entries",
    "normalize_architecture",
    "normalize_variant",
    "platform_matches",
    "require_platform",
    "resolve_platform",
]

# How deep an index of indexes of ... may go before a reader gives up.
MAX_INDEX_DEPTH = 4


class PlatformLike(Protocol):
    """What matching needs of a platform: a :class:`~pants_oci.core.models.Platform`, or
    :class:`PlatformParts`."""

    @property
    def os(self) -> str: ...

    @property
    def architecture(self) -> str: ...

    @property
    def variant(self) -> Optional[str]: ...


class PlatformParts(NamedTuple):
    """A platform as three strings (the form of code that does not import the models)."""

    os: str
    architecture: str
    variant: Optional[str] = None

    @classmethod
    def split(cls, text: str) -> PlatformParts:
        """``os/architecture[/variant]`` as it is written, unchecked (see
        :func:`check_platform` for a value to validate)."""
        os_name, architecture, *variant = text.split("/")
        return cls(os_name, architecture, variant[0] if variant else None)

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


# --- Known platforms --------------------------------------------------------------------------

# The platforms images are built for: GOOS -> GOARCH -> variants (as `docker`, `crane` and the
# OCI image index spell them). Architectures without variants list none.
KNOWN_PLATFORMS: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "linux": {
        "amd64": ("v1", "v2", "v3", "v4"),
        # Armv8/9 and their extensions, as `docker buildx` and containerd name them.
        "arm64": (
            "v8",
            *(f"v8.{n}" for n in range(10)),
            "v9",
            *(f"v9.{n}" for n in range(6)),
        ),
        "arm": ("v5", "v6", "v7"),
        "386": (),
        "ppc64le": (),
        "s390x": (),
        "riscv64": (),
        "mips64le": (),
        "loong64": (),
    },
    "windows": {"amd64": (), "arm64": ()},
}

# Other spellings of architectures (uname -m's, Debian's), as `docker --platform` takes them.
_ARCHITECTURE_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386"}


def _platform_examples() -> str:
    return ", ".join(
        f"{os_name}/{arch}{'/' + variants[-1] if arch == 'arm' else ''}"
        for os_name, arches in KNOWN_PLATFORMS.items()
        for arch, variants in arches.items()
    )


def check_platform(value: Any) -> Tuple[str, str, Optional[str]]:
    """``(os, architecture, variant)`` of a known ``os/architecture[/variant]`` platform.

    Architecture aliases (``x86_64``, ``aarch64``) give the GOARCH name, and a bare variant
    number (``8``) its ``v`` form, as containerd reads them. Anything else raises
    :class:`~pants_oci.core.errors.InvalidValueError` (see :mod:`pants_oci.core.validation`).
    """
    if not isinstance(value, str):
        raise InvalidValueError(
            "platform",
            value,
            "is not a platform: give a string `os/architecture[/variant]`, such as 'linux/amd64'.",
        )
    parts = value.split("/")
    if len(parts) not in (2, 3):
        raise InvalidValueError(
            "platform",
            value,
            f"is not `os/architecture[/variant]`. Known platforms: {_platform_examples()}.",
        )
    os_name, arch = parts[0], _ARCHITECTURE_ALIASES.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else None
    if variant is not None and variant.isdigit():
        variant = f"v{variant}"
    if os_name not in KNOWN_PLATFORMS:
        raise InvalidValueError(
            "platform",
            value,
            f"names an unknown os {os_name!r} (known: {', '.join(KNOWN_PLATFORMS)}).",
        )
    if arch not in KNOWN_PLATFORMS[os_name]:
        raise InvalidValueError(
            "platform",
            value,
            f"names an unknown architecture {parts[1]!r} for {os_name}. "
            f"Known platforms: {_platform_examples()}.",
        )
    variants = KNOWN_PLATFORMS[os_name][arch]
    if variant is not None and variant not in variants:
        known = (
            ", ".join(f"{os_name}/{arch}/{v}" for v in variants) or f"none: use {os_name}/{arch}"
        )
        raise InvalidValueError(
            "platform",
            value,
            f"names an unknown variant {parts[2]!r} of {os_name}/{arch} (known: {known}).",
        )
    return os_name, arch, variant


# --- Architecture names -----------------------------------------------------------------------

# What `platform.machine()` (uname -m) reports, mapped to GOARCH names and variants.
_MACHINE_ARCHITECTURES: Dict[str, Tuple[str, Optional[str]]] = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "x64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armhf": ("arm", "v7"),
    "armel": ("arm", "v6"),
    "i386": ("386", None),
    "i486": ("386", None),
    "i586": ("386", None),
    "i686": ("386", None),
    "x86": ("386", None),
    "386": ("386", None),
    "ppc64le": ("ppc64le", None),
    "ppc64": ("ppc64", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
    "mips64": ("mips64", None),
    "mips64el": ("mips64le", None),
    "mips64le": ("mips64le", None),
    "loongarch64": ("loong64", None),
    "loong64": ("loong64", None),
}

# The variant an architecture means when none is given (as containerd normalises them).
DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


def normalize_architecture(machine: str) -> Tuple[str, Optional[str]]:
    """Map a ``uname -m`` style name to a GOARCH name and variant.

    ``x86_64`` gives ``("amd64", None)``, ``aarch64`` gives ``("arm64", "v8")``,
    ``armv7l`` gives ``("arm", "v7")``; names we do not know are returned lowercased.
    """
    name = machine.strip().lower()
    if name in _MACHINE_ARCHITECTURES:
        return _MACHINE_ARCHITECTURES[name]
    # armv5tel, armv6l, armv7l, armv8l: a 32-bit ARM userland of that generation.
    if name.startswith("armv") and name[4:5].isdigit():
        return "arm", f"v{name[4]}"
    return name, None


def normalize_variant(architecture: str, variant: Optional[str]) -> Optional[str]:
    """``variant`` in its ``v`` form, or the architecture's default when there is none."""
    if variant and variant.isdigit():
        variant = f"v{variant}"  # containerd accepts "8" for "v8"
    return variant or DEFAULT_VARIANTS.get(architecture)


def host_linux() -> PlatformParts:
    """Linux on this machine's CPU: what a container built here would run as."""
    architecture, variant = normalize_architecture(stdlib_platform.machine())
    return PlatformParts("linux", architecture, variant)


# --- Matching ---------------------------------------------------------------------------------


def platform_matches(want: PlatformLike, have: PlatformLike) -> bool:
    """Whether an image for ``have`` satisfies a request for ``want``.

    OS and architecture must be equal (``x86_64``/``amd64`` style aliases are the same);
    the variant only counts when ``want`` names one, and a missing variant means the
    architecture's default (``arm64`` is ``v8``, ``arm`` is ``v7``).
    """
    if want.os != have.os:
        return False
    want_arch = normalize_architecture(want.architecture)[0]
    have_arch = normalize_architecture(have.architecture)[0]
    if want_arch != have_arch:
        return False
    if not want.variant:
        return True
    return normalize_variant(want_arch, want.variant) == normalize_variant(have_arch, have.variant)


class PlatformEntry(Protocol):
    """An index entry (a :class:`~pants_oci.core.models.Descriptor`): its platform, if any."""

    @property
    def platform(self) -> Optional[PlatformLike]: ...


EntryT = TypeVar("EntryT", bound=PlatformEntry)
EntryT_co = TypeVar("EntryT_co", bound=PlatformEntry, covariant=True)


class PlatformIndex(Protocol[EntryT_co]):
    """An index or manifest list: its entries, and its digest (for messages)."""

    @property
    def manifests(self) -> Sequence[EntryT_co]: ...

    @property
    def digest(self) -> object: ...


class ConfiguredImage(Protocol):
    """An image config (:class:`~pants_oci.core.models.ImageConfig`): the platform it declares."""

    @property
    def platform(self) -> PlatformLike: ...


def matching_entries(entries: Sequence[EntryT], platform: PlatformLike) -> list[EntryT]:
    """The entries whose platform satisfies ``platform`` (see :func:`platform_matches`)."""
    return [
        entry
        for entry in entries
        if entry.platform is not None and platform_matches(platform, entry.platform)
    ]


def resolve_platform(
    index: PlatformIndex[EntryT], platform: Optional[PlatformLike] = None
) -> EntryT:
    """The entry of ``index`` for ``platform`` (default: Linux on this machine's CPU).

    Raises :class:`PlatformNotFoundError` listing the platforms the index does have.
    """
    wanted = platform if platform is not None else host_linux()
    matches = matching_entries(index.manifests, wanted)
    if matches:
        return matches[0]
    available = [str(entry.platform) for entry in index.manifests if entry.platform is not None]
    # Attestations (buildx) are "unknown/unknown": not images anyone can ask for.
    available = [name for name in dict.fromkeys(available) if name != "unknown/unknown"]
    listed = ", ".join(available) if available else "none (its entries declare no platform)"
    raise PlatformNotFoundError(
        f"no image for platform {wanted} in index {index.digest}; available platforms: {listed}",
        wanted=str(wanted),
        available=available,
    )


def require_platform(config: ConfiguredImage, platform: Optional[PlatformLike], where: str) -> None:
    """Refuse (PlatformNotFoundError) an image whose config is not for ``platform`` (when one
    is asked for): ``where`` names the image, as in "base r/app:1 is an image for ..."."""
    if platform is not None and not platform_matches(platform, config.platform):
        raise PlatformNotFoundError(
            f"{where} is an image for {config.platform}, not {platform}",
            wanted=str(platform),
            available=[str(config.platform)],
        )
