"""Moving blobs: into a registry repository, ``max_concurrency`` at a time (a HEAD first, then
mounted, uploaded from memory or a file, streamed from another repository, or fetched from a
foreign layer's ``urls``), or into an OCI layout (hard-linked, copied or fetched).

A :class:`Blob` is a blob an image needs and where its bytes can be had: the image builder
and :mod:`pants_oci.core.remote` describe what they publish as blobs, and leave the moving to
:func:`transfer_blobs` and :func:`place_blob`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pants_oci.core import media_types
from pants_oci.core._transport_options import ProgressCallback
from pants_oci.core.digest import Digest
from pants_oci.core.errors import ImageBuildError
from pants_oci.core.layout import ImageLayout
from pants_oci.core.models import Descriptor

# httpx and the registry client are imported where a registry is reached.
if TYPE_CHECKING:
    from pants_oci.core.registry import RegistryClient

__all__ = ["Blob", "place_blob", "transfer_blobs"]

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
    target: RegistryClient, descriptor: Descriptor, progress: ProgressCallback | None
) -> None:
    """Upload a foreign layer fetched from its ``urls`` (the first that answers 200)."""
    import httpx

    from pants_oci.core.transport import make_http_client

    if target.blob_exists(descriptor.digest) is not None:
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
) -> None:
    """Put every blob in ``target`` (HEAD first), ``max_concurrency`` at a time."""
    from pants_oci.core.registry import map_bounded

    unique = list({blob.digest: blob for blob in blobs}.values())
    wanted = [blob for blob in unique if copy_foreign_layers or not blob.foreign]
    total = _ProgressTotal(progress, sum(blob.descriptor.size for blob in wanted))

    def put(item: tuple[int, Blob]) -> None:
        key, blob = item
        part = total.part(key)
        digest, size = blob.digest, blob.descriptor.size
        if (
            blob.mountable
            and blob.remote is not None
            and _mounted(target, blob.remote, digest, part)
        ):
            return
        if blob.data is not None:
            target.upload_blob(blob.data, digest=digest, progress=part)
        elif blob.path is not None:
            target.upload_blob(blob.path, digest=digest, size=size, progress=part)
        elif blob.remote is not None:
            target.copy_blob(blob.remote, digest, size=size, progress=part)
        elif blob.foreign:
            _copy_from_urls(target, blob.descriptor, part)
        elif target.blob_exists(digest) is None:
            raise ImageBuildError(
                f"blob {digest} is not in {target.registry}/{target.repository} and this image "
                "has no source for it (add the layer with blob=..., or give the base's registry "
                "reference)"
            )

    if wanted:
        _log.info("putting %d blobs in %s/%s", len(wanted), target.registry, target.repository)
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
    existing = target.blob_exists(digest)
    if existing is None:
        if not target.mount_blob(digest, source.repository):
            return False
        existing = target.blob_exists(digest)  # a 201 that stored nothing is no mount
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
