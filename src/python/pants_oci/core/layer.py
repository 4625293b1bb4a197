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

Compression (``compression=``: ``"gzip"``, the default, ``"zstd"`` or ``"none"``) is as
deterministic as the tar: see :mod:`pants_oci.core.compression`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, Union

import pathspec

from pants_oci.core import tar_format
from pants_oci.core._layer_tree import (
    DirSource,
    Leaf,
    Node,
    PathMatcher,
    reject_whiteout_name,
    write_tree,
)
from pants_oci.core.compression import (
    BLOCK_SIZE,
    Compression,
    GzipEngine,
    LayerStream,
    Writable,
)
from pants_oci.core.digest import Digest
from pants_oci.core.errors import ImageBuildError, LayerError
from pants_oci.core.outputs import replacing
from pants_oci.core.validation import check_id
from pants_oci.core.whiteouts import OPAQUE_WHITEOUT, whiteout_for

if TYPE_CHECKING:
    from pants_oci.core.models import Descriptor

__all__ = [
    "CustomFile",
    "FileFilter",
    "LayerBlob",
    "LayerBuilder",
    "Override",
    "Source",
    "compress_layer",
    "member_parts",
    "resolve_source_date_epoch",
]


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


# Keeps a directory source's entry when True; called with the entry's path relative to the
# source's root, ``/``-separated, a directory's ending in ``/`` (leaving one out leaves out all
# of it).
FileFilter = Callable[[str], bool]


class _IgnoreFilesSpec:
    """The ignore files named ``names`` found in a directory source's directories, over
    ``spec``: each file's patterns apply, relative to its directory, to what is beneath it;
    the deepest file whose patterns decide (ignore, or ``!`` re-include) wins, and paths no
    file decides are left to ``spec``. Files are read the first time a path beneath them is
    asked about."""

    def __init__(self, root: str, names: Sequence[str], spec: PathMatcher | None) -> None:
        self.root = root
        self.names = names
        self.spec = spec
        self._specs: dict[str, pathspec.GitIgnoreSpec | None] = {}  # by directory, "" or "a/"

    def _directory_spec(self, directory: str) -> pathspec.GitIgnoreSpec | None:
        if directory not in self._specs:
            lines: list[str] = []
            for name in self.names:
                path = os.path.join(self.root, directory, name)
                if os.path.isfile(path):
                    lines += _read_ignore_file(path)
            self._specs[directory] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[directory]

    def match_file(self, file: str) -> bool:
        parts = file.rstrip("/").split("/")
        for depth in range(len(parts) - 1, -1, -1):  # the deepest directory first
            directory = "".join(f"{part}/" for part in parts[:depth])
            spec = self._directory_spec(directory)
            if spec is not None:
                decided = spec.check_file(file[len(directory) :]).include
                if decided is not None:
                    return decided
        return self.spec is not None and self.spec.match_file(file)


