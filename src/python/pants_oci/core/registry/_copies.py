"""Copies of a blob from another repository (or registry): streamed through, verified on the
way, starting over when the target's upload session is lost or a transfer fails.

Private: :meth:`~pants_oci.core.registry.RegistryClient.copy_blob` is the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from pants_oci.core.digest import Digest
from pants_oci.core.errors import OCIError, TransportError
from pants_oci.core.registry._downloads import open_blob
from pants_oci.core.registry._uploads import _finish, _new_session, _patch, _restarting
from pants_oci.core.transport import ProgressCallback

if TYPE_CHECKING:
    from pants_oci.core.registry._client import RegistryClient


class _SourceFailed(Exception):
    """The source of a copy failed while its bytes were being sent on: not the target's
    request failing (which would restart the upload), the source's own error."""

    def __init__(self, cause: OCIError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _from_source(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks``, with the source's errors marked so that the target does not take them
    for its own (a source that stopped answering already spent its retries)."""
    try:
        yield from chunks
    except OCIError as exc:
        raise _SourceFailed(exc) from exc


def copy_by_streaming(
    client: RegistryClient,
    source: RegistryClient,
    digest: Digest,
    size: int | None,
    progress: ProgressCallback | None,
) -> tuple[Digest, int]:
    """Stream blob ``digest`` from ``source`` into ``client``'s repository, verified on the
    way, starting over (see _restarting) when the session is lost or a transfer fails."""
    return _restarting(
        client,
        lambda: _stream_from(client, source, digest, size, progress),
        also=(TransportError,),
    )


def _stream_from(
    client: RegistryClient,
    source: RegistryClient,
    digest: Digest,
    expected_size: int | None,
    progress: ProgressCallback | None,
) -> tuple[Digest, int]:
    location, _minimum = _new_session(client)
    try:
        with open_blob(source, digest, progress, size=expected_size) as download:
            size = download.size
            chunks = _from_source(download.chunks())
            if size is None:  # no length: stream it through a PATCH
                location, offset = _patch(client, location, chunks, 0, None)
                _finish(client, location, digest, size=offset or 0)
                size = client.blob_size(digest) or 0
            else:
                _finish(client, location, digest, chunks, length=size, size=size)
    except _SourceFailed as failed:
        raise failed.cause from failed.cause.__cause__
    return digest, size
