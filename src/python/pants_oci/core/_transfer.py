"""Moving blobs: into a registry repository, ``max_concurrency`` at a time (a HEAD first, then
mounted, uploaded from memory or a file, streamed from another repository, or fetched from a
foreign layer's ``urls``), or into an OCI layout (hard-linked, copied or fetched); and a new
layer into a registry while it is being written (:class:`LayerUploads`).

A :class:`Blob` is a blob an image needs and where its bytes can be had: the image builder
and :mod:`pants_oci.core.remote` describe what they publish as blobs, and leave the moving to
:func:`transfer_blobs` and :func:`place_blob`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from pants_oci.core import media_types
from pants_oci.core._transport_options import ProgressCallback
from pants_oci.core.digest import Digest
from pants_oci.core.errors import ImageBuildError
from pants_oci.core.layout import ImageLayout
from pants_oci.core.models import Descriptor
from pants_oci.core.outputs import staged_file

# httpx and the registry client are imported where a registry is reached.
if TYPE_CHECKING:
    from pants_oci.core.layer import LayerBlob
    from pants_oci.core.registry import RegistryClient

__all__ = ["Blob", "LayerUploads", "place_blob", "transfer_blobs"]

_log = logging.getLogger(__name__)

_FOREIGN_LAYER_TYPES = frozenset(
    {
        media_types.DOCKER_FOREIGN_LAYER,
        media_types.OCI_LAYER_NONDISTRIBUTABLE,
        media_types.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        media_types.OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
    }
)


@dataclass(frozen=True)
class Blob:
    """A blob an image needs, and where its bytes can be had (first match wins)."""

    descriptor: Descriptor
    data: bytes | None = None  # in memory (configs, manifests of an index)
    path: Path | None = None  # a local file
    remote: RegistryClient | None = None  # a repository that has it
    # A base image's blob: on ``remote``'s registry it is mounted, not uploaded again.
    mountable: bool = False

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def foreign(self) -> bool:
        """Non-distributable: its bytes live at its ``urls``, not in registries."""
        return bool(self.descriptor.urls) or self.descriptor.media_type in _FOREIGN_LAYER_TYPES


class _ProgressTotal:
    """Adds per-blob progress of parallel transfers up into one (done, total) callback."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self._callback = callback
        self._total = total
        self._done: dict[int, int] = {}
        self._lock = threading.Lock()

    def part(self, key: int) -> ProgressCallback | None:
        if self._callback is None:
            return None

        def report(done: int, _total: int | None) -> None:
            with self._lock:
                self._done[key] = done
                current = sum(self._done.values())
            assert self._callback is not None
            self._callback(min(current, self._total), self._total)

        return report


