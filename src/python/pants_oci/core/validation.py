"""The rules for the values that describe an image, in one place.

BUILD fields (the Pants backend), the CLI's JSON inputs and the :class:`~pants_oci.core.image.Image`
API all check platforms, ports, paths, signals, users, ids, labels, tags and layer media types
here, so a value is accepted or refused the same way wherever it is written.

Each ``check_*`` returns the value (normalised where noted) or raises
:class:`~pants_oci.core.errors.InvalidValueError`, whose ``problem`` finishes a sentence about
the value ("... 'app', which is not an absolute path. Use '/app'."): the backend puts it after
the target and field, the library after the name of the argument.

Stdlib only, and valid on Python 3.9: the Pants backend imports this module.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Optional, Tuple

from pants_oci.core import media_types
from pants_oci.core.errors import InvalidReferenceError, InvalidValueError
from pants_oci.core.reference import parse_reference, validate_tag

# --- Platforms --------------------------------------------------------------------------------

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
    number (``8``) its ``v`` form, as containerd reads them.
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


# --- The run configuration --------------------------------------------------------------------

_PORT = re.compile(r"^([0-9]{1,5})(?:/(tcp|udp|sctp))?$")


def check_port(value: Any) -> str:
    """An exposed port as ``N/protocol`` (``8080`` and ``"8080"`` mean ``"8080/tcp"``)."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    match = _PORT.match(text) if isinstance(text, str) else None
    if match is None or not 1 <= int(match.group(1)) <= 65535:
        raise InvalidValueError(
            "exposed port",
            value,
            "is not a port: use a number from 1 to 65535 with an optional protocol (tcp, udp "
            'or sctp), like "8080", "8080/tcp" or "53/udp".',
        )
    return f"{int(match.group(1))}/{match.group(2) or 'tcp'}"


def check_absolute_path(value: Any, what: str) -> str:
    """A path in the image: absolute, without ``..`` (the config's WorkingDir, a volume, a
    layer's target)."""
    if not isinstance(value, str) or not value:
        raise InvalidValueError(what, value, "is not a path: give an absolute path string.")
    if not value.startswith("/"):
        raise InvalidValueError(what, value, f"is not an absolute path. Use {'/' + value!r}.")
    if ".." in value.split("/"):
        raise InvalidValueError(what, value, "goes up with `..`. Write the absolute path it means.")
    return value


_USER = re.compile(r"[^:\s]+(:[^:\s]+)?")


def check_user(value: Any) -> str:
    """The config's ``User``: ``name``, ``uid``, ``name:group`` or ``uid:gid``."""
    if not isinstance(value, str) or not _USER.fullmatch(value):
        raise InvalidValueError(
            "user",
            value,
            'is not a user: use "name", "uid", "name:group" or "uid:gid", such as "1000:1000"'
            + (" (a string)." if isinstance(value, int) else "."),
        )
    return value


# Linux's signal names, as `docker stop` and runc accept them (SIGRTMIN+N, SIGRTMAX-N too).
_LINUX_SIGNALS = (
    "ABRT ALRM BUS CHLD CONT FPE HUP ILL INT IO IOT KILL PIPE POLL PROF PWR QUIT SEGV STKFLT "
    "STOP SYS TERM TRAP TSTP TTIN TTOU URG USR1 USR2 VTALRM WINCH XCPU XFSZ RTMIN RTMAX"
)
_SIGNAL_NAMES = frozenset(
    {
        *(f"SIG{name}" for name in _LINUX_SIGNALS.split()),
        *(f"SIGRTMIN+{n}" for n in range(1, 16)),
        *(f"SIGRTMAX-{n}" for n in range(1, 15)),
    }
)


def check_stop_signal(value: Any) -> str:
    """The config's ``StopSignal``: a Linux signal name (``SIGQUIT``, ``QUIT``) or number."""
    valid = isinstance(value, str) and (
        (value.isdigit() and 1 <= int(value) <= 64)
        or (value if value.startswith("SIG") else f"SIG{value}") in _SIGNAL_NAMES
    )
    if not valid:
        raise InvalidValueError(
            "stop signal",
            value,
            'is not a signal: use a name such as "SIGTERM", "SIGQUIT" or "SIGRTMIN+3", or a '
            "number from 1 to 64.",
        )
    return str(value)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_env_name(value: Any) -> str:
    """An environment variable name, as shells and ``docker run -e`` accept them."""
    if not isinstance(value, str) or not _ENV_NAME.match(value):
        raise InvalidValueError(
            "environment variable name",
            value,
            "is not a variable name: names are letters, digits and `_`, not starting with a digit.",
        )
    return value


def check_string_map(value: Any, what: str) -> Dict[str, str]:
    """Labels or annotations: non-empty string keys to string values."""
    if not isinstance(value, Mapping):
        raise InvalidValueError(what, value, "is not a mapping of strings to strings.")
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            raise InvalidValueError(
                what, value, f"has the key {key!r}: keys are non-empty strings."
            )
        if not isinstance(item, str):
            raise InvalidValueError(
                what, value, f"maps {key!r} to {item!r}: values are strings (write {str(item)!r})."
            )
    return dict(value)


# --- Layers -----------------------------------------------------------------------------------

# The largest id a tar entry may carry: Linux ids are 32-bit and 2**32 - 1 means "no id".
MAX_ID = 2**32 - 2


def check_id(value: Any, what: str) -> int:
    """A numeric user or group id for layer entries."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise InvalidValueError(what, value, f"is not an id: use a number from 0 to {MAX_ID}.")
    return value


_LAYER_MEDIA_TYPES = (
    media_types.OCI_LAYER,
    media_types.OCI_LAYER_GZIP,
    media_types.OCI_LAYER_ZSTD,
    media_types.OCI_LAYER_NONDISTRIBUTABLE,
    media_types.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
    media_types.OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
    media_types.DOCKER_LAYER,
    media_types.DOCKER_LAYER_UNCOMPRESSED,
    media_types.DOCKER_FOREIGN_LAYER,
)


def check_layer_media_type(value: Any) -> str:
    """A media type a manifest may give a layer."""
    if value not in _LAYER_MEDIA_TYPES:
        raise InvalidValueError(
            "layer media type",
            value,
            "is not a layer media type: use one of " + ", ".join(_LAYER_MEDIA_TYPES) + ".",
        )
    return str(value)


# --- Names ------------------------------------------------------------------------------------


def check_image_tag(value: Any) -> str:
    """A name an image is written under in a layout, and pushed by: a tag (``1.2``), or an
    image name with one (``example.com/app:1.2``)."""
    try:
        return validate_tag(value)
    except InvalidReferenceError:
        pass
    if isinstance(value, str) and ("/" in value or ":" in value):
        try:
            reference = parse_reference(value)
        except InvalidReferenceError:
            reference = None
        if reference is not None and reference.tag is not None and reference.digest is None:
            return value
    raise InvalidValueError(
        "tag",
        value,
        "is not a tag: use up to 128 letters, digits, `_`, `.` and `-`, not starting with `.` "
        "or `-` (such as 'latest' or '1.2'), or an image name with a tag (such as "
        "'example.com/app:1.2').",
    )
