"""A small Docker registry token service for tests, run as its own process:

    python token_service.py CONFIG.json

CONFIG.json (written by the harness; credentials live only in this file, never on argv):
    {"issuer": str, "service": str, "key": PEM path, "cert": PEM path, "port_file": path,
     "expires_in": seconds, "users": {"NAME": {"password": str, "actions": [str, ...]}}}

GET /token?service=S&scope=repository:NAME:pull,push (scope may repeat) answers
{"token", "access_token", "expires_in", "issued_at"} with an RS256 JWT whose x5c header carries
`cert`. POST /token takes the OAuth2 password and refresh_token grants. Policy: a known user gets
the requested actions it is allowed (its "actions"; "catalog" also grants registry:catalog:*);
anonymous gets pull on repositories under `public/` and nothing else; wrong credentials get 401.
GET /_stats reports the requests seen; POST /_stats/reset clears them.

Standalone on purpose (stdlib + cryptography): it runs outside the test process.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

REPO_ACTIONS = ("pull", "push", "delete")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Authority:
    def __init__(self, config: dict[str, Any]) -> None:
        self.issuer: str = config["issuer"]
        self.service: str = config["service"]
        self.expires_in = int(config.get("expires_in", 300))
        self.users: dict[str, dict[str, Any]] = config["users"]
        key = serialization.load_pem_private_key(Path(config["key"]).read_bytes(), None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.key = key
        cert = x509.load_pem_x509_certificate(Path(config["cert"]).read_bytes())
        # distribution verifies the x5c chain against its rootcertbundle (this same cert).
        self.x5c = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
        self.lock = threading.Lock()
        self.refresh_tokens: dict[str, str] = {}
        self.stats: list[dict[str, Any]] = []

    def check_user(self, username: str, password: str) -> bool:
        user = self.users.get(username)
        # Compare even for unknown users so a wrong name and a wrong password look alike.
        expected = user["password"] if user else secrets.token_hex(8)
        ok = hmac.compare_digest(password.encode(), str(expected).encode())
        return user is not None and ok

    def grant(self, username: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        allowed = set(self.users[username].get("actions", REPO_ACTIONS)) if username else set()
        access: list[dict[str, Any]] = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            rtype, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
            if rtype == "repository":
                if username is None:
                    granted = ["pull"] if name.startswith("public/") and "pull" in actions else []
                else:
                    granted = [a for a in actions if a in allowed]
            elif rtype == "registry" and name == "catalog":
                granted = ["*"] if "catalog" in allowed and "*" in actions else []
            else:
                granted = []
            if granted:
                access.append({"type": rtype, "name": name, "actions": granted})
        return access

    def issue(self, username: str | None, access: list[dict[str, Any]]) -> tuple[str, int, str]:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        claims = {
            "iss": self.issuer,
            "sub": username or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        return signing_input + "." + b64url(signature), self.expires_in, issued_at

    def new_refresh_token(self, username: str) -> str:
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.refresh_tokens[token] = username
        return token

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.stats.append(entry)


def split_scopes(values: list[str]) -> list[str]:
    # Docker clients repeat `scope`; OAuth2 clients space-separate scopes in one value.
    return [s for v in values for s in v.split(" ") if s]


class Handler(BaseHTTPRequestHandler):
    authority: Authority
    server_version = "pants-oci-test-token/1"

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"token-service {self.command} {format % args}\n")

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def basic_user(self) -> tuple[str | None, bool]:
        """(username or None for anonymous, credentials_ok)."""
        header = self.headers.get("Authorization")
        if not header:
            return None, True
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            username, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None, False
        return (username, True) if self.authority.check_user(username, password) else (None, False)

    def refuse(self, entry: dict[str, Any], status: int, error: str) -> None:
        entry.update(status=status, error=error)
        self.authority.record(entry)
        self.send_json(
            status,
            {"errors": [{"code": "UNAUTHORIZED", "message": error}], "error": error},
            {"WWW-Authenticate": 'Basic realm="pants-oci-test-token"'} if status == 401 else None,
        )

    def respond_token(
        self, entry: dict[str, Any], user: str | None, scopes: list[str], refresh: bool
    ) -> None:
        service = entry.get("service")
        if service and service != self.authority.service:
            return self.refuse(entry, 400, f"unknown service {service!r}")
        access = self.authority.grant(user, scopes)
        token, expires_in, issued_at = self.authority.issue(user, access)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "expires_in": expires_in,
            "issued_at": issued_at,
        }
        if refresh and user is not None:
            body["refresh_token"] = self.authority.new_refresh_token(user)
        entry.update(status=200, granted=access)
        self.authority.record(entry)
        self.send_json(200, body)
        return None

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/_stats":
            with self.authority.lock:
                stats = list(self.authority.stats)
            return self.send_json(200, {"requests": stats})
        if url.path != "/token":
            return self.send_json(404, {"error": "not found"})
        query = parse_qs(url.query)
        scopes = split_scopes(query.get("scope", []))
        user, ok = self.basic_user()
        entry = {
            "method": "GET",
            "user": user,
            "service": query.get("service", [None])[0],
            "scopes": scopes,
        }
        if not ok:
            return self.refuse(entry, 401, "invalid credentials")
        offline = query.get("offline_token", ["false"])[0] == "true"
        return self.respond_token(entry, user, scopes, offline)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/_stats/reset":
            with self.authority.lock:
                self.authority.stats.clear()
            return self.send_json(200, {})
        if url.path != "/token":
            return self.send_json(404, {"error": "not found"})
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())

        def field(name: str) -> str | None:
            return form.get(name, [None])[0]

        grant_type = field("grant_type")
        scopes = split_scopes(form.get("scope", []))
        entry: dict[str, Any] = {
            "method": "POST",
            "grant_type": grant_type,
            "user": None,
            "service": field("service"),
            "scopes": scopes,
        }
        if grant_type == "password":
            username, password = field("username") or "", field("password") or ""
            if not self.authority.check_user(username, password):
                return self.refuse(entry, 401, "invalid credentials")
            entry["user"] = username
            return self.respond_token(entry, username, scopes, field("access_type") == "offline")
        if grant_type == "refresh_token":
            with self.authority.lock:
                owner = self.authority.refresh_tokens.get(field("refresh_token") or "")
            if owner is None:
                return self.refuse(entry, 401, "invalid refresh token")
            entry["user"] = owner
            return self.respond_token(entry, owner, scopes, refresh=False)
        return self.refuse(entry, 400, f"unsupported grant_type {grant_type!r}")


def main() -> None:
    config = json.loads(Path(sys.argv[1]).read_text())
    Handler.authority = Authority(config)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # Bound to port 0 so there is no race for the port; tell the harness which one we got.
    port_file = Path(config["port_file"])
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(server.server_address[1]))
    tmp.replace(port_file)
    sys.stderr.write(f"token-service listening on 127.0.0.1:{server.server_address[1]}\n")
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
