"""FaultProxy as a forward proxy: a loopback registry answering under another host name."""

from __future__ import annotations

import hashlib
import secrets
import socket

import httpx
import pytest

from tests.harness.fixtures import RegistryFactory
from tests.harness.proxies import FaultProxy
from tests.harness.registry import Registry

NAME = "europe-docker.pkg.dev"


def test_forward_proxy_serves_the_registry_under_its_host_name_only(
    registry_factory: RegistryFactory, unique_repo: str
) -> None:
    registry = registry_factory("basic")
    assert registry.username and registry.password
    data = secrets.token_bytes(1000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with (
        FaultProxy(registry.url, forward_for=[NAME]) as proxy,
        httpx.Client(proxy=proxy.url, auth=(registry.username, registry.password)) as client,
    ):
        started = client.post(f"http://{NAME}/v2/{unique_repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        # The registry saw the Host header: its upload URL names the host, so the rest of the
        # upload comes back through the proxy.
        location = httpx.URL(started.headers["Location"])
        assert location.host == NAME
        done = client.put(location.copy_merge_params({"digest": digest}), content=data)
        assert done.status_code == 201, done.text
        assert client.get(f"http://{NAME}/v2/{unique_repo}/blobs/{digest}").content == data
        # Other hosts are refused, and nothing of them reaches the registry.
        refused = client.get(f"http://example.com/v2/{unique_repo}/blobs/{digest}")
        assert refused.status_code == 502
    assert [r.method for r in proxy.requests] == ["POST", "PUT", "GET", "GET"]
    assert all(r.headers["host"] == NAME for r in proxy.requests[:3])
    assert "example.com" not in registry.log_path.read_text()
    # The blob really is in the registry behind the proxy.
    with registry.httpx_client() as direct:
        assert direct.get(f"/v2/{unique_repo}/blobs/{digest}").content == data


def test_a_stalled_request_gets_no_answer_and_reaches_no_registry(
    registry_anonymous: Registry, unique_repo: str
) -> None:
    data = secrets.token_bytes(1000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    # Connecting and sending work; no byte of an answer comes.
    timeout = httpx.Timeout(10.0, read=0.5)
    with (
        FaultProxy(registry_anonymous.url) as proxy,
        httpx.Client(base_url=proxy.url, timeout=timeout) as client,
    ):
        rule = proxy.stall("PUT", r"/blobs/uploads/")
        started = client.post(f"/v2/{unique_repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        upload = httpx.URL(started.headers["Location"]).copy_merge_params({"digest": digest})
        with pytest.raises(httpx.ReadTimeout):
            client.put(upload, content=data)
        assert rule.hits == 1
        # The proxy took the whole body and kept it: the registry has no such blob.
        assert [(r.method, r.body_length) for r in proxy.seen("PUT")] == [("PUT", 1000)]
        with registry_anonymous.httpx_client() as direct:
            assert direct.head(f"/v2/{unique_repo}/blobs/{digest}").status_code == 404
        # `times` spent (1 by default): the same upload now goes through.
        assert client.put(upload, content=data).status_code == 201
        # A rule for ever, then clear(): forwarded again.
        proxy.stall("GET", r"/blobs/sha256:", times=None)
        for _ in range(2):
            with pytest.raises(httpx.ReadTimeout):
                client.get(f"/v2/{unique_repo}/blobs/{digest}")
        proxy.clear()
        assert client.get(f"/v2/{unique_repo}/blobs/{digest}").content == data


def test_stopping_the_proxy_ends_a_stalled_connection(
    registry_anonymous: Registry, unique_repo: str
) -> None:
    proxy = FaultProxy(registry_anonymous.url)
    rule = proxy.stall("GET", r"/tags/list")
    # A client that would wait a minute for the answer: the proxy's stop ends its wait.
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=60) as client:
        client.sendall(
            f"GET /v2/{unique_repo}/tags/list HTTP/1.1\r\nHost: {proxy.host}\r\n\r\n".encode()
        )
        assert rule.fired.wait(timeout=30)
        # Meanwhile the proxy answers other connections.
        with httpx.Client(base_url=proxy.url) as other:
            assert other.get("/v2/").status_code == 200
        proxy.stop()
        assert client.recv(1) == b""  # end of stream, and no answer
    assert rule.hits == 1
