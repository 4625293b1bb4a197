"""The rules for the values that describe an image, in one place.

BUILD fields (the Pants backend), the CLI's JSON inputs and the :class:`~pants_oci.core.image.Image`
API all check ports, paths, signals, users, ids, labels, tags and layer media types here, so a
value is accepted or refused the same way wherever it is written. Platforms are checked the same
way by :func:`pants_oci.core.platforms.check_platform`, beside the rest of the platform logic.

Each ``check_*`` returns the value (normalised where noted) or raises
:class:`~pants_oci.core.errors.InvalidValueError`, whose ``problem`` finishes a sentence about
the value ("... 'app', which is not an absolute path. Use '/app'."): the backend puts it after
the target and field, the library after the name of the argument.

Arguments of the wrong type are a programming error, not a bad value: :func:`check_type` and
:func:`check_list` raise ``TypeError`` naming the argument and the type it takes
(``add_files() argument 'files': expected a mapping of target path to local path, got int``),
at the public entry point rather than deep inside.

Stdlib only, and valid on Python 3.9: the Pants backend imports this module.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Mapping, Tuple, Type, Union

from pants_oci.core import media_types
from pants_oci.core.errors import InvalidReferenceError, InvalidValueError
from pants_oci.core.reference import parse_reference, validate_tag

# --- Argument types ---------------------------------------------------------------------------


TypeSpec = Union[Type[Any], Tuple[Type[Any], ...]]


def check_type(value: Any, types: TypeSpec, where: str, expected: str) -> Any:
    """``value`` when it is an instance of ``types`` (a bool is no int unless ``bool`` is
    listed), else a TypeError: ``{where}: expected {expected}, got {type}``. ``where`` names
    the argument: ``"add_layer() argument 'size'"`` or ``"Image.cmd"``."""
    listed = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, listed) or (isinstance(value, bool) and bool not in listed):
        raise TypeError(f"{where}: expected {expected}, got {type(value).__name__}")
    return value


def check_arguments(function: str, *checks: Tuple[str, Any, TypeSpec, str]) -> None:
    """:func:`check_type` for each ``(name, value, types, expected)`` of ``function``'s
    arguments."""
    for name, value, types, expected in checks:
        check_type(value, types, f"{function}() argument {name!r}", expected)


def check_list(value: Any, where: str) -> List[Any]:
    """A list (or other iterable, not a string) as a new list, else TypeError; the caller
    checks the items."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{where}: expected a list, got {type(value).__name__}")
    return list(value)


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
    return f"{match.group(1)}/{match.group(2) or 'tcp'}"  # as written: no digest changes


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


def check_layer_media_type(value: Any) -> str:
    """A media type a manifest may give a layer."""
    if not isinstance(value, str) or not media_types.is_layer(value):
        raise InvalidValueError(
            "layer media type",
            value,
            "is not a layer media type: use one of "
            + ", ".join(sorted(media_types.LAYER_TYPES))
            + ".",
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
