"""RegistryClient against the faults a review found: empty or compressed bodies, tokens that
die mid-upload, downloads that break midway, the /v2/ ping, secrets in logs, and checks no
earlier test reached (real registries behind tests/harness/proxies.py where possible)."""

from __future__ import annotations

import io
import json
import logging
import secrets
import socket
import threading
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from pants_oci.core import media_types
from pants_oci.core.auth import RegistryAuth
from pants_oci.core.digest import sha256_of_bytes
from pants_oci.core.errors import (
    DigestMismatchError,
    NotFoundError,
    RegistryError,
    TransportError,
    UnauthorizedError,
)
from pants_oci.core.models import Platform
from pants_oci.core.registry import RegistryClient
from pants_oci.core.transport import TransportOptions, make_http_client
from tests.core.auth_helpers import FakeClock, keychain_for
from tests.core.registry_support import (
    MODE_FIXTURES,
    RecordedSleeps,
    client_for,
    image_manifest,
    options_for,
    proxy_fixture,  # noqa: F401 - the `proxy` fixture
    push_manifest,
    sleeps_of,
    unique_config,
)
from tests.harness.fixtures import RegistryFactory
from tests.harness.proxies import FaultProxy, RecordingServer
from tests.harness.registry import Registry

UPLOADS = r"/blobs/uploads/"


@pytest.fixture(params=MODE_FIXTURES)
def registry(request: pytest.FixtureRequest) -> Registry:
    mode_registry: Registry = request.getfixturevalue(request.param)
    return mode_registry


def _bearer_challenge(registry: Registry, repository: str) -> str:
    assert registry.token_service is not None
    return (
        f'Bearer realm="{registry.token_service.realm}",'
        f'service="{registry.token_service.service}",'
        f'scope="repository:{repository}:pull,push"'
    )


class _Body(httpx.SyncByteStream):
    """A response body that streams (httpx reads a body given as bytes at once)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data


class _Pipe(io.RawIOBase):
    """A readable stream that cannot seek."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


# --- An empty body is verified too ----------------------------------------------------------


def test_a_blob_emptied_on_the_registry_fails_verification(
    registry_factory: RegistryFactory, tmp_path: Path, unique_repo: str
) -> None:
    registry = registry_factory("anonymous")
    data = secrets.token_bytes(10_000)
    with client_for(registry, unique_repo) as client:
        digest, _ = client.upload_blob(data)
        registry.blob_path(str(digest)).write_bytes(b"")

        destination = tmp_path / "downloads" / "blob"
        destination.parent.mkdir()
        with pytest.raises(DigestMismatchError) as error:
            client.get_blob(digest, destination)
        assert error.value.expected == str(digest)
        assert error.value.actual == str(sha256_of_bytes(b""))
        assert list(destination.parent.iterdir()) == []  # no file, no temporary file

        with pytest.raises(DigestMismatchError):
            list(client.iter_blob(digest))
        with pytest.raises(DigestMismatchError):
            client.download_blobs({digest: destination})
        assert list(destination.parent.iterdir()) == []


# --- Compression on the way -----------------------------------------------------------------


def test_a_compressing_proxy_is_asked_for_identity_and_the_bytes_verify(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str, tmp_path: Path
) -> None:
    data = secrets.token_bytes(50_000) + b"\0" * 200_000  # compressible
    proxy.gzip("*", r"/manifests/")
    proxy.gzip("GET", r"/blobs/")
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        digest, _ = client.upload_blob(data)
        manifest_digest, raw = push_manifest(client, tag="v1")
        # The proxy does compress for a client that accepts gzip (httpx's default).
        with httpx.Client() as plain:
            answer = plain.get(f"{proxy.url}/v2/{unique_repo}/blobs/{digest}")
        assert answer.headers["content-encoding"] == "gzip" and answer.content == data

        assert client.get_manifest("v1").to_bytes() == raw
        assert client.get_manifest(manifest_digest).to_bytes() == raw
        head = client.head_manifest("v1")
        assert head is not None and head.digest == manifest_digest
        assert b"".join(client.iter_blob(digest)) == data
        assert client.get_blob(digest, tmp_path / "blob") == len(data)
        assert (tmp_path / "blob").read_bytes() == data
    ours = [r for r in proxy.seen() if r.headers.get("user-agent") == "pants-oci"]
    assert ours and all(r.headers.get("accept-encoding") == "identity" for r in ours)


