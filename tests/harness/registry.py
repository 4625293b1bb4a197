"""docker-registry (CNCF distribution 2.8) servers for tests, in four modes.

anonymous: plain HTTP, no auth.  basic: htpasswd (bcrypt) over plain HTTP.
token: `auth: token` backed by the test token service (token_service.py, its own process).
tls: anonymous over HTTPS with a server cert from a fresh test CA.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
import sys
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import bcrypt
import httpx

from tests.harness import pki
from tests.harness.processes import (
    LOOPBACK,
    HarnessError,
    ServerProcess,
    free_port,
    log_tail,
    require_binary,
)

Mode = Literal["anonymous", "basic", "token", "tls"]
MODES: tuple[Mode, ...] = ("anonymous", "basic", "token", "tls")

TOKEN_SERVICE_SCRIPT = Path(__file__).with_name("token_service.py")
# What a caller passes to httpx_client(auth=...): the registry's own user, no one, or (user, pw).
DEFAULT = "default"


class TokenError(HarnessError):
    """The token service refused to issue a token (e.g. 401 for wrong credentials)."""

    def __init__(self, status_code: int, body: str) -> None:
        super().__init__(f"token service answered {status_code}: {body[:500]}")
        self.status_code = status_code
        self.body = body


@dataclass
class TokenService:
    url: str  # e.g. http://127.0.0.1:PORT
    service: str
    issuer: str
    signing_cert: Path  # also the registry's rootcertbundle
    log_path: Path
    process: ServerProcess = field(repr=False)

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def stats(self) -> list[dict[str, Any]]:
        """Every token request seen since start or the last reset: method, user, scopes,
        status and (when issued) the granted access."""
        requests: list[dict[str, Any]] = httpx.get(f"{self.url}/_stats").json()["requests"]
        return requests

    def reset_stats(self) -> None:
        httpx.post(f"{self.url}/_stats/reset").raise_for_status()

    def stop(self) -> None:
        self.process.stop()


@dataclass
class Registry:
    mode: Mode
    host: str  # "127.0.0.1:PORT", the registry part of an image reference
    url: str  # "http://127.0.0.1:PORT" or "https://..."
    root: Path  # the server's temp dir
    storage_dir: Path  # filesystem driver root: tamper with blobs here
    config_path: Path
    log_path: Path
    process: ServerProcess = field(repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    # Every account (basic and token modes); in token mode "reader" may only pull.
    users: dict[str, str] = field(default_factory=dict, repr=False)
    ca_bundle: Path | None = None  # PEM of the test CA (TLS)
    cert_dir: Path | None = None  # a dir holding only ca.crt, for skopeo --cert-dir
    token_service: TokenService | None = None

    @property
    def tls(self) -> bool:
        return self.url.startswith("https://")

    def ref(self, repository: str, tag_or_digest: str = "latest") -> str:
        sep = "@" if tag_or_digest.startswith("sha256:") else ":"
        return f"{self.host}/{repository}{sep}{tag_or_digest}"

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (to corrupt it on purpose)."""
        algorithm, _, hex_ = digest.partition(":")
        return self.storage_dir / "docker/registry/v2/blobs" / algorithm / hex_[:2] / hex_ / "data"

    def verify(self) -> ssl.SSLContext | bool:
        """httpx `verify=` value that trusts this registry (and only the test CA for TLS)."""
        if self.ca_bundle is None:
            return True
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def auth(self, credentials: Any = DEFAULT) -> httpx.Auth | None:
        """httpx auth for this mode. credentials: DEFAULT (the registry's user), None
        (anonymous) or a (username, password) tuple."""
        if credentials == DEFAULT:
            credentials = (self.username, self.password) if self.username else None
        if self.mode == "token":
            assert self.token_service is not None
            return BearerTokenAuth(credentials)
        if credentials is None:
            return None
        return httpx.BasicAuth(*credentials)

    def httpx_client(self, credentials: Any = DEFAULT, **kwargs: Any) -> httpx.Client:
        """An httpx.Client with base_url set, trusting the CA, and authenticating as the mode
        requires (in token mode: 401 -> token -> retry, see BearerTokenAuth)."""
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(
            base_url=self.url, verify=self.verify(), auth=self.auth(credentials), **kwargs
        )

    def auth_json(self, credentials: Any = DEFAULT) -> dict[str, Any]:
        """A containers-auth.json / docker config.json document for this registry."""
        if credentials == DEFAULT:
            credentials = (self.username, self.password) if self.username else None
        if credentials is None:
            return {"auths": {}}
        token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        return {"auths": {self.host: {"auth": token}}}

    def log_tail(self, max_chars: int = 4000) -> str:
        return log_tail(self.log_path, max_chars)

    def stop(self) -> None:
        self.process.stop()
        if self.token_service is not None:
            self.token_service.stop()


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_bearer_challenge(header: str) -> dict[str, str] | None:
    scheme, _, rest = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return dict(_CHALLENGE_PARAM.findall(rest))


