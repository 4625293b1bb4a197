"""Image.add_files uploading the new layer to the target while it builds it: a chunked upload
(POST, PATCHes with Content-Range, PUT ?digest= with the last bytes) beside the build, with
save() finding the blob there; the whole upload from the layer's file when the registry
refuses chunks.

A fault proxy (tests/harness/proxies.py) in front of the anonymous registry records every
request; chunks are made small so that a small layer takes several PATCHes."""

from __future__ import annotations

import hashlib
import io
import itertools
import logging
import os
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from pants_oci.core import _transfer
from pants_oci.core.auth import StaticKeychain
from pants_oci.core.digest import Digest
from pants_oci.core.errors import LayerError
from pants_oci.core.image import Image
from pants_oci.core.layer import CustomFile
from pants_oci.core.registry import _uploads
from tests.core.registry_support import client_for, options_for
from tests.harness.proxies import FaultProxy, SeenRequest
from tests.harness.registry import Registry

CHUNK = 256 * 1024
UPLOADS = r"/blobs/uploads/"
TRANSFER_LOG = "pants_oci.core._transfer"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of CHUNK bytes exactly: a small layer makes several PATCHes."""
    monkeypatch.setattr(_transfer, "STREAM_CHUNK_SIZE", CHUNK)
    monkeypatch.setattr(_uploads, "_MOST_PER_PATCH", CHUNK)


@pytest.fixture(name="proxy")
def proxy_fixture(registry_anonymous: Registry) -> Iterator[FaultProxy]:
    with FaultProxy(registry_anonymous.url) as proxy:
        yield proxy


def _image(proxy: FaultProxy, registry: Registry, repository: str, **kwargs: Any) -> Image:
    return Image(
        "scratch",
        f"{proxy.host}/{repository}:v1",
        keychain=StaticKeychain({}),
        options=options_for(registry),
        **kwargs,
    )


def _big_files(seed: int = 0) -> dict[str, CustomFile]:
    """~1.5 MiB that does not compress: several chunks of layer."""
    data = b"".join(hashlib.sha256(b"%d %d" % (seed, i)).digest() for i in range(48 * 1024))
    return {"/data/blob.bin": CustomFile(data=data)}


def _patches(proxy: FaultProxy) -> list[SeenRequest]:
    return proxy.seen("PATCH", UPLOADS)


def _layer_puts(proxy: FaultProxy, digest: Digest) -> list[SeenRequest]:
    """The closing PUTs of uploads of blob ``digest`` (the query's ':' may be escaped)."""
    escaped = re.escape(str(digest)).replace(":", "(:|%3A)")
    return proxy.seen("PUT", rf"{UPLOADS}.*digest={escaped}")


def _content_ranges(patches: list[SeenRequest]) -> list[tuple[int, int]]:
    ranges = []
    for patch in patches:
        first, _, last = patch.headers["content-range"].partition("-")
        ranges.append((int(first), int(last)))
    return ranges


def _upload_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "pants-oci-layer-upload"]


def test_a_new_layer_goes_up_in_chunks_while_it_is_built(
    registry_anonymous: Registry,
    proxy: FaultProxy,
    unique_repo: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=TRANSFER_LOG)
    with _image(proxy, registry_anonymous, unique_repo) as image:
        layer = image.add_files(_big_files())
        layer_file = image._layers[-1].path
        assert layer_file is not None
        image.cmd = ["/data/blob.bin"]
        progress: list[tuple[int, int | None]] = []
        image.save(progress=lambda done, total: progress.append((done, total)))
        layer_bytes = layer_file.read_bytes()

    assert Digest("sha256", hashlib.sha256(layer_bytes).hexdigest()) == layer.digest
    assert len(layer_bytes) == layer.size > 5 * CHUNK
    # Content-Range PATCHes of a chunk each, in order and back to back, from the start...
    patches = _patches(proxy)
    ranges = _content_ranges(patches)
    assert len(patches) == (layer.size - 1) // CHUNK
    assert ranges[0][0] == 0
    assert all(end + 1 == start for (_, end), (start, _) in itertools.pairwise(ranges))
    assert [p.body_length for p in patches] == [CHUNK] * len(patches)
    # ...and the closing PUT names the digest and carries the rest: nothing went up whole.
    puts = _layer_puts(proxy, layer.digest)
    assert [put.body_length for put in puts] == [layer.size - ranges[-1][1] - 1]
    assert f"layer {layer.digest} is in" in caplog.text
    # save() found it there, and said so to its progress callback.
    assert progress[-1] == (layer.size, layer.size)
    # What the registry has is the layer file, byte for byte.
    with client_for(registry_anonymous, unique_repo) as client:
        assert b"".join(client.iter_blob(layer.digest, size=layer.size)) == layer_bytes
        manifest = client.get_image_manifest("v1")
    assert [d.digest for d in manifest.layers] == [layer.digest]


