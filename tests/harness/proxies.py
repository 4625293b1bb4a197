"""Loopback HTTP servers that sit in front of a real registry to produce faults on demand.

FaultProxy forwards every request to the registry (keeping the client's Host header, so the
registry's Location headers point back at the proxy) unless a rule matches it first:

    proxy.respond("GET", r"/blobs/", 503, headers={"Retry-After": "2"}, times=2)
    proxy.cut("PATCH", r"/blobs/uploads/", after_bytes=4096)   # break the connection midway
    proxy.add_headers("POST", r"/blobs/uploads/$", {"OCI-Chunk-Min-Length": "65536"})
    proxy.rewrite_body("GET", r"/manifests/", lambda path, body: (new_body, {"Content-Type": ...}))
    proxy.cut_response("GET", r"/blobs/", after_bytes=65536)   # headers, some body, then RST
    proxy.gzip("GET", r"/blobs/")      # gzip answers whose request accepts gzip, as CDNs do
    proxy.stall("*", r"/v2/app/")      # take the request, never answer (until the client hangs up)
    proxy.clear()                      # no more faults: forward everything

Every request is recorded (`proxy.requests`, `proxy.seen(method, pattern)`). Rules match
on the method and a regex searched in the path (query included) and fire `times` times
(None: forever); `rule.hits` counts them.

With `forward_for=["europe-docker.pkg.dev"]` it is a forward HTTP proxy instead (a client's
HTTP_PROXY): it takes absolute-form requests (`GET http://europe-docker.pkg.dev/v2/ HTTP/1.1`)
for those host names only and sends them to the upstream registry in origin form, Host
header kept, so that a loopback registry answers under another name (its Location headers
name that host too, and come back through the proxy). Anything else is answered 502 and
goes nowhere. Recorded paths (and rule patterns) are the absolute URLs.

RecordingServer serves fixed bodies and records the headers of every request: the far end
of a redirect, to prove what a client sent there.
"""

from __future__ import annotations

import gzip
import http.client
import re
import select
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

from tests.harness.processes import LOOPBACK

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
    }
)


@dataclass
class SeenRequest:
    method: str
    path: str  # with the query
    headers: dict[str, str]  # lowercase names
    body_length: int = 0


@dataclass
class Rule:
    method: str
    pattern: str
    # "respond" | "cut" | "cut_response" | "add_headers" | "rewrite_body" | "gzip" | "stall"
    action: str
    times: int | None = 1
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    after_bytes: int = 0
    rewrite: Callable[[str, bytes], tuple[bytes, dict[str, str]]] | None = None
    skip: int = 0  # matching requests to let through untouched before firing
    hits: int = 0
    skipped: int = 0
    fired: threading.Event = field(default_factory=threading.Event)  # set at the first hit

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return self.method in (method, "*") and re.search(self.pattern, path) is not None


