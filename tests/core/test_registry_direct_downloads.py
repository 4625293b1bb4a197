"""Large blobs downloaded to a file read their body straight from the socket (see
core/registry/_socket_body.py): in every registry mode, TLS included, still verified, held
to their size and resumed with Range when the connection breaks or stalls midway."""

from __future__ import annotations

import io
import logging
import secrets
import socket
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from pants_oci.core.digest import sha256_of_bytes
from pants_oci.core.errors import DigestMismatchError, TransportError
from pants_oci.core.registry import RegistryClient
from pants_oci.core.registry._downloads import DIRECT_MIN
from pants_oci.core.transport import TransportOptions
from tests.core.registry_support import (
    MODE_FIXTURES,
    RecordedSleeps,
    client_for,
    proxy_fixture,  # noqa: F401 - the `proxy` fixture
    sleeps_of,
)
from tests.harness.proxies import FaultProxy, RecordingServer
from tests.harness.registry import Registry

_LOGGER = "pants_oci.core.registry._downloads"
_FROM_SOCKET = "bytes from the socket"


@pytest.fixture(params=MODE_FIXTURES)
def registry(request: pytest.FixtureRequest) -> Registry:
    mode_registry: Registry = request.getfixturevalue(request.param)
    return mode_registry


@pytest.fixture(name="direct_log")
def direct_log_fixture(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=_LOGGER)
    return caplog


