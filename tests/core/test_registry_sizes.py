"""Sizes a registry cannot lie about: a blob is read no further than its descriptor's size
and must be exactly that long, manifests and configs have a documented limit (4 MiB and
64 MiB), and absurd descriptor sizes are refused when a manifest is parsed. A real registry
behind the fault proxy where it can serve the lie; a small hostile server for what no
registry does (a body without a length that does not end)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from pants_oci.core import cli, media_types
from pants_oci.core.digest import Digest, sha256_of_bytes
from pants_oci.core.errors import DocumentError, SizeMismatchError
from pants_oci.core.models import (
    MAX_CONFIG_SIZE,
    MAX_DESCRIPTOR_SIZE,
    MAX_MANIFEST_SIZE,
    Descriptor,
    OCIManifest,
    Platform,
)
from pants_oci.core.registry import RegistryClient
from pants_oci.core.transport import TransportOptions
from tests.core.registry_support import (
    RecordedSleeps,
    client_for,
    hermetic_cli_environment,
    image_manifest,
    proxy_fixture,  # noqa: F401 - the `proxy` fixture
    unique_config,
)
from tests.harness.processes import LOOPBACK
from tests.harness.proxies import FaultProxy
from tests.harness.registry import Registry


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No host credentials and no proxy for the command line run in this process."""
    hermetic_cli_environment(monkeypatch, tmp_path)


def _cli_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run the command line; it must fail: the first line of its stderr."""
    assert cli.main(["-q", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()[0]


class _Image:
    """An image pushed to the registry (a config and one layer) and its manifest's JSON."""

    def __init__(self, client: RegistryClient, tag: str) -> None:
        self.layer = secrets.token_bytes(3000)
        config = json.loads(unique_config())  # a nonce in it: no other test's config
        config["rootfs"] = {"type": "layers", "diff_ids": [str(sha256_of_bytes(b"a tar"))]}
        self.config = json.dumps(config, separators=(",", ":")).encode()
        client.upload_blob(self.config)
        client.upload_blob(self.layer)
        self.raw = image_manifest(self.config, [self.layer], media_types.OCI_MANIFEST)
        client.put_manifest(self.raw, tag=tag)
        self.document: dict[str, Any] = json.loads(self.raw)
        self.config_digest = sha256_of_bytes(self.config)
        self.layer_digest = sha256_of_bytes(self.layer)


def _serve_instead(proxy: FaultProxy, tag: str, raw: bytes) -> None:
    """The proxy answers GETs of manifest `tag` with `raw` (its digest announced to match)."""
    headers = {"Content-Type": media_types.OCI_MANIFEST}
    headers["Docker-Content-Digest"] = str(sha256_of_bytes(raw))
    proxy.rewrite_body("GET", rf"/manifests/{tag}$", lambda _path, _body: (raw, headers))


def _lie(proxy: FaultProxy, tag: str, image: _Image, change: Callable[[Any], None]) -> None:
    document = json.loads(image.raw)
    change(document)
    _serve_instead(proxy, tag, json.dumps(document, separators=(",", ":")).encode())


# --- Configs --------------------------------------------------------------------------------


