"""A blob upload whose bytes are not the digest (or the size) stated for them fails with one
error type whichever way it goes: bytes, a file or a stream; one PUT, PATCH chunks or one
streamed PATCH; found here or by the registry; through RegistryClient, Image.save or
push_layout. Nothing is ever stored under the digest stated. Real registries (distribution 2.8).
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from pants_oci.core.auth import StaticKeychain
from pants_oci.core.digest import Digest, sha256_of_bytes
from pants_oci.core.errors import DigestMismatchError, SizeMismatchError
from pants_oci.core.image import Image
from pants_oci.core.layer import CustomFile
from pants_oci.core.layout import ImageLayout
from pants_oci.core.registry import RegistryClient
from pants_oci.core.remote import push_layout
from pants_oci.core.transport import TransportOptions
from tests.core.registry_support import RecordedSleeps, client_for, options_for
from tests.harness.registry import Registry

SIZE = 5000  # bytes of each blob: several chunks of CHUNK
CHUNK = 1024
DIFF_ID = "sha256:" + "d" * 64


@dataclass
class Case:
    """One upload of ``data`` (a tmp file at ``path``) stated to be ``stated`` bytes of
    ``digest``; what it hands to the upload."""

    registry: Registry
    repository: str
    path: Path
    data: bytes
    digest: Digest
    stated: int

    def client(self) -> RegistryClient:
        return client_for(self.registry, self.repository)

    def keychain(self) -> StaticKeychain:
        registry = self.registry
        if not registry.username:
            return StaticKeychain({})
        credentials = {"username": registry.username, "password": registry.password}
        return StaticKeychain({registry.host: credentials})


class _Pipe(io.RawIOBase):
    """A stream that cannot be read again (no seek), like a pipe."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        piece = self._data.read(len(buffer))
        buffer[: len(piece)] = piece
        return len(piece)


class _LyingGrowingBlob:
    """A blob being written whose writer states a digest its bytes do not have."""

    def __init__(self, data: bytes, digest: Digest) -> None:
        self._data, self._digest, self._read = data, digest, 0

    def digest(self) -> Digest | None:
        return self._digest if self._read else None  # known once the first chunk was read

    def available(self, at_least: int) -> int:
        return len(self._data) - self._read

    def read(self, size: int) -> bytes:
        piece = self._data[self._read : self._read + size]
        self._read += len(piece)
        return piece


def _upload(case: Case, **kwargs: Any) -> Callable[[Any], object]:
    def run(source: Any) -> object:
        with case.client() as client:
            return client.upload_blob(source, digest=case.digest, **kwargs)

    return run


def _client_upload(how: str) -> Callable[[Case], object]:
    """RegistryClient.upload_blob from bytes, a file or a stream, by each protocol."""

    def run(case: Case) -> object:
        sized = {"size": case.stated}
        chunked = {"chunk_size": CHUNK}
        return {
            "bytes": lambda: _upload(case, **sized)(case.data),
            "bytes-chunked": lambda: _upload(case, **sized, **chunked)(case.data),
            "file": lambda: _upload(case, **sized)(case.path),
            "file-chunked": lambda: _upload(case, **sized, **chunked)(case.path),
            "stream-sized": lambda: _upload(case, **sized)(io.BytesIO(case.data)),
            "stream-sized-chunked": lambda: _upload(case, **sized, **chunked)(
                io.BytesIO(case.data)
            ),
            "stream-streamed-sized": lambda: _upload(case, **sized)(_Pipe(case.data)),
            "pipe-sized-chunked": lambda: _upload(case, **sized, **chunked)(_Pipe(case.data)),
        }[how]()

    return run


def _while_written(case: Case) -> object:
    with case.client() as client:
        blob = _LyingGrowingBlob(case.data, case.digest)
        return client.upload_blob_while_written(blob, chunk_size=CHUNK)


def _image_save(case: Case) -> object:
    with Image(
        "scratch",
        f"{case.registry.host}/{case.repository}:v1",
        keychain=case.keychain(),
        options=options_for(case.registry),
        platform="linux/amd64",
    ) as image:
        image.add_layer(case.digest, DIFF_ID, case.stated, blob=case.path)
        return image.save()


def _push_layout(case: Case, replace: Callable[[bytes], bytes] | None = None) -> object:
    """An OCI layout whose layer blob file does not hold what its name and descriptor say:
    ``replace`` gives its bytes from the layer's (by default: as many random bytes). The
    case is about that layer from then on: its digest and size are the ones stated."""
    root = case.path.parent / "layout"
    with Image("scratch", platform="linux/amd64") as image:
        image.add_files({"/hello.txt": CustomFile(data=secrets.token_bytes(64))})
        image.write_layout(root, ["latest"])
        layer = image.get_image_data().manifest.layers[0]
    blob = ImageLayout.open(root).blob_path(layer.digest)
    original = blob.read_bytes()
    case.data = (replace or (lambda layer: secrets.token_bytes(len(layer))))(original)
    blob.unlink()  # (it may be a hard link to the file the layer was built in)
    blob.write_bytes(case.data)
    case.digest, case.stated = layer.digest, layer.size
    return push_layout(
        root,
        [f"{case.registry.host}/{case.repository}:v1"],
        keychain=case.keychain(),
        options=options_for(case.registry),
    )


DIGEST_PATHS: dict[str, Callable[[Case], object]] = {
    **{
        how: _client_upload(how)
        for how in (
            "bytes",
            "bytes-chunked",
            "file",
            "file-chunked",
            "stream-sized",
            "stream-sized-chunked",
            "stream-streamed-sized",
            "pipe-sized-chunked",
        )
    },
    "stream-unsized": lambda case: _upload(case)(io.BytesIO(case.data)),
    "pipe-unsized": lambda case: _upload(case)(_Pipe(case.data)),
    "while-written (the registry finds it)": _while_written,
    "Image.save": _image_save,
    "push_layout": _push_layout,
}


