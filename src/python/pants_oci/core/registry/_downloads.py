"""Blob downloads: verified as they stream, resumed where a broken connection left off.

A download hashes the bytes as they arrive and checks them against the digest asked for
before the final chunk is handed on; a connection that breaks midway continues with a
``Range: bytes=N-`` request (hashing on), up to ``options.max_retries`` times; a descriptor's
size (or a document's limit) bounds how much is read. A large blob downloaded to a file has
its body read straight from the socket (see :mod:`._socket_body`) where that can be done.

Private: :class:`~pants_oci.core.registry.RegistryClient`'s ``iter_blob``, ``read_blob`` and
``get_blob`` are the API.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, cast

import httpx

from pants_oci.core.digest import Digest, new_hasher
from pants_oci.core.errors import DigestMismatchError, DocumentError, OCIError, RegistryError
from pants_oci.core.outputs import replacing
from pants_oci.core.registry._http import content_length, content_range_start
from pants_oci.core.registry._session import RepositorySession
from pants_oci.core.registry._socket_body import socket_body
from pants_oci.core.transport import ProgressCallback

_log = logging.getLogger(__name__)

# A body read from the socket leaves its connection closed (h11 never saw it), and the next
# request connects again: worth it only for a body this large. On loopback it reads at about
# twice httpx's throughput, in pieces of _PIECE.
DIRECT_MIN = 8 * 1024 * 1024
_PIECE = 1024 * 1024


class BlobDownload:
    """One blob download: hashed as it streams, resumed with ``Range`` when it breaks.

    The first response is requested at once (so that a 404 is raised before any chunk);
    :meth:`chunks` streams the body. With a known length the digest is checked before the
    final chunk is handed on, so a consumer never sees the complete (wrong) content; it is
    always checked at the end too (an empty body included).

    ``size`` is the descriptor's: a registry announcing another length fails at once, and
    reading stops there (a longer body fails as soon as it passes it; a shorter one at its
    end). ``limit`` is the most to read when the size is not known.
    """

    def __init__(
        self,
        client: RepositorySession,
        digest: Digest,
        progress: ProgressCallback | None,
        *,
        size: int | None = None,
        limit: int | None = None,
    ) -> None:
        self.client = client
        self.digest = digest
        self.progress = progress
        self.expected_size = size
        self.limit = limit
        self._url = client._url(f"blobs/{digest}")
        self._response: httpx.Response | None = self._open(0)
        announced = content_length(self._response)
        if size is not None and announced is not None and announced != size:
            self.close()
            raise client._size_error("blob", digest, size, announced)
        if size is None and limit is not None and announced is not None and announced > limit:
            self.close()
            raise client._too_large("blob", digest, announced, limit)
        self.size = size if size is not None else announced
        self._buffer: memoryview | None = None

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def _open(self, offset: int, retries: int | None = None) -> httpx.Response:
        """GET the blob from ``offset``; a resumed answer is checked to start there."""
        client = self.client
        response = client._request(
            "GET",
            self._url,
            scopes=client._scopes("pull"),
            headers={"Range": f"bytes={offset}-"} if offset else None,
            stream=True,
            follow_redirects=True,
            retries=retries,
        )
        if response.status_code == 200:
            return response  # a registry that ignores Range sends it all: skipped by chunks()
        if offset and response.status_code == 206:
            if content_range_start(response.headers.get("Content-Range", "")) == offset:
                return response
            response.close()
            raise RegistryError(
                f"{client.registry} answered a download of blob {self.digest} resumed at byte "
                f"{offset} with Content-Range {response.headers.get('Content-Range')!r}",
                registry=client.registry,
                repository=client.repository,
                status=206,
            )
        raise client._error(response, f"getting blob {self.digest}")

    def _mismatch(self, actual: Digest, received: int) -> DigestMismatchError:
        client = self.client
        return DigestMismatchError(
            f"blob {client.registry}/{client.repository}@{self.digest} has digest {actual} "
            f"({received} bytes received)",
            expected=str(self.digest),
            actual=str(actual),
            registry=client.registry,
        )

    def _too_long(self) -> OCIError:
        self.close()
        if self.expected_size is not None:
            return self.client._size_error("blob", self.digest, self.expected_size, None)
        assert self.limit is not None
        return self.client._too_large("blob", self.digest, None, self.limit)

    def chunks(self) -> Iterator[bytes]:
        """The blob's bytes as they arrive, verified (see the class)."""
        return cast(Iterator[bytes], self._verified(direct=False))

    def pieces(self) -> Iterator[bytes | memoryview]:
        """As :meth:`chunks`, but a body of at least ``DIRECT_MIN`` bytes is read straight
        from the socket where it can be: then a piece is a view of a buffer that the next
        piece overwrites. For a consumer that is done with each piece at once (a file)."""
        return self._verified(direct=True)

    def _body(self, response: httpx.Response, direct: bool) -> Iterator[bytes | memoryview]:
        """The body of ``response``: from the socket when ``direct`` and it can be."""
        length = content_length(response)
        if direct and length is not None and length >= DIRECT_MIN:
            if self._buffer is None:
                self._buffer = memoryview(bytearray(_PIECE))
            pieces = socket_body(response, self._buffer)
            if pieces is not None:
                _log.debug("blob %s: reading %d bytes from the socket", self.digest, length)
                return pieces
        return response.iter_raw()  # raw: a blob's bytes are its identity

    def _verified(self, direct: bool) -> Iterator[bytes | memoryview]:
        digest, options = self.digest, self.client.options
        hasher = new_hasher(digest.algorithm)
        total = self.size
        # Never read past the descriptor's size (or the limit): a longer body fails there.
        bound = self.expected_size if self.expected_size is not None else self.limit
        done = 0
        failures = 0

        def check() -> None:
            actual = Digest(digest.algorithm, hasher.hexdigest())
            if actual != digest:
                raise self._mismatch(actual, done)

        while True:
            if self._response is None:
                # A resumed request spends what is left of the same retries: a registry that
                # stalls midway and then for good fails after max_retries + 1 attempts in
                # all, not max_retries more.
                self._response = self._open(done, retries=options.max_retries - failures)
            response = self._response
            # A full answer to a resumed request: drop what we already have.
            skip = done if response.status_code == 200 else 0
            try:
                for raw in self._body(response, direct):
                    chunk = raw
                    if skip:
                        chunk, skip = raw[skip:], max(0, skip - len(raw))
                        if not chunk:
                            continue
                    if bound is not None and done + len(chunk) > bound:
                        raise self._too_long()
                    hasher.update(chunk)
                    done += len(chunk)
                    if done == total:
                        check()
                    yield chunk
                    if self.progress is not None:
                        self.progress(done, total)
            except httpx.TransportError as exc:
                self.close()
                failures += 1
                if failures > options.max_retries:
                    raise self.client._transport_error(
                        exc, response.request.url, attempts=failures
                    ) from exc
                wait = options.retry_wait(failures - 1)
                _log.info(
                    "blob %s broke off after %d bytes (%s: %s); resuming in %.2fs",
                    digest,
                    done,
                    type(exc).__name__,
                    exc,
                    wait,
                )
                options.sleep(wait)
                continue
            self.close()
            break
        if skip:
            raise DocumentError(
                f"{self.client.registry} sent {digest} shorter on a resumed download than before"
            )
        if self.expected_size is not None and done != self.expected_size:
            raise self.client._size_error("blob", digest, self.expected_size, done)
        check()


