"""Deterministic filesystem layers, streamed in one pass with constant memory.

Build a layer by mapping paths in the layer to sources, then write it::

    builder = LayerBuilder(mtime=source_date_epoch or 0)
    builder.add_files({"app": "dist/app", "etc/app.toml": CustomFile(data=b"debug = false\\n")})
    builder.add_whiteout("etc/motd")                     # delete a base-image file
    layer = builder.write_file("out/layer.tar.gz")       # or builder.write(any_writer)
    layer.digest, layer.diff_id, layer.size, layer.media_type

One pass reads every file once: the tar stream is hashed (the diff_id), compressed, and the
compressed bytes hashed (the digest) and written, a megabyte at a time.

What goes in the tar, and why it is the same on every machine:

* Entries are in sorted order (by Unicode code point, which is UTF-8 byte order) and each
  directory's subtree follows it; an opaque whiteout comes first in its directory.
* Paths are relative (``app/main.py``; no leading ``/`` or ``./``), directories end in ``/``,
  and every parent directory has an entry of its own (mode 0755 unless set otherwise), except
  those the layers below already have (``existing_directories``), whose metadata stays theirs.
* mtime is the builder's ``mtime`` for every entry (the caller passes ``SOURCE_DATE_EPOCH``
  when it is set; the default is 0). uid and gid are 0 and user/group names are empty, unless
  the builder's defaults or an :class:`Override` say otherwise.
* Modes from disk are normalised so the umask and checkout do not leak in: directories are
  0755, regular files 0755 if the owner, group or other may execute them and 0644 otherwise,
  symlinks 0777. setuid/setgid/sticky bits on disk are dropped. An :class:`Override` or a
  :class:`CustomFile` sets any mode (``& 0o7777``) explicitly.
* Symlinks stay symlinks (``follow_symlinks=True`` copies what they point at instead, and
  fails on dangling links and loops). Files that share an inode: the first path in sorted
  order holds the content, the later ones are hardlink entries to it.
* Headers are ustar, with PAX records for what ustar cannot hold (long or non-ASCII names,
  large sizes): see :mod:`pants_oci.core.tar_format`.

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
import stat
import struct
import tempfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, Optional, Protocol, Union, cast

import pathspec
import zstandard

from pants_oci.core import media_types, tar_format
from pants_oci.core.digest import Digest
from pants_oci.core.errors import ImageBuildError, LayerError
from pants_oci.core.validation import check_id

if TYPE_CHECKING:
    from pants_oci.core.models import Descriptor

try:
    from isal import igzip as _igzip
    from isal import isal_zlib as _isal_zlib

    HAVE_ISAL = True
except ImportError:  # pragma: no cover - python-isal is a dependency; this is the fallback
    HAVE_ISAL = False

__all__ = [
    "HAVE_ISAL",
    "Compression",
    "CustomFile",
    "GzipEngine",
    "LayerBlob",
    "LayerBuilder",
    "Override",
    "Source",
    "compress_layer",
    "compression_of_media_type",
    "decompressed",
    "inspect_layer_blob",
    "media_type_for",
    "member_parts",
    "resolve_source_date_epoch",
]

Compression = Literal["gzip", "zstd", "none"]
GzipEngine = Literal["auto", "isal", "zlib"]

# The compressor's input unit. Part of the output format: changing it changes gzip bytes.
_BLOCK = 1 << 20
_OPAQUE_WHITEOUT = ".wh..wh..opq"
_WHITEOUT_PREFIX = ".wh."
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


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


# --- What goes in -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CustomFile:
    """An entry made in code rather than read from disk.

    * a file: ``CustomFile(data=b"...")``, or ``CustomFile(stream=f, size=n)`` to read exactly
      ``n`` bytes from ``f`` when the layer is written (a stream can be written only once);
    * a directory: ``CustomFile(kind="directory")``;
    * a symlink: ``CustomFile(kind="symlink", link_target="../lib/libfoo.so.1")``.

    ``mode`` defaults to 0644 for files, 0755 for directories and 0777 for symlinks; ``uid``,
    ``gid`` and ``mtime`` default to the builder's.
    """

    kind: Literal["file", "directory", "symlink"] = "file"
    data: bytes | None = None
    stream: BinaryIO | None = None
    size: int | None = None
    link_target: str | None = None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    mtime: int | None = None

    def __post_init__(self) -> None:
        if self.kind == "file":
            if (self.data is None) == (self.stream is None):
                raise ValueError("a CustomFile file needs exactly one of data= or stream=")
            if self.stream is not None and (self.size is None or self.size < 0):
                raise ValueError("a CustomFile stream needs its size= in bytes")
        elif self.kind == "symlink":
            if not self.link_target:
                raise ValueError("a CustomFile symlink needs link_target=")
        elif self.kind != "directory":
            raise ValueError(f"unknown CustomFile kind {self.kind!r}")
        if self.kind != "file" and (self.data is not None or self.stream is not None):
            raise ValueError(f"a CustomFile {self.kind} has no content")
        _check_ids(self.uid, self.gid)

    @property
    def content_size(self) -> int:
        if self.data is not None:
            return len(self.data)
        return self.size or 0


@dataclass(frozen=True)
class Override:
    """Ownership and mode for a path in the layer, replacing what the source says.

    Keyed by layer path in ``LayerBuilder(overrides=...)``. With ``recursive=True`` it also
    applies to everything beneath the path; recursive overrides may set ownership but not
    ``mode`` (one mode cannot suit both files and directories). Precedence, per field: an
    override of the exact path, then a :class:`CustomFile`'s own value, then the nearest
    recursive override above the path, then the builder's defaults.
    """

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    uname: str | None = None
    gname: str | None = None
    recursive: bool = False

    def __post_init__(self) -> None:
        _check_ids(self.uid, self.gid)
        if self.recursive and self.mode is not None:
            raise ValueError(
                "a recursive Override cannot set mode (it would apply to files and directories "
                "alike); give the mode in an override of each path instead"
            )


Source = Union[str, "os.PathLike[str]", CustomFile]


@dataclass(frozen=True)
class _DirSource:
    """An on-disk directory whose contents go in a layer directory."""

    path: str
    rel: str  # path from the source root, "" or ending in "/": what ignore patterns see
    spec: pathspec.PathSpec[Any] | None
    ancestors: frozenset[tuple[int, int]]  # (dev, inode) of enclosing dirs, to catch loops
    origin: str  # the source as the caller named it, for messages


@dataclass(frozen=True)
class _Leaf:
    """A non-directory entry given explicitly: a disk path, a CustomFile, or a whiteout."""

    source: str | CustomFile | None  # None: a whiteout


class _Node:
    """A directory in the layer, as add_files and the whiteout methods built it."""

    __slots__ = ("children", "custom", "sources")

    def __init__(self) -> None:
        self.children: dict[str, _Node | _Leaf] = {}
        self.sources: list[_DirSource] = []
        self.custom: CustomFile | None = None


def _check_ids(uid: int | None, gid: int | None) -> None:
    if uid is not None:
        check_id(uid, "uid")
    if gid is not None:
        check_id(gid, "gid")


def _split_layer_path(path: str) -> list[str]:
    parts = [part for part in str(path).split("/") if part not in ("", ".")]
    if ".." in parts:
        raise LayerError(f"layer path {path!r} must not contain '..'")
    return parts


def _reject_whiteout_name(name: str, origin: str) -> None:
    if name.startswith(_WHITEOUT_PREFIX):
        raise LayerError(
            f"{origin}: names starting with {_WHITEOUT_PREFIX!r} are whiteouts, which delete "
            "base-image paths; use add_whiteout() for that"
        )


def _read_ignore_file(path: str | os.PathLike[str]) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LayerError(f"cannot read ignore file {os.fspath(path)}: {exc.strerror}") from None


def resolve_source_date_epoch(value: int | None = None) -> int:
    """``value``, else ``$SOURCE_DATE_EPOCH``, else 0: the time every build output is stamped
    with (https://reproducible-builds.org/specs/source-date-epoch/). Also exported by
    :mod:`pants_oci.core.image`; it raises ImageBuildError, as it always has."""
    if value is not None:
        epoch = value
    else:
        text = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
        if not text:
            return 0
        try:
            epoch = int(text)
        except ValueError:
            raise ImageBuildError(
                f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {text!r}"
            ) from None
    if epoch < 0:
        raise ImageBuildError(f"SOURCE_DATE_EPOCH must not be negative, got {epoch}")
    return epoch


# --- The builder ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerBlob:
    """A written layer: what a manifest and an image config need to know about it."""

    digest: Digest  # of the (compressed) blob
    diff_id: Digest  # of the uncompressed tar
    size: int  # of the blob
    uncompressed_size: int  # of the tar
    media_type: str
    entry_count: int | None = None  # None when the tar was not built here

    def descriptor(self, annotations: dict[str, str] | None = None) -> Descriptor:
        """The manifest's descriptor of this layer."""
        # Imported here: building a layer (`pants-oci layer build`) needs no pydantic model.
        from pants_oci.core.models import Descriptor

        return Descriptor(
            media_type=self.media_type, digest=self.digest, size=self.size, annotations=annotations
        )


class LayerBuilder:
    """Collects sources for one layer; ``write``/``write_file`` produce it.

    ``mtime`` is every entry's modification time (pass ``SOURCE_DATE_EPOCH`` when it is set).
    ``uid``/``gid``/``uname``/``gname`` are every entry's ownership unless overridden; names
    are left empty by default, so that only numeric ids count. ``overrides`` maps layer paths
    to :class:`Override`. ``follow_symlinks`` copies symlink targets instead of the links.
    ``directory_mode`` is the mode of the directories the layer creates. Paths in
    ``existing_directories`` (directories, or symlinks, that lower layers already have) get
    no entry of their own: the layer's files go inside them and their metadata stays the
    lower layers' (a home directory's owner, ``/tmp``'s sticky bit, ``/var/run -> /run``).
    """

    def __init__(
        self,
        *,
        mtime: int = 0,
        uid: int = 0,
        gid: int = 0,
        uname: str = "",
        gname: str = "",
        follow_symlinks: bool = False,
        overrides: Mapping[str, Override] | None = None,
        directory_mode: int = 0o755,
        existing_directories: Iterable[str] = (),
    ) -> None:
        _check_ids(uid, gid)
        self.mtime = mtime
        self.uid = uid
        self.gid = gid
        self.uname = uname
        self.gname = gname
        self.follow_symlinks = follow_symlinks
        self.directory_mode = directory_mode & 0o7777
        # Directories (or symlinks to them) that the layers below already have: this layer
        # writes no entry for them, so their mode, owner and times stay as they are.
        self.existing_directories = frozenset(
            "/".join(_split_layer_path(path)) for path in existing_directories
        )
        self._overrides: dict[str, Override] = {}
        self._root = _Node()
        for path, override in (overrides or {}).items():
            self.set_override(path, override)

    def set_override(self, path: str, override: Override) -> None:
        """Set the ownership/mode override of a layer path (see :class:`Override`)."""
        self._overrides["/".join(_split_layer_path(path))] = override

    def add_files(
        self,
        files: Mapping[str, Source],
        *,
        ignore: Sequence[str] = (),
        ignore_files: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        """Add sources at layer paths: ``{"app": "dist/app", "bin/tool": CustomFile(...)}``.

        * A directory source puts its *contents* in the target directory (``""`` or ``"/"``
          is the layer root). Several directories may share a target: their contents merge,
          but the same non-directory path from two of them is an error.
        * A file (or, unless following symlinks, symlink) source goes *at* the target path;
          with a trailing ``/`` on the target, it goes in that directory under its own name
          (as Docker's COPY does).
        * A :class:`CustomFile` goes at the target path.

        A more specific target wins over what a directory source holds at the same path.

        ``ignore`` patterns and the lines of ``ignore_files`` use gitignore semantics
        (``pathspec.GitIgnoreSpec``): matched against paths relative to each directory
        source's root, ``dir/`` patterns match only directories, ``!pattern`` re-includes,
        a pattern without a ``/`` matches at any depth, and — as in git — nothing beneath an
        ignored directory can be re-included. Ignore-file lines come first, then ``ignore``,
        so ``ignore`` can negate them. Patterns apply to directory sources only.

        (.dockerignore semantics differ: there a pattern without ``/`` matches only at the
        root, and ``!`` can re-include files inside an excluded directory. They are not
        supported; translate such files to gitignore patterns.)
        """
        lines = [line for file in ignore_files for line in _read_ignore_file(file)]
        lines += list(ignore)
        spec = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        for target, source in files.items():
            self._add_one(target, source, spec)

    def add_whiteout(self, path: str) -> None:
        """Delete ``path`` (a file or a whole directory) of the layers below this one."""
        parts = _split_layer_path(path)
        if not parts:
            raise LayerError("cannot white out the layer root; use add_opaque_whiteout('/')")
        _reject_whiteout_name(parts[-1], f"whiteout of {path!r}")
        self._put_leaf(parts[:-1], _WHITEOUT_PREFIX + parts[-1], _Leaf(None), path)

    def add_opaque_whiteout(self, directory: str) -> None:
        """Hide everything the layers below have in ``directory``; this layer's own entries
        in it stay."""
        self._put_leaf(_split_layer_path(directory), _OPAQUE_WHITEOUT, _Leaf(None), directory)

    def _add_one(self, target: str, source: Source, spec: pathspec.PathSpec[Any] | None) -> None:
        parts = _split_layer_path(target)
        into_directory = str(target).endswith("/") or not parts
        if isinstance(source, CustomFile):
            if source.kind == "directory":
                self._directory(parts).custom = source
                return
            if not parts:
                raise LayerError(f"a CustomFile {source.kind} needs a path, not the layer root")
            _reject_whiteout_name(parts[-1], f"target {target!r}")
            self._put_leaf(parts[:-1], parts[-1], _Leaf(source), target)
            return
        path = os.fspath(source)
        try:
            st = os.stat(path) if self.follow_symlinks else os.lstat(path)
        except OSError as exc:
            raise LayerError(f"source {path!r} for {target!r}: {exc.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            ancestors = frozenset({(st.st_dev, st.st_ino)}) if self.follow_symlinks else frozenset()
            node = self._directory(parts)
            node.sources.append(_DirSource(path, "", spec, ancestors, path))
            return
        if into_directory:
            parts = [*parts, os.path.basename(os.path.normpath(path))]
        _reject_whiteout_name(parts[-1], f"source {path!r}")
        self._put_leaf(parts[:-1], parts[-1], _Leaf(path), target)

    def _directory(self, parts: Sequence[str]) -> _Node:
        node = self._root
        for depth, part in enumerate(parts):
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node()
            elif isinstance(child, _Leaf):
                where = "/".join(parts[: depth + 1])
                raise LayerError(f"{where!r} is both a directory and a file in this layer")
            node = child
        return node

    def _put_leaf(self, parent: Sequence[str], name: str, leaf: _Leaf, target: str) -> None:
        node = self._directory(parent)
        if name in node.children:
            where = "/".join([*parent, name])
            raise LayerError(f"layer path {where!r} is given twice (last as {target!r})")
        node.children[name] = leaf

    # --- Writing ------------------------------------------------------------------------------

    def write(
        self,
        sink: _Writable,
        *,
        compression: Compression = "gzip",
        level: int | None = None,
        gzip_engine: GzipEngine = "auto",
    ) -> LayerBlob:
        """Stream the layer blob into ``sink`` (anything with ``write(bytes)``)."""
        compressor = _make_compressor(compression, level, gzip_engine)
        stream = _LayerStream(compressor, sink)
        walker = _Walker(self, stream)
        walker.walk(self._root, list(self._root.sources), "", _NO_INHERITED)
        stream.write(tar_format.END_OF_ARCHIVE)
        stream.finish()
        return LayerBlob(
            digest=Digest("sha256", stream.blob_hash.hexdigest()),
            diff_id=Digest("sha256", stream.tar_hash.hexdigest()),
            size=stream.blob_size,
            uncompressed_size=stream.tar_size,
            media_type=_MEDIA_TYPES[compression],
            entry_count=walker.entry_count,
        )

    def write_file(
        self,
        path: str | os.PathLike[str],
        *,
        compression: Compression = "gzip",
        level: int | None = None,
        gzip_engine: GzipEngine = "auto",
    ) -> LayerBlob:
        """Write the layer blob to ``path``: to a temporary file beside it, renamed on success,
        so ``path`` is never seen half-written."""
        target = Path(path)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - renamed or removed below
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
        )
        try:
            with handle:
                result = self.write(
                    handle, compression=compression, level=level, gzip_engine=gzip_engine
                )
                os.fchmod(handle.fileno(), 0o644)  # not the temporary file's 0600
            os.replace(handle.name, target)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
        return result


def compress_layer(
    tar_stream: BinaryIO,
    sink: _Writable,
    *,
    compression: Compression = "gzip",
    level: int | None = None,
    gzip_engine: GzipEngine = "auto",
) -> LayerBlob:
    """Compress an existing layer tar (read from ``tar_stream`` to its end) exactly as
    :meth:`LayerBuilder.write` compresses the tars it makes: same bytes for the same tar."""
    stream = _LayerStream(_make_compressor(compression, level, gzip_engine), sink)
    while chunk := tar_stream.read(_BLOCK):
        stream.write(chunk)
    stream.finish()
    return LayerBlob(
        digest=Digest("sha256", stream.blob_hash.hexdigest()),
        diff_id=Digest("sha256", stream.tar_hash.hexdigest()),
        size=stream.blob_size,
        uncompressed_size=stream.tar_size,
        media_type=_MEDIA_TYPES[compression],
    )


_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class _Prefixed(io.RawIOBase):
    """A stream with bytes already read from it put back in front."""

    def __init__(self, prefix: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._prefix = prefix
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

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


def member_parts(name: str) -> tuple[str, ...] | None:
    """A layer member's path, as components (no empty or `.` ones); None when one is `..`.

    The one policy of every reader of layers (unpacking for `run`, reading a base's
    filesystem for its directories and Pythons): a member that would leave the root is
    refused, never resolved as if the root were `/`."""
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    return None if ".." in parts else parts


def decompressed(blob: BinaryIO) -> BinaryIO:
    """The layer tar inside a layer blob: gzip and zstd are recognised by their magic bytes
    (media types are not always right), anything else is taken to be a tar already."""
    magic = blob.read(4)
    stream: Any = _Prefixed(magic, blob)
    if magic.startswith(_GZIP_MAGIC):
        reader: Any = (
            _igzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[no-untyped-call]
            if HAVE_ISAL
            else gzip.GzipFile(fileobj=stream, mode="rb")
        )
        return cast(BinaryIO, reader)
    if magic == _ZSTD_MAGIC:
        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        return cast(BinaryIO, reader)
    return cast(BinaryIO, stream)


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
    from pants_oci.core.digest import HashingReader

    with open(path, "rb") as handle:
        raw = HashingReader(handle)
        magic = raw.read(4)
        compression: Compression = (
            "gzip" if magic.startswith(_GZIP_MAGIC) else "zstd" if magic == _ZSTD_MAGIC else "none"
        )
        tar = decompressed(cast(BinaryIO, _Prefixed(magic, cast(BinaryIO, raw))))
        uncompressed = hashlib.sha256()
        while chunk := tar.read(_BLOCK):
            uncompressed.update(chunk)
        while raw.read(_BLOCK):  # anything after the compressed stream is in the blob too
            pass
    return LayerFacts(
        digest=raw.digest(),
        size=raw.size,
        diff_id=Digest("sha256", uncompressed.hexdigest()),
        compression=compression,
    )


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


# --- Compression --------------------------------------------------------------------------------


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


class _LayerStream:
    """Tar bytes in; their sha256 (diff_id), compression in fixed 1 MiB blocks, the sha256 of
    the compressed bytes (digest), and the sink out."""

    def __init__(self, compressor: _Compressor, sink: _Writable) -> None:
        self._compressor = compressor
        self._sink = sink
        self._pending = bytearray()
        self.tar_hash = hashlib.sha256()
        self.tar_size = 0
        self.blob_hash = hashlib.sha256()
        self.blob_size = 0
        self._emit(compressor.start())

    def write(self, data: bytes) -> None:
        self._pending += data
        if len(self._pending) >= _BLOCK:
            self._drain()

    def write_entry(self, header: bytes, data: bytes, padding: bytes) -> None:
        """``write`` of three pieces in one call: the hot path for small files."""
        pending = self._pending
        pending += header
        pending += data
        pending += padding
        if len(pending) >= _BLOCK:
            self._drain()

    def _drain(self) -> None:
        pending = self._pending
        whole = len(pending) - len(pending) % _BLOCK
        with memoryview(pending) as view:
            for start in range(0, whole, _BLOCK):
                self._block(view[start : start + _BLOCK])
        del pending[:whole]

    def _block(self, block: memoryview | bytes) -> None:
        self.tar_hash.update(block)
        self.tar_size += len(block)
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


# --- Walking ----------------------------------------------------------------------------------

# Inherited (uid, gid, uname, gname) from recursive overrides; None means "not set".
_Inherited = tuple[Optional[int], Optional[int], Optional[str], Optional[str]]
_NO_INHERITED: _Inherited = (None, None, None, None)

# What a directory listing says a non-directory is (from d_type: no stat needed).
_FILE, _SYMLINK, _SPECIAL = 0, 1, 2
# O_NONBLOCK: a file that turned into a FIFO since it was listed must not hang the build.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


def _sort_key(name: str) -> tuple[bool, str]:
    # The opaque whiteout first, so no reader applies it after this layer's own entries.
    return (name != _OPAQUE_WHITEOUT, name)


class _Walker:
    """Walks the builder's tree and the directories it names, writing entries in order."""

    def __init__(self, builder: LayerBuilder, stream: _LayerStream) -> None:
        self.builder = builder
        self.stream = stream
        self.follow = builder.follow_symlinks
        self.open_flags = _OPEN_FLAGS if self.follow else _OPEN_FLAGS | os.O_NOFOLLOW
        self.overrides = builder._overrides
        self.links: dict[tuple[int, int], str] = {}  # (dev, inode) -> first path in the layer
        self.entry_count = 0
        self.plain = not self.overrides  # no override anywhere: no per-path look-ups
        self.formatter = tar_format.HeaderFormatter(
            uid=builder.uid,
            gid=builder.gid,
            mtime=builder.mtime,
            uname=builder.uname,
            gname=builder.gname,
        )

    def walk(
        self, node: _Node | None, sources: list[_DirSource], prefix: str, inherited: _Inherited
    ) -> None:
        """Write the entries inside one layer directory (``prefix`` is its path plus "/")."""
        explicit = node.children if node is not None else {}
        found_dirs: dict[str, list[_DirSource]] = {}
        found_leaves: dict[str, tuple[str, str, int]] = {}  # name -> (disk path, origin, kind)
        for source in sources:
            self._scan(source, explicit, found_dirs, found_leaves)

        names = sorted({*explicit, *found_dirs, *found_leaves}, key=_sort_key)
        for name in names:
            if name.startswith(_WHITEOUT_PREFIX) and name != _OPAQUE_WHITEOUT:
                deleted = name[len(_WHITEOUT_PREFIX) :]
                if deleted in explicit or deleted in found_dirs or deleted in found_leaves:
                    raise LayerError(
                        f"{prefix}{deleted} is both added and whited out in this layer"
                    )
            path = prefix + name
            child = explicit.get(name)
            if isinstance(child, _Leaf):
                self._leaf(path, child, self._inherit(path, inherited))
            elif child is not None or name in found_dirs:
                child_inherited = self._inherit(path, inherited)
                custom = child.custom if child is not None else None
                mode = self.builder.directory_mode
                if custom is not None and custom.mode is not None:
                    mode = custom.mode & 0o7777
                if custom is not None or path not in self.builder.existing_directories:
                    self._emit(path, tar_format.DIRECTORY, mode, child_inherited, custom)
                child_sources = [
                    *(child.sources if child is not None else ()),
                    *found_dirs.get(name, ()),
                ]
                self.walk(child, child_sources, path + "/", child_inherited)
            else:
                disk_path, origin, kind = found_leaves[name]
                inherited_here = self._inherit(path, inherited) if self.overrides else inherited
                self._disk_leaf(path, disk_path, origin, kind, inherited_here)

    def _scan(
        self,
        source: _DirSource,
        explicit: Mapping[str, _Node | _Leaf],
        found_dirs: dict[str, list[_DirSource]],
        found_leaves: dict[str, tuple[str, str, int]],
    ) -> None:
        try:
            entries = os.scandir(source.path)
        except OSError as exc:
            raise LayerError(f"cannot list {source.path}: {exc.strerror}") from None
        follow = self.follow
        spec = source.spec
        with entries:
            for entry in entries:
                name = entry.name
                try:
                    is_dir = entry.is_dir(follow_symlinks=follow)
                    if is_dir:
                        kind = -1
                    elif not follow and entry.is_symlink():
                        kind = _SYMLINK
                    elif entry.is_file(follow_symlinks=follow):
                        kind = _FILE
                    elif follow and entry.is_symlink():
                        raise LayerError(f"{entry.path} is a dangling symlink")
                    else:
                        kind = _SPECIAL
                except OSError as exc:
                    raise LayerError(f"cannot stat {entry.path}: {exc.strerror}") from None
                if spec is not None:
                    rel = source.rel + name
                    if spec.match_file(rel + "/" if is_dir else rel):
                        continue
                explicit_child = explicit.get(name)
                if explicit_child is not None and not (
                    is_dir and isinstance(explicit_child, _Node)
                ):
                    continue  # the more specific target wins
                if name in found_leaves or (not is_dir and name in found_dirs):
                    other = found_leaves[name][1] if name in found_leaves else "another source"
                    raise LayerError(
                        f"{source.rel}{name} comes from both {other} and {source.origin}; "
                        "map them to different paths or ignore one"
                    )
                if is_dir:
                    ancestors = source.ancestors
                    if follow:
                        st = entry.stat()
                        key = (st.st_dev, st.st_ino)
                        if key in ancestors:
                            raise LayerError(f"symlink loop: {entry.path} contains itself")
                        ancestors = ancestors | {key}
                    rel_dir = f"{source.rel}{name}/"
                    child = _DirSource(entry.path, rel_dir, spec, ancestors, source.origin)
                    found_dirs.setdefault(name, []).append(child)
                else:
                    if name.startswith(_WHITEOUT_PREFIX):
                        _reject_whiteout_name(name, entry.path)
                    found_leaves[name] = (entry.path, source.origin, kind)

    def _inherit(self, path: str, inherited: _Inherited) -> _Inherited:
        if not self.overrides:
            return inherited
        override = self.overrides.get(path)
        if override is None or not override.recursive:
            return inherited
        uid, gid, uname, gname = inherited
        return (
            override.uid if override.uid is not None else uid,
            override.gid if override.gid is not None else gid,
            override.uname if override.uname is not None else uname,
            override.gname if override.gname is not None else gname,
        )

    def _emit(
        self,
        path: str,
        typeflag: bytes,
        mode: int,
        inherited: _Inherited,
        custom: CustomFile | None = None,
        *,
        size: int = 0,
        linkname: str = "",
    ) -> None:
        self.stream.write(self._header(path, typeflag, mode, inherited, custom, size, linkname))

    def _header(  # noqa: PLR0917 - positional: called once per entry
        self,
        path: str,
        typeflag: bytes,
        mode: int,
        inherited: _Inherited,
        custom: CustomFile | None,
        size: int,
        linkname: str,
    ) -> bytes:
        name = path + "/" if typeflag == tar_format.DIRECTORY else path
        self.entry_count += 1
        if (
            inherited is _NO_INHERITED
            and custom is None
            and not linkname
            and not (self.overrides and path in self.overrides)
        ):
            try:
                return self.formatter.header(name, typeflag, mode, size)
            except UnicodeEncodeError:
                raise LayerError(f"{path!r} is not valid UTF-8") from None
        builder = self.builder
        uid, gid, uname, gname = builder.uid, builder.gid, builder.uname, builder.gname
        mtime = builder.mtime
        # Precedence, lowest first: builder defaults, recursive overrides, the CustomFile,
        # an override of this exact path.
        if inherited is not _NO_INHERITED:
            uid = uid if inherited[0] is None else inherited[0]
            gid = gid if inherited[1] is None else inherited[1]
            uname = uname if inherited[2] is None else inherited[2]
            gname = gname if inherited[3] is None else inherited[3]
        if custom is not None:
            uid = uid if custom.uid is None else custom.uid
            gid = gid if custom.gid is None else custom.gid
            mtime = mtime if custom.mtime is None else custom.mtime
        exact = self.overrides.get(path) if self.overrides else None
        if exact is not None:
            mode = mode if exact.mode is None else exact.mode & 0o7777
            uid = uid if exact.uid is None else exact.uid
            gid = gid if exact.gid is None else exact.gid
            uname = uname if exact.uname is None else exact.uname
            gname = gname if exact.gname is None else exact.gname
        try:
            return tar_format.header(
                name,
                typeflag,
                mode,
                size,
                uid=uid,
                gid=gid,
                mtime=mtime,
                linkname=linkname,
                uname=uname,
                gname=gname,
            )
        except UnicodeEncodeError:
            raise LayerError(f"{path!r} (or its link target) is not valid UTF-8") from None

    def _leaf(self, path: str, leaf: _Leaf, inherited: _Inherited) -> None:
        source = leaf.source
        if source is None:  # a whiteout: an empty regular file
            self._emit(path, tar_format.REGULAR, 0o644, inherited)
        elif isinstance(source, CustomFile):
            self._custom(path, source, inherited)
        else:
            try:
                st = os.stat(source) if self.follow else os.lstat(source)
            except OSError as exc:
                raise LayerError(f"cannot stat {source}: {exc.strerror}") from None
            if stat.S_ISREG(st.st_mode):
                kind = _FILE
            elif stat.S_ISLNK(st.st_mode):
                kind = _SYMLINK
            else:
                kind = _SPECIAL
            self._disk_leaf(path, source, source, kind, inherited)

    def _custom(self, path: str, custom: CustomFile, inherited: _Inherited) -> None:
        if custom.kind == "symlink":
            mode = 0o777 if custom.mode is None else custom.mode & 0o7777
            assert custom.link_target is not None
            self._emit(
                path, tar_format.SYMLINK, mode, inherited, custom, linkname=custom.link_target
            )
            return
        mode = 0o644 if custom.mode is None else custom.mode & 0o7777
        size = custom.content_size
        self._emit(path, tar_format.REGULAR, mode, inherited, custom, size=size)
        if custom.data is not None:
            self.stream.write(custom.data)
        else:
            assert custom.stream is not None
            remaining = size
            while remaining:
                chunk = custom.stream.read(min(remaining, _BLOCK))
                if not chunk:
                    raise LayerError(f"the stream for {path} ended {remaining} bytes early")
                self.stream.write(chunk)
                remaining -= len(chunk)
        self.stream.write(tar_format.padding(size))

    def _disk_leaf(
        self, path: str, disk_path: str, origin: str, kind: int, inherited: _Inherited
    ) -> None:
        if kind == _SYMLINK:
            try:
                target = os.readlink(disk_path)
            except OSError as exc:
                raise LayerError(f"cannot read symlink {disk_path}: {exc.strerror}") from None
            self._emit(path, tar_format.SYMLINK, 0o777, inherited, linkname=target)
        elif kind == _FILE:
            self._regular_file(path, disk_path, origin, inherited)
        else:
            raise LayerError(
                f"{disk_path} (from {origin}) is a socket, FIFO or device; layers hold only "
                "files, directories and links"
            )

    def _regular_file(self, path: str, disk_path: str, origin: str, inherited: _Inherited) -> None:
        # open + fstat rather than stat + open: one path lookup fewer per file.
        try:
            fd = os.open(disk_path, self.open_flags)
        except OSError as exc:
            raise LayerError(f"cannot open {disk_path} (from {origin}): {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            size = st.st_size
            # The hot path: a small file with default ownership, not hardlinked.
            if (
                self.plain
                and inherited is _NO_INHERITED
                and size < _BLOCK
                and st.st_nlink == 1
                and stat.S_ISREG(st.st_mode)
            ):
                data = os.read(fd, size + 1)
                if len(data) != size:
                    raise _changed(disk_path)
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                try:
                    header = self.formatter.header(path, tar_format.REGULAR, mode, size)
                except UnicodeEncodeError:
                    raise LayerError(f"{path!r} is not valid UTF-8") from None
                self.entry_count += 1
                self.stream.write_entry(header, data, tar_format.padding(size))
                return
            if not stat.S_ISREG(st.st_mode):
                raise _changed(disk_path)
            mode = 0o755 if st.st_mode & 0o111 else 0o644
            if st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                first = self.links.get(key)
                if first is not None:
                    self._emit(path, tar_format.HARDLINK, mode, inherited, linkname=first)
                    return
                self.links[key] = path
            if size < _BLOCK:
                # Reading one byte more than expected also tells us if the file grew.
                data = os.read(fd, size + 1)
                if len(data) != size:
                    raise _changed(disk_path)
                header = self._header(path, tar_format.REGULAR, mode, inherited, None, size, "")
                self.stream.write_entry(header, data, tar_format.padding(size))
                return
            else:
                self._emit(path, tar_format.REGULAR, mode, inherited, size=size)
                remaining = size
                while remaining:
                    chunk = os.read(fd, min(remaining, _BLOCK))
                    if not chunk:
                        raise _changed(disk_path)
                    self.stream.write(chunk)
                    remaining -= len(chunk)
                if os.read(fd, 1):
                    raise _changed(disk_path)
        finally:
            os.close(fd)
        self.stream.write(tar_format.padding(size))


def _changed(disk_path: str) -> LayerError:
    return LayerError(f"{disk_path} changed while the layer was being built; build again")