@pytest.mark.parametrize("status", [400, 416])
def test_a_registry_refusing_chunks_gets_the_layer_whole_from_its_file(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str, status: int
) -> None:
    error = b'{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"no chunks here"}]}'
    proxy.respond("PATCH", UPLOADS, status, body=error, times=None)
    with _image(proxy, registry_anonymous, unique_repo) as image:
        layer = image.add_files(_big_files(status))
        digest = image.save()

    assert len(_patches(proxy)) == 1  # tried once, then left to save()
    assert proxy.seen("DELETE", UPLOADS), "the refused session is cancelled"
    assert [put.body_length for put in _layer_puts(proxy, layer.digest)] == [layer.size]
    with client_for(registry_anonymous, unique_repo) as client:
        assert client.blob_size(layer.digest) == layer.size
        assert client.get_image_manifest("v1").digest == digest


def test_a_chunk_failing_midway_leaves_the_layer_to_the_whole_upload(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    proxy.cut("PATCH", UPLOADS, after_bytes=1000, skip=2)  # the third chunk breaks
    with _image(proxy, registry_anonymous, unique_repo) as image:
        layer = image.add_files(_big_files(3))
        image.save()

    assert len(_patches(proxy)) == 3
    assert [put.body_length for put in _layer_puts(proxy, layer.digest)] == [layer.size]
    with client_for(registry_anonymous, unique_repo) as client:
        assert client.blob_size(layer.digest) == layer.size


def test_saving_again_uploads_nothing(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    with _image(proxy, registry_anonymous, unique_repo) as image:
        image.add_files(_big_files(4))
        first = image.save()
        proxy.requests.clear()
        assert image.save() == first

    assert not proxy.seen("POST", UPLOADS)
    assert not proxy.seen("PATCH", UPLOADS)
    assert not proxy.seen("PUT", UPLOADS)
    assert len(proxy.seen("HEAD", r"/blobs/sha256:")) == 2  # the layer and the config


def test_an_unchanged_small_layer_built_again_is_not_uploaded(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    files = {"/etc/motd": CustomFile(data=b"same\n")}
    with _image(proxy, registry_anonymous, unique_repo) as image:
        image.add_files(files)
        first = image.save()
    proxy.requests.clear()
    with _image(proxy, registry_anonymous, unique_repo) as again:
        again.add_files(files)  # within one chunk: not worth a session, HEAD first
        assert again.save() == first

    assert not proxy.seen("POST", UPLOADS)
    assert not proxy.seen("PATCH", UPLOADS)


def test_the_upload_of_a_blob_the_repository_has_stops_once_its_digest_is_known(
    registry_anonymous: Registry, unique_repo: str
) -> None:
    data = os.urandom(3 * CHUNK)
    digest = Digest("sha256", hashlib.sha256(data).hexdigest())

    class Written:  # written whole already: the digest is known at the first chunk
        def __init__(self, size: int) -> None:
            self.stream = io.BytesIO(data[:size])
            self.left = size

        def available(self, at_least: int) -> int:
            return self.left

        def read(self, size: int) -> bytes:
            self.left -= size
            return self.stream.read(size)

        def digest(self) -> Digest:
            return digest

    with client_for(registry_anonymous, unique_repo) as client:
        client.upload_blob(data)
        whole = Written(len(data))
        assert client.upload_blob_while_written(whole, chunk_size=CHUNK) == (digest, len(data))
        assert whole.left == len(data), "not a byte was sent"
        # Smaller than a chunk: no session at all, left to upload_blob.
        assert client.upload_blob_while_written(Written(CHUNK - 1), chunk_size=CHUNK) is None


class _Writer:
    """A blob written as the upload asks for it, ``ahead`` bytes (at least) at a time (None:
    written whole already); its digest known once it is all written."""

    def __init__(self, data: bytes, ahead: int | None) -> None:
        self.data = data
        self.ahead = ahead
        self.written = len(data) if ahead is None else 0
        self.offset = 0

    def digest(self) -> Digest | None:
        if self.written < len(self.data):
            return None
        return Digest("sha256", hashlib.sha256(self.data).hexdigest())

    def available(self, at_least: int) -> int:
        if self.offset + at_least > self.written:
            wanted = self.offset + max(at_least, self.ahead or 0)
            self.written = min(len(self.data), max(self.written, wanted))
        return self.written - self.offset

    def read(self, size: int) -> bytes:
        self.offset += size
        return self.data[self.offset - size : self.offset]


# How far the writer is ahead of the upload (None: done before it began), the registry's
# least chunk: the PATCHes' lengths and the closing PUT's.
PATCH_CASES = {
    # Each PATCH takes what was written while the last one went.
    "writer ahead": (3 * CHUNK, None, [3 * CHUNK, 2 * CHUNK + 100], 0),
    # A PATCH per chunk as the writer gets there, the rest with the PUT.
    "writer keeping up": (CHUNK, None, [CHUNK] * 5, 100),
    # The registry's least chunk is honoured.
    "registry minimum": (CHUNK, 2 * CHUNK, [2 * CHUNK] * 2, CHUNK + 100),
    # Written before the upload began: asked for (HEAD) and sent with the PUT.
    "written already": (None, None, [], 5 * CHUNK + 100),
}


@pytest.mark.parametrize("case", PATCH_CASES.values(), ids=PATCH_CASES.keys())
def test_each_patch_carries_what_was_written_since_the_last(
    registry_anonymous: Registry,
    proxy: FaultProxy,
    unique_repo: str,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[int | None, int | None, list[int], int],
) -> None:
    ahead, registry_minimum, patch_lengths, put_length = case
    monkeypatch.setattr(_uploads, "_MOST_PER_PATCH", 64 * CHUNK)
    if registry_minimum is not None:
        headers = {"OCI-Chunk-Min-Length": str(registry_minimum)}
        proxy.add_headers("POST", rf"{UPLOADS}$", headers, times=None)
    data = os.urandom(5 * CHUNK + 100)
    with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
        uploaded = client.upload_blob_while_written(_Writer(data, ahead), chunk_size=CHUNK)
        assert uploaded is not None
        digest, size = uploaded
        assert b"".join(client.iter_blob(digest, size=size)) == data
    assert [p.body_length for p in _patches(proxy)] == patch_lengths
    assert [p.body_length for p in _layer_puts(proxy, digest)] == [put_length]


def test_without_upload_while_building_add_files_sends_nothing(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    with _image(proxy, registry_anonymous, unique_repo, upload_while_building=False) as image:
        layer = image.add_files(_big_files(5))
        assert proxy.requests == []
        image.save()
    assert not _patches(proxy)
    assert [put.body_length for put in _layer_puts(proxy, layer.digest)] == [layer.size]


def test_a_layer_that_fails_to_build_drops_its_upload(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    broken = CustomFile(stream=io.BytesIO(b"short"), size=100)
    with _image(proxy, registry_anonymous, unique_repo) as image:
        with pytest.raises(LayerError):
            image.add_files({**_big_files(6), "/zz/broken": broken})
        assert not _upload_threads()
        assert image.layers == []
    assert not proxy.seen("PUT", UPLOADS)
    # A session opened before the failure is cancelled, not left to expire.
    assert len(proxy.seen("DELETE", UPLOADS)) == len(proxy.seen("POST", UPLOADS))


def test_closing_the_image_leaves_no_upload_running(
    registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    with _image(proxy, registry_anonymous, unique_repo) as image:
        image.add_files(_big_files(7))
    assert not _upload_threads()


def test_with_token_auth_the_chunks_go_with_the_token(
    registry_token: Registry, unique_repo: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=TRANSFER_LOG)
    credentials = {
        registry_token.host: {
            "username": registry_token.username or "",
            "password": registry_token.password or "",
        }
    }
    with Image(
        "scratch",
        registry_token.ref(unique_repo, "v1"),
        keychain=StaticKeychain(credentials),
        options=options_for(registry_token),
    ) as image:
        layer = image.add_files(_big_files(8))
        digest = image.save()
    assert f"layer {layer.digest} is in" in caplog.text  # streamed, not left to save()
    with client_for(registry_token, unique_repo) as client:
        assert client.blob_size(layer.digest) == layer.size
        assert client.get_image_manifest("v1").digest == digest
