"""A large response body read straight from its connection's socket.

httpx (h11 under it) copies every 64 KiB of a body twice on its way out, which halves the
throughput of a large blob written to a file. So the exchange stays httpx's (auth, redirects,
``Range``, status checks) and only the body is read here: first what h11 had already read
past the headers, then the rest of its ``Content-Length`` with ``recv_into`` into one reused
buffer. h11 never sees that body, so the connection cannot be reused: closing the response
closes it (httpcore closes a connection whose answer was not read to its end).

Only where that is safe, as found on the installed httpx / httpcore / h11 (private attributes,
each checked): an HTTP/1.1 answer to a GET, with a ``Content-Length``, no transfer or content
coding, on httpcore's own socket stream (TLS included: an ``SSLSocket`` decrypts in
``recv_into``; not TLS inside an HTTPS proxy's TLS), nothing of the body read yet. Anything
else gets None, and the caller reads the body through httpx.

Private: used by :mod:`pants_oci.core.registry._downloads`.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import h11
import httpx

from pants_oci.core.registry._http import content_length

try:
    from httpcore._backends.sync import SyncStream as _SocketStream
except ImportError:  # another httpcore: bodies are read through httpx
    _SocketStream = None  # type: ignore[assignment,misc]

# httpx's BoundSyncStream -> httpx's ResponseStream -> httpcore's PoolByteStream ->
# HTTP11ConnectionByteStream -> HTTP11Connection -> its h11.Connection (httpx 0.28, httpcore 1.0)
_H11_PATH = ("_stream", "_httpcore_stream", "_stream", "_connection", "_h11_state")


def socket_body(
    response: httpx.Response, buffer: memoryview
) -> Iterator[bytes | memoryview] | None:
    """The body of ``response`` in pieces read straight from its socket, or None where it
    must be read through httpx. Pieces after the first are views of ``buffer`` (filled
    each time, up to its size): valid until the next piece is asked for. A broken, stalled
    or short body raises httpx's ReadError, ReadTimeout or RemoteProtocolError, as httpx
    would."""
    length = content_length(response)
    if length is None or not _plain_body(response):
        return None
    sock = _socket(response)
    connection = _h11_connection(response)
    if sock is None or connection is None or connection.their_state is not h11.SEND_BODY:
        return None
    head, closed = connection.trailing_data  # the body bytes h11 read with the headers
    if closed or len(head) > length:
        return None  # h11 knows more than the socket will tell: let it finish
    return _read(sock, head, length - len(head), buffer, response.request)


def _plain_body(response: httpx.Response) -> bool:
    """An HTTP/1.1 answer whose body is the bytes on the wire, none of them read yet."""
    headers = response.headers
    return (
        response.http_version == "HTTP/1.1"
        and response.request.method == "GET"
        and "Transfer-Encoding" not in headers
        and headers.get("Content-Encoding", "identity").strip().lower() == "identity"
        and not response.is_stream_consumed
        and response.num_bytes_downloaded == 0
    )


def _socket(response: httpx.Response) -> socket.socket | None:
    """The socket carrying the answer's HTTP bytes (decrypted, for TLS), or None."""
    stream = response.extensions.get("network_stream")
    # Not TLSinTLSStream (HTTPS through an HTTPS proxy): its socket carries the proxy's TLS.
    if _SocketStream is None or not isinstance(stream, _SocketStream):
        return None
    sock = stream.get_extra_info("socket")
    if not isinstance(sock, socket.socket):
        return None
    if response.url.scheme == "https" and not isinstance(sock, ssl.SSLSocket):
        return None
    return sock


def _h11_connection(response: httpx.Response) -> h11.Connection | None:
    target: object = response.stream
    for name in _H11_PATH:
        target = getattr(target, name, None)
    return target if isinstance(target, h11.Connection) else None


def _read(
    sock: socket.socket,
    head: bytes,
    remaining: int,
    buffer: memoryview,
    request: httpx.Request,
) -> Iterator[bytes | memoryview]:
    if head:
        yield head
    # httpcore's read timeout, for each receive (as httpcore applies it).
    sock.settimeout(request.extensions.get("timeout", {}).get("read"))
    received = len(head)
    while remaining:
        # Fill the buffer: fewer, larger pieces to hash and write.
        filled, failure = _fill(sock, buffer[: min(len(buffer), remaining)], request)
        remaining -= filled
        received += filled
        if filled:
            yield buffer[:filled]  # what came before a failure too: a resume starts after it
        if failure is not None:
            raise failure
        if not filled:
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body "
                f"(received {received} bytes, expected {received + remaining})",
                request=request,
            )


def _fill(
    sock: socket.socket, view: memoryview, request: httpx.Request
) -> tuple[int, httpx.TransportError | None]:
    """Receive into ``view`` until it is full or the connection ends (then less): how
    much came, and the failure that stopped it (as httpcore maps them for httpx)."""
    filled = 0
    try:
        while filled < len(view):
            count = sock.recv_into(view[filled:])
            if count == 0:
                break
            filled += count
    except OSError as exc:
        reason = str(exc) or type(exc).__name__
        failure: httpx.TransportError
        if isinstance(exc, socket.timeout):
            failure = httpx.ReadTimeout(reason, request=request)
        else:
            failure = httpx.ReadError(reason, request=request)
        failure.__cause__ = exc
        return filled, failure
    return filled, None