def test_a_shared_http_client_also_asks_for_identity(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    # A plain httpx.Client (as a caller may share) would ask for gzip by default.
    data = secrets.token_bytes(20_000) + b"\0" * 50_000
    proxy.gzip("GET", r"/blobs/")
    with httpx.Client() as http:
        client = RegistryClient(proxy.host, unique_repo, auth=RegistryAuth(None), http_client=http)
        digest, _ = client.upload_blob(data)
        assert b"".join(client.iter_blob(digest)) == data
    assert all(r.headers.get("accept-encoding") == "identity" for r in proxy.seen())


# --- A token that dies while a streamed body is on its way ----------------------------------


@pytest.fixture
def token_proxy(registry_token: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry_token.url) as fault_proxy:
        yield fault_proxy


@pytest.mark.parametrize(
    ("source_kind", "method"),
    [("bytes", "PUT"), ("file", "PUT"), ("file-no-digest", "PATCH")],
)
def test_a_revoked_token_mid_upload_restarts_the_upload(
    registry_token: Registry,
    token_proxy: FaultProxy,
    unique_repo: str,
    tmp_path: Path,
    *,
    source_kind: str,
    method: str,
) -> None:
    data = secrets.token_bytes(100_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    # The registry refuses the token it accepted for the POST (revoked): a fresh one is needed.
    rule = token_proxy.respond(
        method,
        UPLOADS,
        401,
        headers={"WWW-Authenticate": _bearer_challenge(registry_token, unique_repo)},
        body=b'{"errors":[{"code":"UNAUTHORIZED","message":"token revoked"}]}',
    )
    with client_for(registry_token, unique_repo, host=token_proxy.host) as client:
        if source_kind == "bytes":
            result = client.upload_blob(data)
        elif source_kind == "file":
            result = client.upload_blob(path, digest=sha256_of_bytes(data))
        else:
            result = client.upload_blob(path)
        assert result == (sha256_of_bytes(data), len(data))
        assert b"".join(client.iter_blob(sha256_of_bytes(data))) == data
    assert rule.hits == 1
    methods = [r.method for r in token_proxy.seen(pattern=UPLOADS)]
    # POST (401: no token yet), POST, the refused streamed request (not re-sent: its body
    # is gone), then all over again: the stale token was dropped, so the POST gets a new one.
    expected = ["POST", "POST", method, "POST", "POST", method]
    assert methods == ([*expected, "PUT"] if method == "PATCH" else expected)


def test_a_revoked_token_mid_upload_of_an_unseekable_stream_is_a_clear_error(
    registry_token: Registry, token_proxy: FaultProxy, unique_repo: str
) -> None:
    token_proxy.respond(
        "PATCH",
        UPLOADS,
        401,
        headers={"WWW-Authenticate": _bearer_challenge(registry_token, unique_repo)},
    )
    with (
        client_for(registry_token, unique_repo, host=token_proxy.host) as client,
        pytest.raises(UnauthorizedError) as error,
    ):
        client.upload_blob(_Pipe(secrets.token_bytes(50_000)))
    assert "streamed" in str(error.value) and "cannot be sent again" in str(error.value)
    assert error.value.status == 401 and error.value.registry == token_proxy.host


def test_a_token_expiring_between_post_and_put_is_refreshed_before_the_put(
    registry_factory: RegistryFactory, unique_repo: str
) -> None:
    registry = registry_factory("token")
    clock = FakeClock()
    options = options_for(registry)
    expired = {"done": False}

    def expire_after_the_post(response: httpx.Response) -> None:
        request = response.request
        if request.method == "POST" and response.status_code == 202 and not expired["done"]:
            expired["done"] = True
            clock.offset += 3600  # every cached token is past its reuse deadline now

    http = make_http_client(options, registry.host)
    http.event_hooks = {"response": [expire_after_the_post]}
    auth = RegistryAuth(keychain_for(registry), clock=clock)
    data = secrets.token_bytes(100_000)
    with http, RegistryClient(registry.host, unique_repo, auth=auth, options=options,
                              http_client=http) as client:  # fmt: skip
        assert client.upload_blob(data) == (sha256_of_bytes(data), len(data))
        assert b"".join(client.iter_blob(sha256_of_bytes(data))) == data
    assert expired["done"]
    assert registry.token_service is not None
    stats = registry.token_service.stats()
    # The token for the PUT was fetched before it (no 401, no restart: one POST only).
    post_then_put = [s for s in stats if any("push" in scope for scope in s["scopes"])]
    assert len(post_then_put) == 2


# --- Downloads that break midway ------------------------------------------------------------


def test_a_download_cut_midway_resumes_with_a_range_request(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str, tmp_path: Path
) -> None:
    data = secrets.token_bytes(1_000_000)
    digest = sha256_of_bytes(data)
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        client.upload_blob(data)

        proxy.cut_response("GET", rf"/blobs/{digest}", after_bytes=300_000)
        progress: list[tuple[int, int | None]] = []
        size = client.get_blob(
            digest, tmp_path / "blob", progress=lambda d, t: progress.append((d, t))
        )
        assert size == len(data)
        assert (tmp_path / "blob").read_bytes() == data
        assert progress[-1] == (len(data), len(data))
        ranges = [r.headers.get("range") for r in proxy.seen("GET", rf"/blobs/{digest}")]
        assert ranges[0] is None and len(ranges) == 2
        resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))  # type: ignore[union-attr]
        assert 0 < resumed_at <= 300_000

        proxy.cut_response("GET", rf"/blobs/{digest}", after_bytes=500_000, times=2)
        assert b"".join(client.iter_blob(digest)) == data
        assert client.download_blobs({digest: tmp_path / "again"}) == [len(data)]
        assert (tmp_path / "again").read_bytes() == data
    assert len(sleeps_of(client)) == 3  # one backoff per break


