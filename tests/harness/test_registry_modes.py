"""Each registry mode works for a real client and refuses what it should."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import pki
from tests.harness.fixtures import RegistryFactory
from tests.harness.registry import (
    Registry,
    TokenError,
    fetch_token,
    parse_bearer_challenge,
)
from tests.harness.token_service import Authority

MODE_FIXTURES = ["registry_anonymous", "registry_basic", "registry_token", "registry_tls"]


def upload_blob(client: httpx.Client, repository: str, data: bytes) -> httpx.Response:
    """POST to open an upload, then PUT all bytes with ?digest= (plain httpx)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    started = client.post(f"/v2/{repository}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = httpx.URL(started.headers["Location"]).copy_merge_params({"digest": digest})
    return client.put(location, content=data)


@pytest.mark.parametrize("fixture", MODE_FIXTURES)
def test_blob_push_and_pull(fixture: str, request: pytest.FixtureRequest, unique_repo: str) -> None:
    registry: Registry = request.getfixturevalue(fixture)
    data = secrets.token_bytes(4096)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with registry.httpx_client() as client:
        done = upload_blob(client, unique_repo, data)
        assert done.status_code == 201, done.text
        assert done.headers["Docker-Content-Digest"] == digest

        head = client.head(f"/v2/{unique_repo}/blobs/{digest}")
        assert head.status_code == 200
        assert int(head.headers["Content-Length"]) == len(data)
        assert head.headers["Docker-Content-Digest"] == digest

        got = client.get(f"/v2/{unique_repo}/blobs/{digest}")
        assert got.status_code == 200
        assert got.content == data

        missing = client.head(f"/v2/{unique_repo}/blobs/sha256:{'0' * 64}")
        assert missing.status_code == 404
    # The handle's storage path is where the bytes really are (tests corrupt blobs there).
    assert registry.blob_path(digest).read_bytes() == data
    assert registry.url.startswith("https://" if fixture == "registry_tls" else "http://")


def test_anonymous_needs_no_credentials(registry_anonymous: Registry) -> None:
    response = httpx.get(f"{registry_anonymous.url}/v2/")
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"


def test_basic_refuses_missing_and_wrong_credentials(
    registry_basic: Registry, unique_repo: str
) -> None:
    assert registry_basic.username and registry_basic.password
    with registry_basic.httpx_client(credentials=None) as client:
        response = client.get("/v2/")
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
        assert client.post(f"/v2/{unique_repo}/blobs/uploads/").status_code == 401
    with registry_basic.httpx_client(credentials=(registry_basic.username, "wrong")) as client:
        assert client.get("/v2/").status_code == 401
        assert upload_blob_status(client, unique_repo) == 401
    with registry_basic.httpx_client() as client:
        assert client.get("/v2/").status_code == 200


def upload_blob_status(client: httpx.Client, repository: str) -> int:
    return client.post(f"/v2/{repository}/blobs/uploads/").status_code


def test_token_challenge_names_the_token_service(registry_token: Registry) -> None:
    service = registry_token.token_service
    assert service is not None
    response = httpx.get(f"{registry_token.url}/v2/")
    assert response.status_code == 401
    challenge = parse_bearer_challenge(response.headers["WWW-Authenticate"])
    assert challenge == {"realm": service.realm, "service": service.service}


def test_token_wrong_credentials_get_no_token(registry_token: Registry, unique_repo: str) -> None:
    scope = f"repository:{unique_repo}:pull,push"
    with pytest.raises(TokenError) as refused:
        fetch_token(registry_token, [scope], credentials=("tester", "wrong"))
    assert refused.value.status_code == 401
    with pytest.raises(TokenError) as unknown:
        fetch_token(registry_token, [scope], credentials=("nobody", "x"))
    assert unknown.value.status_code == 401
    # The same refusal through the client handshake: no token, no upload.
    with (
        registry_token.httpx_client(credentials=("tester", "wrong")) as client,
        pytest.raises(TokenError),
    ):
        client.post(f"/v2/{unique_repo}/blobs/uploads/")


def test_token_anonymous_gets_no_access_outside_public(
    registry_token: Registry, unique_repo: str
) -> None:
    body = fetch_token(registry_token, [f"repository:{unique_repo}:pull,push"], credentials=None)
    claims = jwt_claims(body["token"])
    assert claims["access"] == []
    assert claims["sub"] == ""
    # An empty-access token is refused by the registry itself.
    with registry_token.httpx_client(credentials=None) as client:
        response = client.post(f"/v2/{unique_repo}/blobs/uploads/")
        assert response.status_code == 401
        assert "insufficient_scope" in response.headers["WWW-Authenticate"]
        assert client.get(f"/v2/{unique_repo}/tags/list").status_code == 401


def test_token_anonymous_may_pull_public_but_not_push(registry_token: Registry) -> None:
    repo = f"public/harness-{secrets.token_hex(3)}"
    data = b"public bytes"
    with registry_token.httpx_client() as client:
        assert upload_blob(client, repo, data).status_code == 201
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with registry_token.httpx_client(credentials=None) as client:
        assert client.get(f"/v2/{repo}/blobs/{digest}").content == data
        assert client.post(f"/v2/{repo}/blobs/uploads/").status_code == 401


def test_token_reader_may_pull_but_not_push(registry_token: Registry, unique_repo: str) -> None:
    data = b"reader bytes"
    with registry_token.httpx_client() as client:
        assert upload_blob(client, unique_repo, data).status_code == 201
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    reader = ("reader", registry_token.users["reader"])
    with registry_token.httpx_client(credentials=reader) as client:
        assert client.get(f"/v2/{unique_repo}/blobs/{digest}").content == data
        assert client.post(f"/v2/{unique_repo}/blobs/uploads/").status_code == 401


def test_token_signed_by_another_key_is_refused(registry_token: Registry, tmp_path: Path) -> None:
    service = registry_token.token_service
    assert service is not None
    rogue_cert = pki.make_token_signing_cert(tmp_path)
    rogue = Authority(
        {
            "issuer": service.issuer,
            "service": service.service,
            "key": str(rogue_cert.key),
            "cert": str(rogue_cert.cert),
            "users": {},
        }
    )
    access = [{"type": "repository", "name": "anything", "actions": ["pull", "push"]}]
    token, _, _ = rogue.issue("tester", access)
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{registry_token.url}/v2/", headers=headers).status_code == 401
    # Control: a genuine token for the same claims works.
    genuine = fetch_token(registry_token, ["repository:anything:pull"])["token"]
    ok = httpx.get(f"{registry_token.url}/v2/", headers={"Authorization": f"Bearer {genuine}"})
    assert ok.status_code == 200


def test_token_service_counts_requests(registry_factory: RegistryFactory) -> None:
    registry = registry_factory("token")
    service = registry.token_service
    assert service is not None
    with registry.httpx_client() as client:
        for _ in range(3):
            assert upload_blob(client, "counted/repo", secrets.token_bytes(64)).status_code == 201
    fetches = [r for r in service.stats() if r["status"] == 200]
    # One handshake, then the cached token serves the other uploads.
    assert len(fetches) == 1
    assert fetches[0]["user"] == "tester"
    # The registry builds the challenge's action list from a Go map: its order varies.
    [scope] = fetches[0]["scopes"]
    resource, actions = scope.rsplit(":", 1)
    assert resource == "repository:counted/repo"
    assert sorted(actions.split(",")) == ["pull", "push"]
    service.reset_stats()
    assert service.stats() == []


def test_token_oauth2_password_and_refresh_grants(registry_token: Registry) -> None:
    service = registry_token.token_service
    assert service is not None
    form = {
        "grant_type": "password",
        "username": "tester",
        "password": registry_token.password,
        "service": service.service,
        "scope": "repository:oauth/repo:pull",
        "client_id": "harness",
        "access_type": "offline",
    }
    first = httpx.post(service.realm, data=form)
    assert first.status_code == 200
    assert jwt_claims(first.json()["access_token"])["access"][0]["actions"] == ["pull"]
    refresh = {
        "grant_type": "refresh_token",
        "refresh_token": first.json()["refresh_token"],
        "service": service.service,
        "scope": "repository:oauth/repo:pull,push",
    }
    second = httpx.post(service.realm, data=refresh)
    assert second.status_code == 200
    assert jwt_claims(second.json()["access_token"])["access"][0]["actions"] == ["pull", "push"]
    assert httpx.post(service.realm, data={**form, "password": "wrong"}).status_code == 401


def test_tls_refuses_untrusting_client_and_works_with_ca(registry_tls: Registry) -> None:
    assert registry_tls.ca_bundle is not None and registry_tls.cert_dir is not None
    with pytest.raises(httpx.ConnectError) as refused:
        httpx.get(f"{registry_tls.url}/v2/")  # system trust store: no test CA
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value)
    context = ssl.create_default_context(cafile=str(registry_tls.ca_bundle))
    response = httpx.get(f"{registry_tls.url}/v2/", verify=context)
    assert response.status_code == 200
    # The cert also names localhost.
    port = registry_tls.host.rsplit(":", 1)[1]
    assert httpx.get(f"https://localhost:{port}/v2/", verify=context).status_code == 200
    assert (registry_tls.cert_dir / "ca.crt").read_bytes() == registry_tls.ca_bundle.read_bytes()


def jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims
