"""Layer compression, deterministic: gzip (on python-isal, or zlib), zstd or none; and reading a
layer blob back: the tar inside it, its compression, its digests.

:class:`LayerStream` takes tar bytes and, in one pass, hashes them (the diff_id), compresses
them in fixed 1 MiB blocks, and hashes (the digest) and writes the compressed bytes; the layer
builder (:mod:`pants_oci.core.layer`) and the docker-archive reader compress through it.

Compression (``compression=``):

* ``"gzip"`` (``application/vnd.oci.image.layer.v1.tar+gzip``, the default): a fixed 10-byte
  header (no mtime, no name, XFL 0, OS 255 "unknown"), raw deflate, CRC32 and size trailer.
  Deflate runs on python-isal at ``level`` 0-3 (default 1). Without python-isal (or with
  ``gzip_engine="zlib"``) the stdlib's zlib is used at ``max(level, 1)``: equally valid and
  deterministic, but its bytes, and so the layer digest, differ from isal's (the diff_id
  does not). Either way the deflate stream is fed exactly 1 MiB at a time, so its bytes
  depend only on the tar's, never on how files happened to be read. (python-isal's threaded
  writer was measured and was no faster on two vCPUs; a compression thread of our own does
  not help either, as isal's ``compressobj`` holds the GIL.)
* ``"zstd"`` (``...tar+zstd``): zstandard at ``level`` (default 3), one frame, with no
  checksum, content size or dictionary id in the frame header.
* ``"none"`` (``application/vnd.oci.image.layer.v1.tar``): the tar itself; digest == diff_id.

Digests are stable for a given compression library version; a different isal, zlib or zstd
release may compress differently.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal, Protocol, cast

import zstandard

from pants_oci.core import media_types
from pants_oci.core.digest import Digest, HashingReader
from pants_oci.core.errors import CorruptLayerError, LayerError

# What decompressing damaged bytes raises: gzip's, zlib's, zstandard's and isal's own types
# (isal's and zstandard's are plain Exceptions), and EOFError for a stream cut short.
_DECOMPRESSION_ERRORS: tuple[type[Exception], ...] = (
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    zstandard.ZstdError,
)
try:
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib
    from isal.igzip_lib import IsalError

    HAVE_ISAL = True
    _DECOMPRESSION_ERRORS += (cast("type[Exception]", IsalError),)
except ImportError:  # pragma: no cover - python-isal is a dependency; this is the fallback
    HAVE_ISAL = False

__all__ = [
    "BLOCK_SIZE",
    "GZIP_HEADER",
    "HAVE_ISAL",
    "Compression",
    "GzipEngine",
    "LayerFacts",
    "LayerStream",
    "Writable",
    "compression_of_media_type",
    "decompressed",
    "inspect_layer_blob",
    "media_type_for",
]

Compression = Literal["gzip", "zstd", "none"]
GzipEngine = Literal["auto", "isal", "zlib"]

# The compressor's input unit. Part of the output format: changing it changes gzip bytes.
BLOCK_SIZE = 1 << 20
# Fixed gzip header: magic, deflate, no flags, mtime 0, XFL 0, OS 255 (unknown).
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

_MEDIA_TYPES: dict[str, str] = {
    "gzip": media_types.OCI_LAYER_GZIP,
    "zstd": media_types.OCI_LAYER_ZSTD,
    "none": media_types.OCI_LAYER,
}


def media_type_for(compression: Compression) -> str:
    """The OCI layer media type of a compression choice."""
    return _MEDIA_TYPES[compression]


def compression_of_media_type(media_type: str) -> Compression | None:
    """The compression a layer media type says its blob has; None for no layer type."""
    base = media_types.base_media_type(media_type)
    if not media_types.is_layer(base):
        return None
    if base.endswith(("+gzip", ".tar.gzip")):
        return "gzip"
    if base.endswith("+zstd"):
        return "zstd"
    if base.endswith(".tar"):
        return "none"
    return None


class Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


# --- Compressing --------------------------------------------------------------------------------


class _Compressor(Protocol):
    def start(self) -> bytes: ...

    def compress(self, block: memoryview | bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class _Uncompressed:
    def start(self) -> bytes:
        return b""

    def compress(self, block: memoryview | bytes) -> bytes:
        return bytes(block)

    def finish(self) -> bytes:
        return b""


class _Gzip:
    """A gzip member with a fixed header around one raw deflate stream."""

    def __init__(self, level: int, engine: GzipEngine) -> None:
        if not 0 <= level <= 3:
            raise ValueError(f"gzip level must be 0-3 (isal's levels), got {level}")
        use_isal = engine == "isal" or (engine == "auto" and HAVE_ISAL)
        if use_isal:
            if not HAVE_ISAL:
                raise LayerError("gzip_engine='isal' needs python-isal, which is not installed")
            self._deflate: Any = _isal_zlib.compressobj(level, _isal_zlib.DEFLATED, -15)
            self._crc32: Any = _isal_zlib.crc32
        else:
            self._deflate = zlib.compressobj(max(level, 1), zlib.DEFLATED, -15)
            self._crc32 = zlib.crc32
        self._crc = 0
        self._size = 0

    def start(self) -> bytes:
        return GZIP_HEADER

    def compress(self, block: memoryview | bytes) -> bytes:
        self._crc = self._crc32(block, self._crc)
        self._size += len(block)
        return bytes(self._deflate.compress(block))

    def finish(self) -> bytes:
        trailer = struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF)
        return bytes(self._deflate.flush()) + trailer


class _Zstd:
    def __init__(self, level: int) -> None:
        compressor = zstandard.ZstdCompressor(
            level=level, write_checksum=False, write_content_size=False, write_dict_id=False
        )
        self._compressor: Any = compressor.compressobj()

    def start(self) -> bytes:
        return b""

    def compress(self, block: memoryview | bytes) -> bytes:
        return bytes(self._compressor.compress(block))

    def finish(self) -> bytes:
        return bytes(self._compressor.flush())


def _make_compressor(
    compression: Compression, level: int | None, engine: GzipEngine
) -> _Compressor:
    if compression == "gzip":
        return _Gzip(1 if level is None else level, engine)
    if compression == "zstd":
        return _Zstd(3 if level is None else level)
    if compression == "none":
        return _Uncompressed()
    raise ValueError(f"unknown compression {compression!r}; use 'gzip', 'zstd' or 'none'")


class LayerStream:
    """Tar bytes in; their sha256 (diff_id), compression in fixed 1 MiB blocks, the sha256 of
    the compressed bytes (digest), and the sink out. Call :meth:`finish` after the last
    write."""

    def __init__(
        self,
        sink: Writable,
        *,
        compression: Compression = "gzip",
        level: int | None = None,
        gzip_engine: GzipEngine = "auto",
    ) -> None:
        self._compressor = _make_compressor(compression, level, gzip_engine)
        self.media_type = _MEDIA_TYPES[compression]
        self._sink = sink
        self._pending = bytearray()
        self.tar_hash = hashlib.sha256()
        self.tar_size = 0
        # Uncompressed, the blob is the tar: one hash serves as both digests.
        self._identity = isinstance(self._compressor, _Uncompressed)
        self.blob_hash = self.tar_hash if self._identity else hashlib.sha256()
        self.blob_size = 0
        self._emit(self._compressor.start())

    @property
    def digest(self) -> Digest:
        """The compressed blob's digest (once finished)."""
        return Digest("sha256", self.blob_hash.hexdigest())

    @property
    def diff_id(self) -> Digest:
        """The tar's digest (once finished)."""
        return Digest("sha256", self.tar_hash.hexdigest())

    def write(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) >= BLOCK_SIZE:
            self._drain()

    def write_entry(self, header: bytes, data: bytes, padding: bytes) -> None:
        """``write`` of three pieces in one call: the hot path for small files."""
        pending = self._pending
        pending += header
        pending += data
        pending += padding
        if len(pending) >= BLOCK_SIZE:
            self._drain()

    def _drain(self) -> None:
        pending = self._pending
        whole = len(pending) - len(pending) % BLOCK_SIZE
        with memoryview(pending) as view:
            for start in range(0, whole, BLOCK_SIZE):
                self._block(view[start : start + BLOCK_SIZE])
        del pending[:whole]

    def _block(self, block: memoryview | bytes) -> None:
        self.tar_hash.update(block)
        self.tar_size += len(block)
        if self._identity:  # already hashed as the tar
            self.blob_size += len(block)
            self._sink.write(bytes(block))
        else:
            self._emit(self._compressor.compress(block))

    def _emit(self, data: bytes) -> None:
        if data:
            self.blob_hash.update(data)
            self.blob_size += len(data)
            self._sink.write(data)

    def finish(self) -> None:
        self._drain()
        if self._pending:
            self._block(bytes(self._pending))
            self._pending.clear()
        self._emit(self._compressor.finish())


# --- Reading a layer blob -----------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _ReadOnly(io.RawIOBase):
    """A readable raw stream whose subclass defines ``read``."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class _Prefixed(_ReadOnly):
    """A stream with bytes already read from it put back in front."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._prefix = prefix
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if not self._prefix:
            return self._rest.read(size)
        if size < 0:
            data, self._prefix = self._prefix + self._rest.read(), b""
            return data
        data, self._prefix = self._prefix[:size], self._prefix[size:]
        if len(data) < size:
            data += self._rest.read(size - len(data))
        return data


def _compression_of_magic(magic: bytes) -> Compression:
    """What a blob's first 4 bytes say it is: gzip and zstd by their magic, else a tar."""
    if magic.startswith(_GZIP_MAGIC):
        return "gzip"
    return "zstd" if magic == _ZSTD_MAGIC else "none"


def decompressed(blob: BinaryIO) -> BinaryIO:
    """The layer tar inside a layer blob: gzip and zstd are recognised by their magic bytes
    (media types are not always right), anything else is taken to be a tar already."""
    magic = blob.read(4)
    stream: Any = _Prefixed(magic, blob)
    compression = _compression_of_magic(magic)
    if compression == "gzip":
        reader: Any = (
            _igzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[no-untyped-call]
            if HAVE_ISAL
            else gzip.GzipFile(fileobj=stream, mode="rb")
        )
        return cast(BinaryIO, _Decompressing(reader, compression))
    if compression == "zstd":
        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        return cast(BinaryIO, _Decompressing(reader, compression))
    return cast(BinaryIO, stream)