def token_request(challenge: dict[str, str], credentials: Any) -> httpx.Request:
    params: list[tuple[str, str | int | float | bool | None]] = []
    if "service" in challenge:
        params.append(("service", challenge["service"]))
    params += [("scope", s) for s in challenge.get("scope", "").split(" ") if s]
    headers = {}
    if credentials is not None:
        headers["Authorization"] = httpx.BasicAuth(*credentials)._auth_header
    return httpx.Request("GET", challenge["realm"], params=params, headers=headers)


def fetch_token(
    registry: Registry, scopes: list[str], credentials: Any = DEFAULT
) -> dict[str, Any]:
    """Ask the registry's token service directly; raises TokenError on refusal."""
    assert registry.token_service is not None
    if credentials == DEFAULT:
        credentials = (registry.username, registry.password)
    challenge = {"realm": registry.token_service.realm, "service": registry.token_service.service}
    challenge["scope"] = " ".join(scopes)
    with httpx.Client() as client:
        response = client.send(token_request(challenge, credentials))
    if response.status_code != 200:
        raise TokenError(response.status_code, response.text)
    body: dict[str, Any] = response.json()
    return body


class BearerTokenAuth(httpx.Auth):
    """Test-only Docker token handshake: send; on a 401 Bearer challenge fetch a token for its
    scope from the realm (Basic credentials if any) and retry once. Keeps the last token."""

    requires_request_body = True  # the retry re-sends upload bodies

    def __init__(self, credentials: tuple[str, str] | None) -> None:
        self.credentials = credentials
        self.token: str | None = None
        self.token_fetches = 0

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.token:
            request.headers["Authorization"] = f"Bearer {self.token}"
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_bearer_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge is None or "realm" not in challenge:
            return
        token_response = yield token_request(challenge, self.credentials)
        token_response.read()
        self.token_fetches += 1
        if token_response.status_code != 200:
            raise TokenError(token_response.status_code, token_response.text)
        body = token_response.json()
        self.token = body.get("token") or body["access_token"]
        request.headers["Authorization"] = f"Bearer {self.token}"
        yield request


def _start_token_service(
    directory: Path, *, expires_in: int
) -> tuple[TokenService, dict[str, dict[str, Any]]]:
    directory.mkdir(parents=True, exist_ok=True)
    cert = pki.make_token_signing_cert(directory)
    users = {
        "tester": {
            "password": secrets.token_urlsafe(12),
            "actions": ["pull", "push", "delete", "catalog"],
        },
        "reader": {"password": secrets.token_urlsafe(12), "actions": ["pull"]},
    }
    port_file = directory / "port"
    service_name, issuer = "pants-oci-test-registry", "pants-oci-test-issuer"
    config = {
        "issuer": issuer,
        "service": service_name,
        "key": str(cert.key),
        "cert": str(cert.cert),
        "port_file": str(port_file),
        "expires_in": expires_in,
        "users": users,
    }
    config_path = directory / "token-service.json"
    config_path.write_text(json.dumps(config, indent=2))
    config_path.chmod(0o600)  # holds the passwords
    process = ServerProcess(
        name="token service",
        argv=[sys.executable, str(TOKEN_SERVICE_SCRIPT), str(config_path)],
        workdir=directory,
        log_path=directory / "token-service.log",
    )

    def ready() -> bool:
        if not port_file.exists():
            return False
        try:
            httpx.get(f"http://{LOOPBACK}:{port_file.read_text()}/_stats", timeout=1.0)
        except httpx.TransportError:
            return False
        return True

    process.start(ready)
    service = TokenService(
        url=f"http://{LOOPBACK}:{port_file.read_text()}",
        service=service_name,
        issuer=issuer,
        signing_cert=cert.cert,
        log_path=process.log_path,
        process=process,
    )
    return service, users