def test_a_config_larger_than_its_descriptor_says_is_refused(
    registry_anonymous: Registry,
    proxy: FaultProxy,
    unique_repo: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with client_for(registry_anonymous, unique_repo) as client:
        image = _Image(client, "small-lie")
    _lie(proxy, "small-lie", image, lambda m: m["config"].update(size=10))
    error = _cli_error(capsys, "inspect", "--config", f"{proxy.host}/{unique_repo}:small-lie")
    assert error == (
        f"pants-oci: error: registry {proxy.host} sent {len(image.config)} bytes for blob "
        f"{unique_repo}@{image.config_digest}, whose descriptor says 10 bytes"
    )
    # The summary reads the config too.
    error = _cli_error(capsys, "inspect", f"{proxy.host}/{unique_repo}:small-lie")
    assert "whose descriptor says 10 bytes" in error


def test_a_config_over_the_limit_is_refused_before_it_is_read(
    registry_anonymous: Registry,
    proxy: FaultProxy,
    unique_repo: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The descriptor says 300 MB (and the registry would serve the blob): never downloaded.
    with client_for(registry_anonymous, unique_repo) as client:
        image = _Image(client, "huge")
    _lie(proxy, "huge", image, lambda m: m["config"].update(size=300_000_000))
    error = _cli_error(capsys, "inspect", "--config", f"{proxy.host}/{unique_repo}:huge")
    assert error == (
        f"pants-oci: error: blob {proxy.host}/{unique_repo}@{image.config_digest} is "
        f"300000000 bytes, over the most read into memory, for an image config: {MAX_CONFIG_SIZE} "
        "bytes (64 MiB); it was not read"
    )
    assert proxy.seen("GET", r"/blobs/") == []


def test_a_blob_without_a_descriptor_size_is_read_no_further_than_the_limit(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    data = secrets.token_bytes(200_000)
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        digest, _ = client.upload_blob(data)
        with pytest.raises(DocumentError, match=r"is 200000 bytes, over the most read"):
            client.read_blob(digest, limit=100_000)  # the registry's Content-Length says so
        assert client.read_blob(digest, limit=200_000) == data


# --- Layers ---------------------------------------------------------------------------------


def test_a_layer_whose_descriptor_size_lies_is_not_pulled(
    registry_anonymous: Registry,
    proxy: FaultProxy,
    unique_repo: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with client_for(registry_anonymous, unique_repo) as client:
        image = _Image(client, "short")
        client.put_manifest(image.raw, tag="long")
    for tag, change in (("short", -1), ("long", 1)):  # the descriptor's size, off by one
        size = len(image.layer) + change
        _lie(proxy, tag, image, lambda m, size=size: m["layers"][0].update(size=size))
        layout = tmp_path / tag
        error = _cli_error(
            capsys,
            "base",
            "pull",
            f"{proxy.host}/{unique_repo}:{tag}",
            "--platform",
            "linux/amd64",
            "--output",
            str(layout),
            "--with-layers",
        )
        assert error == (
            f"pants-oci: error: registry {proxy.host} sent {len(image.layer)} bytes for blob "
            f"{unique_repo}@{image.layer_digest}, whose descriptor says {size} bytes"
        )
        assert not layout.exists()  # a failed pull leaves no output, not even a partial one
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{tag}")]  # nor a temp


def test_a_blob_copy_is_held_to_the_descriptor_size(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    data = secrets.token_bytes(5000)
    with (
        client_for(registry_anonymous, f"{unique_repo}-src", host=proxy.host) as source,
        client_for(registry_anonymous, unique_repo) as target,
    ):
        digest, _ = source.upload_blob(data)
        with pytest.raises(SizeMismatchError) as error:
            target.copy_blob(source, digest, size=len(data) - 1)
        assert target.blob_size(digest) is None
    assert (error.value.expected, error.value.actual) == (len(data) - 1, len(data))
    assert error.value.registry == proxy.host and error.value.digest == str(digest)


# --- Manifests and descriptors --------------------------------------------------------------


def test_an_absurd_descriptor_size_is_refused_when_the_manifest_is_parsed(
    registry_anonymous: Registry,
    proxy: FaultProxy,
    unique_repo: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with client_for(registry_anonymous, unique_repo) as client:
        image = _Image(client, "petabyte")
    _lie(proxy, "petabyte", image, lambda m: m["layers"][0].update(size=10**15))
    error = _cli_error(capsys, "inspect", f"{proxy.host}/{unique_repo}:petabyte")
    assert error.startswith("pants-oci: error: not a valid OCIManifest document")
    assert f"size {10**15} is absurd: no blob is larger than {MAX_DESCRIPTOR_SIZE} bytes" in error


def test_descriptor_sizes_must_be_sane() -> None:
    digest = str(sha256_of_bytes(b""))
    for size in (-1, MAX_DESCRIPTOR_SIZE + 1, 10**15):
        with pytest.raises(ValueError, match="size"):
            Descriptor(media_type="application/octet-stream", digest=digest, size=size)
    largest = Descriptor(media_type="x", digest=digest, size=MAX_DESCRIPTOR_SIZE)
    assert largest.size == 1 << 40  # 1 TiB is still a size


def test_a_manifest_over_4_mib_is_refused(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    with client_for(registry_anonymous, unique_repo) as client:
        image = _Image(client, "big")
        client.put_manifest(image.raw, tag="fits")
    padded = image.raw[:-1] + b" " * (MAX_MANIFEST_SIZE - len(image.raw) + 1) + b"}"
    assert len(padded) == MAX_MANIFEST_SIZE + 1
    _serve_instead(proxy, "big", padded)
    with (
        client_for(registry_anonymous, unique_repo, host=proxy.host) as client,
        pytest.raises(DocumentError, match=r"is 4194305 bytes, over the most a manifest"),
    ):
        client.get_manifest("big")
    exactly = padded[:-2] + b"}"
    _serve_instead(proxy, "fits", exactly)
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        assert client.get_manifest("fits").to_bytes() == exactly  # 4 MiB is allowed


def test_an_index_entry_whose_size_lies_is_refused(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    with client_for(registry_anonymous, unique_repo) as client:
        image = _Image(client, "entry")
        manifest = OCIManifest.from_bytes(image.raw)
        entry = manifest.descriptor(platform=Platform(os="linux", architecture="amd64"))
        lying = entry.model_copy(update={"size": entry.size + 100})
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": media_types.OCI_INDEX,
                "manifests": [lying.model_dump(by_alias=True, exclude_none=True, mode="json")],
            }
        ).encode()
        client.put_manifest(index, media_types.OCI_INDEX, tag="index")
    with (
        client_for(registry_anonymous, unique_repo, host=proxy.host) as client,
        pytest.raises(SizeMismatchError) as error,
    ):
        client.get_image_manifest("index", Platform(os="linux", architecture="amd64"))
    assert str(error.value) == (
        f"registry {proxy.host} sent {entry.size} bytes for manifest "
        f"{unique_repo}@{entry.digest}, whose descriptor says {entry.size + 100} bytes"
    )


# --- A body that never ends -----------------------------------------------------------------


class _EndlessBlobs(ThreadingHTTPServer):
    """Answers every blob GET with a chunked body (no length) of `length` bytes: None for one
    that does not end (it stops when the client goes, or after 1 GiB)."""

    daemon_threads = True

    def __init__(self, length: int | None) -> None:
        super().__init__((LOOPBACK, 0), _EndlessHandler)
        self.length = length
        self.host = f"{LOOPBACK}:{self.server_address[1]}"


class _EndlessHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _EndlessBlobs

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        remaining = self.server.length if self.server.length is not None else 1 << 30
        block = b"x" * 65536
        try:
            while remaining > 0:
                piece = block[:remaining]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                remaining -= len(piece)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client stopped reading: what the tests want
        self.close_connection = True


@pytest.fixture
def endless() -> Iterator[Callable[[int | None], RegistryClient]]:
    servers: list[_EndlessBlobs] = []
    clients: list[RegistryClient] = []

    def client_of(length: int | None) -> RegistryClient:
        import threading

        server = _EndlessBlobs(length)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        options = TransportOptions(sleep=RecordedSleeps(), max_retries=0)
        clients.append(RegistryClient(server.host, "app", auth=httpx.Auth(), options=options))
        return clients[-1]

    yield client_of
    for client in clients:
        client.close()
    for server in servers:
        server.shutdown()
        server.server_close()


_SOME_DIGEST = Digest("sha256", "ab" * 32)


def test_a_body_without_a_length_is_read_no_further_than_the_descriptor_size(
    endless: Callable[[int | None], RegistryClient],
) -> None:
    client = endless(None)
    received: list[bytes] = []
    with pytest.raises(SizeMismatchError) as error:
        for chunk in client.iter_blob(_SOME_DIGEST, size=10):
            received.append(chunk)
    assert received == []  # not one byte past the descriptor's 10 is handed on
    assert (error.value.expected, error.value.actual) == (10, None)
    assert str(error.value) == (
        f"registry {client.registry} sent more than 10 bytes for blob app@{_SOME_DIGEST}, "
        "whose descriptor says 10 bytes"
    )


def test_a_body_without_a_length_is_read_no_further_than_the_limit(
    endless: Callable[[int | None], RegistryClient],
) -> None:
    client = endless(None)
    with pytest.raises(DocumentError, match=r"is larger than 1048576 bytes, over the most read"):
        client.read_blob(_SOME_DIGEST, limit=1024 * 1024)


def test_a_body_shorter_than_the_descriptor_size_is_refused(
    endless: Callable[[int | None], RegistryClient], tmp_path: Path
) -> None:
    client = endless(5)
    (tmp_path / "out").mkdir()
    with pytest.raises(SizeMismatchError) as error:
        client.get_blob(_SOME_DIGEST, tmp_path / "out/blob", size=10)
    assert (error.value.expected, error.value.actual) == (10, 5)
    assert list((tmp_path / "out").iterdir()) == []  # no file, no partial file