def test_a_download_that_keeps_breaking_gives_up_with_a_transport_error(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str, tmp_path: Path
) -> None:
    data = secrets.token_bytes(200_000)
    digest = sha256_of_bytes(data)
    with client_for(registry_anonymous, unique_repo, host=proxy.host, max_retries=2) as client:
        client.upload_blob(data)
        proxy.cut_response("GET", rf"/blobs/{digest}", after_bytes=1000, times=None)
        with pytest.raises(TransportError) as error:
            client.get_blob(digest, tmp_path / "blob")
    assert error.value.registry == proxy.host
    assert len(proxy.seen("GET", rf"/blobs/{digest}")) == 3
    assert not (tmp_path / "blob").exists()


def test_a_resumed_download_from_a_server_that_ignores_range_skips_what_it_has() -> None:
    """Storage that answers a Range request with the whole blob (200): mock transport, since
    distribution and the proxies always honour Range."""
    data = secrets.token_bytes(10_000)
    digest = sha256_of_bytes(data)
    ranges: list[str | None] = []

    class Broken(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield data[:4000]
            raise httpx.ReadError("connection reset by peer")

    def registry(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers.get("Range"))
        if len(ranges) == 1:
            return httpx.Response(200, headers={"Content-Length": str(len(data))}, stream=Broken())
        return httpx.Response(200, stream=_Body(data))

    http = httpx.Client(transport=httpx.MockTransport(registry))
    client = RegistryClient(
        "127.0.0.1:1", "app", auth=httpx.Auth(), http_client=http,
        options=TransportOptions(sleep=RecordedSleeps()),
    )  # fmt: skip
    assert b"".join(client.iter_blob(digest)) == data
    assert ranges == [None, "bytes=4000-"]


# --- /v2/ ------------------------------------------------------------------------------------


def test_ping_in_every_mode(registry: Registry, unique_repo: str) -> None:
    with client_for(registry, unique_repo) as client:
        client.ping()
        client.ping()  # with what the first one learned
    if registry.username is not None:
        bad = secrets.token_hex(8)
        with (
            client_for(registry, unique_repo, credentials=("tester", bad)) as wrong,
            pytest.raises(UnauthorizedError) as error,
        ):
            wrong.ping()
        assert error.value.registry == registry.host and bad not in str(error.value)
    if registry.mode == "basic":
        with (
            client_for(registry, unique_repo, credentials=None) as anonymous,
            pytest.raises(UnauthorizedError),
        ):
            anonymous.ping()


def test_ping_of_something_else_and_of_nothing() -> None:
    from tests.harness.processes import free_port

    with RecordingServer({}, hostname="127.0.0.1") as server:
        host = server.url.removeprefix("http://")
        with (
            RegistryClient(host, "app", auth=RegistryAuth(None)) as client,
            pytest.raises(RegistryError, match="not an OCI distribution registry"),
        ):
            client.ping()
    options = TransportOptions(sleep=RecordedSleeps(), max_retries=0)
    client = RegistryClient(f"127.0.0.1:{free_port()}", "app", auth=httpx.Auth(), options=options)
    with client, pytest.raises(TransportError, match="cannot reach registry"):
        client.ping()


# --- Logs -----------------------------------------------------------------------------------


def test_presigned_urls_do_not_reach_the_logs(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str, caplog: Any
) -> None:
    data = secrets.token_bytes(5000)
    digest = sha256_of_bytes(data)
    signature = secrets.token_hex(16)
    query = f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature={signature}"
    with (
        RecordingServer({f"/storage/{digest.hex}": data}) as storage,
        client_for(registry_anonymous, unique_repo, host=proxy.host) as client,
    ):
        client.upload_blob(data)
        proxy.respond(
            "GET",
            rf"/blobs/{digest}",
            307,
            headers={"Location": f"{storage.url}/storage/{digest.hex}?{query}"},
        )
        with caplog.at_level(logging.INFO):
            assert b"".join(client.iter_blob(digest)) == data
    assert storage.requests[0].path.endswith(signature)  # the signature did go to storage
    messages = [record.getMessage() for record in caplog.records]
    assert any(f"/storage/{digest.hex}" in m for m in messages)  # httpx did log the request
    assert not any(signature in m or "X-Amz-Signature" in m for m in messages)


# --- The registry's message -----------------------------------------------------------------


def test_registry_errors_carry_the_registry_code_and_message(
    registry_anonymous: Registry, unique_repo: str
) -> None:
    with client_for(registry_anonymous, unique_repo) as client:
        push_manifest(client)
        with pytest.raises(NotFoundError) as error:
            client.get_manifest("nope")
    assert error.value.code == "MANIFEST_UNKNOWN"
    assert error.value.message == "manifest unknown"
    assert "MANIFEST_UNKNOWN: manifest unknown" in str(error.value)


# --- Default platform -----------------------------------------------------------------------


def test_an_index_without_a_platform_asked_resolves_to_this_machine(
    registry_anonymous: Registry, unique_repo: str
) -> None:
    host = Platform.host_linux()
    other = "s390x" if host.architecture != "s390x" else "amd64"
    entries, digests = [], {}
    with client_for(registry_anonymous, unique_repo) as client:
        for architecture in (other, host.architecture):  # the host's is not first
            config = unique_config(architecture)
            client.upload_blob(config)
            raw = image_manifest(config, [], media_types.OCI_MANIFEST)
            digests[architecture] = client.put_manifest(raw)
            platform = {"os": "linux", "architecture": architecture}
            if architecture == host.architecture and host.variant:
                platform["variant"] = host.variant
            entries.append(
                {
                    "mediaType": media_types.OCI_MANIFEST,
                    "digest": str(digests[architecture]),
                    "size": len(raw),
                    "platform": platform,
                }
            )
        index = {"schemaVersion": 2, "mediaType": media_types.OCI_INDEX, "manifests": entries}
        client.put_manifest(json.dumps(index).encode(), tag="multi")
        assert client.get_image_manifest("multi").digest == digests[host.architecture]


# --- Digests the registry announces ---------------------------------------------------------


def test_a_wrong_docker_content_digest_is_caught_everywhere(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    wrong = str(sha256_of_bytes(b"something else"))

    def lie(_path: str, body: bytes) -> tuple[bytes, dict[str, str]]:
        return body, {"Docker-Content-Digest": wrong}

    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        digest, raw = push_manifest(client, tag="v1")

        rule = proxy.rewrite_body("HEAD", r"/manifests/", lie, times=1)
        with pytest.raises(DigestMismatchError) as head:
            client.head_manifest(digest)
        assert (head.value.expected, head.value.actual) == (str(digest), wrong)
        assert rule.hits == 1

        proxy.rewrite_body("PUT", r"/manifests/", lie, times=1)
        with pytest.raises(DigestMismatchError) as put:
            client.put_manifest(raw, tag="v2")
        assert {put.value.expected, put.value.actual} == {wrong, str(digest)}

        blob = secrets.token_bytes(3000)
        proxy.rewrite_body("PUT", UPLOADS, lie, times=1)
        with pytest.raises(DigestMismatchError) as upload:
            client.upload_blob(blob)
        assert (upload.value.expected, upload.value.actual) == (str(sha256_of_bytes(blob)), wrong)


# --- Redirects that downgrade ---------------------------------------------------------------


def test_a_redirect_from_https_to_http_gets_no_credentials() -> None:
    """Same host, plain HTTP: no Authorization may follow (mock transport: the harness's
    proxies speak plain HTTP only)."""
    data = secrets.token_bytes(1000)
    digest = sha256_of_bytes(data)
    seen: list[httpx.Request] = []

    def registry(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.scheme == "https":
            location = f"http://registry.example.com/storage/{digest.hex}?sig=1"
            return httpx.Response(307, headers={"Location": location})
        return httpx.Response(200, stream=_Body(data))

    http = httpx.Client(transport=httpx.MockTransport(registry))
    client = RegistryClient(
        "registry.example.com", "app", auth=httpx.BasicAuth("user", "secret"),
        http_client=http, options=TransportOptions(sleep=RecordedSleeps()),
    )  # fmt: skip
    assert b"".join(client.iter_blob(digest)) == data
    assert [r.url.scheme for r in seen] == ["https", "http"]
    assert "authorization" in seen[0].headers
    assert "authorization" not in seen[1].headers


# --- A registry that never answers ----------------------------------------------------------


def test_a_stalled_registry_is_a_transport_error_naming_the_timeout() -> None:
    # Listens (so connecting succeeds, via the backlog) but never accepts nor answers.
    with socket.create_server(("127.0.0.1", 0)) as server:
        host = f"127.0.0.1:{server.getsockname()[1]}"
        options = TransportOptions(read_timeout=0.2, max_retries=1, sleep=RecordedSleeps())
        with (
            RegistryClient(host, "app", auth=httpx.Auth(), options=options) as client,
            pytest.raises(TransportError) as error,
        ):
            client.get_manifest("latest")
    assert "timed out" in str(error.value) and host in str(error.value)
    assert error.value.timeout
    assert "TransportOptions(read_timeout=0.6)" in str(error.value)  # the library's words
    assert len(options.sleep.calls) == 1  # type: ignore[attr-defined]


class _StallingServer:
    """Accepts every connection and reads its request; answers the first ``answered`` with
    the headers of a ``length``-byte blob and ``sent`` bytes of it; then holds every
    connection open, saying nothing more, until the test ends: a registry that stalls
    midway, then for good."""

    def __init__(self, length: int, sent: bytes, answered: int = 1) -> None:
        self._head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode() + sent
        self._answered = answered
        self._held: list[socket.socket] = []
        self._socket = socket.create_server(("127.0.0.1", 0), backlog=16)
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
                while b"\r\n\r\n" not in request:
                    data = connection.recv(65536)
                    if not data:
                        break
                    request += data
                if self._answered > 0:
                    self._answered -= 1
                    connection.sendall(self._head)

    def __enter__(self) -> _StallingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join()
        for connection in self._held:
            connection.close()


def test_a_download_that_stalls_midway_then_for_good_spends_one_count_of_retries() -> None:
    data = secrets.token_bytes(100_000)
    sleeps = RecordedSleeps()
    options = TransportOptions(read_timeout=0.2, max_retries=2, sleep=sleeps)
    with (
        _StallingServer(len(data), data[:10_000]) as server,
        RegistryClient(server.host, "app", auth=httpx.Auth(), options=options) as client,
        pytest.raises(TransportError) as error,
    ):
        b"".join(client.iter_blob(sha256_of_bytes(data)))
    # The body stalled (a backoff, then a resumed GET); the resumed GET got no answer, and
    # was retried once: 3 attempts of 0.2 s in all, as for a request that never got one.
    assert len(sleeps.calls) == 2
    assert error.value.timeout and "did not answer within 0.2 s" in str(error.value)


def test_a_copy_from_a_source_that_never_answers_is_not_started_over(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    sleeps = RecordedSleeps()
    options = TransportOptions(read_timeout=0.2, max_retries=1, sleep=sleeps)
    digest = sha256_of_bytes(b"never sent")
    with (
        socket.create_server(("127.0.0.1", 0)) as stalled,
        RegistryClient(
            f"127.0.0.1:{stalled.getsockname()[1]}", "app", auth=httpx.Auth(), options=options
        ) as source,
        client_for(registry_anonymous, unique_repo, host=proxy.host, sleep=sleeps) as target,
        pytest.raises(TransportError) as error,
    ):
        target.copy_blob(source, digest)
    assert len(sleeps.calls) == 1  # the source's GET retried once; the copy not started over
    assert len(proxy.seen("POST", UPLOADS)) == 1
    assert error.value.timeout and error.value.registry == source.registry


def test_a_copy_whose_source_stalls_midway_is_not_started_over(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    data = secrets.token_bytes(200_000)
    sleeps = RecordedSleeps()
    options = TransportOptions(read_timeout=0.2, max_retries=1, sleep=sleeps)
    with (
        _StallingServer(len(data), data[:50_000]) as server,
        RegistryClient(server.host, "app", auth=httpx.Auth(), options=options) as source,
        client_for(registry_anonymous, unique_repo, host=proxy.host, sleep=sleeps) as target,
        pytest.raises(TransportError) as error,
    ):
        target.copy_blob(source, sha256_of_bytes(data))
    # The source's error, not taken for the target's PUT failing (which starts over).
    assert len(sleeps.calls) == 1  # one resume of the source, which never answered
    assert len(proxy.seen("POST", UPLOADS)) == 1
    assert error.value.timeout and error.value.registry == server.host


def test_the_answer_that_commits_an_upload_gets_longer_the_larger_the_upload() -> None:
    """The registry verifies and stores the blob before it answers the closing PUT: its
    wait grows with the size (mock transport: what matters is the timeout each request
    carries)."""
    read_timeouts: dict[str, list[float]] = {}

    def registry(request: httpx.Request) -> httpx.Response:
        timeout = request.extensions["timeout"]
        read_timeouts.setdefault(request.method, []).append(timeout["read"])
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/app/blobs/uploads/u1"})
        if request.method == "PATCH":
            request.read()
            return httpx.Response(202, headers={"Location": "/v2/app/blobs/uploads/u1"})
        request.read()
        return httpx.Response(201, headers={"Docker-Content-Digest": request.url.params["digest"]})

    size = 3 * 1024 * 1024
    data = secrets.token_bytes(size)
    options = TransportOptions(read_timeout=2.0, sleep=RecordedSleeps())
    http = httpx.Client(transport=httpx.MockTransport(registry), timeout=options.timeout)
    client = RegistryClient(
        "127.0.0.1:1", "app", auth=httpx.Auth(), http_client=http, options=options
    )
    client.upload_blob(data)  # POST, then one PUT with the bytes
    client.upload_blob(io.BytesIO(data[::-1]))  # POST, a streamed PATCH, then an empty PUT
    allowance = size / (32 * 1024 * 1024)
    assert read_timeouts["PUT"] == [2.0 + allowance, 2.0 + allowance]
    assert set(read_timeouts["HEAD"] + read_timeouts["POST"] + read_timeouts["PATCH"]) == {2.0}


# --- Progress on real uploads ---------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["whole", "streamed", "chunked"])
def test_upload_progress_is_reported(
    registry_anonymous: Registry, unique_repo: str, tmp_path: Path, strategy: str
) -> None:
    data = secrets.token_bytes(3 * 1024 * 1024 + 123)
    path = tmp_path / "blob"
    path.write_bytes(data)
    calls: list[tuple[int, int | None]] = []
    kwargs: dict[str, Any] = {
        "whole": {"digest": sha256_of_bytes(data)},
        "streamed": {},
        "chunked": {"chunk_size": 1024 * 1024},
    }[strategy]
    with client_for(registry_anonymous, unique_repo) as client:
        result = client.upload_blob(path, progress=lambda d, t: calls.append((d, t)), **kwargs)
        assert result == (sha256_of_bytes(data), len(data))
    done = [d for d, _ in calls]
    assert len(calls) >= 3 and done == sorted(done)
    assert calls[-1] == (len(data), len(data))


# --- Faults with token auth -----------------------------------------------------------------


def test_5xx_answers_are_retried_in_token_mode(
    registry_token: Registry, token_proxy: FaultProxy, unique_repo: str
) -> None:
    with client_for(registry_token, unique_repo, host=token_proxy.host) as client:
        _digest, raw = push_manifest(client, tag="v1")
        blob = secrets.token_bytes(5000)
        client.upload_blob(blob)
        manifests = token_proxy.respond("GET", r"/manifests/v1", 503, times=2)
        blobs = token_proxy.respond("GET", r"/blobs/sha256:", 502, times=1)
        assert client.get_manifest("v1").to_bytes() == raw
        assert b"".join(client.iter_blob(sha256_of_bytes(blob))) == blob
    assert manifests.hits == 2 and blobs.hits == 1
    assert len(sleeps_of(client)) == 3
    retried = token_proxy.seen("GET", r"/manifests/v1")
    assert all(r.headers.get("authorization", "").startswith("Bearer ") for r in retried[-3:])