@dataclass(frozen=True)
class _FilteredSpec:
    """Ignore patterns and a :data:`FileFilter` as one :class:`PathMatcher`."""

    spec: PathMatcher | None
    keep: FileFilter

    def match_file(self, file: str) -> bool:
        if self.spec is not None and self.spec.match_file(file):
            return True
        return not self.keep(file)


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

    @classmethod
    def of_stream(cls, stream: LayerStream, entry_count: int | None = None) -> LayerBlob:
        """What a finished stream wrote."""
        return cls(
            digest=stream.digest,
            diff_id=stream.diff_id,
            size=stream.blob_size,
            uncompressed_size=stream.tar_size,
            media_type=stream.media_type,
            entry_count=entry_count,
        )

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
        self._root = Node()
        for path, override in (overrides or {}).items():
            self.set_override(path, override)

    def set_override(self, path: str, override: Override) -> None:
        """Set the ownership/mode override of a layer path (see :class:`Override`)."""
        self._overrides["/".join(_split_layer_path(path))] = override

    def set_source_overrides(
        self,
        target: str,
        source: str | os.PathLike[str],
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
    ) -> None:
        """Give what ``source``, added at ``target``, puts in the layer this mode and
        ownership. For a directory source, uid/gid apply to everything under it and mode to
        every regular file under it (directories keep 0755)."""
        if mode is None and uid is None and gid is None:
            return
        if not os.path.isdir(source):
            self.set_override(target, Override(mode=mode, uid=uid, gid=gid))
            return
        if uid is not None or gid is not None:
            self.set_override(target, Override(uid=uid, gid=gid, recursive=True))
        if mode is None:
            return
        follow_symlinks = self.follow_symlinks
        for root, _dirs, files in os.walk(source, followlinks=follow_symlinks):
            for name in files:
                path = os.path.join(root, name)
                if os.path.isfile(path) and (follow_symlinks or not os.path.islink(path)):
                    relative = os.path.relpath(path, source).replace(os.sep, "/")
                    self.set_override(
                        f"{target.rstrip('/')}/{relative}", Override(mode=mode, uid=uid, gid=gid)
                    )

    def add_files(
        self,
        files: Mapping[str, Source],
        *,
        ignore: Sequence[str] = (),
        ignore_files: Sequence[str | os.PathLike[str]] = (),
        ignore_file_names: Sequence[str] = (),
        filter: FileFilter | None = None,
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
        so ``ignore`` can negate them. ``ignore_file_names`` (such as ``[".ignore"]``) are
        looked up in every directory walked, as git reads ``.gitignore`` files: a file's
        patterns apply relative to its directory, and a deeper file's over a shallower one's,
        ``ignore`` and ``ignore_files``. Patterns apply to directory sources only, and so does
        ``filter`` (a :data:`FileFilter`: entries for which it returns False are left out,
        whatever the patterns say).

        (.dockerignore semantics differ: there a pattern without ``/`` matches only at the
        root, and ``!`` can re-include files inside an excluded directory. They are not
        supported; translate such files to gitignore patterns.)
        """
        lines = [line for file in ignore_files for line in _read_ignore_file(file)]
        lines += list(ignore)
        spec: PathMatcher | None = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        if filter is not None and not callable(filter):
            raise TypeError(f"add_files() argument 'filter' must be callable, not {filter!r}")
        for name in ignore_file_names:
            if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
                raise LayerError(f"ignore_file_names: {name!r} is not a file name")

        def source_spec(directory: str) -> PathMatcher | None:
            matcher = spec
            if ignore_file_names:
                matcher = _IgnoreFilesSpec(directory, tuple(ignore_file_names), matcher)
            return matcher if filter is None else _FilteredSpec(matcher, filter)

        for target, source in files.items():
            self._add_one(target, source, source_spec)

    def add_whiteout(self, path: str) -> None:
        """Delete ``path`` (a file or a whole directory) of the layers below this one."""
        parts = _split_layer_path(path)
        if not parts:
            raise LayerError("cannot white out the layer root; use add_opaque_whiteout('/')")
        reject_whiteout_name(parts[-1], f"whiteout of {path!r}")
        self._put_leaf(parts[:-1], whiteout_for(parts[-1]), Leaf(None), path)

    def add_opaque_whiteout(self, directory: str) -> None:
        """Hide everything the layers below have in ``directory``; this layer's own entries
        in it stay."""
        self._put_leaf(_split_layer_path(directory), OPAQUE_WHITEOUT, Leaf(None), directory)

    def _add_one(
        self, target: str, source: Source, spec: Callable[[str], PathMatcher | None]
    ) -> None:
        parts = _split_layer_path(target)
        into_directory = str(target).endswith("/") or not parts
        if isinstance(source, CustomFile):
            if source.kind == "directory":
                self._directory(parts).custom = source
                return
            if not parts:
                raise LayerError(f"a CustomFile {source.kind} needs a path, not the layer root")
            reject_whiteout_name(parts[-1], f"target {target!r}")
            self._put_leaf(parts[:-1], parts[-1], Leaf(source), target)
            return
        path = os.fspath(source)
        try:
            st = os.stat(path) if self.follow_symlinks else os.lstat(path)
        except OSError as exc:
            raise LayerError(f"source {path!r} for {target!r}: {exc.strerror}") from None
        if stat.S_ISDIR(st.st_mode):
            ancestors = frozenset({(st.st_dev, st.st_ino)}) if self.follow_symlinks else frozenset()
            node = self._directory(parts)
            node.sources.append(DirSource(path, "", spec(path), ancestors, path))
            return
        if into_directory:
            parts = [*parts, os.path.basename(os.path.normpath(path))]
        reject_whiteout_name(parts[-1], f"source {path!r}")
        self._put_leaf(parts[:-1], parts[-1], Leaf(path), target)

    def _directory(self, parts: Sequence[str]) -> Node:
        node = self._root
        for depth, part in enumerate(parts):
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = Node()
            elif isinstance(child, Leaf):
                where = "/".join(parts[: depth + 1])
                raise LayerError(f"{where!r} is both a directory and a file in this layer")
            node = child
        return node

    def _put_leaf(self, parent: Sequence[str], name: str, leaf: Leaf, target: str) -> None:
        node = self._directory(parent)
        if name in node.children:
            where = "/".join([*parent, name])
            raise LayerError(f"layer path {where!r} is given twice (last as {target!r})")
        node.children[name] = leaf

    # --- Writing ------------------------------------------------------------------------------

    def write(
        self,
        sink: Writable,
        *,
        compression: Compression = "gzip",
        level: int | None = None,
        gzip_engine: GzipEngine = "auto",
    ) -> LayerBlob:
        """Stream the layer blob into ``sink`` (anything with ``write(bytes)``)."""
        stream = LayerStream(sink, compression=compression, level=level, gzip_engine=gzip_engine)
        entry_count = write_tree(self, self._root, self._overrides, stream)
        stream.write(tar_format.END_OF_ARCHIVE)
        stream.finish()
        return LayerBlob.of_stream(stream, entry_count)

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
        with replacing(path) as handle:
            return self.write(handle, compression=compression, level=level, gzip_engine=gzip_engine)


def compress_layer(
    tar_stream: BinaryIO,
    sink: Writable,
    *,
    compression: Compression = "gzip",
    level: int | None = None,
    gzip_engine: GzipEngine = "auto",
) -> LayerBlob:
    """Compress an existing layer tar (read from ``tar_stream`` to its end) exactly as
    :meth:`LayerBuilder.write` compresses the tars it makes: same bytes for the same tar."""
    stream = LayerStream(sink, compression=compression, level=level, gzip_engine=gzip_engine)
    while chunk := tar_stream.read(BLOCK_SIZE):
        stream.write(chunk)
    stream.finish()
    return LayerBlob.of_stream(stream)


def member_parts(name: str) -> tuple[str, ...] | None:
    """A layer member's path, as components (no empty or `.` ones); None when one is `..`.

    The one policy of every reader of layers (unpacking for `run`, reading a base's
    filesystem for its directories and Pythons): a member that would leave the root is
    refused, never resolved as if the root were `/`."""
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    return None if ".." in parts else parts
