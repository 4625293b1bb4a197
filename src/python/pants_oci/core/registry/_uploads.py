"""Blob uploads: the cheapest protocol that fits what is known, resumed or restarted when a
connection breaks or the registry drops the session.

One ``PUT`` when the digest and size are known (monolithic); a streamed ``PATCH`` hashed on
the fly when the digest is not; ``PATCH`` chunks of at least ``OCI-Chunk-Min-Length`` bytes
when a chunk size is given. A failed ``PATCH`` continues from the offset the registry reports
for the session; a lost session (or a streamed body refused with a 401) starts the upload over,
for sources that can be read again (:class:`UploadSource`). Copies from another repository
stream through, verified on the way.

Private: :class:`~pants_oci.core.registry.RegistryClient`'s ``upload_blob``, ``copy_blob``,
``mount_blob`` and ``upload_status`` are the API (copies: :mod:`._copies`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, TypeVar, Union

import httpx

from pants_oci.core.auth import repository_scope
from pants_oci.core.digest import Digest, new_hasher, sha256_of_bytes
from pants_oci.core.errors import (
    DigestMismatchError,
    DocumentError,
    RangeError,
    RegistryError,
    SizeMismatchError,
    TransportError,
)
from pants_oci.core.registry._http import is_retryable, parse_range_end, retry_after
from pants_oci.core.registry._session import StreamedBodyRefused
from pants_oci.core.registry._upload_checks import READ_SIZE as _READ_SIZE
from pants_oci.core.registry._upload_checks import Reader as _Reader
from pants_oci.core.registry._upload_checks import (
    check_digest,
    checked_chunks,
    digest_mismatch,
    digest_refused,
    refused_digest,
    size_mismatch,
)
from pants_oci.core.transport import RETRY_STATUSES, ProgressCallback

if TYPE_CHECKING:
    from pants_oci.core.registry._client import RegistryClient

# Bytes in memory, a file path, or a binary stream (seekable streams can be re-read).
BlobSource = Union[bytes, bytearray, memoryview, str, os.PathLike[str], BinaryIO]

_OCTET_STREAM = "application/octet-stream"
_SESSION_GONE_CODES = frozenset({"BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"})

R = TypeVar("R")


# --- Upload sources ---------------------------------------------------------------------------


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class UploadSource:
    """Blob bytes to upload, and whether (and how) they can be read again from an offset.
    ``size`` is the size of bytes and files (whatever was stated), a stream's stated size."""

    def __init__(self, source: BlobSource, size: int | None) -> None:
        self.data: bytes | None = None
        self.path: Path | None = None
        self.stream: BinaryIO | None = None
        self._stream_start = 0
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.data = bytes(source)
            self.size: int | None = len(self.data)
        elif isinstance(source, (str, os.PathLike)):
            self.path = Path(source)
            self.size = self.path.stat().st_size
        elif hasattr(source, "read"):
            self.stream = source
            self.size = size
            if self._seekable(source):
                self._stream_start = source.tell()
        else:
            raise TypeError(
                f"cannot upload from {type(source).__name__}: give bytes, a path or a stream"
            )

    @staticmethod
    def _seekable(stream: BinaryIO) -> bool:
        try:
            return bool(stream.seekable())
        except (AttributeError, OSError, ValueError):
            return False

    @property
    def replayable(self) -> bool:
        """Whether the bytes can be read again, so a lost upload can start over."""
        return self.stream is None or self._seekable(self.stream)

    @contextmanager
    def open_at(self, offset: int) -> Iterator[_Reader]:
        if self.data is not None:
            yield io.BytesIO(memoryview(self.data)[offset:])
        elif self.path is not None:
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                yield handle
        else:
            assert self.stream is not None
            if self.replayable:
                self.stream.seek(self._stream_start + offset)
            elif offset:
                raise ValueError("cannot re-read a stream that is not seekable")
            yield self.stream


