"""Google's OAuth2 token endpoint on loopback, for google-auth's real service-account flow.

A service-account key file (`key_file`) whose `token_uri` points at this endpoint makes
google-auth sign a JWT-bearer assertion with the key and POST it here; the endpoint verifies
the signature, records the grant and answers with an access token (random ones, or
`token_value`), as https://oauth2.googleapis.com/token does.

Registries then take that token as the password of Basic `oauth2accesstoken:<token>`: a
basic-mode harness registry with that account (`extra_users`) stands in for one.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.harness.processes import LOOPBACK

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_USERNAME = "oauth2accesstoken"
SERVICE_ACCOUNT_EMAIL = "builder@pants-oci-test.iam.gserviceaccount.com"


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class GoogleTokenEndpoint:
    """A loopback OAuth2 token endpoint that checks google-auth's signed JWT-bearer assertion.

    `grants` records every verified assertion's claims (plus `grant_type`), `issued` every
    access token answered; `fail_with = (status, body)` refuses the next grants instead.
    """

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.expires_in = 3600
        self.fail_with: tuple[int, dict[str, str]] | None = None
        self.token_value: str | None = None  # issue this access token (default: random ones)
        self.grants: list[dict[str, Any]] = []
        self.issued: list[str] = []
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                status, body = endpoint.answer(form)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.token_uri = f"http://{LOOPBACK}:{self.server.server_address[1]}/token"

    def answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        header_b64, claims_b64, signature_b64 = form["assertion"].split(".")
        # The real signature check: google-auth signed with the service account's key.
        self.key.public_key().verify(
            b64url_decode(signature_b64),
            f"{header_b64}.{claims_b64}".encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
        claims = json.loads(b64url_decode(claims_b64))
        with self._lock:
            self.grants.append({"grant_type": form.get("grant_type"), **claims})
            if self.fail_with is not None:
                return self.fail_with
            token = self.token_value or f"ya29.test-{secrets.token_hex(8)}"
            self.issued.append(token)
        return 200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}

    def private_key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def service_account_info(self) -> dict[str, str]:
        return {
            "type": "service_account",
            "project_id": "pants-oci-test",
            "private_key_id": "test-key-1",
            "private_key": self.private_key_pem(),
            "client_email": SERVICE_ACCOUNT_EMAIL,
            "client_id": "1234567890",
            "token_uri": self.token_uri,
        }

    def key_file(self, directory: Path) -> Path:
        path = directory / "service-account.json"
        path.write_text(json.dumps(self.service_account_info()))
        return path

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