class _Decompressing(_ReadOnly):
    """A decompressing reader whose errors on damaged bytes are one type, CorruptLayerError,
    whichever library found them."""

    def __init__(self, reader: Any, compression: Compression) -> None:
        super().__init__()
        self._reader = reader
        self._compression = compression

    def read(self, size: int = -1) -> bytes:
        try:
            data: bytes = self._reader.read(size)
        except _DECOMPRESSION_ERRORS as exc:
            raise CorruptLayerError(
                f"not a readable {self._compression} layer: its compressed bytes are damaged or "
                f"cut short ({type(exc).__name__}: {exc})"
            ) from None
        return data

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()


@dataclass(frozen=True)
class LayerFacts:
    """What a layer blob file is, measured: its digest and size, the diff_id of the tar in
    it, and its compression as its magic bytes say."""

    digest: Digest
    size: int
    diff_id: Digest
    compression: Compression


def inspect_layer_blob(path: str | os.PathLike[str]) -> LayerFacts:
    """Measure a layer blob in one pass: hash the bytes read from the file and, as they are
    decompressed, the tar inside."""
    with open(path, "rb") as handle:
        raw = HashingReader(handle)
        magic = raw.read(4)
        compression = _compression_of_magic(magic)
        tar = decompressed(cast(BinaryIO, _Prefixed(magic, cast(BinaryIO, raw))))
        uncompressed = hashlib.sha256()
        while chunk := tar.read(BLOCK_SIZE):
            uncompressed.update(chunk)
        while raw.read(BLOCK_SIZE):  # anything after the compressed stream is in the blob too
            pass
    return LayerFacts(
        digest=raw.digest(),
        size=raw.size,
        diff_id=Digest("sha256", uncompressed.hexdigest()),
        compression=compression,
    )
