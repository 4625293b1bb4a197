"""Where a registry's token service may receive credentials in cleartext: only on the
registry's own host and port, when the registry itself is reached over plain HTTP (a
loopback registry, an insecure_registries entry), never on another host.

A small hostile loopback "registry" answers 401 with a Bearer realm the test chooses, and a
second loopback server plays "another host"'s token service. Names such as
tokens.other.test resolve to 127.0.0.1 inside this test process only (socket.getaddrinfo is
patched), so each server records which name a request was addressed to (its Host header).
"""

from __future__ import annotations

import base64
import secrets
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pants_oci.core.auth import RegistryAuth, StaticKeychain
from pants_oci.core.errors import InsecureTokenServiceError, RegistryError, UnauthorizedError
from pants_oci.core.registry import RegistryClient
from pants_oci.core.transport import TransportOptions
from tests.harness import pki
from tests.harness.json_handler import JsonHandler

USER = "ci-bot"
PASSWORD = "pw-" + secrets.token_hex(12)
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
REGISTRY_NAME = "registry.test"
OTHER_NAME = "tokens.other.test"
# Names only this process resolves, and only to loopback: never a real interface address.
TEST_NAMES = frozenset({REGISTRY_NAME, OTHER_NAME})


@dataclass
class Seen:
    host: str  # the Host header: the name and port the request was addressed to
    method: str
    path: str
    authorization: str | None