def _read_full(reader: _Reader, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at end of stream (pipes return short reads)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        block = reader.read(remaining)
        if not block:
            break
        parts.append(block)
        remaining -= len(block)
    return b"".join(parts)


class _SessionLost(Exception):
    """The registry no longer has our upload session: the upload must start over."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


# --- The protocol: POST a session, PATCH data, PUT ?digest= ----------------------------------


def start_upload(client: RegistryClient, query: Mapping[str, str] | None = None) -> httpx.Response:
    """POST to open an upload session (``query``: a mount's ``mount`` and ``from``)."""
    url = client._url("blobs/uploads/")
    scopes = client._scopes("pull", "push")
    if query:
        url = url.copy_merge_params(dict(query))
        if "from" in query:
            scopes += (repository_scope(query["from"], "pull"),)
    return client._request(
        "POST",
        url,
        scopes=scopes,
        headers={"Content-Length": "0"},
        # Repeating a POST that failed opens at most a spare session, which the
        # registry expires: safe to retry.
        idempotent=True,
    )


def _new_session(client: RegistryClient) -> tuple[httpx.URL, int]:
    """Open an upload session: its URL and the registry's minimum chunk size."""
    response = client._check(start_upload(client), "starting a blob upload", 202)
    minimum = response.headers.get("OCI-Chunk-Min-Length", "")
    return session_location(client, response), int(minimum) if minimum.isdigit() else 0


def session_location(
    client: RegistryClient, response: httpx.Response, default: httpx.URL | None = None
) -> httpx.URL:
    """The session URL an upload answer points at next (absolute or relative)."""
    location = response.headers.get("Location")
    if location:
        return client._server_url(response, location, "the upload session Location")
    if default is not None:
        return default
    raise RegistryError(
        f"{client.registry} answered a blob upload step without a Location header",
        registry=client.registry,
        repository=client.repository,
        status=response.status_code,
    )


def upload_from_source(
    client: RegistryClient,
    source: BlobSource,
    *,
    digest: Digest | str | None,
    size: int | None,
    chunk_size: int | None,
    progress: ProgressCallback | None,
    check_exists: bool,
) -> tuple[Digest, int]:
    """:meth:`RegistryClient.upload_blob`: the cheapest protocol that fits what is known."""
    src = UploadSource(source, size)
    expected = Digest.coerce(digest) if digest is not None else None
    if size is not None and src.size != size:  # bytes or a file of another size
        raise size_mismatch(client, expected, size, src.size)
    if src.data is not None:  # in memory: checked before anything is sent
        if expected is None:
            expected = sha256_of_bytes(src.data)
        else:
            check_digest(client, expected, src.data)
    if expected is not None and check_exists:
        existing = client.blob_size(expected)
        if existing is not None:
            if progress is not None:
                progress(existing, existing)
            return expected, existing

    def attempt() -> tuple[Digest, int]:
        if chunk_size is None and expected is not None and src.size is not None:
            return _upload_whole(client, src, expected, src.size, progress)
        return _upload_patches(client, src, expected, chunk_size, progress)

    return _restarting(client, attempt, src=src)


def _restarting(
    client: RegistryClient,
    attempt: Callable[[], R],
    *,
    src: UploadSource | None = None,
    also: tuple[type[Exception], ...] = (),
) -> R:
    """Run ``attempt``, starting it over after a backoff when the upload session is lost
    (or it raises one of ``also``), up to ``options.max_retries`` times; never when
    ``src`` cannot be read again. The last failure is raised (a lost session's cause).

    The wait is the registry's ``Retry-After`` when its answer had one (capped at
    ``options.max_retry_wait``). A timeout among ``also`` is not restarted: it comes from
    a request that spent its retries already (a registry that stopped answering)."""
    options = client.options
    restartable: tuple[type[Exception], ...] = (_SessionLost, *also)
    restarts = 0
    while True:
        try:
            return attempt()
        except restartable as failure:
            cause = failure.cause if isinstance(failure, _SessionLost) else failure
            restarts += 1
            if (
                (src is not None and not src.replayable)
                or restarts > options.max_retries
                or (isinstance(failure, TransportError) and failure.timeout)
            ):
                raise cause from None
            options.sleep(options.retry_wait(restarts - 1, retry_after(cause)))


def _upload_whole(
    client: RegistryClient,
    src: UploadSource,
    digest: Digest,
    size: int,
    progress: ProgressCallback | None,
) -> tuple[Digest, int]:
    """POST, then one PUT ?digest= carrying every byte (its last piece only once they are
    known to be ``size`` bytes of ``digest``: else the PUT is cut short, and nothing stored)."""
    location, _minimum = _new_session(client)
    try:
        with src.open_at(0) as reader:
            # Always in 1 MiB pieces, even from bytes: httpcore re-slices a large buffer
            # after every partial send, which makes one huge body quadratic (20 MB/s).
            # (Bytes in memory were checked before anything was sent.)
            verify = digest if src.data is None else None
            body = checked_chunks(client, reader, size, progress, verify, named=digest)
            _finish(client, location, digest, body, length=size, size=size)
    except (DigestMismatchError, SizeMismatchError):
        client.cancel_upload(location)
        raise
    return digest, size


def _finish(
    client: RegistryClient,
    location: httpx.URL,
    digest: Digest,
    content: bytes | Iterator[bytes] = b"",
    *,
    length: int = 0,
    size: int = 0,
) -> None:
    """The closing PUT ?digest= of an upload of ``size`` bytes (``length`` of them in
    this request): the registry commits the blob before it answers, which may take a
    while for a large one (see ``TransportOptions.commit_timeout``). A failure that
    loses the session raises _SessionLost."""
    url = location.copy_merge_params({"digest": str(digest)})
    try:
        response = client._request(
            "PUT",
            url,
            scopes=client._scopes("pull", "push"),
            headers={"Content-Type": _OCTET_STREAM, "Content-Length": str(length)},
            content=content,
            idempotent=False,
            timeout=client.options.commit_timeout(size),
        )
    except TransportError as exc:
        # The registry may have committed the blob before the connection broke.
        if client.blob_exists(digest):
            return
        raise _SessionLost(exc) from exc
    except StreamedBodyRefused as exc:
        raise _SessionLost(exc) from exc  # the auth flow has a fresh token by now
    if response.status_code in RETRY_STATUSES:
        raise _SessionLost(client._error(response, f"finishing upload of blob {digest}"))
    if not response.is_success:
        error = client._error(response, f"finishing upload of blob {digest}")
        if refused_digest(error):  # the same error as a mismatch found here
            raise digest_refused(client, digest, error) from error
        raise error
    announced = response.headers.get("Docker-Content-Digest")
    if announced and Digest.parse(announced) != digest:
        raise DigestMismatchError(
            f"registry {client.registry} stored blob {digest} as {announced}",
            expected=str(digest),
            actual=announced,
            registry=client.registry,
        )


def _upload_patches(
    client: RegistryClient,
    src: UploadSource,
    expected: Digest | None,
    chunk_size: int | None,
    progress: ProgressCallback | None,
) -> tuple[Digest, int]:
    """POST, PATCH (one streamed body, or chunks), then PUT ?digest= with no body."""
    location, minimum = _new_session(client)
    algorithm = expected.algorithm if expected is not None else "sha256"
    upload: _PatchUpload
    if chunk_size is not None:
        upload = _ChunkedUpload(client, src, location, max(chunk_size, minimum, 1), algorithm)
    else:
        upload = _StreamedUpload(client, src, location, algorithm)
    upload.progress = progress
    upload.expected = expected
    try:
        location, computed, size = upload.run()
        # Checked before the closing PUT: nothing is stored under the wrong digest.
        if src.size is not None and size != src.size:
            raise size_mismatch(client, expected, src.size, size)
        if expected is not None and computed != expected:
            raise digest_mismatch(client, expected, computed)
    except (DigestMismatchError, SizeMismatchError):
        client.cancel_upload(upload.location)
        raise
    _finish(client, location, computed, size=size)
    return computed, size


def _patch(
    client: RegistryClient,
    location: httpx.URL,
    content: bytes | Iterator[bytes],
    start: int,
    length: int | None,
) -> tuple[httpx.URL, int | None]:
    """One PATCH; returns the next session URL and the offset the registry reports."""
    headers = {"Content-Type": _OCTET_STREAM}
    if length is not None:
        headers["Content-Length"] = str(length)
        headers["Content-Range"] = f"{start}-{start + length - 1}"
    try:
        response = client._request(
            "PATCH",
            location,
            scopes=client._scopes("pull", "push"),
            headers=headers,
            content=content,
            idempotent=False,  # resumed from the registry's Range instead
        )
    except StreamedBodyRefused as exc:
        raise _SessionLost(exc) from exc  # start again, with the auth flow's fresh token
    client._check(response, "uploading blob data")
    next_location = session_location(client, response, location)
    return next_location, parse_range_end(response.headers.get("Range"))


def session_status(
    client: RegistryClient, location: httpx.URL | str, *, retries: int | None = None
) -> tuple[httpx.URL, int] | None:
    """:meth:`RegistryClient.upload_status`: (session URL, offset), or None if gone."""
    url = httpx.URL(location) if isinstance(location, str) else location
    response = client._request("GET", url, scopes=client._scopes("pull", "push"), retries=retries)
    if response.status_code in (200, 204):
        offset = parse_range_end(response.headers.get("Range"))
        return session_location(client, response, url), offset or 0
    error = client._error(response, "checking a blob upload")
    if response.status_code == 404 or error.code in _SESSION_GONE_CODES:
        return None
    raise error


def _after_failure(
    client: RegistryClient, location: httpx.URL, failure: Exception, retries: int
) -> tuple[httpx.URL, int]:
    """Where to continue after a failed PATCH: the registry's offset, or _SessionLost."""
    status = client.upload_status(location, retries=retries)
    if status is None:
        raise _SessionLost(failure)
    return status


# --- PATCH strategies -----------------------------------------------------------------------


class _PatchUpload:
    """Shared by the two PATCH strategies: the session, the hash, and failure accounting."""

    def run(self) -> tuple[httpx.URL, Digest, int]:
        """Send every byte; return the session URL, the digest of what was sent, its size."""
        raise NotImplementedError

    def __init__(
        self, client: RegistryClient, src: UploadSource, location: httpx.URL, algorithm: str
    ) -> None:
        self.client = client
        self.src = src
        self.location = location
        self.algorithm = algorithm
        self.progress: ProgressCallback | None = None
        self.expected: Digest | None = None  # the digest stated, for errors
        self.failures = 0
        self.done = 0

    def failed(self, failure: Exception) -> int:
        """Count a failed PATCH, wait, and return the offset the registry holds."""
        self.failures += 1
        options = self.client.options
        if self.failures > options.max_retries:
            raise failure
        options.sleep(options.retry_wait(self.failures - 1, retry_after(failure)))
        # The status check spends what is left of the same retries.
        self.location, offset = _after_failure(
            self.client, self.location, failure, options.max_retries - self.failures
        )
        return offset

    def report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(done, self.src.size)

    def session_lost(self, state: str) -> _SessionLost:
        """The session holds other bytes than were sent (its ``state``): only a restart helps."""
        client = self.client
        return _SessionLost(
            RangeError(
                f"{client.registry} upload session {state}",
                registry=client.registry,
                repository=client.repository,
            )
        )


class _ChunkedUpload(_PatchUpload):
    """PATCH chunks of ``chunk_size``; only the current chunk is held in memory."""

    def __init__(
        self,
        client: RegistryClient,
        src: UploadSource,
        location: httpx.URL,
        chunk_size: int,
        algorithm: str,
    ) -> None:
        super().__init__(client, src, location, algorithm)
        self.chunk_size = chunk_size

    def run(self) -> tuple[httpx.URL, Digest, int]:
        hasher = new_hasher(self.algorithm)
        offset = 0  # what the registry holds
        chunk, chunk_start = b"", 0
        with self.src.open_at(0) as reader:
            while True:
                if offset == chunk_start + len(chunk):
                    chunk_start, chunk = offset, _read_full(reader, self.chunk_size)
                    if not chunk:
                        break
                    hasher.update(chunk)  # each byte is hashed once, as it is read
                piece = chunk[offset - chunk_start :]
                try:
                    self.location, reported = _patch(
                        self.client, self.location, piece, offset, len(piece)
                    )
                    offset = reported if reported is not None else offset + len(piece)
                except (TransportError, RegistryError) as failure:
                    if isinstance(failure, RegistryError) and not is_retryable(failure):
                        raise
                    offset = self.failed(failure)
                if not chunk_start <= offset <= chunk_start + len(chunk):
                    # The registry holds less than the chunk in hand: only a restart helps.
                    raise self.session_lost(
                        f"is at byte {offset}, outside the chunk "
                        f"{chunk_start}-{chunk_start + len(chunk)} in hand"
                    )
                self.report(offset)
        return self.location, Digest(self.algorithm, hasher.hexdigest()), offset


class _StreamedUpload(_PatchUpload):
    """One PATCH streaming the whole source (a resumed one streams the rest)."""

    def run(self) -> tuple[httpx.URL, Digest, int]:
        offset = 0
        while True:
            with self.src.open_at(0) as reader:
                hasher = self._hash_prefix(reader, offset)
                remaining = None if self.src.size is None else self.src.size - offset
                self.done = offset
                if remaining == 0:
                    return self.location, Digest(self.algorithm, hasher.hexdigest()), offset
                try:
                    body = self._body(reader, hasher, offset, remaining)
                    self.location, reported = _patch(
                        self.client, self.location, body, offset, remaining
                    )
                except (TransportError, RegistryError) as failure:
                    if isinstance(failure, RegistryError) and not is_retryable(failure):
                        raise
                    if not self.src.replayable:
                        raise
                    offset = self.failed(failure)
                    continue
            if reported is not None and reported != self.done:
                raise self.session_lost(f"holds {reported} bytes after {self.done} were sent")
            return self.location, Digest(self.algorithm, hasher.hexdigest()), self.done

    def _hash_prefix(self, reader: _Reader, offset: int) -> _Hasher:
        """A hash of the first ``offset`` bytes, which a resumed upload does not send again."""
        hasher = new_hasher(self.algorithm)
        hashed = 0
        while hashed < offset:
            block = reader.read(min(_READ_SIZE, offset - hashed))
            if not block:
                raise DocumentError("the upload source shrank while it was being uploaded")
            hasher.update(block)
            hashed += len(block)
        return hasher

    def _body(
        self, reader: _Reader, hasher: _Hasher, offset: int, remaining: int | None
    ) -> Iterator[bytes]:
        blocks: Iterator[bytes]
        if remaining is None:
            blocks = iter(lambda: reader.read(_READ_SIZE), b"")
        else:  # held to the size stated: a source that ends elsewhere fails the PATCH
            blocks = checked_chunks(
                self.client, reader, remaining, None, start=offset, named=self.expected
            )
        for block in blocks:
            hasher.update(block)
            self.done += len(block)
            yield block
            self.report(self.done)


# --- Blobs still being written ----------------------------------------------------------------

# The most one PATCH of a blob being written carries: what was written while the previous
# one was sent, when the upload falls behind (each PATCH costs a round trip, and registries
# commit each to storage before they answer: distribution's filesystem driver fsyncs).
_MOST_PER_PATCH = 64 * 1024 * 1024


class GrowingBlob(Protocol):
    """A blob whose bytes are still being written (a layer being built), read as they come."""

    def digest(self) -> Digest | None:
        """The blob's digest once the writer has finished (then :meth:`available` counts
        every byte left); None until then."""
        ...

    def available(self, at_least: int, /) -> int:
        """How many bytes are written and not yet read, once there are ``at_least`` (or
        the writer has finished: then maybe fewer)."""
        ...

    def read(self, size: int, /) -> bytes:
        """The next ``size`` bytes, of those :meth:`available` counted."""
        ...


def upload_while_written(
    client: RegistryClient, blob: GrowingBlob, chunk_size: int
) -> tuple[Digest, int] | None:
    """:meth:`RegistryClient.upload_blob_while_written`: POST, a PATCH (with its
    ``Content-Range``) of what is written whenever there are ``chunk_size`` bytes or more,
    then PUT ?digest= with the rest. None, and no request, when the blob was written whole
    within its first chunk. Nothing is retried; on failure the session is cancelled."""
    if blob.available(chunk_size) < chunk_size:
        return None
    location, minimum = _new_session(client)
    upload = _WhileWritten(client, blob, location)
    try:
        return upload.run(max(chunk_size, minimum))
    except BaseException as failure:
        upload.cancel()
        if isinstance(failure, _SessionLost):
            raise failure.cause from None
        raise


class _WhileWritten:
    """The session of :func:`upload_while_written`, and how much of the blob it holds."""

    def __init__(self, client: RegistryClient, blob: GrowingBlob, location: httpx.URL) -> None:
        self.client = client
        self.blob = blob
        self.location = location
        self.offset = 0

    def run(self, least: int) -> tuple[Digest, int]:
        """PATCH what is written, ``least`` bytes or more at a time, until the writer is
        done; then the rest, its last bytes in the closing PUT; (digest, size)."""
        most = max(least, _MOST_PER_PATCH)
        while (digest := self.blob.digest()) is None:
            length = self.blob.available(least)
            if length >= least:  # (fewer: the writer has finished; its digest is known now)
                self._patch(min(length, most))
        # A blob the repository has already (a layer built unchanged) is not sent on.
        if self.blob.available(0) and (existing := self.client.blob_size(digest)) is not None:
            self.cancel()
            return digest, existing
        while (length := self.blob.available(0)) > most:
            self._patch(most)
        size = self.offset + length
        _finish(self.client, self.location, digest, self._body(length), length=length, size=size)
        return digest, size

    def _patch(self, length: int) -> None:
        # (A session holding other bytes than were sent fails the closing PUT's digest.)
        body = self._body(length)
        self.location, _held = _patch(self.client, self.location, body, self.offset, length)
        self.offset += length

    def _body(self, length: int) -> Iterator[bytes]:
        # Read as it is sent: a large chunk is never in memory whole (nor one large buffer,
        # which httpcore copies what is left of after every partial send).
        while length > 0:
            piece = self.blob.read(min(_READ_SIZE, length))
            length -= len(piece)
            yield piece

    def cancel(self) -> None:
        self.client.cancel_upload(self.location)