def start_registry(
    mode: Mode,
    directory: Path,
    *,
    tls: bool | None = None,
    token_expires_in: int = 300,
    extra_users: dict[str, str] | None = None,
) -> Registry:
    """Start a docker-registry in `directory` (config, storage, certs, log all live there).
    `tls` adds HTTPS to basic/token mode too; "tls" mode is anonymous over HTTPS.
    `extra_users` ({user: password}) adds htpasswd accounts in basic mode."""
    if mode not in MODES:
        raise ValueError(f"unknown registry mode {mode!r}; expected one of {MODES}")
    if extra_users and mode != "basic":
        raise ValueError("extra_users is for basic mode (htpasswd)")
    binary = require_binary("docker-registry")
    directory.mkdir(parents=True, exist_ok=True)
    storage_dir = directory / "storage"
    storage_dir.mkdir(exist_ok=True)
    use_tls = mode == "tls" if tls is None else tls or mode == "tls"

    registry_kwargs: dict[str, Any] = {}
    auth: dict[str, Any] | None = None
    token_service: TokenService | None = None
    if mode == "basic":
        password = secrets.token_urlsafe(12)
        htpasswd = directory / "htpasswd"
        # distribution accepts only bcrypt entries; a low cost keeps logins fast in tests.
        accounts = {"tester": password, **(extra_users or {})}
        htpasswd.write_text(
            "".join(
                f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
                for user, pw in accounts.items()
            )
        )
        auth = {"htpasswd": {"realm": "pants-oci-test", "path": str(htpasswd)}}
        registry_kwargs.update(username="tester", password=password, users=accounts)
    elif mode == "token":
        token_service, users = _start_token_service(
            directory / "token-service", expires_in=token_expires_in
        )
        auth = {
            "token": {
                "realm": token_service.realm,
                "service": token_service.service,
                "issuer": token_service.issuer,
                "rootcertbundle": str(token_service.signing_cert),
            }
        }
        registry_kwargs.update(
            username="tester",
            password=users["tester"]["password"],
            users={name: u["password"] for name, u in users.items()},
            token_service=token_service,
        )

    http: dict[str, Any] = {
        "secret": secrets.token_hex(16),  # silences the "no secret" warning; unused by tests
        "headers": {"X-Content-Type-Options": ["nosniff"]},
    }
    if use_tls:
        ca, server = pki.make_tls_ca_and_server(directory / "tls")
        http["tls"] = {"certificate": str(server.cert), "key": str(server.key)}
        cert_dir = directory / "certs.d"
        cert_dir.mkdir(exist_ok=True)
        (cert_dir / "ca.crt").write_bytes(ca.cert.read_bytes())
        registry_kwargs.update(ca_bundle=ca.cert, cert_dir=cert_dir)

    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage_dir)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": http,
        # Accept foreign (non-distributable) layers named by URL, as Docker Hub and GHCR do;
        # distribution refuses every layer URL unless an allow pattern is configured.
        "validation": {"manifests": {"urls": {"allow": ["^https?://"]}}},
    }
    if auth is not None:
        config["auth"] = auth

    scheme = "https" if use_tls else "http"
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(registry_kwargs["ca_bundle"])) if use_tls else True
    )
    last_error: HarnessError | None = None
    # free_port() can race with another process taking the port; retry on a clash only.
    for _attempt in range(3):
        port = free_port()
        http["addr"] = f"{LOOPBACK}:{port}"
        config_path = directory / "config.yml"
        # JSON is valid YAML, and needs no YAML library.
        config_path.write_text(json.dumps(config, indent=2))
        url = f"{scheme}://{LOOPBACK}:{port}"

        def ready(url: str = url) -> bool:
            try:
                response = httpx.get(f"{url}/v2/", verify=verify, timeout=1.0)
            except httpx.TransportError:
                return False
            # 200 (anonymous) or 401 (auth) both prove the API is up.
            return "Docker-Distribution-Api-Version" in response.headers

        process = ServerProcess(
            name=f"docker-registry ({mode})",
            argv=[binary, "serve", str(config_path)],
            workdir=directory,
            log_path=directory / "registry.log",
        )
        try:
            process.start(ready)
        except HarnessError as e:
            if "address already in use" not in str(e):
                if token_service is not None:
                    token_service.stop()
                raise
            last_error = e
            continue
        return Registry(
            mode=mode,
            host=f"{LOOPBACK}:{port}",
            url=url,
            root=directory,
            storage_dir=storage_dir,
            config_path=config_path,
            log_path=process.log_path,
            process=process,
            **registry_kwargs,
        )
    if token_service is not None:
        token_service.stop()
    assert last_error is not None
    raise last_error


@dataclass(frozen=True)
class Logged:
    """One request of a registry's access log."""

    method: str
    path: str  # unquoted, no query
    query: dict[str, list[str]]
    status: int
    sent: int  # bytes of the response body


# distribution's access log is Apache's combined format: "METHOD REQUEST-URI PROTO" STATUS SIZE.
_ACCESS_LINE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<uri>/\S*) HTTP/1\.1" (?P<status>\d{3}) (?P<sent>\d+|-)'
)


def access_log(registry: Registry) -> list[Logged]:
    """Every request the registry has logged, oldest first."""
    logged = []
    for match in _ACCESS_LINE.finditer(registry.log_path.read_text()):
        parts = urlsplit(match["uri"])
        sent = 0 if match["sent"] == "-" else int(match["sent"])
        logged.append(
            Logged(
                match["method"],
                unquote(parts.path),
                parse_qs(parts.query),
                int(match["status"]),
                sent,
            )
        )
    return logged


def blob_downloads(registry: Registry, repository: str) -> int:
    """GETs of the repository's blobs that the registry answered with content (access log)."""
    return sum(
        1
        for entry in access_log(registry)
        if entry.method == "GET"
        and entry.path.startswith(f"/v2/{repository}/blobs/sha256:")
        and entry.status in (200, 307)
    )