@dataclass
class Server:
    """A loopback HTTP(S) server: a registry whose 401 names ``realm`` (the registry's own
    /token when empty), and a token service at /token. Every request is recorded."""

    port: int = 0
    realm: str = ""
    token_redirect: str = ""  # answer /token with a 307 to this URL instead
    tokens: set[str] = field(default_factory=set)  # shared: what the registry accepts
    seen: list[Seen] = field(default_factory=list)

    def basic_seen(self) -> list[Seen]:
        return [s for s in self.seen if (s.authorization or "").lower().startswith("basic")]


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            authorization = self.headers.get("Authorization")
            server.seen.append(Seen(self.headers["Host"], "GET", path, authorization))
            if path == "/token":
                if server.token_redirect:
                    return self.reply(307, {}, {"Location": server.token_redirect})
                if authorization not in (None, BASIC):
                    return self.reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                token = "tok-" + secrets.token_hex(8)
                server.tokens.add(token)
                return self.reply(200, {"token": token})
            if authorization and authorization.removeprefix("Bearer ") in server.tokens:
                return self.reply(200, {})
            host = self.headers["Host"]
            scheme = "https" if isinstance(self.connection, ssl.SSLSocket) else "http"
            realm = server.realm or f"{scheme}://{host}/token"
            return self.reply(
                401,
                {"errors": [{"code": "UNAUTHORIZED"}]},
                {"WWW-Authenticate": f'Bearer realm="{realm}",service="test"'},
            )

    return Handler


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every connection goes where the test says, never through a proxy from the environment."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> None:
    """registry.test and tokens.other.test resolve to 127.0.0.1, in this process only."""
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        return real_getaddrinfo("127.0.0.1" if name in TEST_NAMES else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _serve(server: Server, tls: ssl.SSLContext | None = None) -> Iterator[Server]:
    http_server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    if tls is not None:
        http_server.socket = tls.wrap_socket(http_server.socket, server_side=True)
    server.port = http_server.server_address[1]
    thread = threading.Thread(target=http_server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        http_server.shutdown()
        http_server.server_close()


@pytest.fixture
def registry() -> Iterator[Server]:
    yield from _serve(Server())


@pytest.fixture
def other() -> Iterator[Server]:
    """The token service on "another host" (another name, another port)."""
    yield from _serve(Server())


def _client(address: str, options: TransportOptions, *, anonymous: bool = False) -> RegistryClient:
    keychain = StaticKeychain(
        {} if anonymous else {address: {"username": USER, "password": PASSWORD}}
    )
    return RegistryClient(address, "team/app", auth=RegistryAuth(keychain), options=options)


def _plain_http(registry: Server, how: str) -> tuple[str, TransportOptions]:
    """The registry's address, reached over plain HTTP because it is loopback or because the
    user listed it (--insecure-registry / [oci].insecure_registries)."""
    if how == "loopback":
        return f"127.0.0.1:{registry.port}", TransportOptions(max_retries=0)
    address = f"{REGISTRY_NAME}:{registry.port}"
    return address, TransportOptions(insecure_registries=frozenset({address}), max_retries=0)


def _assert_no_secret(text: str) -> None:
    assert PASSWORD not in text
    assert BASIC.split()[1] not in text


@pytest.mark.usefixtures("names")
@pytest.mark.parametrize(
    ("how", "realm_host"),
    [
        ("loopback", OTHER_NAME),
        ("insecure_registries", OTHER_NAME),
        # The registry's own name on another port: another service, not the one chosen.
        ("insecure_registries", REGISTRY_NAME),
    ],
)
def test_no_cleartext_credentials_to_another_host(
    registry: Server, other: Server, how: str, realm_host: str
) -> None:
    address, options = _plain_http(registry, how)
    name = realm_host
    registry.realm = f"http://{name}:{other.port}/token"
    other.tokens = registry.tokens

    with _client(address, options) as client, pytest.raises(InsecureTokenServiceError) as error:
        client.ping()

    # Nothing reached the other host's token service, and no Basic went anywhere.
    assert other.seen == []
    assert registry.basic_seen() == []
    assert [s.path for s in registry.seen] == ["/v2/"]
    message = str(error.value)
    assert f"refusing to send the credentials (basic for user '{USER}'" in message
    assert f"token service http://{name}:{other.port}/token" in message
    assert f"only to the registry's own host and port ({address})" in message
    assert "serve the token service over HTTPS" in message
    assert isinstance(error.value, UnauthorizedError)
    assert error.value.registry == address
    _assert_no_secret(message)


@pytest.mark.usefixtures("names")
@pytest.mark.parametrize("how", ["loopback", "insecure_registries"])
def test_the_registry_own_host_and_port_gets_credentials_over_plain_http(
    registry: Server, other: Server, how: str
) -> None:
    address, options = _plain_http(registry, how)
    with _client(address, options) as client:
        client.ping()
    host = address
    assert [(s.host, s.path, s.authorization) for s in registry.seen[:2]] == [
        (host, "/v2/", None),
        (host, "/token", BASIC),
    ]
    assert registry.seen[2].authorization is not None
    assert registry.seen[2].authorization.startswith("Bearer ")
    assert other.seen == []


@pytest.mark.usefixtures("names")
def test_the_registry_own_token_service_may_not_redirect_credentials_elsewhere(
    registry: Server, other: Server
) -> None:
    """The realm is the registry's own host, but it redirects to another: not followed."""
    address, options = _plain_http(registry, "insecure_registries")
    registry.token_redirect = f"http://{OTHER_NAME}:{other.port}/token"
    with _client(address, options) as client, pytest.raises(RegistryError) as error:
        client.ping()
    assert other.seen == []
    assert [(s.host, s.path) for s in registry.basic_seen()] == [(address, "/token")]
    assert "HTTP 307" in str(error.value)
    _assert_no_secret(str(error.value))


@pytest.mark.usefixtures("names")
def test_anonymous_token_from_another_plain_http_host_is_allowed(
    registry: Server, other: Server
) -> None:
    """Without credentials nothing secret goes there (the registry's tokens travel in clear
    anyway): anonymous pulls from such a setup keep working."""
    address, options = _plain_http(registry, "insecure_registries")
    registry.realm = f"http://{OTHER_NAME}:{other.port}/token"
    other.tokens = registry.tokens
    with _client(address, options, anonymous=True) as client:
        client.ping()
    assert [(s.host, s.path, s.authorization) for s in other.seen] == [
        (f"{OTHER_NAME}:{other.port}", "/token", None)
    ]
    assert registry.basic_seen() == []


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    ca, cert = pki.make_tls_ca_and_server(tmp_path / "pki", dns_names=(REGISTRY_NAME,))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert.cert, cert.key)
    for server in _serve(Server(), context):
        yield server, ca.cert


@pytest.mark.usefixtures("names")
@pytest.mark.parametrize("anonymous", [False, True])
def test_an_https_registry_on_another_host_may_not_send_credentials_to_loopback(
    tls_registry: tuple[Server, Path], other: Server, anonymous: bool
) -> None:
    """A remote HTTPS registry naming a plain-HTTP token service on this machine: another
    host (any local process may listen there), so refused, as any plain-HTTP realm is."""
    registry, ca_bundle = tls_registry
    address = f"{REGISTRY_NAME}:{registry.port}"
    registry.realm = f"http://127.0.0.1:{other.port}/token"
    options = TransportOptions(ca_bundle=ca_bundle, max_retries=0)
    with (
        _client(address, options, anonymous=anonymous) as client,
        pytest.raises(InsecureTokenServiceError) as error,
    ):
        client.ping()
    assert other.seen == []
    assert [s.path for s in registry.seen] == ["/v2/"]
    message = str(error.value)
    assert f"registry {address} is reached over HTTPS" in message
    assert f"http://127.0.0.1:{other.port}/token is plain HTTP" in message
    assert "must be served over HTTPS" in message
    _assert_no_secret(message)


@pytest.mark.usefixtures("names")
def test_an_https_registry_with_an_https_token_service_elsewhere_still_works(
    tls_registry: tuple[Server, Path],
) -> None:
    """Over HTTPS another host is fine: the realm names the registry under another name."""
    registry, ca_bundle = tls_registry
    address = f"{REGISTRY_NAME}:{registry.port}"
    registry.realm = f"https://localhost:{registry.port}/token"
    options = TransportOptions(ca_bundle=ca_bundle, max_retries=0)
    with _client(address, options) as client:
        client.ping()
    assert [(s.host, s.path, s.authorization) for s in registry.basic_seen()] == [
        (f"localhost:{registry.port}", "/token", BASIC)
    ]
