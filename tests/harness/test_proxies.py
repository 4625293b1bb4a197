"""FaultProxy as a forward proxy: a loopback registry answering under another host name."""

from __future__ import annotations

import hashlib
import secrets

import httpx

from tests.harness.fixtures import RegistryFactory
from tests.harness.proxies import FaultProxy

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
