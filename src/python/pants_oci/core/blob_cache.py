"""Registry content through a blob cache on the host: a base is downloaded once per machine.

The cache is a directory of blobs by digest (an OCI layout's ``blobs/``), shared by every
process on the machine (under Pants: a named cache). Blobs arrive through a temporary file that
is renamed into place only once its digest checks, and are checked again on every read: a
corrupt or truncated entry is dropped and downloaded again, never used. Only content named by
digest is cached; a tag is always asked of the registry, since tags move.

The registry client is made on the first miss, so a base whose blobs are all cached needs no
network and no credentials.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

from pants_oci.core.digest import Digest
from pants_oci.core.errors import DigestMismatchError, ImageArchiveError, SizeMismatchError
from pants_oci.core.layout import ImageLayout
from pants_oci.core.models import AnyManifest, parse_manifest

if TYPE_CHECKING:
    from pants_oci.core.reference import Reference
    from pants_oci.core.registry import RegistryClient
    from pants_oci.core.transport import TransportOptions


class CachedRegistrySource:
    """Manifests and blobs of one repository, read through ``cache_dir`` (None: no cache).

    Use as a context manager; it closes the registry client if one was made.
    """

    def __init__(
        self,
        reference: Reference,
        options: TransportOptions,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        client_factory: Callable[[], RegistryClient] | None = None,
    ) -> None:
        self.reference = reference
        self.options = options
        self.cache = ImageLayout.create(cache_dir) if cache_dir is not None else None
        self._client_factory = client_factory
        self._client: RegistryClient | None = None
        self.downloaded: list[Digest] = []  # what came from the registry, for tests and logs

    def __enter__(self) -> CachedRegistrySource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            self._client.close()

    @property
    def client(self) -> RegistryClient:
        if self._client is None:
            if self._client_factory is not None:
                self._client = self._client_factory()
            else:
                from pants_oci.core.registry import RegistryClient

                self._client = RegistryClient.from_reference(self.reference, options=self.options)
        return self._client

    def manifest(self, identifier: str | Digest, *, size: int | None = None) -> AnyManifest:
        """The manifest or index ``identifier`` (a tag or digest) names, verified (and held to
        ``size``, its descriptor's, when given)."""
        digest = _as_digest(identifier)
        if digest is not None and self.cache is not None:
            cached = self._cached_bytes(digest, size)
            if cached is not None:
                return parse_manifest(cached)
        document = self.client.get_manifest(identifier, size=size)
        if self.cache is not None:
            self.cache.write_blob(document.to_bytes())
        return document

    def blob(self, digest: Digest, *, size: int | None = None) -> bytes:
        """A small blob's bytes (a config), verified: ``size`` bytes when given (its
        descriptor's), and no more than ``MAX_CONFIG_SIZE``."""
        if self.cache is not None:
            cached = self._cached_bytes(digest, size)
            if cached is not None:
                return cached
        data = self.client.read_blob(digest, size=size)
        self.downloaded.append(digest)
        if self.cache is not None:
            self.cache.write_blob(data)
        return data

    def copy_blob(
        self,
        digest: Digest,
        target: ImageLayout,
        progress: Callable[[int], None] | None = None,
        *,
        size: int | None = None,
    ) -> None:
        """Put blob ``digest`` into ``target``, verified (and ``size`` bytes long when given:
        its descriptor's), downloading it only on a miss."""
        if self.cache is None:
            self._download(digest, target, progress, size)
            return
        if not self.cache.has_blob(digest):
            self._download(digest, self.cache, progress, size)
        else:
            self._check_size(digest, self.cache.blob_path(digest).stat().st_size, size)
        try:
            _copy(self.cache, digest, target)
        except (DigestMismatchError, ImageArchiveError):
            # A damaged entry (disk error, a hand edit): drop it and fetch the blob again.
            self.cache.blob_path(digest).unlink(missing_ok=True)
            self._download(digest, self.cache, progress, size)
            _copy(self.cache, digest, target)

    def _download(
        self,
        digest: Digest,
        target: ImageLayout,
        progress: Callable[[int], None] | None,
        size: int | None,
    ) -> None:
        with target.ingest(digest) as writer:
            for chunk in self.client.iter_blob(digest, size=size):
                writer.write(chunk)
                if progress is not None:
                    progress(len(chunk))
        self.downloaded.append(digest)

    def _cached_bytes(self, digest: Digest, size: int | None) -> bytes | None:
        assert self.cache is not None
        if not self.cache.has_blob(digest):
            return None
        # Held to its descriptor before it is read.
        self._check_size(digest, self.cache.blob_path(digest).stat().st_size, size)
        try:
            return self.cache.read_blob(digest, verify=True)
        except DigestMismatchError:
            self.cache.blob_path(digest).unlink(missing_ok=True)
            return None

    def _check_size(self, digest: Digest, actual: int, size: int | None) -> None:
        """A cached blob is what its digest says; a descriptor giving another size is wrong."""
        if size is not None and actual != size:
            raise SizeMismatchError(
                f"blob {self.reference.name}@{digest} is {actual} bytes (in the blob cache), "
                f"but its descriptor says {size} bytes",
                digest=str(digest),
                expected=size,
                actual=actual,
                registry=self.reference.registry,
            )


def _copy(source: ImageLayout, digest: Digest, target: ImageLayout) -> None:
    if source.root.resolve() == target.root.resolve():
        return
    with source.open_blob(digest) as handle, target.ingest(digest) as writer:
        while chunk := handle.read(1 << 20):
            writer.write(chunk)


def _as_digest(identifier: str | Digest) -> Digest | None:
    if isinstance(identifier, Digest):
        return identifier
    try:
        return Digest.parse(identifier)
    except ValueError:
        return None
