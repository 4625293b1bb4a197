"""What an upload checks of its bytes: the size and digest stated for them.

Bytes that are not the size or digest stated fail the same way whichever way they go
(:class:`~pants_oci.core.errors.SizeMismatchError`,
:class:`~pants_oci.core.errors.DigestMismatchError`), and are never stored under the stated
digest: a body that closes an upload holds its last piece back until the bytes are checked,
so that a mismatch aborts it (a registry that does not check digests itself commits nothing);
a registry that finds the mismatch (``DIGEST_INVALID``) raises the same error.

Private: used by :mod:`pants_oci.core.registry._uploads`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from pants_oci.core.digest import Digest, new_hasher
from pants_oci.core.errors import DigestMismatchError, RegistryError, SizeMismatchError
from pants_oci.core.registry._session import describe_entries
from pants_oci.core.transport import ProgressCallback

if TYPE_CHECKING:
    from pants_oci.core.registry._client import RegistryClient

READ_SIZE = 1024 * 1024  # file reads while uploading
_DIGEST_INVALID = "DIGEST_INVALID"


class Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def size_mismatch(
    client: RegistryClient, digest: Digest | None, expected: int, actual: int | None
) -> SizeMismatchError:
    """The upload source of a blob is not the size stated (``actual`` None: longer, and the
    rest was not read)."""
    has = f"{actual} bytes" if actual is not None else f"more than {expected} bytes"
    blob = f"blob {digest}" if digest is not None else "a blob"
    return SizeMismatchError(
        f"the upload source of {blob} for {client.registry}/{client.repository} has {has}, "
        f"but {expected} bytes were stated; nothing was stored",
        digest=None if digest is None else str(digest),
        expected=expected,
        actual=actual,
        registry=client.registry,
    )


def digest_mismatch(
    client: RegistryClient, expected: Digest, actual: Digest
) -> DigestMismatchError:
    """The bytes of an upload, hashed here, are not the digest stated for them."""
    return DigestMismatchError(
        f"the upload source of blob {expected} for {client.registry}/{client.repository} "
        f"has digest {actual}; nothing was stored under {expected}",
        expected=str(expected),
        actual=str(actual),
        registry=client.registry,
    )


def refused_digest(error: RegistryError) -> bool:
    """Whether a registry's error answer says the bytes are not the digest stated."""
    return any(entry.code == _DIGEST_INVALID for entry in error.errors)


def digest_refused(
    client: RegistryClient, expected: Digest, error: RegistryError
) -> DigestMismatchError:
    """The registry hashed the bytes it received and they are not ``expected``; what they
    hash to, it does not say."""
    return DigestMismatchError(
        f"registry {client.registry} refused blob {expected} for {client.repository}: the "
        f"bytes it received do not hash to it (HTTP {error.status} "
        f"{describe_entries(error.errors)}; their digest is unknown); nothing was stored "
        f"under {expected}",
        expected=str(expected),
        actual=None,
        registry=client.registry,
    )


def check_digest(client: RegistryClient, expected: Digest, data: bytes) -> None:
    """Raise DigestMismatchError unless ``data`` hashes to ``expected``."""
    hasher = new_hasher(expected.algorithm)
    hasher.update(data)
    actual = Digest(expected.algorithm, hasher.hexdigest())
    if actual != expected:
        raise digest_mismatch(client, expected, actual)


def checked_chunks(
    client: RegistryClient,
    reader: Reader,
    size: int,
    progress: ProgressCallback | None,
    digest: Digest | None = None,
    *,
    start: int = 0,
    named: Digest | None = None,
) -> Iterator[bytes]:
    """``size`` bytes of ``reader`` in large reads, reporting progress; the last is held
    back until the reader is known to end there (else SizeMismatchError, as for a reader
    that ends short) and, when ``digest`` is given, until the bytes are known to hash to it
    (else DigestMismatchError). ``start``: how many bytes of the blob were sent before these
    (the sizes an error names are the whole blob's); ``named``: the blob's digest, for them."""
    hasher = new_hasher(digest.algorithm) if digest is not None else None
    named = named or digest
    done = 0
    held = b""
    while done < size:
        block = reader.read(min(READ_SIZE, size - done))
        if not block:
            raise size_mismatch(client, named, start + size, start + done)
        if hasher is not None:
            hasher.update(block)
        if held:
            yield held
            if progress is not None:
                progress(done, size)
        held = block
        done += len(block)
    if reader.read(1):
        raise size_mismatch(client, named, start + size, None)
    if digest is not None and hasher is not None:
        actual = Digest(digest.algorithm, hasher.hexdigest())
        if actual != digest:
            raise digest_mismatch(client, digest, actual)
    if held:
        yield held
    if progress is not None and size:
        progress(done, size)
