"""A registry whose redirects cannot be followed (a javascript:, mailto:, data:, file: or ftp:
URL, a Location without a host, a loop) gets one clear error naming the registry, the request
and the Location, never a traceback: run through the command line, against a small hostile
loopback registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MANIFEST_PATH = "/v2/app/manifests/1.0"


class _Redirector:
    """GET /v2/ answers 200; every manifest GET answers 307 to ``location``."""

    def __init__(self) -> None:
        self.location = ""
        self.seen: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.seen.append(self.path)
                if self.path == "/v2/":
                    status, headers = 200, {}
                else:
                    status, headers = 307, {"Location": server.location}
                body = json.dumps({}).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.http.server_address[1]}"


@pytest.fixture
def registry() -> Iterator[_Redirector]:
    redirector = _Redirector()
    thread = threading.Thread(target=redirector.http.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield redirector
    redirector.http.shutdown()
    redirector.http.server_close()


def _inspect(registry: _Redirector, tmp_path: Path) -> str:
    (tmp_path / "docker").mkdir(exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "pants_oci.core", "-q", "inspect", f"{registry.host}/app:1.0"],
        cwd=tmp_path,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO_ROOT / "src/python"),
            "DOCKER_CONFIG": str(tmp_path / "docker"),
            "HOME": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, f"exit {result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    return result.stderr


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        ("javascript:alert(1)", "its scheme is javascript:, not http: or https:"),
        ("mailto:ops@example.com", "its scheme is mailto:, not http: or https:"),
        ("data:text/plain,hello", "its scheme is data:, not http: or https:"),
        ("file:///etc/passwd", "its scheme is file:, not http: or https:"),
        ("ftp://mirror.example/blob", "its scheme is ftp:, not http: or https:"),
        ("http://", "it names no host"),
        ("https://", "it names no host"),
        ("http:///v2/app/manifests/1.0", "it names no host"),
        ("http://[::1/x", "it is not a valid URL"),
        ("http://host:port/x", "it is not a valid URL"),
    ],
)
def test_a_redirect_that_cannot_be_followed_is_one_clear_error(
    registry: _Redirector, tmp_path: Path, location: str, problem: str
) -> None:
    registry.location = location
    stderr = _inspect(registry, tmp_path)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(
        f"pants-oci: error: registry {registry.host} answered GET "
        f"'http://{registry.host}{MANIFEST_PATH}' (HTTP 307) with a redirect to {location!r}, "
        f"which cannot be followed: {problem}"
    )
    assert registry.seen == [MANIFEST_PATH]  # asked once, not followed


def test_a_redirect_loop_names_the_last_location(registry: _Redirector, tmp_path: Path) -> None:
    registry.location = MANIFEST_PATH
    stderr = _inspect(registry, tmp_path)
    assert (
        f"{registry.host}: more than 10 redirects for GET {MANIFEST_PATH} (a redirect loop?); "
        f"the last pointed at {MANIFEST_PATH!r}"
    ) in stderr
    assert registry.seen == [MANIFEST_PATH] * 11
    assert "hint" not in stderr  # not "is it up?": it answered, eleven times
