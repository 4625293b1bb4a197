"""The tree a :class:`~pants_oci.core.layer.LayerBuilder` collects, and the walk that writes it
as tar entries: in sorted order, each directory's subtree after it, the directories its
sources name read as the walk reaches them (see :mod:`pants_oci.core.layer` for what goes in
the tar, and why it is the same on every machine).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Optional, Protocol

from pants_oci.core import tar_format
from pants_oci.core.compression import BLOCK_SIZE, LayerStream
from pants_oci.core.errors import LayerError
from pants_oci.core.whiteouts import OPAQUE_WHITEOUT, WHITEOUT_PREFIX, is_whiteout, whited_out

if TYPE_CHECKING:
    from pants_oci.core.layer import CustomFile, LayerBuilder, Override

__all__ = ["DirSource", "Leaf", "Node", "PathMatcher", "reject_whiteout_name", "write_tree"]


class PathMatcher(Protocol):
    """What leaves a directory source's entries out: ``match_file(path)`` is True for a path
    (relative to the source's root, ``/``-separated, a directory's ending in ``/``) to leave
    out. A ``pathspec.PathSpec`` is one."""

    def match_file(self, file: str) -> bool: ...


# --- The tree ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DirSource:
    """An on-disk directory whose contents go in a layer directory."""

    path: str
    rel: str  # path from the source root, "" or ending in "/": what ignore patterns see
    spec: PathMatcher | None
    ancestors: frozenset[tuple[int, int]]  # (dev, inode) of enclosing dirs, to catch loops
    origin: str  # the source as the caller named it, for messages


@dataclass(frozen=True)
class Leaf:
    """A non-directory entry given explicitly: a disk path, a CustomFile, or a whiteout."""

    source: str | CustomFile | None  # None: a whiteout


class Node:
    """A directory in the layer, as add_files and the whiteout methods built it."""

    __slots__ = ("children", "custom", "sources")

    def __init__(self) -> None:
        self.children: dict[str, Node | Leaf] = {}
        self.sources: list[DirSource] = []
        self.custom: CustomFile | None = None


def reject_whiteout_name(name: str, origin: str) -> None:
    if is_whiteout(name):
        raise LayerError(
            f"{origin}: names starting with {WHITEOUT_PREFIX!r} are whiteouts, which delete "
            "base-image paths; use add_whiteout() for that"
        )


# --- Walking ----------------------------------------------------------------------------------

# Inherited (uid, gid, uname, gname) from recursive overrides; None means "not set".
_Inherited = tuple[Optional[int], Optional[int], Optional[str], Optional[str]]
_NO_INHERITED: _Inherited = (None, None, None, None)

# What a directory listing says an entry is (from d_type: no stat needed).
_DIRECTORY, _FILE, _SYMLINK, _SPECIAL = -1, 0, 1, 2
# O_NONBLOCK: a file that turned into a FIFO since it was listed must not hang the build.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK
_DIRECTORY_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_DIRECTORY
_name = itemgetter(0)  # of a (name, ...) tuple


def _sort_key(name: str) -> tuple[bool, str]:
    # The opaque whiteout first, so no reader applies it after this layer's own entries.
    return (name != OPAQUE_WHITEOUT, name)


def write_tree(
    builder: LayerBuilder, root: Node, overrides: Mapping[str, Override], stream: LayerStream
) -> int:
    """Write the entries of the tree at ``root`` into ``stream``; the number of entries."""
    walker = _Walker(builder, overrides, stream)
    walker.walk(root, list(root.sources), "", _NO_INHERITED)
    return walker.entry_count


class _Walker:
    """Walks the builder's tree and the directories it names, writing entries in order."""

    def __init__(
        self, builder: LayerBuilder, overrides: Mapping[str, Override], stream: LayerStream
    ) -> None:
        self.builder = builder
        self.stream = stream
        self.follow = builder.follow_symlinks
        self.open_flags = _OPEN_FLAGS if self.follow else _OPEN_FLAGS | os.O_NOFOLLOW
        self.overrides = overrides
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
        self, node: Node | None, sources: list[DirSource], prefix: str, inherited: _Inherited
    ) -> None:
        """Write the entries inside one layer directory (``prefix`` is its path plus "/")."""
        if (node is None or not node.children) and len(sources) == 1 and self.plain:
            self._walk_source(sources[0], prefix)
        else:
            self._walk_merged(node, sources, prefix, inherited)

    def _walk_merged(
        self, node: Node | None, sources: list[DirSource], prefix: str, inherited: _Inherited
    ) -> None:
        """:meth:`walk` in general: entries given explicitly, from any number of directory
        sources, whiteouts, overrides."""
        explicit = node.children if node is not None else {}
        found_dirs: dict[str, list[DirSource]] = {}
        found_leaves: dict[str, tuple[str, str, int]] = {}  # name -> (disk path, origin, kind)
        for source in sources:
            self._scan(source, explicit, found_dirs, found_leaves)

        names = sorted({*explicit, *found_dirs, *found_leaves}, key=_sort_key)
        for name in names:
            deleted = whited_out(name)
            if deleted is not None and (
                deleted in explicit or deleted in found_dirs or deleted in found_leaves
            ):
                raise LayerError(f"{prefix}{deleted} is both added and whited out in this layer")
            path = prefix + name
            child = explicit.get(name)
            if isinstance(child, Leaf):
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

    def _walk_source(self, source: DirSource, prefix: str) -> None:
        """:meth:`walk` of a directory that holds one directory source's contents and nothing
        else, in a layer without overrides: most of a typical layer. Nothing in it can clash
        or be whited out and no path has an override to look up, so its entries go out
        straight from the sorted listing."""
        listing = self._list(source)
        if listing is None:  # a directory with a whiteout's name: see _list()
            self._walk_merged(None, [source], prefix, _NO_INHERITED)
            return
        existing_directories = self.builder.existing_directories
        origin = source.origin
        # Files are opened relative to their directory (one name to look up, not the whole
        # path). It is opened for the first file after each subdirectory, so that a deep
        # tree holds no descriptor per level.
        dir_fd = None
        try:
            for name, kind, disk_path, subdirectory in listing:
                path = prefix + name
                if kind == _FILE:
                    if dir_fd is None:
                        dir_fd = _open_directory(source)
                    self._regular_file(path, disk_path, origin, _NO_INHERITED, (dir_fd, name))
                elif subdirectory is not None:
                    if dir_fd is not None:
                        os.close(dir_fd)
                        dir_fd = None
                    if path not in existing_directories:
                        mode = self.builder.directory_mode
                        self._emit(path, tar_format.DIRECTORY, mode, _NO_INHERITED)
                    self._walk_source(subdirectory, path + "/")
                else:
                    self._disk_leaf(path, disk_path, origin, kind, _NO_INHERITED)
        finally:
            if dir_fd is not None:
                os.close(dir_fd)

    def _list(self, source: DirSource) -> list[tuple[str, int, str, DirSource | None]] | None:
        """What a directory source holds, sorted by name: (name, kind, disk path, and a
        directory's own source), ignored entries left out and whiteout names refused as
        :meth:`_scan` does. None if a directory there has a whiteout's name: only the general
        walk sorts and checks those (it lists the directory again; only this odd case pays)."""
        try:
            entries = os.scandir(source.path)
        except OSError as exc:
            raise LayerError(f"cannot list {source.path}: {exc.strerror}") from None
        spec = source.spec
        follow = self.follow
        listing: list[tuple[str, int, str, DirSource | None]] = []
        with entries:
            for entry in entries:
                name = entry.name
                try:
                    # Regular files first: most entries are, and d_type tells without a stat.
                    kind = _FILE if entry.is_file(follow_symlinks=follow) else self._kind(entry)
                except OSError as exc:
                    raise LayerError(f"cannot stat {entry.path}: {exc.strerror}") from None
                if spec is not None:
                    rel = source.rel + name
                    if spec.match_file(rel + "/" if kind == _DIRECTORY else rel):
                        continue
                if kind != _DIRECTORY:
                    if name.startswith(WHITEOUT_PREFIX):  # is_whiteout(), without a call
                        reject_whiteout_name(name, entry.path)
                    listing.append((name, kind, entry.path, None))
                elif is_whiteout(name):
                    return None
                else:
                    listing.append((name, kind, entry.path, self._subdirectory(source, entry)))
        listing.sort(key=_name)  # code-point order (a key: comparing tuples costs 3x more)
        return listing

    def _scan(
        self,
        source: DirSource,
        explicit: Mapping[str, Node | Leaf],
        found_dirs: dict[str, list[DirSource]],
        found_leaves: dict[str, tuple[str, str, int]],
    ) -> None:
        try:
            entries = os.scandir(source.path)
        except OSError as exc:
            raise LayerError(f"cannot list {source.path}: {exc.strerror}") from None
        spec = source.spec
        with entries:
            for entry in entries:
                name = entry.name
                kind = self._kind(entry)
                is_dir = kind == _DIRECTORY
                if spec is not None:
                    rel = source.rel + name
                    if spec.match_file(rel + "/" if is_dir else rel):
                        continue
                explicit_child = explicit.get(name)
                if explicit_child is not None and not (is_dir and isinstance(explicit_child, Node)):
                    continue  # the more specific target wins
                if name in found_leaves or (not is_dir and name in found_dirs):
                    other = found_leaves[name][1] if name in found_leaves else "another source"
                    raise LayerError(
                        f"{source.rel}{name} comes from both {other} and {source.origin}; "
                        "map them to different paths or ignore one"
                    )
                if is_dir:
                    found_dirs.setdefault(name, []).append(self._subdirectory(source, entry))
                else:
                    if is_whiteout(name):
                        reject_whiteout_name(name, entry.path)
                    found_leaves[name] = (entry.path, source.origin, kind)

    def _kind(self, entry: os.DirEntry[str]) -> int:
        """What a listed entry is, as it goes in the layer (a symlink followed or not)."""
        follow = self.follow
        try:
            if entry.is_dir(follow_symlinks=follow):
                return _DIRECTORY
            if not follow and entry.is_symlink():
                return _SYMLINK
            if entry.is_file(follow_symlinks=follow):
                return _FILE
            if follow and entry.is_symlink():
                raise LayerError(f"{entry.path} is a dangling symlink")
        except OSError as exc:
            raise LayerError(f"cannot stat {entry.path}: {exc.strerror}") from None
        return _SPECIAL

    def _subdirectory(self, source: DirSource, entry: os.DirEntry[str]) -> DirSource:
        """A directory found in a directory source, as a source of its own."""
        ancestors = source.ancestors
        if self.follow:
            st = entry.stat()
            key = (st.st_dev, st.st_ino)
            if key in ancestors:
                raise LayerError(f"symlink loop: {entry.path} contains itself")
            ancestors = ancestors | {key}
        rel_dir = f"{source.rel}{entry.name}/"
        return DirSource(entry.path, rel_dir, source.spec, ancestors, source.origin)

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

    def _leaf(self, path: str, leaf: Leaf, inherited: _Inherited) -> None:
        source = leaf.source
        if source is None:  # a whiteout: an empty regular file
            self._emit(path, tar_format.REGULAR, 0o644, inherited)
        elif not isinstance(source, str):  # a CustomFile
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
                chunk = custom.stream.read(min(remaining, BLOCK_SIZE))
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

    def _regular_file(
        self,
        path: str,
        disk_path: str,
        origin: str,
        inherited: _Inherited,
        relative: tuple[int, str] | None = None,
    ) -> None:
        """A regular file at ``disk_path``, or at ``relative``: (its directory's descriptor,
        its name)."""
        # open + fstat rather than stat + open: one path lookup fewer per file.
        try:
            if relative is None:
                fd = os.open(disk_path, self.open_flags)
            else:
                fd = os.open(relative[1], self.open_flags, dir_fd=relative[0])
        except OSError as exc:
            raise LayerError(f"cannot open {disk_path} (from {origin}): {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            size = st.st_size
            # The hot path: a small file with default ownership, not hardlinked.
            if (
                self.plain
                and inherited is _NO_INHERITED
                and size < BLOCK_SIZE
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
            else:
                self._file_entry(fd, st, path, disk_path, inherited)
        finally:
            os.close(fd)

    def _file_entry(
        self, fd: int, st: os.stat_result, path: str, disk_path: str, inherited: _Inherited
    ) -> None:
        """An open regular file off the hot path: a hard link to a path written before,
        ownership from overrides, or content of a megabyte or more (streamed)."""
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
        size = st.st_size
        if size < BLOCK_SIZE:
            # Reading one byte more than expected also tells us if the file grew.
            data = os.read(fd, size + 1)
            if len(data) != size:
                raise _changed(disk_path)
            header = self._header(path, tar_format.REGULAR, mode, inherited, None, size, "")
            self.stream.write_entry(header, data, tar_format.padding(size))
            return
        self._emit(path, tar_format.REGULAR, mode, inherited, size=size)
        remaining = size
        while remaining:
            chunk = os.read(fd, min(remaining, BLOCK_SIZE))
            if not chunk:
                raise _changed(disk_path)
            self.stream.write(chunk)
            remaining -= len(chunk)
        if os.read(fd, 1):
            raise _changed(disk_path)
        self.stream.write(tar_format.padding(size))


def _open_directory(source: DirSource) -> int:
    try:
        return os.open(source.path, _DIRECTORY_OPEN_FLAGS)
    except OSError as exc:
        raise LayerError(f"cannot list {source.path}: {exc.strerror}") from None


def _changed(disk_path: str) -> LayerError:
    return LayerError(f"{disk_path} changed while the layer was being built; build again")
