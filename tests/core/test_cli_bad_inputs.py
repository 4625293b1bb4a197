"""Bad inputs to `pants-oci`, one table: each ends in a clear error, never a traceback.

Every case runs the command line in this process and must exit 1 with no traceback, its
stderr naming the input at fault and what to do instead. Cases that need a registry talk to
small loopback servers: one answering plain HTTP as a TLS-only server does (HTTP 400 "Client
sent an HTTP request to an HTTPS server"), one serving an image whose config is not JSON.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core import cli
from tests.core.registry_support import hermetic_cli_environment
from tests.harness.json_handler import JsonHandler
from tests.harness.pki import make_tls_ca_and_server

LOOPBACK = "127.0.0.1"
_NOT_JSON = b"this config is not JSON"
_AMD64_CONFIG = json.dumps(
    {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
).encode()
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(config: bytes) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": _OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _sha256(config),
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()


_MANIFESTS = {"app": _manifest(_NOT_JSON), "amd64-only": _manifest(_AMD64_CONFIG)}
_BLOBS = {_sha256(blob): blob for blob in (_NOT_JSON, _AMD64_CONFIG)}


class _Registry(JsonHandler):
    """`app:1` is an image whose config blob is not JSON, `amd64-only:1` one for linux/amd64;
    with `https_only`, every request is answered as a Go server's TLS port answers plain
    HTTP."""

    https_only = False

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 200 and content_type == _OCI_MANIFEST:
            self.send_header("Docker-Content-Digest", _sha256(body))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.https_only:
            self._send(400, b"Client sent an HTTP request to an HTTPS server.\n", "text/plain")
        elif self.path == "/v2/":
            self.reply(200, {})
        elif self.path.endswith("/manifests/1") and self.path.split("/")[2] in _MANIFESTS:
            self._send(200, _MANIFESTS[self.path.split("/")[2]], _OCI_MANIFEST)
        elif "/blobs/" in self.path and self.path.rsplit("/", 1)[1] in _BLOBS:
            self._send(200, _BLOBS[self.path.rsplit("/", 1)[1]], "application/octet-stream")
        else:
            self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": self.path}]})

    do_HEAD = do_GET


@pytest.fixture
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    hermetic_cli_environment(monkeypatch, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def _serve(https_only: bool) -> Iterator[str]:
    handler = type("Handler", (_Registry,), {"https_only": https_only})
    server = ThreadingHTTPServer((LOOPBACK, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def registry() -> Iterator[str]:
    yield from _serve(https_only=False)


@pytest.fixture
def https_only_registry() -> Iterator[str]:
    yield from _serve(https_only=True)


@dataclass(frozen=True)
class Case:
    """``argv`` (with ``{reg}``, ``{tls}``, ``{tmp}`` filled in) after ``setup`` ran in the
    working directory; stderr must hold every one of ``expected``."""

    argv: tuple[str, ...]
    expected: tuple[str, ...]
    setup: Callable[[Path], None] = lambda _work: None
    status: int = 1
    offline: bool = False  # refused before any connection is made
    servers: tuple[str, ...] = field(default=())


def _layer_spec(**extra: Any) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        (work / "f.txt").write_text("hi\n")
        spec = {"entries": [{"source": "f.txt", "target": "/f"}], **extra}
        (work / "spec.json").write_text(json.dumps(spec))

    return setup


def _config(work: Path, **values: Any) -> None:
    (work / "config.json").write_text(json.dumps(values))


def _config_with(**values: Any) -> Callable[[Path], None]:
    return lambda work: _config(work, **values)


_ASSEMBLE = ("image", "assemble", "--base", "scratch", "--config", "config.json", "--output", "o")


def _layout_with_index(text: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        _config(work)
        (work / "base" / "blobs").mkdir(parents=True)
        (work / "base" / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        (work / "base" / "index.json").write_text(text)

    return setup


def _pem_key(work: Path) -> None:
    _ca, server = make_tls_ca_and_server(work / "pki")
    (work / "key.pem").write_bytes(server.key.read_bytes())  # PEM, but not a certificate


_MD5 = "md5:" + "d41d8cd98f00b204e9800998ecf8427e"

CASES = {
    "layer level out of range": Case(
        ("layer", "build", "--spec", "spec.json", "--output", "layer.tar.gz"),
        ("spec.json", "'level' 99", "gzip levels are 0-3"),
        setup=_layer_spec(level=99),
    ),
    "zstd level out of range": Case(
        ("layer", "build", "--spec", "spec.json", "--output", "layer.tar.zst"),
        ("spec.json", "'level' 99", "zstd levels are 1-22"),
        setup=_layer_spec(level=99, compression="zstd"),
    ),
    "layer output in a missing directory": Case(
        ("layer", "build", "--spec", "spec.json", "--output", "/no/such/dir/x"),
        ("--output /no/such/dir/x", "/no/such/dir does not exist"),
        setup=_layer_spec(),
    ),
    "layer output that is a directory": Case(
        ("layer", "build", "--spec", "spec.json", "--output", "."),
        ("--output . is a directory", "give the path of a file to write"),
        setup=_layer_spec(),
    ),
    "push of a path that does not exist": Case(
        ("push", "no-such-layout", "--to", "127.0.0.1:9/app:1"),
        ("no-such-layout: no such file or directory", "an OCI layout directory"),
    ),
    "empty tag": Case(
        (
            *("image", "assemble", "--base", "scratch", "--config", "config.json"),
            *("--output", "o", "--tag", ""),
        ),
        ("--tag ''", "is not a tag", "'latest'"),
        setup=_config,
    ),
    # Values of the image's description: refused by core/validation.py, as BUILD fields and the
    # Image API refuse them (tests/core/test_validation.py), named with the file they are in.
    "tag with a space": Case(
        (*_ASSEMBLE, "--tag", "a b"),
        ("--tag 'a b' is not a tag", "'example.com/app:1.2'"),
        setup=_config,
    ),
    "tag of 200 characters": Case(
        (*_ASSEMBLE, "--tag", "a" * 200),
        ("is not a tag", "up to 128"),
        setup=_config,
    ),
    "config platform of an unknown architecture": Case(
        _ASSEMBLE,
        ("config.json", "'linux/amd65'", "unknown architecture 'amd65'", "linux/amd64"),
        setup=_config_with(platform="linux/amd65"),
    ),
    "config port out of range": Case(
        _ASSEMBLE,
        ("config.json", "'99999/tcp' is not a port", "1 to 65535"),
        setup=_config_with(exposed_ports=["99999/tcp"]),
    ),
    "config port of an unknown protocol": Case(
        _ASSEMBLE,
        ("config.json", "'80/sctpx' is not a port", "tcp, udp or sctp"),
        setup=_config_with(exposed_ports=["80/sctpx"]),
    ),
    "config relative workdir": Case(
        _ASSEMBLE,
        ("config.json", "workdir 'app' is not an absolute path", "'/app'"),
        setup=_config_with(workdir="app"),
    ),
    "config relative volume": Case(
        _ASSEMBLE,
        ("config.json", "volume 'data' is not an absolute path", "'/data'"),
        setup=_config_with(volumes=["data"]),
    ),
    "config unknown stop signal": Case(
        _ASSEMBLE,
        ("config.json", "'SIGFOO' is not a signal", '"SIGQUIT"'),
        setup=_config_with(stop_signal="SIGFOO"),
    ),
    "config user with a space": Case(
        _ASSEMBLE,
        ("config.json", "user 'app user' is not a user", '"uid:gid"'),
        setup=_config_with(user="app user"),
    ),
    "config user that is a number": Case(
        _ASSEMBLE,
        ("config.json", "'user' must be str", "got 5"),
        setup=_config_with(user=5),
    ),
    "config label that is a number": Case(
        _ASSEMBLE,
        ("config.json", "'labels' must be an object of strings", "{{'a': 1}}"),
        setup=_config_with(labels={"a": 1}),
    ),
    "config env name starting with a digit": Case(
        _ASSEMBLE,
        ("config.json", "'1A' is not a variable name", "not starting with a digit"),
        setup=_config_with(env={"1A": "b"}),
    ),
    "layer spec negative uid": Case(
        ("layer", "build", "--spec", "spec.json", "--output", "layer.tar.gz"),
        ("spec.json", "'uid' -1 is not an id", "0 to 4294967294"),
        setup=_layer_spec(uid=-1),
    ),
    "layer spec entry gid too large": Case(
        ("layer", "build", "--spec", "spec.json", "--output", "layer.tar.gz"),
        ("spec.json: entries[0]", "'gid' 4294967295 is not an id"),
        setup=_layer_spec(entries=[{"source": "f.txt", "target": "/f", "gid": 2**32 - 1}]),
    ),
    "layer spec relative target": Case(
        ("layer", "build", "--spec", "spec.json", "--output", "layer.tar.gz"),
        ("spec.json: entries[0]", "'target' 'f' is not an absolute path", "'/f'"),
        setup=_layer_spec(entries=[{"source": "f.txt", "target": "f"}]),
    ),
    "inspect a platform the image is not for": Case(
        ("inspect", "{reg}/amd64-only:1", "--platform", "linux/arm64"),
        ("{reg}/amd64-only:1 is an image for linux/amd64, not linux/arm64",),
        servers=("reg",),
    ),
    "base pull platform without architecture": Case(
        ("base", "pull", "{reg}/app:1", "--platform", "linux", "--output", "o"),
        ("--platform", "'linux'", "`os/architecture[/variant]`", "linux/amd64"),
        offline=True,
    ),
    "inspect platform of empty parts": Case(
        ("inspect", "{reg}/app:1", "--platform", "//"),
        ("--platform", "'//'", "unknown os ''", "known: linux, windows"),
        offline=True,
    ),
    "inspect --config of a config that is not JSON": Case(
        ("inspect", "--config", "{reg}/app:1"),
        ("image config", "is not valid JSON", "--raw"),
        servers=("reg",),
    ),
    "ca bundle that does not exist": Case(
        ("--ca-bundle", "{tmp}/no-such.pem", "inspect", "{reg}/app:1"),
        ("--ca-bundle", "no-such.pem", "cannot be read", "PEM file"),
        offline=True,
    ),
    "ca bundle that is no certificate": Case(
        ("--ca-bundle", "key.pem", "inspect", "{reg}/app:1"),
        ("--ca-bundle key.pem", "not a PEM file of CA certificates"),
        setup=_pem_key,
        offline=True,
    ),
    "plain http to a tls registry": Case(
        ("--insecure-registry", "{tls}", "inspect", "{tls}/app:1"),
        ("{tls} speaks TLS", "drop {tls} from --insecure-registry"),
        servers=("tls",),
    ),
    "md5 digest": Case(
        ("inspect", "{reg}/app@" + _MD5),
        ("'md5' is not supported", "sha256, sha384, sha512"),
        offline=True,
    ),
    "url scheme in a reference": Case(
        ("inspect", "http://{reg}/app:1"),
        ("http://{reg}/app:1", "no URL scheme in image references: write {reg}/app:1"),
        offline=True,
    ),
    "url scheme in a push destination": Case(
        ("push", "layout", "--to", "https://{reg}/app"),
        ("--to", "no URL scheme", "write {reg}/app"),
        offline=True,
    ),
    "port out of range": Case(
        ("inspect", "localhost:99999/app:1"),
        ("localhost:99999/app:1", "port 99999 is not a valid port"),
        offline=True,
    ),
    "layout index.json that is not JSON": Case(
        ("image", "assemble", "--base", "base", "--config", "config.json", "--output", "o"),
        ("base/index.json", "not valid JSON"),
        setup=_layout_with_index('{"oops'),
    ),
    "layout index.json with invalid entries": Case(
        ("image", "assemble", "--base", "base", "--config", "config.json", "--output", "o"),
        ("base/index.json", "manifests.0.digest: invalid digest 'x'", "manifests.0.size"),
        setup=_layout_with_index('{"schemaVersion": 2, "manifests": [{"digest": "x"}]}'),
    ),
}


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    made: list[Any] = []
    real = socket.create_connection

    def counting(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        made.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    return made


@pytest.mark.parametrize("name", list(CASES))
def test_a_bad_input_is_one_clear_error(
    name: str,
    _env: Path,
    request: pytest.FixtureRequest,
    connections: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    case = CASES[name]
    case.setup(_env)
    values = {"tmp": str(_env), "reg": "127.0.0.1:1", "tls": "127.0.0.1:1"}
    for server in case.servers:
        values[server] = request.getfixturevalue(
            "registry" if server == "reg" else "https_only_registry"
        )
    argv = [word.format(**values) for word in case.argv]
    try:
        status = cli.main(["-q", *argv])
    except SystemExit as exit_:
        status = exit_.code
    except BaseException:  # what the user would see as a Python traceback
        status, err = None, "Traceback\n" + traceback.format_exc()
    else:
        err = ""
    err = capsys.readouterr().err + err
    assert "Traceback" not in err, err
    assert status == case.status, err
    assert err.startswith("pants-oci: error: "), err
    for words in case.expected:
        assert words.format(**values) in err, err
    assert "errors.pydantic.dev" not in err, err
    if case.offline:
        assert connections == [], "refused locally: no request"