class _IteratorReader:
    """A read()-able view of an iterator of byte chunks (an HTTP body) for upload_blob."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def _copy_from_urls(
    target: RegistryClient,
    descriptor: Descriptor,
    progress: ProgressCallback | None,
    check_exists: bool = True,
) -> None:
    """Upload a foreign layer fetched from its ``urls`` (the first that answers 200)."""
    import httpx

    from pants_oci.core.transport import make_http_client

    if check_exists and target.blob_exists(descriptor.digest):
        return
    failures: list[str] = []
    with make_http_client(target.options) as http:
        for url in descriptor.urls or ():
            try:
                with http.stream("GET", url, follow_redirects=True) as response:
                    if response.status_code != 200:
                        failures.append(f"{url}: HTTP {response.status_code}")
                        continue
                    reader: Any = _IteratorReader(response.iter_raw())
                    # The digest is checked while the bytes stream through.
                    target.upload_blob(
                        reader,
                        digest=descriptor.digest,
                        size=descriptor.size,
                        progress=progress,
                        check_exists=False,
                    )
                    return
            except httpx.HTTPError as exc:
                failures.append(f"{url}: {exc}")
    raise ImageBuildError(
        f"cannot copy foreign layer {descriptor.digest} to {target.registry}/"
        f"{target.repository}: none of its urls served it ({'; '.join(failures) or 'no urls'})"
    )


def transfer_blobs(
    target: RegistryClient,
    blobs: Sequence[Blob],
    *,
    copy_foreign_layers: bool = False,
    progress: ProgressCallback | None = None,
    check_exists: bool = True,
) -> None:
    """Put every blob in ``target`` (HEAD first), ``max_concurrency`` at a time.
    ``check_exists=False`` sends (or streams) each blob even when ``target`` has it."""
    from pants_oci.core.registry import map_bounded

    unique = list({blob.digest: blob for blob in blobs}.values())
    wanted = [blob for blob in unique if copy_foreign_layers or not blob.foreign]
    total = _ProgressTotal(progress, sum(blob.descriptor.size for blob in wanted))

    def put(item: tuple[int, Blob]) -> None:
        key, blob = item
        part = total.part(key)
        digest, size = blob.digest, blob.descriptor.size
        if (
            check_exists
            and blob.mountable
            and blob.remote is not None
            and _mounted(target, blob.remote, digest, part)
        ):
            return
        if blob.data is not None:
            target.upload_blob(blob.data, digest=digest, progress=part, check_exists=check_exists)
        elif blob.path is not None:
            target.upload_blob(
                blob.path, digest=digest, size=size, progress=part, check_exists=check_exists
            )
        elif blob.remote is not None:
            target.copy_blob(
                blob.remote, digest, size=size, progress=part, check_exists=check_exists
            )
        elif blob.foreign:
            _copy_from_urls(target, blob.descriptor, part, check_exists)
        elif not target.blob_exists(digest):
            raise ImageBuildError(
                f"blob {digest} is not in {target.registry}/{target.repository} and this image "
                "has no source for it (add the layer with blob=..., or give the base's registry "
                "reference)"
            )

    if wanted:  # each is sent only if the repository lacks it (and cannot mount it)
        _log.info(
            "making sure %s/%s has %d blob%s",
            target.registry,
            target.repository,
            len(wanted),
            "" if len(wanted) == 1 else "s",
        )
    map_bounded(put, list(enumerate(wanted)), target.options.max_concurrency)


def _mounted(
    target: RegistryClient,
    source: RegistryClient,
    digest: Digest,
    progress: ProgressCallback | None,
) -> bool:
    """True if ``target`` has the blob now, mounted from ``source``'s repository on the same
    registry (a base's blob: no byte is sent, even when a local copy could be uploaded)."""
    if source.base_url != target.base_url or source.repository == target.repository:
        return False
    existing = target.blob_size(digest)
    if existing is None:
        if not target.mount_blob(digest, source.repository):
            return False
        existing = target.blob_size(digest)  # a 201 that stored nothing is no mount
        if existing is None:
            return False
    if progress is not None:
        progress(existing, existing)
    return True


def place_blob(layout: ImageLayout, blob: Blob, *, fetch: bool, required: bool) -> bool:
    """Put ``blob`` in ``layout`` (hard-linked when it is a local file); True if it is there."""
    digest = blob.digest
    if layout.has_blob(digest):
        return True
    if blob.data is not None:
        layout.write_blob(blob.data)
        return True
    if blob.path is not None:
        target = layout.blob_path(digest)
        if blob.path.stat().st_size != blob.descriptor.size:
            raise ImageBuildError(
                f"{blob.path} is {blob.path.stat().st_size} bytes, but layer {digest} is "
                f"{blob.descriptor.size}"
            )
        try:
            os.link(blob.path, target)  # blobs are immutable: share the bytes
        except OSError:
            layout.add_blob_file(blob.path, digest)  # copied, and checked against its digest
        return True
    if blob.remote is not None and fetch:
        with layout.ingest(digest) as writer:
            for chunk in blob.remote.iter_blob(digest, size=blob.descriptor.size):
                writer.write(chunk)
        return True
    if required:
        where = (
            f" (it is in {blob.remote.registry}/{blob.remote.repository}; fetching was not allowed)"
            if blob.remote is not None
            else ""
        )
        raise ImageBuildError(
            f"blob {digest} is not available locally{where}; pull the base with its layers "
            "(`base pull --with-layers`) or let the writer fetch them"
        )
    return False


# --- Uploading a layer while it is written ------------------------------------------------------

# The least a PATCH of a layer being written carries (but the last; more when the upload is
# behind): large enough that a request's round trip is a small part of its time, small
# enough that an upload keeping up with the writer has little left to send at the end.
STREAM_CHUNK_SIZE = 8 * 1024 * 1024


class _Aborted(Exception):
    """The writer failed, or the upload was cancelled: stop reading."""


class GrowingFile:
    """A file being written (the layer builder's sink) and read by an upload as it grows.

    The writer never waits for the reader: the file is the buffer between them, so a slow
    registry slows the upload, never the build."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        self._file = file
        self._reader = os.open(path, os.O_RDONLY)  # opened now: the path is renamed later
        self._changed = threading.Condition()
        self._written = 0
        self._offset = 0  # where the reader is
        self._wanted = 0  # what the reader waits for: the writer wakes it only then
        self._digest: Digest | None = None
        self._aborted = False

    # The writer's side.

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()  # where the reader's descriptor sees it
        with self._changed:
            self._written += len(data)
            if self._written >= self._wanted:  # no waking (and GIL taking) for less
                self._changed.notify_all()

    def finish(self, digest: Digest) -> None:
        """Every byte is written: the reader may go to the end."""
        with self._changed:
            self._digest = digest
            self._changed.notify_all()

    def abort(self) -> None:
        """Stop the reader (its next read raises)."""
        with self._changed:
            self._aborted = True
            self._changed.notify_all()

    # The reader's side (:class:`~pants_oci.core.registry._uploads.GrowingBlob`).

    def available(self, at_least: int) -> int:
        with self._changed:
            self._wanted = self._offset + at_least
            self._changed.wait_for(
                lambda: (
                    self._aborted
                    or self._digest is not None
                    or self._written - self._offset >= at_least
                )
            )
            self._check_aborted()
            return self._written - self._offset

    def read(self, size: int) -> bytes:
        with self._changed:
            self._check_aborted()
            assert size <= self._written - self._offset, "read only what is available"
        data = os.pread(self._reader, size, self._offset)
        if len(data) != size:
            raise ImageBuildError("the layer file shrank while it was being uploaded")
        self._offset += size
        return data

    def _check_aborted(self) -> None:
        if self._aborted:
            raise _Aborted

    def digest(self) -> Digest | None:
        with self._changed:
            return self._digest

    def close_reader(self) -> None:
        os.close(self._reader)


class LayerUpload:
    """A thread uploading a layer to ``target`` while it is written to a :class:`GrowingFile`.

    Best effort: whatever goes wrong is logged, and the layer is uploaded the usual way
    (HEAD first, then from the finished file, with retries) when the image is pushed."""

    def __init__(self, target: RegistryClient, growing: GrowingFile) -> None:
        self.target = target
        self._growing = growing
        self._thread = threading.Thread(
            target=self._run, name="pants-oci-layer-upload", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        target = self.target
        where = f"{target.registry}/{target.repository}"
        try:
            result = target.upload_blob_while_written(self._growing, chunk_size=STREAM_CHUNK_SIZE)
        except _Aborted:
            _log.debug("upload of a layer being written to %s: stopped", where)
        except Exception as exc:
            _log.info(
                "uploading a layer to %s while it was written failed (the push uploads it "
                "from its file): %s",
                where,
                exc,
            )
        else:
            if result is None:
                _log.debug("layer small enough to upload whole: left to the push to %s", where)
            else:
                _log.debug("layer %s is in %s, uploaded while it was written", result[0], where)
        finally:
            self._growing.close_reader()

    def wait(self) -> None:
        self._thread.join()

    def cancel(self) -> None:
        """Stop it (at its next read of the file) and drop its session; returns once stopped."""
        self._growing.abort()
        self._thread.join()


class LayerUploads:
    """The uploads an image's new layers started while they were written: at most
    ``max_concurrency`` running (a new layer waits for the oldest)."""

    def __init__(self, max_concurrency: int) -> None:
        self._max_concurrency = max_concurrency
        self._running: list[LayerUpload] = []

    def write(
        self, target: RegistryClient, path: Path, writer: Callable[[GrowingFile], LayerBlob]
    ) -> LayerBlob:
        """Write a layer blob to ``path`` with ``writer(sink)`` while a thread uploads it to
        ``target``; its last chunk and the closing PUT follow once the blob is written.
        ``path`` appears only complete, as with
        :meth:`~pants_oci.core.layer.LayerBuilder.write_file`."""
        while len(self._running) >= self._max_concurrency:
            self._running[0].wait()
            del self._running[0]
        with staged_file(path.parent, f".{path.name}.") as staged:
            growing = GrowingFile(staged.file, staged.path)
            upload = LayerUpload(target, growing)
            try:
                blob = writer(growing)
                staged.commit(path)
            except BaseException:
                upload.cancel()  # the layer will not be: neither will its upload
                raise
            growing.finish(blob.digest)
        self._running.append(upload)
        return blob

    def wait(self) -> None:
        """Let every upload finish (a failed one was logged: the push uploads its layer)."""
        for upload in self._running:
            upload.wait()
        self._running.clear()

    def cancel(self) -> None:
        for upload in self._running:
            upload.cancel()
        self._running.clear()
