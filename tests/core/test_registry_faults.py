"""RegistryClient when things go wrong: a fault-injecting proxy in front of a real registry
(tests/harness/proxies.py), tampered storage, redirects to another host, broken uploads."""

from __future__ import annotations

import email.utils
import io
import json
import secrets
import time
from pathlib import Path

import httpx
import pytest

from pants_oci.core import media_types
from pants_oci.core.digest import sha256_of_bytes
from pants_oci.core.errors import (
    DigestMismatchError,
    RangeError,
    RegistryError,
    TooManyRequestsError,
    TransportError,
    UnsupportedMediaTypeError,
)
from pants_oci.core.registry import RegistryClient
from pants_oci.core.transport import TransportOptions
from tests.core.registry_support import (
    RecordedSleeps,
    client_for,
    proxy_fixture,  # noqa: F401 - the `proxy` fixture
    push_manifest,
    sleeps_of,
)
from tests.harness.proxies import FaultProxy, RecordingServer
from tests.harness.registry import Registry

UPLOADS = r"/blobs/uploads/"


# --- Retries --------------------------------------------------------------------------------


def test_503_with_retry_after_is_retried_and_honoured(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        _digest, raw = push_manifest(client)
        rule = proxy.respond(
            "GET", r"/manifests/latest", 503, headers={"Retry-After": "7"}, times=2
        )
        assert client.get_manifest("latest").to_bytes() == raw
    assert rule.hits == 2
    assert len(proxy.seen("GET", r"/manifests/latest")) == 3
    assert sleeps_of(client) == [7.0, 7.0]


def test_429_with_an_http_date_and_then_giving_up(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    with client_for(registry_anonymous, unique_repo, host=proxy.host, max_retries=2) as client:
        push_manifest(client)
        proxy.respond(
            "GET",
            r"/manifests/latest",
            429,
            headers={"Retry-After": later},
            body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
            times=None,
        )
        with pytest.raises(TooManyRequestsError) as error:
            client.get_manifest("latest")
    assert len(proxy.seen("GET", r"/manifests/latest")) == 3  # first try + max_retries
    assert len(sleeps_of(client)) == 2 and all(25 <= s <= 31 for s in sleeps_of(client))
    assert error.value.status == 429 and error.value.code == "TOOMANYREQUESTS"


def test_5xx_without_retry_after_backs_off_exponentially(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    with client_for(registry_anonymous, unique_repo, host=proxy.host, backoff_base=1.0) as client:
        data = secrets.token_bytes(1000)
        digest, _ = client.upload_blob(data)
        proxy.respond("GET", r"/blobs/sha256:", 502, times=3)
        assert b"".join(client.iter_blob(digest)) == data
    waits = sleeps_of(client)
    assert len(waits) == 3
    for attempt, wait in enumerate(waits):  # half fixed, half jitter
        assert 2**attempt / 2 <= wait <= 2**attempt


def test_a_failed_patch_is_not_resent_blindly_but_resumed_from_the_registry_range(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    data = secrets.token_bytes(250_000)
    rule = proxy.respond("PATCH", UPLOADS, 503, skip=1)  # the second chunk
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        assert client.upload_blob(io.BytesIO(data), chunk_size=100_000) == (
            sha256_of_bytes(data),
            len(data),
        )
        assert b"".join(client.iter_blob(sha256_of_bytes(data))) == data
    assert rule.hits == 1
    methods = [r.method for r in proxy.seen(pattern=UPLOADS)]
    # POST, PATCH ok, PATCH 503, GET status (the registry's Range), PATCH again, PATCH, PUT.
    assert methods == ["POST", "PATCH", "PATCH", "GET", "PATCH", "PATCH", "PUT"]
    ranges = [r.headers["content-range"] for r in proxy.seen("PATCH")]
    assert ranges == ["0-99999", "100000-199999", "100000-199999", "200000-249999"]


def test_a_failed_final_put_restarts_the_upload(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    data = secrets.token_bytes(10_000)
    proxy.respond("PUT", UPLOADS, 500, times=1)
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        assert client.upload_blob(data) == (sha256_of_bytes(data), len(data))
    methods = [r.method for r in proxy.seen(pattern=r"/blobs/")]
    # HEAD (exists?), POST, PUT 500, then a fresh session: POST, PUT.
    assert methods == ["HEAD", "POST", "PUT", "POST", "PUT"]


@pytest.mark.parametrize(
    ("retry_after", "waited"),
    [("7", 7.0), ("86400", 60.0)],  # a day: capped at max_retry_wait, 60 s by default
    ids=["honoured", "capped"],
)
def test_retry_after_on_a_429_to_the_upload_put_is_honoured_up_to_the_cap(
    registry_anonymous: Registry,
    proxy: FaultProxy,
    unique_repo: str,
    retry_after: str,
    waited: float,
) -> None:
    data = secrets.token_bytes(10_000)
    rule = proxy.respond(
        "PUT",
        UPLOADS,
        429,
        headers={"Retry-After": retry_after},
        body=b'{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}',
    )
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        assert client.upload_blob(data) == (sha256_of_bytes(data), len(data))
    assert rule.hits == 1
    # HEAD (exists?), POST, PUT 429, then after the wait asked for: POST, PUT.
    assert [r.method for r in proxy.seen(pattern=r"/blobs/")] == [
        "HEAD",
        "POST",
        "PUT",
        "POST",
        "PUT",
    ]
    assert sleeps_of(client) == [waited]


def test_retry_after_on_a_patch_is_honoured(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    data = secrets.token_bytes(250_000)
    rule = proxy.respond("PATCH", UPLOADS, 503, headers={"Retry-After": "3"}, skip=1)
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        assert client.upload_blob(io.BytesIO(data), chunk_size=100_000)[1] == len(data)
    assert rule.hits == 1
    assert sleeps_of(client) == [3.0]


def test_retry_after_on_a_429_to_a_copy_put_is_honoured(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    data = secrets.token_bytes(20_000)
    with client_for(registry_anonymous, f"{unique_repo}-source") as source:
        digest, _ = source.upload_blob(data)
        proxy.respond("PUT", UPLOADS, 429, headers={"Retry-After": "5"})
        with client_for(registry_anonymous, unique_repo, host=proxy.host) as target:
            assert target.copy_blob(source, digest) == (digest, len(data))
    assert sleeps_of(target) == [5.0]
    assert [r.method for r in proxy.seen(pattern=UPLOADS)] == ["POST", "PUT", "POST", "PUT"]


def test_transport_does_not_retry_non_idempotent_requests(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    from pants_oci.core.transport import make_http_client

    sleeps = RecordedSleeps()
    proxy.respond("PATCH", r"/nowhere", 503, times=None)
    proxy.respond("GET", r"/nowhere", 503, times=None)
    with make_http_client(TransportOptions(sleep=sleeps, max_retries=3)) as http:
        assert http.patch(f"{proxy.url}/v2/nowhere", content=b"x").status_code == 503
        assert len(proxy.seen("PATCH")) == 1 and sleeps.calls == []
        assert http.get(f"{proxy.url}/v2/nowhere").status_code == 503
        assert len(proxy.seen("GET")) == 4 and len(sleeps.calls) == 3


def test_unreachable_registry_is_a_transport_error_naming_it() -> None:
    from tests.harness.processes import free_port

    host = f"127.0.0.1:{free_port()}"
    sleeps = RecordedSleeps()
    options = TransportOptions(sleep=sleeps, max_retries=2)
    client = RegistryClient(host, "app", auth=httpx.Auth(), options=options)
    with client, pytest.raises(TransportError) as error:
        client.get_manifest("latest")
    assert error.value.registry == host
    assert host in str(error.value) and "cannot reach registry" in str(error.value)
    assert sleeps.calls == []  # a refused connection is final: nothing listens there


# --- TLS ------------------------------------------------------------------------------------


def test_tls_registry_without_its_ca_fails_clearly(
    registry_tls: Registry, unique_repo: str
) -> None:
    options = TransportOptions(https_registries=frozenset({registry_tls.host}), max_retries=3)
    with RegistryClient(
        registry_tls.host, unique_repo, auth=httpx.Auth(), options=options
    ) as client:
        assert str(client.base_url).startswith("https://")
        with pytest.raises(TransportError) as error:
            client.head_manifest("latest")
    message = str(error.value)
    assert error.value.registry == registry_tls.host
    assert "TLS" in message and "ca_bundle" in message and "CERTIFICATE_VERIFY_FAILED" in message


# --- Content that is not what it claims -----------------------------------------------------


def test_tampered_blob_raises_and_leaves_nothing_behind(
    registry_factory: object, tmp_path: Path, unique_repo: str
) -> None:
    registry: Registry = registry_factory("anonymous")  # type: ignore[operator]
    data = secrets.token_bytes(2 * 1024 * 1024)
    with client_for(registry, unique_repo) as client:
        digest, _ = client.upload_blob(data)
        stored = registry.blob_path(str(digest))
        stored.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])  # same size, one byte off

        destination = tmp_path / "downloads" / "layer.tar.gz"
        destination.parent.mkdir()
        with pytest.raises(DigestMismatchError) as error:
            client.get_blob(digest, destination)
        assert error.value.expected == str(digest)
        assert error.value.actual == str(sha256_of_bytes(stored.read_bytes()))
        assert list(destination.parent.iterdir()) == []  # no file, no temporary file

        # The iterator never yields the complete (wrong) content.
        received: list[bytes] = []
        with pytest.raises(DigestMismatchError):
            for chunk in client.iter_blob(digest):
                received.append(chunk)
        assert 0 < sum(map(len, received)) < len(data)


def test_manifest_bytes_are_checked_against_the_digest_asked_for(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        digest, _raw = push_manifest(client, tag="v1")

        def tamper(_path: str, body: bytes) -> tuple[bytes, dict[str, str]]:
            return body.replace(b'"schemaVersion":2', b'"schemaVersion": 2'), {}

        proxy.rewrite_body("GET", r"/manifests/", tamper)
        with pytest.raises(DigestMismatchError) as by_digest:
            client.get_manifest(digest)
        assert by_digest.value.expected == str(digest)
        # By tag, the registry's Docker-Content-Digest is what the bytes must match.
        with pytest.raises(DigestMismatchError) as by_tag:
            client.get_manifest("v1")
        assert by_tag.value.expected == str(digest)


def test_schema1_manifests_are_refused_clearly(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    # distribution 2.8 no longer stores schema 1; the proxy serves what an old registry would.
    schema1 = json.dumps(
        {
            "schemaVersion": 1,
            "name": unique_repo,
            "tag": "old",
            "architecture": "amd64",
            "fsLayers": [],
            "history": [],
        }
    ).encode()
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        push_manifest(client, tag="old")
        proxy.rewrite_body(
            "*",
            r"/manifests/old",
            lambda _p, _b: (
                schema1,
                {
                    "Content-Type": media_types.DOCKER_MANIFEST_SCHEMA1_SIGNED,
                    "Docker-Content-Digest": str(sha256_of_bytes(schema1)),
                },
            ),
        )
        with pytest.raises(UnsupportedMediaTypeError, match="schema 1"):
            client.get_manifest("old")
        with pytest.raises(UnsupportedMediaTypeError, match="schema 1"):
            client.head_manifest("old")
    accept = proxy.seen("GET", r"/manifests/old")[0].headers["accept"]
    assert media_types.OCI_INDEX in accept and media_types.DOCKER_MANIFEST in accept
    assert "v1+json" not in accept.replace("index.v1+json", "").replace("manifest.v1+json", "")


# --- Redirects ------------------------------------------------------------------------------


def test_redirect_to_another_host_drops_the_credentials(
    registry_basic: Registry, unique_repo: str
) -> None:
    data = secrets.token_bytes(100_000)
    digest = sha256_of_bytes(data)
    with (
        FaultProxy(registry_basic.url) as proxy,
        RecordingServer({f"/storage/{digest.hex}": data}, hostname="localhost") as storage,
    ):
        with client_for(registry_basic, unique_repo, host=proxy.host) as client:
            client.upload_blob(data)
            proxy.respond(
                "GET",
                rf"/blobs/{digest}",
                307,
                headers={"Location": f"{storage.url}/storage/{digest.hex}"},
                times=None,
            )
            assert b"".join(client.iter_blob(digest)) == data
        registry_side = proxy.seen("GET", rf"/blobs/{digest}")
        assert registry_side and all(
            r.headers.get("authorization", "").startswith("Basic ") for r in registry_side[-1:]
        )
        assert [r.path for r in storage.requests] == [f"/storage/{digest.hex}"]
        assert "authorization" not in storage.requests[0].headers
        assert "cookie" not in storage.requests[0].headers


def test_redirected_blob_with_wrong_bytes_is_rejected(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str, tmp_path: Path
) -> None:
    data = secrets.token_bytes(5000)
    digest = sha256_of_bytes(data)
    with (
        RecordingServer({"/blob": data[:-1] + b"!"}) as storage,
        client_for(registry_anonymous, unique_repo, host=proxy.host) as client,
    ):
        client.upload_blob(data)
        proxy.respond("GET", rf"/blobs/{digest}", 302, headers={"Location": f"{storage.url}/blob"})
        with pytest.raises(DigestMismatchError):
            client.get_blob(digest, tmp_path / "blob")
    assert not (tmp_path / "blob").exists()


# --- Uploads that break ---------------------------------------------------------------------


def test_chunked_upload_resumes_when_the_registry_kept_the_session(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    data = secrets.token_bytes(300_000)
    rule = proxy.cut("PATCH", UPLOADS, after_bytes=0, skip=1)  # connection lost, nothing landed
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        assert client.upload_blob(io.BytesIO(data), chunk_size=128 * 1024)[1] == len(data)
        assert b"".join(client.iter_blob(sha256_of_bytes(data))) == data
    assert rule.hits == 1
    assert [r.method for r in proxy.seen(pattern=UPLOADS)] == [
        "POST", "PATCH", "PATCH", "GET", "PATCH", "PATCH", "PUT"
    ]  # fmt: skip


@pytest.mark.parametrize("chunk_size", [None, 64 * 1024], ids=["streamed", "chunked"])
def test_upload_restarts_when_a_broken_patch_lost_the_session(
    registry_anonymous: Registry,
    proxy: FaultProxy,
    unique_repo: str,
    tmp_path: Path,
    chunk_size: int | None,
) -> None:
    # distribution keeps the bytes of a PATCH cut midway but then refuses the session
    # (BLOB_UPLOAD_INVALID): the client must notice and start over.
    data = secrets.token_bytes(400_000)
    path = tmp_path / "blob"
    path.write_bytes(data)
    rule = proxy.cut("PATCH", UPLOADS, after_bytes=30_000)
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        assert client.upload_blob(path, chunk_size=chunk_size) == (sha256_of_bytes(data), len(data))
        assert b"".join(client.iter_blob(sha256_of_bytes(data))) == data
    assert rule.hits == 1
    methods = [r.method for r in proxy.seen(pattern=UPLOADS)]
    assert methods[:3] == ["POST", "PATCH", "GET"]  # the status check found the session gone
    assert methods.count("POST") == 2 and methods[-1] == "PUT"


def test_unseekable_stream_cannot_restart_and_says_so(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            chunk = self._data.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    proxy.cut("PATCH", UPLOADS, after_bytes=10_000)
    client = client_for(registry_anonymous, unique_repo, host=proxy.host)
    with client, pytest.raises(TransportError) as error:
        client.upload_blob(Pipe(secrets.token_bytes(200_000)))
    assert error.value.registry == proxy.host


def test_relative_locations_and_chunk_minimum(
    registry_anonymous: Registry, unique_repo: str
) -> None:
    data = secrets.token_bytes(500_000)
    with FaultProxy(registry_anonymous.url, relative_locations=True) as proxy:
        proxy.add_headers("POST", r"/blobs/uploads/$", {"OCI-Chunk-Min-Length": "150000"})
        with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
            assert client.upload_blob(io.BytesIO(data), chunk_size=50_000)[1] == len(data)
            assert client.upload_blob(secrets.token_bytes(1000))[1] == 1000  # monolithic
        patches = proxy.seen("PATCH")
    assert [r.headers["content-range"] for r in patches] == [
        "0-149999", "150000-299999", "300000-449999", "450000-499999"
    ]  # fmt: skip
    assert all(r.path.startswith("/v2/") for r in proxy.seen(pattern=UPLOADS))


def test_registry_range_inside_a_chunk_is_honoured() -> None:
    """A registry that kept part of a broken PATCH and says so in Range (zot, GHCR do;
    distribution 2.8 cannot): the client sends the rest of that chunk, not all of it.
    A mock transport, since no server in the harness behaves like this."""
    stored = bytearray()
    patches: list[str] = []
    broken = {"done": False}

    def registry(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST":
            return httpx.Response(
                202, headers={"Location": "/v2/app/blobs/uploads/u1", "Range": "0-0"}
            )
        if request.method == "PATCH":
            body = request.read()
            patches.append(request.headers["Content-Range"])
            if len(stored) >= 100 and not broken["done"]:
                broken["done"] = True
                stored.extend(body[:30])  # part of the chunk landed, then the line dropped
                raise httpx.ReadError("connection reset by peer")
            stored.extend(body)
            return httpx.Response(202, headers={"Location": path, "Range": f"0-{len(stored) - 1}"})
        if request.method == "GET" and path.endswith("/u1"):
            return httpx.Response(204, headers={"Location": path, "Range": f"0-{len(stored) - 1}"})
        if request.method == "PUT":
            assert request.url.params["digest"] == str(sha256_of_bytes(bytes(stored)))
            return httpx.Response(
                201, headers={"Docker-Content-Digest": request.url.params["digest"]}
            )
        return httpx.Response(404)

    data = secrets.token_bytes(250)
    http = httpx.Client(transport=httpx.MockTransport(registry))
    client = RegistryClient(
        "127.0.0.1:1", "app", auth=httpx.Auth(), options=TransportOptions(sleep=RecordedSleeps()),
        http_client=http,
    )  # fmt: skip
    assert client.upload_blob(io.BytesIO(data), chunk_size=100) == (sha256_of_bytes(data), 250)
    assert bytes(stored) == data
    assert patches == ["0-99", "100-199", "130-199", "200-249"]


def test_416_from_a_patch_is_a_range_error(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    proxy.respond(
        "PATCH",
        UPLOADS,
        416,
        body=b'{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"bad range"}]}',
    )
    client = client_for(registry_anonymous, unique_repo, host=proxy.host)
    with client, pytest.raises(RangeError) as error:
        client.upload_blob(io.BytesIO(b"x" * 1000), chunk_size=500)
    assert error.value.status == 416 and error.value.repository == unique_repo
    assert isinstance(error.value, RegistryError)