def _reset(sock: socket.socket) -> None:
    """Close with a TCP RST, as a crashed peer or a dropped network does."""
    with suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        proxy = self.server.proxy
        headers = {name.lower(): value for name, value in self.headers.items()}
        seen = SeenRequest(self.command, self.path, headers)
        upstream_path = proxy.upstream_path(self.path)
        if upstream_path is None:  # a forward proxy asked for a host it does not stand in for
            proxy.record(seen)
            seen.body_length = len(self._read_body())
            self._send(502, {"Content-Type": "text/plain"}, b"not a host this proxy serves\n")
            return
        rules = proxy.take_rules(self.command, self.path)
        proxy.record(seen)
        cut = next((r for r in rules if r.action == "cut"), None)
        if cut is not None:
            self._cut(cut.after_bytes, upstream_path)
            return
        body = self._read_body()
        seen.body_length = len(body)
        if any(r.action == "stall" for r in rules):
            self._stall()
            return
        respond = next((r for r in rules if r.action == "respond"), None)
        if respond is not None:
            self._send(respond.status, respond.headers, respond.body)
            return
        status, upstream_headers, data = proxy.forward(
            self.command, upstream_path, self.headers, body
        )
        for rule in rules:
            replaced: dict[str, str] = {}
            if rule.action == "add_headers":
                upstream_headers.extend(rule.headers.items())
            elif rule.action == "rewrite_body" and rule.rewrite is not None:
                data, replaced = rule.rewrite(self.path, data)
            elif rule.action == "gzip" and "gzip" in headers.get("accept-encoding", "").lower():
                data = gzip.compress(data, mtime=0)
                replaced = {"Content-Encoding": "gzip"}
            else:
                continue
            if self.command != "HEAD":  # a HEAD's Content-Length is the GET's, keep it
                replaced = {**replaced, "Content-Length": str(len(data))}
            lowered = {name.lower() for name in replaced}
            upstream_headers = [(k, v) for k, v in upstream_headers if k.lower() not in lowered]
            upstream_headers += list(replaced.items())
        cut = next((r for r in rules if r.action == "cut_response"), None)
        if cut is not None:
            self._send_raw(status, upstream_headers, data[: cut.after_bytes], complete=False)
            self.close_connection = True
            _reset(self.connection)
            return
        self._send_raw(status, upstream_headers, data)

    def _stall(self) -> None:
        """Answer nothing: hold the connection, discarding anything more the client sends,
        until the client hangs up or the proxy stops (which shuts the connection down)."""
        self.close_connection = True
        proxy = self.server.proxy
        if not proxy.hold(self.connection):  # stopping already
            return
        try:
            while True:
                select.select([self.connection], [], [])
                try:
                    if not self.connection.recv(65536):
                        return
                except OSError:
                    return
        finally:
            proxy.release(self.connection)

    def _send(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self._send_raw(status, [*headers.items(), ("Content-Length", str(len(body)))], body)

    def _send_raw(
        self, status: int, headers: list[tuple[str, str]], body: bytes, *, complete: bool = True
    ) -> None:
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.wfile.flush()
        if not complete:
            with suppress(OSError):  # let the partial body reach the client before the RST
                self.connection.shutdown(socket.SHUT_WR)

    def _cut(self, after_bytes: int, upstream_path: str) -> None:
        """Forward the headers and `after_bytes` of the body, then break both connections.

        The upstream side is half-closed and drained first, so the registry has finished
        with the broken request (whatever it kept of it) before the client notices.
        """
        if after_bytes:
            partial = self.rfile.read(after_bytes)
            upstream = socket.create_connection(self.server.proxy.upstream_address, timeout=30)
            head = f"{self.command} {upstream_path} HTTP/1.1\r\n"
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    head += f"{name}: {value}\r\n"
            upstream.sendall(head.encode("latin-1") + b"Connection: close\r\n\r\n" + partial)
            upstream.shutdown(socket.SHUT_WR)
            try:
                while upstream.recv(65536):
                    pass
            except OSError:
                pass
            upstream.close()
        self.close_connection = True
        _reset(self.connection)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy


class _LoopbackServer:
    """`server` (already bound to loopback) served from a daemon thread; requests recorded."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.requests: list[SeenRequest] = []
        self._lock = threading.Lock()
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def record(self, seen: SeenRequest) -> None:
        with self._lock:
            self.requests.append(seen)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class FaultProxy(_LoopbackServer):
    """A fault-injecting HTTP proxy on loopback in front of `upstream` (a plain-HTTP URL);
    a forward proxy for the host names `forward_for` when given (see the module docstring)."""

    def __init__(
        self, upstream: str, *, relative_locations: bool = False, forward_for: Iterable[str] = ()
    ) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"FaultProxy needs an http://host:port upstream, got {upstream!r}")
        self.upstream_address = (parts.hostname, parts.port)
        self.relative_locations = relative_locations
        self.forward_for = frozenset(host.lower() for host in forward_for)
        self.rules: list[Rule] = []
        self._held: set[socket.socket] = set()  # stalled connections
        self._stopping = False
        server = _ProxyServer((LOOPBACK, 0), _ProxyHandler)
        server.proxy = self
        super().__init__(server)
        self.host = f"{LOOPBACK}:{self.port}"
        self.url = f"http://{self.host}"

    # --- rules -------------------------------------------------------------------------------

    def _add(self, rule: Rule) -> Rule:
        with self._lock:
            self.rules.append(rule)
        return rule

    def respond(
        self,
        method: str,
        pattern: str,
        status: int,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        times: int | None = 1,
        skip: int = 0,
    ) -> Rule:
        """Answer matching requests with `status` instead of forwarding them."""
        return self._add(
            Rule(
                method,
                pattern,
                "respond",
                times,
                status=status,
                headers=dict(headers or {}),
                body=body,
                skip=skip,
            )
        )

    def cut(
        self,
        method: str,
        pattern: str,
        *,
        after_bytes: int,
        times: int | None = 1,
        skip: int = 0,
    ) -> Rule:
        """Break matching requests' connections after forwarding `after_bytes` of the body."""
        return self._add(Rule(method, pattern, "cut", times, after_bytes=after_bytes, skip=skip))

    def cut_response(
        self,
        method: str,
        pattern: str,
        *,
        after_bytes: int,
        times: int | None = 1,
        skip: int = 0,
    ) -> Rule:
        """Forward matching requests, then send the answer's headers and only `after_bytes`
        of its body before breaking the connection: a download that breaks midway."""
        return self._add(
            Rule(method, pattern, "cut_response", times, after_bytes=after_bytes, skip=skip)
        )

    def gzip(self, method: str, pattern: str, *, times: int | None = None) -> Rule:
        """gzip the registry's answers to matching requests that accept gzip
        (Content-Encoding: gzip), as a compressing proxy or CDN does; others pass as they are."""
        return self._add(Rule(method, pattern, "gzip", times))

    def add_headers(
        self, method: str, pattern: str, headers: Mapping[str, str], *, times: int | None = None
    ) -> Rule:
        """Add headers to the registry's answers to matching requests."""
        return self._add(Rule(method, pattern, "add_headers", times, headers=dict(headers)))

    def rewrite_body(
        self,
        method: str,
        pattern: str,
        rewrite: Callable[[str, bytes], tuple[bytes, dict[str, str]]],
        *,
        times: int | None = None,
    ) -> Rule:
        """Replace the registry's answer: rewrite(path, body) -> (new body, headers to set)."""
        return self._add(Rule(method, pattern, "rewrite_body", times, rewrite=rewrite))

    def stall(self, method: str, pattern: str, *, times: int | None = 1, skip: int = 0) -> Rule:
        """Take matching requests (the whole body) and never answer them, as a registry that
        hangs does: the connection stays open until the client gives up on it."""
        return self._add(Rule(method, pattern, "stall", times, skip=skip))

    def clear(self) -> None:
        """Drop every rule: from now on every request is forwarded as it is."""
        with self._lock:
            self.rules.clear()

    def take_rules(self, method: str, path: str) -> list[Rule]:
        with self._lock:
            fired = []
            for rule in self.rules:
                if not rule.matches(method, path):
                    continue
                if rule.skipped < rule.skip:
                    rule.skipped += 1
                    continue
                rule.hits += 1
                rule.fired.set()
                fired.append(rule)
            return fired

    # --- traffic ------------------------------------------------------------------------------

    def hold(self, connection: socket.socket) -> bool:
        """Keep a stalled connection for stop() to shut down; False once stopping."""
        with self._lock:
            if self._stopping:
                return False
            self._held.add(connection)
            return True

    def release(self, connection: socket.socket) -> None:
        with self._lock:
            self._held.discard(connection)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            held = list(self._held)
        for connection in held:  # their handlers see the end of input and return
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        super().stop()

    def upstream_path(self, target: str) -> str | None:
        """The origin-form path to send upstream for a request-target; None when a forward
        proxy must refuse it (not absolute-form http:// for one of its host names)."""
        if not self.forward_for:
            return target
        parts = urlsplit(target)
        if parts.scheme != "http" or (parts.hostname or "").lower() not in self.forward_for:
            return None
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def seen(self, method: str | None = None, pattern: str | None = None) -> list[SeenRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method)
                and (pattern is None or re.search(pattern, r.path))
            ]

    def forward(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.upstream_address, timeout=60)
        try:
            out = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
            out["Content-Length"] = str(len(body))
            if method in ("GET", "HEAD", "DELETE") and not body:
                out.pop("Content-Length")
            connection.request(method, path, body=body or None, headers=out)
            response = connection.getresponse()
            data = response.read()
            answer: list[tuple[str, str]] = []
            for name, value in response.getheaders():
                lowered = name.lower()
                if lowered in _HOP_BY_HOP or (lowered == "content-length" and method != "HEAD"):
                    continue
                if lowered == "location" and self.relative_locations:
                    parts = urlsplit(value)
                    answer.append((name, parts.path + (f"?{parts.query}" if parts.query else "")))
                else:
                    answer.append((name, value))
            if method != "HEAD":
                answer.append(("Content-Length", str(len(data))))
            return response.status, answer, data
        finally:
            connection.close()


class _RecordingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _RecordingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        owner = self.server.owner
        owner.record(
            SeenRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        )
        body = owner.files.get(urlsplit(self.path).path)
        status = 200 if body is not None else 404
        body = body if body is not None else b"not found"
        self.send_response_only(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    do_GET = do_HEAD = _serve


class _RecordingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: RecordingServer


class RecordingServer(_LoopbackServer):
    """Serves `files` ({path: bytes}) on loopback and records every request's headers.

    `hostname` is the name put in `url` (e.g. "localhost", another host than 127.0.0.1
    as far as a client's origin checks go); the server listens on 127.0.0.1.
    """

    def __init__(self, files: Mapping[str, bytes], *, hostname: str = "localhost") -> None:
        self.files = dict(files)
        server = _RecordingHTTPServer((LOOPBACK, 0), _RecordingHandler)
        server.owner = self
        super().__init__(server)
        self.url = f"http://{hostname}:{self.port}"


@contextmanager
def fault_proxy(upstream: str, **kwargs: Any) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, **kwargs)
    try:
        yield proxy
    finally:
        proxy.stop()
