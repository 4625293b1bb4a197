"""Small HTTP helpers of the distribution protocol: ``Link`` pagination, upload ``Range`` and
download ``Content-Range`` headers, lengths, and whether (and when) a failure is retried.

Private: used by the modules of :mod:`pants_oci.core.registry`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx

from pants_oci.core.errors import RegistryError
from pants_oci.core.transport import RETRY_STATUSES

_RANGE_RE = re.compile(r"^\s*(?:bytes=)?(\d+)-(\d+)\s*$")
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")


def parse_range_end(value: str | None) -> int | None:
    """The offset after an upload ``Range: 0-<last>`` header, or None when absent."""
    match = _RANGE_RE.match(value or "")
    if match is None:
        return None
    # "0-0" is what distribution says of an empty session (it cannot say "no bytes").
    last = int(match.group(2))
    return 0 if last == 0 else last + 1


def content_range_start(value: str) -> int | None:
    """The first byte a ``Content-Range: bytes <first>-<last>/<size>`` answer holds, or None
    when the header is not one."""
    match = _CONTENT_RANGE_RE.match(value)
    return int(match.group(1)) if match is not None else None


def next_link(header: str | None) -> str | None:
    """The target of ``rel="next"`` in an RFC 8288 ``Link`` header (as registries paginate)."""
    for match in _LINK_RE.finditer(header or ""):
        target, params = match.groups()
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').split():
                return target
    return None


def is_stream(content: bytes | Iterator[bytes] | None) -> bool:
    """Whether a request body is a one-shot stream rather than bytes."""
    return content is not None and not isinstance(content, (bytes, bytearray, memoryview))


def content_length(response: httpx.Response) -> int | None:
    """The ``Content-Length`` a response announces, or None."""
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


def is_retryable(error: RegistryError) -> bool:
    """Whether an error answer is one worth trying again (overload, restart, rate limit)."""
    return error.status in RETRY_STATUSES


def retry_after(failure: BaseException) -> float | None:
    """The wait a registry asked for in the answer behind ``failure`` (its Retry-After)."""
    return failure.retry_after if isinstance(failure, RegistryError) else None
