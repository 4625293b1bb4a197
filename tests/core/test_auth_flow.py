"""The handshake's edge cases, against a small loopback registry whose faults the test controls
(distribution cannot revoke a token, refuse an OAuth2 POST, or send odd challenges)."""

from __future__ import annotations

import base64
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from pants_oci.core.auth import (
    SCOPES_EXTENSION,
    Credential,
    RegistryAuth,
    StaticKeychain,
    repository_scope,
)
from pants_oci.core.auth._www_authenticate import Challenge, parse_challenges
from pants_oci.core.errors import DeniedError, RegistryError, UnauthorizedError
from tests.core.auth_helpers import FakeClock
from tests.harness.json_handler import JsonHandler

PASSWORD = "pw-" + secrets.token_hex(8)


@dataclass
class StubRegistry:
    """/v2/... wants `Bearer <issued token>`; /token issues them. Every request is logged."""

    url: str = ""
    challenge: str = ""  # WWW-Authenticate; {realm} is filled in
    token_body: dict[str, Any] = field(default_factory=dict)  # extra fields of token answers
    token_status: int = 200
    token_error: dict[str, Any] = field(default_factory=dict)
    post_status: int | None = None  # answer POST /token with this status instead
    valid_tokens: set[str] = field(default_factory=set)
    log: list[dict[str, Any]] = field(default_factory=list)

    def token_requests(self) -> list[dict[str, Any]]:
        return [entry for entry in self.log if entry["path"] == "/token"]


def _handler(stub: StubRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def handle_any(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode()
            entry = {
                "method": self.command,
                "path": url.path,
                "query": parse_qs(url.query),
                "form": parse_qs(body) if self.command == "POST" else {},
                "authorization": self.headers.get("Authorization"),
            }
            stub.log.append(entry)
            if url.path == "/token":
                return self.token(entry)
            auth = self.headers.get("Authorization") or ""
            if auth.startswith("Bearer ") and auth[7:] in stub.valid_tokens:
                return self.reply(200, {"ok": True})
            challenge = stub.challenge.format(realm=f"{stub.url}/token")
            return self.reply(
                401, {"errors": [{"code": "UNAUTHORIZED"}]}, {"WWW-Authenticate": challenge}
            )

        def token(self, entry: dict[str, Any]) -> None:
            if self.command == "POST" and stub.post_status is not None:
                return self.reply(stub.post_status, {"error": "no oauth here"})
            if stub.token_status != 200:
                return self.reply(stub.token_status, stub.token_error)
            token = "tok-" + secrets.token_hex(8)
            stub.valid_tokens.add(token)
            return self.reply(200, {"access_token": token, **stub.token_body})

        do_GET = do_POST = do_PUT = do_HEAD = handle_any

    return Handler


@pytest.fixture
def stub() -> Iterator[StubRegistry]:
    stub = StubRegistry(challenge='Bearer realm="{realm}",service="stub"')
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub))
    stub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield stub
    server.shutdown()
    server.server_close()


def host(stub: StubRegistry) -> str:
    return stub.url.removeprefix("http://")


def get(client: httpx.Client, stub: StubRegistry, repository: str = "a/b") -> httpx.Response:
    return client.get(
        f"{stub.url}/v2/{repository}/manifests/latest",
        extensions={SCOPES_EXTENSION: (repository_scope(repository, "pull"),)},
    )


def basic_keychain(stub: StubRegistry) -> StaticKeychain:
    return StaticKeychain({host(stub): {"username": "me", "password": PASSWORD}})


# --- WWW-Authenticate parsing -----------------------------------------------------------------
def test_parse_challenges() -> None:
    header = (
        'Basic realm="basic, with comma", '
        'Bearer realm="https://auth.example/token?x=1",service="registry.example",'
        'scope="repository:a/b:pull,push repository:c:pull",error="insufficient_scope", '
        'Newauth realm="apps", type=1, title="Login to \\"apps\\""'
    )
    assert parse_challenges([header, "Negotiate abc123==", "Bearer"]) == [
        Challenge("basic", {"realm": "basic, with comma"}),
        Challenge(
            "bearer",
            {
                "realm": "https://auth.example/token?x=1",
                "service": "registry.example",
                "scope": "repository:a/b:pull,push repository:c:pull",
                "error": "insufficient_scope",
            },
        ),
        Challenge("newauth", {"realm": "apps", "type": "1", "title": 'Login to "apps"'}),
        Challenge("negotiate", {}),
        Challenge("bearer", {}),
    ]


# --- the flow ---------------------------------------------------------------------------------
def test_a_refused_cached_token_is_dropped_and_refreshed_once(stub: StubRegistry) -> None:
    with httpx.Client(auth=RegistryAuth(basic_keychain(stub))) as client:
        assert get(client, stub).status_code == 200
        assert get(client, stub).status_code == 200
        assert len(stub.token_requests()) == 1
        stub.valid_tokens.clear()  # the registry revokes every token
        stub.log.clear()
        assert get(client, stub).status_code == 200
    assert [(e["method"], e["path"]) for e in stub.log] == [
        ("GET", "/v2/a/b/manifests/latest"),  # with the revoked token: 401
        ("GET", "/token"),
        ("GET", "/v2/a/b/manifests/latest"),
    ]