def direct_reads(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The lengths of the bodies read from the socket, as the download logged them."""
    return [
        int(r.getMessage().split(" reading ")[1].split()[0])
        for r in caplog.records
        if r.name == _LOGGER and _FROM_SOCKET in r.getMessage()
    ]


def test_a_large_blob_to_a_file_is_read_from_the_socket_in_every_mode(
    registry: Registry, unique_repo: str, tmp_path: Path, direct_log: pytest.LogCaptureFixture
) -> None:
    data = secrets.token_bytes(DIRECT_MIN + 12_345)
    with client_for(registry, unique_repo) as client:
        digest, _ = client.upload_blob(data)
        progress: list[tuple[int, int | None]] = []
        size = client.get_blob(
            digest, tmp_path / "blob", progress=lambda d, t: progress.append((d, t))
        )
        assert direct_reads(direct_log) == [len(data)]
        assert size == len(data) and (tmp_path / "blob").read_bytes() == data
        assert progress[-1] == (len(data), len(data))
        assert [done for done, _ in progress] == sorted(done for done, _ in progress)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["blob"]  # no temporary file

        # The connection was closed, not pooled half-read: the client goes on working,
        # in parallel too.
        assert client.blob_size(digest) == len(data)
        both = client.download_blobs({digest: tmp_path / "a", str(digest): tmp_path / "b"})
        assert both == [len(data), len(data)]
        assert client.get_blob(digest, tmp_path / "c", size=len(data)) == len(data)
        assert len(direct_reads(direct_log)) == 4
        assert (tmp_path / "a").read_bytes() == (tmp_path / "c").read_bytes() == data

        # A caller's stream gets bytes it may keep, through httpx, as does iter_blob.
        buffer = io.BytesIO()
        client.get_blob(digest, buffer)
        assert b"".join(client.iter_blob(digest)) == data == buffer.getvalue()
        assert len(direct_reads(direct_log)) == 4


def test_a_blob_under_the_threshold_is_read_through_httpx(
    registry_anonymous: Registry,
    unique_repo: str,
    tmp_path: Path,
    direct_log: pytest.LogCaptureFixture,
) -> None:
    data = secrets.token_bytes(DIRECT_MIN - 1)
    with client_for(registry_anonymous, unique_repo) as client:
        digest, _ = client.upload_blob(data)
        assert client.get_blob(digest, tmp_path / "blob") == len(data)
    assert (tmp_path / "blob").read_bytes() == data
    assert direct_reads(direct_log) == []


@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_wrong_bytes_read_from_the_socket_fail_and_leave_nothing(
    registry_anonymous: Registry,
    unique_repo: str,
    tmp_path: Path,
    direct_log: pytest.LogCaptureFixture,
    position: str,
) -> None:
    """The registry's storage altered (same size, one byte off): at the first byte (read by
    h11 with the headers), in the middle, or at the last (in the final piece)."""
    data = secrets.token_bytes(DIRECT_MIN + 1000)
    offset = {"first": 0, "middle": len(data) // 2, "last": len(data) - 1}[position]
    tampered = data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :]
    with client_for(registry_anonymous, unique_repo) as client:
        digest, _ = client.upload_blob(data)
        registry_anonymous.blob_path(str(digest)).write_bytes(tampered)
        destination = tmp_path / "downloads" / "blob"
        destination.parent.mkdir()
        with pytest.raises(DigestMismatchError) as error:
            client.get_blob(digest, destination, size=len(data))
    assert error.value.expected == str(digest)
    assert error.value.actual == str(sha256_of_bytes(tampered))
    assert direct_reads(direct_log) == [len(data)]
    assert list(destination.parent.iterdir()) == []  # no file, no temporary file


def test_a_blob_redirected_to_storage_is_read_from_the_socket_there(
    registry_anonymous: Registry,
    proxy: FaultProxy,
    unique_repo: str,
    tmp_path: Path,
    direct_log: pytest.LogCaptureFixture,
) -> None:
    data = secrets.token_bytes(DIRECT_MIN + 5000)
    digest = sha256_of_bytes(data)
    files = {"/good": data, "/bad": data[:-1] + bytes([data[-1] ^ 1])}
    with (
        RecordingServer(files) as storage,
        client_for(registry_anonymous, unique_repo, host=proxy.host) as client,
    ):

        def redirect(path: str) -> None:
            proxy.respond("GET", rf"/blobs/{digest}", 307, headers={"Location": storage.url + path})

        redirect("/good")
        assert client.get_blob(digest, tmp_path / "good") == len(data)
        redirect("/bad")
        with pytest.raises(DigestMismatchError):
            client.get_blob(digest, tmp_path / "bad")
    assert [r.path for r in storage.requests] == ["/good", "/bad"]
    assert direct_reads(direct_log) == [len(data), len(data)]
    assert [p.name for p in tmp_path.iterdir()] == ["good"]
    assert (tmp_path / "good").read_bytes() == data


def test_a_body_cut_midway_resumes_with_a_range_read_from_the_socket_too(
    registry_anonymous: Registry,
    proxy: FaultProxy,
    unique_repo: str,
    tmp_path: Path,
    direct_log: pytest.LogCaptureFixture,
) -> None:
    data = secrets.token_bytes(2 * DIRECT_MIN + 3_000_000)
    digest = sha256_of_bytes(data)
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        client.upload_blob(data)
        proxy.cut_response("GET", rf"/blobs/{digest}", after_bytes=2_500_000)
        progress: list[tuple[int, int | None]] = []
        size = client.get_blob(
            digest, tmp_path / "blob", progress=lambda d, t: progress.append((d, t))
        )
    assert size == len(data) and (tmp_path / "blob").read_bytes() == data
    assert progress[-1] == (len(data), len(data))
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    ranges = [r.headers.get("range") for r in proxy.seen("GET", rf"/blobs/{digest}")]
    assert ranges[0] is None and len(ranges) == 2
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))  # type: ignore[union-attr]
    assert 0 < resumed_at <= 2_500_000
    # Both answers were read from the socket: the whole blob, then what was left of it.
    assert direct_reads(direct_log) == [len(data), len(data) - resumed_at]
    assert len(sleeps_of(client)) == 1  # one backoff for the break


def test_a_body_that_keeps_breaking_gives_up_and_leaves_nothing(
    registry_anonymous: Registry,
    proxy: FaultProxy,
    unique_repo: str,
    tmp_path: Path,
    direct_log: pytest.LogCaptureFixture,
) -> None:
    data = secrets.token_bytes(DIRECT_MIN + 1_000_000)
    digest = sha256_of_bytes(data)
    with client_for(registry_anonymous, unique_repo, host=proxy.host, max_retries=1) as client:
        client.upload_blob(data)
        # The answer breaks 100 kB before its end, the resumed one at once.
        proxy.cut_response("GET", rf"/blobs/{digest}", after_bytes=len(data) - 100_000)
        proxy.cut_response("GET", rf"/blobs/{digest}", after_bytes=0, skip=1)
        with pytest.raises(TransportError) as error:
            client.get_blob(digest, tmp_path / "blob")
    assert error.value.dropped and error.value.registry == proxy.host
    assert len(proxy.seen("GET", rf"/blobs/{digest}")) == 2
    # (A reset discards what the client had not read yet: where the second GET resumed,
    # and so whether it was read from the socket too, varies.)
    assert direct_reads(direct_log)[0] == len(data)
    assert list(tmp_path.iterdir()) == []


class _ScriptedServer:
    """Answers the first requests, one per connection, with ``answers`` (bytes on the
    wire), in turn; then says nothing more on any connection until the test ends."""

    def __init__(self, *answers: bytes) -> None:
        self._answers = list(answers)
        self._held: list[socket.socket] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed: the test is over
                return
            self._held.append(connection)
            connection.settimeout(10)  # never hang the test on a client that sends nothing
            request = b""
            with suppress(OSError):
                while b"\r\n\r\n" not in request and (data := connection.recv(65536)):
                    request += data
                if self._answers:
                    connection.sendall(self._answers.pop(0))

    def __enter__(self) -> _ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join()
        for connection in self._held:
            connection.close()


def _client(host: str, **options: Any) -> RegistryClient:
    options.setdefault("sleep", RecordedSleeps())
    return RegistryClient(host, "app", auth=httpx.Auth(), options=TransportOptions(**options))


def test_a_chunked_body_is_read_through_httpx(
    tmp_path: Path, direct_log: pytest.LogCaptureFixture
) -> None:
    data = secrets.token_bytes(DIRECT_MIN + 1000)
    half = len(data) // 2
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in (data[:half], data[half:], b"")
    )
    # A Content-Length too, which Transfer-Encoding overrides (RFC 9112 6.3).
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\nTransfer-Encoding: chunked\r\n\r\n"
    with _ScriptedServer(head.encode() + chunked) as server, _client(server.host) as client:
        assert client.get_blob(sha256_of_bytes(data), tmp_path / "blob") == len(data)
    assert (tmp_path / "blob").read_bytes() == data
    assert direct_reads(direct_log) == []


def test_a_body_read_from_the_socket_that_stalls_times_out_and_resumes(
    tmp_path: Path, direct_log: pytest.LogCaptureFixture
) -> None:
    data = secrets.token_bytes(DIRECT_MIN + 1000)
    # The headers of the blob and 300 kB of it; then nothing (the resumed GET included).
    answer = f"HTTP/1.1 200 OK\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data[:300_000]
    with (
        _ScriptedServer(answer) as server,
        _client(server.host, read_timeout=0.2, max_retries=1) as client,
        pytest.raises(TransportError) as error,
    ):
        client.get_blob(sha256_of_bytes(data), tmp_path / "blob")
    # The body stalled (a backoff, then a resumed GET, which got no answer in 0.2 s).
    assert direct_reads(direct_log) == [len(data)]
    assert len(sleeps_of(client)) == 1
    assert error.value.timeout and "did not answer within 0.2 s" in str(error.value)
    assert list(tmp_path.iterdir()) == []