@pytest.fixture(params=["registry_anonymous", "registry_token"])
def registry(request: pytest.FixtureRequest) -> Registry:
    mode_registry: Registry = request.getfixturevalue(request.param)
    return mode_registry


def _stored(case: Case, *digests: Digest) -> list[Digest]:
    with case.client() as client:
        return [digest for digest in digests if client.blob_size(digest) is not None]


def _tagged(case: Case) -> bool:
    with case.client() as client:
        return client.head_manifest("v1") is not None


@pytest.mark.parametrize("path", DIGEST_PATHS)
def test_a_wrong_digest_is_a_digest_mismatch_on_every_path(
    path: str, registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    data = secrets.token_bytes(SIZE)
    case = Case(registry, unique_repo, tmp_path / "blob", data, sha256_of_bytes(b"other"), SIZE)
    case.path.write_bytes(data)
    with pytest.raises(DigestMismatchError) as failed:
        DIGEST_PATHS[path](case)
    error = failed.value
    assert error.expected == str(case.digest)
    if path.startswith("while-written"):  # only the registry hashed the bytes
        assert error.actual is None and "unknown" in str(error)
        assert "DIGEST_INVALID" in str(error)
    else:
        assert error.actual == str(sha256_of_bytes(case.data))
    assert error.registry == registry.host
    assert str(case.digest) in str(error)
    assert _stored(case, case.digest) == []
    assert not _tagged(case)


# --- Sizes -------------------------------------------------------------------------------------


def _stated_size(path: str, case: Case) -> object:
    """An upload of ``case.data`` stated as ``case.stated`` bytes (with the digest of the
    bytes, or without a digest)."""
    if path == "Image.save":
        return _image_save(case)
    if path == "push_layout":
        more = case.stated > len(case.data)  # a blob file shorter than its descriptor
        return _push_layout(case, lambda layer: layer[: len(layer) // 2] if more else layer * 2)
    how, _, digest = path.partition(":")
    stated: dict[str, Any] = {"size": case.stated}
    if digest != "no-digest":
        stated["digest"] = case.digest
    if "chunked" in how:
        stated["chunk_size"] = CHUNK
    source: Any = {
        "bytes": case.data,
        "file": case.path,
        "stream": io.BytesIO(case.data),
        "pipe": _Pipe(case.data),
    }[how.split("-")[0]]
    with case.client() as client:
        return client.upload_blob(source, **stated)


SIZE_PATHS = [
    "bytes",
    "bytes-chunked",
    "file",
    "file-chunked",
    "stream",
    "stream-chunked",
    "stream:no-digest",
    "pipe:no-digest",
    "stream-chunked:no-digest",
    "pipe-chunked:no-digest",
    "Image.save",
    "push_layout",
]


@pytest.mark.parametrize("stated", [SIZE - 100, SIZE + 100], ids=["fewer", "more"])
@pytest.mark.parametrize("path", SIZE_PATHS)
def test_a_wrong_size_is_a_size_mismatch_on_every_path(
    path: str, stated: int, registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    data = secrets.token_bytes(SIZE)
    case = Case(registry, unique_repo, tmp_path / "blob", data, sha256_of_bytes(data), stated)
    case.path.write_bytes(data)
    with pytest.raises(SizeMismatchError) as failed:
        _stated_size(path, case)
    error = failed.value
    assert error.expected == case.stated
    if case.stated > len(case.data):  # the source ended short: how short is known
        assert error.actual == len(case.data)
    else:  # longer: known when it was read to its end anyway
        assert error.actual in (len(case.data), None)
    assert error.registry == registry.host
    assert str(error.expected) in str(error)
    truncated = sha256_of_bytes(case.data[: case.stated])
    assert _stored(case, case.digest, sha256_of_bytes(case.data), truncated) == []
    assert not _tagged(case)


# --- A registry that does not check digests ------------------------------------------------


def test_a_registry_that_checks_nothing_is_sent_no_complete_wrong_blob(tmp_path: Path) -> None:
    """The closing PUT of a monolithic upload is cut short before its last piece when the
    bytes are not the digest stated: a registry that would store whatever it is sent gets
    no whole body to store, and the session is cancelled."""
    stored: dict[str, bytes] = {}
    seen: list[str] = []

    def registry(request: httpx.Request) -> httpx.Response:
        seen.append(request.method)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/app/blobs/uploads/u1"})
        if request.method == "PUT":
            body = request.read()  # the whole body, or the error that cut it short
            stored[request.url.params["digest"]] = body
            return httpx.Response(201)
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(404)

    data = secrets.token_bytes(3 * 1024 * 1024 + 5)  # several pieces
    wrong = sha256_of_bytes(b"other")
    path = tmp_path / "blob"
    path.write_bytes(data)
    http = httpx.Client(transport=httpx.MockTransport(registry))
    client = RegistryClient(
        "127.0.0.1:1", "app", auth=httpx.Auth(), options=TransportOptions(sleep=RecordedSleeps()),
        http_client=http,
    )  # fmt: skip
    with client, pytest.raises(DigestMismatchError) as failed:
        client.upload_blob(path, digest=wrong, check_exists=False)
    assert failed.value.actual == str(sha256_of_bytes(data))
    assert stored == {}
    # (httpx's MockTransport reads a body whole before a handler sees the request: the PUT
    # never got here, as a registry never gets a body that ends.)
    assert seen == ["POST", "DELETE"]