def test_token_request_carries_basic_credentials_service_and_union_scope(
    stub: StubRegistry,
) -> None:
    stub.challenge = (
        'Basic realm="stub", Bearer realm="{realm}?account=me",service="stub",'
        'scope="repository:a/b:pull,push"'
    )
    with httpx.Client(auth=RegistryAuth(basic_keychain(stub))) as client:
        response = client.post(
            f"{stub.url}/v2/a/b/blobs/uploads/",
            extensions={
                SCOPES_EXTENSION: (
                    repository_scope("a/b", "push"),
                    repository_scope("other/src", "pull"),
                )
            },
        )
    assert response.status_code == 200
    (token_request,) = stub.token_requests()
    assert (
        token_request["authorization"]
        == "Basic " + base64.b64encode(f"me:{PASSWORD}".encode()).decode()
    )
    assert token_request["query"]["service"] == ["stub"]
    assert token_request["query"]["account"] == ["me"]  # the realm's own query is kept
    assert sorted(token_request["query"]["scope"]) == [
        "repository:a/b:pull,push",
        "repository:other/src:pull",
    ]


def test_identity_token_falls_back_to_get_when_post_is_not_allowed(stub: StubRegistry) -> None:
    stub.post_status = 405
    keychain = StaticKeychain({host(stub): Credential.identity_token("refresh-" + PASSWORD)})
    with httpx.Client(auth=RegistryAuth(keychain)) as client:
        assert get(client, stub).status_code == 200
    post, fallback = stub.token_requests()
    assert post["method"] == "POST"
    assert post["form"]["grant_type"] == ["refresh_token"]
    assert post["form"]["refresh_token"] == ["refresh-" + PASSWORD]
    assert post["form"]["scope"] == ["repository:a/b:pull"]
    assert post["form"]["service"] == ["stub"]
    assert fallback["method"] == "GET"
    assert (
        fallback["authorization"]
        == "Basic " + base64.b64encode(f"<token>:refresh-{PASSWORD}".encode()).decode()
    )


def test_token_lifetime_defaults_to_60_seconds(stub: StubRegistry) -> None:
    clock = FakeClock()
    with httpx.Client(auth=RegistryAuth(basic_keychain(stub), clock=clock)) as client:
        assert get(client, stub).status_code == 200
        clock.offset = 50
        assert get(client, stub).status_code == 200
        assert len(stub.token_requests()) == 1
        clock.offset = 56  # past 60 s less the safety margin
        assert get(client, stub).status_code == 200
        assert len(stub.token_requests()) == 2


def test_issued_at_in_the_past_shortens_the_reuse(stub: StubRegistry) -> None:
    # A token service handing out a token issued 250 s ago that lives 300 s: about 50 s left,
    # measured on the server's clock (Date header), whatever ours says.
    issued = time.time() - 250
    stub.token_body = {
        "expires_in": 300,
        "issued_at": time.strftime("%Y-%m-%dT%H:%M:%S.123456789Z", time.gmtime(issued)),
    }
    clock = FakeClock()
    clock.offset = -3600  # our clock is an hour slow: must not matter
    with httpx.Client(auth=RegistryAuth(basic_keychain(stub), clock=clock)) as client:
        assert get(client, stub).status_code == 200
        clock.offset += 10
        assert get(client, stub).status_code == 200
        assert len(stub.token_requests()) == 1
        clock.offset += 40  # about 50 s after the fetch: less than the margin remains
        assert get(client, stub).status_code == 200
        assert len(stub.token_requests()) == 2


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (401, UnauthorizedError, "HTTP 401"),
        (403, DeniedError, "HTTP 403"),
        (500, RegistryError, "HTTP 500"),
    ],
)
def test_token_service_refusals(
    stub: StubRegistry, status: int, error: type[RegistryError], expected: str
) -> None:
    stub.token_status = status
    # A careless service that echoes the password back: it must still not reach the message.
    stub.token_error = {"errors": [{"code": "DENIED", "message": f"no access for {PASSWORD}"}]}
    with (
        httpx.Client(auth=RegistryAuth(basic_keychain(stub))) as client,
        pytest.raises(error) as raised,
    ):
        get(client, stub, "team/app")
    assert type(raised.value) is error
    message = str(raised.value)
    assert expected in message and "no access for <redacted>" in message
    assert "team/app" in message and "repository:team/app:pull" in message
    assert PASSWORD not in message
    assert raised.value.code == "DENIED" and raised.value.repository == "team/app"


def test_registry_token_credential_is_sent_without_an_exchange(stub: StubRegistry) -> None:
    stub.valid_tokens.add("given-token")
    keychain = StaticKeychain({host(stub): {"token": "given-token"}})
    with httpx.Client(auth=RegistryAuth(keychain)) as client:
        assert get(client, stub).status_code == 200
        assert get(client, stub).status_code == 200
    assert stub.token_requests() == []
    # Only the first request met a challenge; the second sent the token up front.
    assert [e["authorization"] for e in stub.log] == [
        None,
        "Bearer given-token",
        "Bearer given-token",
    ]


def test_caller_supplied_authorization_is_left_alone(stub: StubRegistry) -> None:
    with httpx.Client(auth=RegistryAuth(basic_keychain(stub))) as client:
        response = client.get(
            f"{stub.url}/v2/a/b/manifests/latest", headers={"Authorization": "Bearer mine"}
        )
    assert response.status_code == 401
    assert stub.token_requests() == []


def test_a_plain_http_token_service_is_refused_for_an_https_registry() -> None:
    """No harness server puts an HTTPS registry's realm on another host's plain HTTP: a mock."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        challenge = 'Bearer realm="http://auth.example.com/token",service="registry"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    keychain = StaticKeychain({"registry.example.com": {"username": "u", "password": PASSWORD}})
    with (
        httpx.Client(transport=httpx.MockTransport(handler), auth=RegistryAuth(keychain)) as c,
        pytest.raises(UnauthorizedError) as error,
    ):
        c.get("https://registry.example.com/v2/app/manifests/latest")
    assert [r.url.host for r in seen] == ["registry.example.com"]  # nothing sent to the realm
    message = str(error.value)
    assert "http://auth.example.com/token" in message and "cleartext" in message
    assert PASSWORD not in message
    assert error.value.registry == "registry.example.com"
