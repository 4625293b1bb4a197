"""What a ``pants-oci`` command is given, read and checked: JSON input files (layer specs, layer
metadata, image configs) and command-line values (references, platforms, tags, output paths).
A value that cannot be used is an InputFileError (or InvalidReferenceError) naming where it
came from."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pants_oci.core.base_spec import DOCKER_ARCHIVE_PREFIX, OCI_LAYOUT_PREFIX, SCRATCH
from pants_oci.core.errors import InputFileError, InvalidReferenceError, InvalidValueError
from pants_oci.core.validation import check_id, check_image_tag

if TYPE_CHECKING:
    from pants_oci.core.models import Platform
    from pants_oci.core.reference import Reference

__all__ = [
    "base_argument",
    "check_output_file",
    "checked_id",
    "input_values",
    "json_object",
    "octal_mode",
    "or_default",
    "platform_argument",
    "read_json",
    "reference_argument",
    "registry_argument",
    "string_list",
    "string_map",
    "tag_arguments",
    "typed",
]


# --- JSON input files ---------------------------------------------------------------------------


def read_json(path: str, what: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputFileError(f"{what} {path} is not valid JSON: {exc}") from None


def json_object(value: Any, where: str, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputFileError(f"{where} must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise InputFileError(
            f"{where} has unknown keys {unknown}; allowed keys are {sorted(allowed)}"
        )
    return value


def typed(
    data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any
) -> Any:
    value = data.get(key, default)
    if value is None:
        return default
    # bool is an int in Python, but not in JSON: refuse true for a number.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InputFileError(f"{where}: {key!r} must be {names} or null, got {value!r}")
    return value


def string_list(data: Mapping[str, Any], key: str, where: str) -> list[str] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputFileError(f"{where}: {key!r} must be a list of strings or null, got {value!r}")
    return list(value)


def string_map(data: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = data.get(key) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InputFileError(f"{where}: {key!r} must be an object of strings, got {value!r}")
    return dict(value)


def octal_mode(value: Any, where: str, key: str = "mode") -> int | None:
    if value is None:
        return None
    try:
        mode = int(value, 8) if isinstance(value, str) else None
    except ValueError:
        mode = None
    if mode is None or not 0 <= mode <= 0o7777:
        raise InputFileError(
            f"{where}: '{key}' must be an octal string like \"0755\", got {value!r}"
        )
    return mode


@contextlib.contextmanager
def input_values(where: str) -> Iterator[None]:
    """A value that core/validation.py refuses, as an error naming the input it came from."""
    try:
        yield
    except InvalidValueError as exc:
        raise InputFileError(f"{where}: {exc}") from None


def checked_id(data: Mapping[str, Any], key: str, where: str) -> int | None:
    value = typed(data, key, int, where, None)
    if value is None:
        return None
    with input_values(where):
        return check_id(value, repr(key))


def or_default(value: int | None, default: int) -> int:
    return default if value is None else value


# --- Command-line values ------------------------------------------------------------------------

_SUPPORTED_DIGEST_ALGORITHMS = ("sha256", "sha384", "sha512")  # what can verify content


def base_argument(text: str) -> str:
    """The base of a new image (``append``): ``scratch``, ``oci-layout:DIR[:REF]``,
    ``docker-archive:FILE[:NAME:TAG]`` as given, else a registry reference, checked."""
    if text == SCRATCH or text.startswith((OCI_LAYOUT_PREFIX, DOCKER_ARCHIVE_PREFIX)):
        return text
    return str(reference_argument(text))


def reference_argument(text: str, what: str = "") -> Reference:
    """An image reference from the command line, refused here (before any request) when it
    could never be pulled or pushed: a URL, a port out of range, a digest we cannot verify."""
    from pants_oci.core.reference import parse_reference

    prefix = f"{what} " if what else ""

    def invalid(reason: str) -> InvalidReferenceError:
        return InvalidReferenceError(f"{prefix}invalid image reference {text!r}: {reason}")

    if text == SCRATCH or text.startswith((OCI_LAYOUT_PREFIX, DOCKER_ARCHIVE_PREFIX)):
        raise invalid(
            "this names a local image, and this command reads registry images only (give "
            "host/repository:tag); `validate` reads layouts and archives, `push` pushes them"
        )
    scheme, separator, rest = text.partition("://")
    if separator and scheme and "/" not in scheme:
        return_to = rest.rstrip("/") or "host/repo"
        raise invalid(f"no URL scheme in image references: write {return_to}")
    reference = parse_reference(text)
    host, colon, port = reference.registry.rpartition(":")
    if colon and not host.endswith(":") and port.isdigit() and not 0 < int(port) <= 65535:
        raise invalid(f"port {port} is not a valid port (1-65535)")
    if reference.digest is not None:
        algorithm = reference.digest.partition(":")[0]
        if algorithm not in _SUPPORTED_DIGEST_ALGORITHMS:
            raise invalid(
                f"digest algorithm {algorithm!r} is not supported; supported algorithms are "
                f"{', '.join(_SUPPORTED_DIGEST_ALGORITHMS)}"
            )
    return reference


def registry_argument(text: str) -> str:
    """A registry from the command line: a host, with its port if it has one (no repository,
    tag or digest; an ``http(s)://`` URL of it, as docker takes); its canonical name
    (``docker.io`` for Docker Hub's)."""
    from pants_oci.core.reference import Reference

    problem = "give its host, with the port if it has one (e.g. localhost:5000)"
    given = text
    scheme, separator, rest = text.partition("://")
    if separator and scheme in ("http", "https"):  # as `docker login` takes it
        host, _, path = rest.partition("/")
        if path.strip("/") in ("", "v1", "v2"):
            text = host
    if any(character in text for character in "/@"):
        raise InvalidReferenceError(f"invalid registry {given!r}: {problem}")
    try:
        return Reference(text, "any").registry  # checks the host's grammar
    except InvalidReferenceError:
        raise InvalidReferenceError(f"invalid registry {given!r}: {problem}") from None


def platform_argument(text: str | None) -> Platform | None:
    """``--platform OS/ARCH[/VARIANT]``, or None when not given."""
    from pants_oci.core.models import Platform

    if not text:
        return None
    try:
        return Platform.parse(text)
    except ValueError as exc:
        raise InputFileError(f"--platform: {exc}") from None


def tag_arguments(tags: Sequence[str]) -> list[str]:
    """``--tag`` values: ref names in the layout's index.json (tags, or names with a tag)."""
    for tag in tags:
        try:
            check_image_tag(tag)
        except InvalidValueError as exc:
            raise InputFileError(f"--tag {tag!r} {exc.problem}") from None
    return list(tags)


def check_output_file(path: str, flag: str = "--output") -> None:
    """Refuse, before any work, an output file path that could not be written: its directory
    does not exist, or it is a directory itself (the writer would otherwise fail at the end,
    on the temporary file it writes next to it)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputFileError(
            f"{flag} {path}: the directory {directory} does not exist; create it first"
        )
    if os.path.isdir(path):
        raise InputFileError(f"{flag} {path} is a directory; give the path of a file to write")