@contextmanager
def open_blob(
    client: RepositorySession,
    digest: Digest,
    progress: ProgressCallback | None = None,
    *,
    size: int | None = None,
    limit: int | None = None,
) -> Iterator[BlobDownload]:
    """A started download of blob ``digest`` (its headers read; errors raised now)."""
    download = BlobDownload(client, digest, progress, size=size, limit=limit)
    try:
        yield download
    finally:
        download.close()


def download_to(
    client: RepositorySession,
    digest: Digest,
    destination: str | os.PathLike[str] | BinaryIO,
    size: int | None,
    progress: ProgressCallback | None,
) -> int:
    """Download blob ``digest`` into a file path or a writable binary stream; its size. A
    path is written via a temporary file beside it, renamed into place once verified."""
    if not isinstance(destination, (str, os.PathLike)):
        return _download_into(client, digest, destination, size, progress)
    with replacing(destination) as handle:
        # Our own file: it takes each piece before the next overwrites it.
        return _download_into(client, digest, handle, size, progress, direct=True)


def _download_into(
    client: RepositorySession,
    digest: Digest,
    writer: Any,
    size: int | None,
    progress: ProgressCallback | None,
    *,
    direct: bool = False,
) -> int:
    received = 0
    with open_blob(client, digest, progress, size=size) as download:
        for chunk in download.pieces() if direct else download.chunks():
            writer.write(chunk)
            received += len(chunk)
    return received
