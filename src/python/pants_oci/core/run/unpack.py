"""Unpacking image layers into a root filesystem directory, never outside it.

Layers are applied in order, with OCI whiteouts (:mod:`pants_oci.core.whiteouts`), hard links,
symlinks, modes, xattrs and, as root, ownership and device nodes. Every path is reached through
directory file descriptors, opened without following symlinks: a symlink met on the way is
resolved as if the root were ``/`` (as containerd does), so no member can write outside it; a
member with a ``..`` component is refused.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from pants_oci.core._settings import Setting, how_to_set, name_of
from pants_oci.core.compression import BLOCK_SIZE, decompressed
from pants_oci.core.errors import RunError
from pants_oci.core.layer import member_parts
from pants_oci.core.run.settings import RunSettings
from pants_oci.core.whiteouts import parse_whiteout

__all__ = ["RootFS", "UnpackBudget", "unpack_budget"]

_log = logging.getLogger(__name__)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SYMLINKS = 40  # as Linux's path resolution
_XATTR_PREFIX = "SCHILY.xattr."


def _member_parts(name: str, where: str) -> tuple[str, ...]:
    parts = member_parts(name)
    if parts is None:
        raise RunError(
            f"{where}: member {name!r} has a '..' component and would leave the root "
            "filesystem; refusing to unpack the image"
        )
    return parts


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(dir_fd: int, name: str) -> None:
    """Delete ``name`` in ``dir_fd`` (a directory with everything in it), following no
    symlink."""
    found = _lstat(dir_fd, name)
    if found is None:
        return
    if not stat.S_ISDIR(found.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            _remove(fd, child)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _make_directory(dir_fd: int, name: str) -> int:
    """Make directory ``name`` in ``dir_fd`` (0755, not narrowed by the umask); its fd."""
    os.mkdir(name, 0o755, dir_fd=dir_fd)
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    os.fchmod(fd, 0o755)
    return fd


def _symlink_target(
    error: OSError, dir_fd: int, name: str, inside: Sequence[str], where: str
) -> str:
    """Where the symlink ``name`` in ``dir_fd`` points, when opening it as a directory failed
    because it is one; otherwise ``error`` is raised, or RunError when ``name`` is no
    directory at all (``inside``: the real path of ``dir_fd`` in the root)."""
    if error.errno not in (errno.ELOOP, errno.ENOTDIR):
        raise error
    if not stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        raise RunError(f"{where}: /{'/'.join([*inside, name])} is not a directory") from None
    return os.readlink(name, dir_fd=dir_fd)


# Left free on the file system the image is unpacked on, when no limit is given.
_FREE_SPACE_MARGIN = 1 << 30


class UnpackBudget:
    """The bytes of files an image may still unpack to (checked from each tar header before
    anything is written)."""

    def __init__(self, limit: int, reason: str, hints_for: str) -> None:
        self.limit, self.reason, self.hints_for = limit, reason, hints_for
        self.used = 0

    def spend(self, size: int, name: str, where: str) -> None:
        if self.used + size > self.limit:
            raise RunError(
                f"{where}: {name!r} ({size} bytes) would take the unpacked image to "
                f"{self.used + size} bytes, over its limit of {self.limit} bytes "
                f"({self.reason}); free space, or "
                f"{how_to_set(Setting.MAX_UNPACKED_SIZE, self.hints_for, 'BYTES')}"
            )
        self.used += size


def unpack_budget(settings: RunSettings, work: Path, hints_for: str) -> UnpackBudget:
    if settings.max_unpacked_size is not None:
        name = name_of(Setting.MAX_UNPACKED_SIZE, hints_for)
        return UnpackBudget(settings.max_unpacked_size, f"{name}", hints_for)
    free = shutil.disk_usage(work).free
    return UnpackBudget(
        max(free - _FREE_SPACE_MARGIN, 0),
        f"the free space of {work.parent}, {free} bytes, less {_FREE_SPACE_MARGIN} to spare",
        hints_for,
    )


class RootFS:
    """A root filesystem directory, reached only through file descriptors."""

    def __init__(self, path: Path, budget: UnpackBudget | None = None) -> None:
        self.path = path
        self.fd = os.open(path, _DIR_FLAGS)
        self.privileged = os.geteuid() == 0
        self.budget = budget

    def close(self) -> None:
        os.close(self.fd)

    def open_dir(
        self, parts: Sequence[str], *, create: bool, where: str
    ) -> tuple[int, tuple[str, ...]] | None:
        """An fd of the directory at ``parts`` (the caller closes it) and its real path in the
        root, each symlink on the way resolved as if the root were ``/``; missing directories
        are made (0755) with ``create``, else None is returned."""
        stack: list[tuple[int, str]] = []
        pending = list(reversed(parts))  # next component last
        hops = 0
        try:
            while pending:
                name = pending.pop()
                if name in ("", "."):
                    continue
                if name == "..":  # at the root, `..` is the root itself
                    if stack:
                        os.close(stack.pop()[0])
                    continue
                current = stack[-1][0] if stack else self.fd
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=current)
                except FileNotFoundError:
                    if not create:
                        return None
                    fd = _make_directory(current, name)
                except OSError as exc:
                    target = _symlink_target(exc, current, name, [n for _, n in stack], where)
                    hops += 1
                    if hops > _MAX_SYMLINKS:
                        raise RunError(f"{where}: too many levels of symlinks") from None
                    if target.startswith("/"):
                        while stack:
                            os.close(stack.pop()[0])
                    pending.extend(reversed(target.split("/")))
                    continue
                stack.append((fd, name))
            return os.dup(stack[-1][0] if stack else self.fd), tuple(n for _, n in stack)
        finally:
            for fd, _ in stack:
                os.close(fd)

    def read_file(self, path: str) -> str | None:
        """A regular file's text (symlinks resolved inside the root); None if there is none."""
        parts = path.split("/")
        for _ in range(_MAX_SYMLINKS):
            if parts[-1] in ("", ".", ".."):
                return None
            found = self.open_dir(parts[:-1], create=False, where=path)
            if found is None:
                return None
            dir_fd, real = found
            try:
                found_stat = _lstat(dir_fd, parts[-1])
                if found_stat is not None and stat.S_ISLNK(found_stat.st_mode):
                    target = os.readlink(parts[-1], dir_fd=dir_fd)
                    joined = target if target.startswith("/") else "/".join([*real, target])
                    parts = joined.split("/")
                    continue
                if found_stat is None or not stat.S_ISREG(found_stat.st_mode):
                    return None  # never open a fifo or a device node
                flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
                with os.fdopen(os.open(parts[-1], flags, dir_fd=dir_fd), "rb") as handle:
                    return handle.read().decode("utf-8", "replace")
            finally:
                os.close(dir_fd)
        return None

    def make_mount_point(self, path: str, *, directory: bool) -> None:
        """An empty directory, or file, at ``path`` for a bind mount (the image's own stays)."""
        parts = [part for part in path.split("/") if part]
        found = self.open_dir(parts if directory else parts[:-1], create=True, where=path)
        assert found is not None  # made when missing
        dir_fd, _real = found
        try:
            if not directory and _lstat(dir_fd, parts[-1]) is None:
                flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                os.close(os.open(parts[-1], flags, 0o644, dir_fd=dir_fd))
        finally:
            os.close(dir_fd)

    def make_dirs(self, path: str) -> None:
        found = self.open_dir(path.split("/"), create=True, where=path)
        assert found is not None
        os.close(found[0])

    # --- Layers ---------------------------------------------------------------------------------

    def unpack(self, blob: BinaryIO, where: str) -> None:
        """Apply one layer blob (gzip, zstd or plain tar) on top of what is there."""
        unpacked: set[tuple[str, ...]] = set()  # real paths this layer made: whiteouts spare them
        try:
            with decompressed(blob) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
                for member in tar:
                    try:
                        self._member(tar, member, unpacked, where)
                    except OSError as exc:
                        raise RunError(
                            f"{where}: cannot unpack {member.name!r}: {exc.strerror or exc}"
                        ) from None
        except RunError:
            raise
        except Exception as exc:  # tarfile's, gzip's (isal's) or zstandard's own error types
            raise RunError(
                f"{where}: not a readable gzip, zstd or plain tar layer "
                f"({type(exc).__name__}: {exc})"
            ) from None

    def _member(
        self,
        tar: tarfile.TarFile,
        member: tarfile.TarInfo,
        unpacked: set[tuple[str, ...]],
        where: str,
    ) -> None:
        parts = _member_parts(member.name, where)
        if not parts:  # the root directory itself
            if member.isdir():
                self._set_attributes(self.fd, member, directory=True)
            return
        whiteout = parse_whiteout(parts)
        found = self.open_dir(parts[:-1], create=whiteout is None, where=where)
        if found is None:  # a whiteout in a directory the layers below do not have
            return
        dir_fd, real = found
        try:
            if whiteout is None:
                unpacked.add((*real, parts[-1]))
                self._create(tar, member, dir_fd, parts[-1], where)
            elif whiteout.name is None:  # opaque: all the layers below have here
                self._remove_lower(dir_fd, real, unpacked)
            elif not whiteout.valid:
                raise RunError(f"{where}: invalid whiteout {member.name!r}")
            elif (*real, whiteout.name) not in unpacked:
                _remove(dir_fd, whiteout.name)
        finally:
            os.close(dir_fd)

    def _remove_lower(
        self, dir_fd: int, real: tuple[str, ...], unpacked: set[tuple[str, ...]]
    ) -> None:
        """Empty a directory of everything that this layer did not put there."""
        for name in os.listdir(dir_fd):
            path = (*real, name)
            if path not in unpacked:
                _remove(dir_fd, name)
                continue
            found = _lstat(dir_fd, name)
            if found is not None and stat.S_ISDIR(found.st_mode):
                fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    self._remove_lower(fd, path, unpacked)
                finally:
                    os.close(fd)

    def _create(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, dir_fd: int, name: str, where: str
    ) -> None:
        if member.isdir():
            self._create_directory(member, dir_fd, name)
            return
        _remove(dir_fd, name)  # a new inode: never write through a link to a lower file
        if member.isfile():
            self._create_file(tar, member, dir_fd, name, where)
        elif member.islnk():
            self._create_hard_link(member, dir_fd, name, where)
        elif self._create_node(member, dir_fd, name, where):
            if self.privileged:
                os.chown(name, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)
            if not member.issym():
                os.chmod(name, member.mode & 0o7777, dir_fd=dir_fd)  # a node just made here
            os.utime(name, (member.mtime, member.mtime), dir_fd=dir_fd, follow_symlinks=False)

    def _create_directory(self, member: tarfile.TarInfo, dir_fd: int, name: str) -> None:
        existing = _lstat(dir_fd, name)
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            _remove(dir_fd, name)
            os.mkdir(name, 0o700, dir_fd=dir_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        try:
            self._set_attributes(fd, member, directory=True)
        finally:
            os.close(fd)

    def _create_file(
        self, tar: tarfile.TarFile, member: tarfile.TarInfo, dir_fd: int, name: str, where: str
    ) -> None:
        if self.budget is not None:
            self.budget.spend(member.size, member.name, where)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with os.fdopen(os.open(name, flags, 0o600, dir_fd=dir_fd), "wb") as handle:
            source = tar.extractfile(member)
            assert source is not None
            shutil.copyfileobj(source, handle, BLOCK_SIZE)
            handle.flush()
            self._set_attributes(handle.fileno(), member, directory=False)

    def _create_hard_link(
        self, member: tarfile.TarInfo, dir_fd: int, name: str, where: str
    ) -> None:
        """A hard link to a file unpacked before; the inode keeps its owner, mode and times."""
        target = _member_parts(member.linkname, where)
        found = self.open_dir(target[:-1], create=False, where=where) if target else None
        if found is None:
            raise RunError(f"{where}: hard link {member.name!r} to missing {member.linkname!r}")
        try:
            os.link(target[-1], name, src_dir_fd=found[0], dst_dir_fd=dir_fd, follow_symlinks=False)
        finally:
            os.close(found[0])

    def _create_node(self, member: tarfile.TarInfo, dir_fd: int, name: str, where: str) -> bool:
        """A symlink, device node (as root) or FIFO; False when it is skipped."""
        if member.issym():
            os.symlink(member.linkname, name, dir_fd=dir_fd)
        elif member.ischr() or member.isblk():
            if not self.privileged:
                _log.debug("%s: skipped device node %s (not root)", where, member.name)
                return False
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            device = os.makedev(member.devmajor, member.devminor)
            os.mknod(name, kind | (member.mode & 0o7777), device, dir_fd=dir_fd)
        elif member.isfifo():
            os.mkfifo(name, member.mode & 0o7777, dir_fd=dir_fd)
        else:
            _log.warning("%s: skipped %s, an entry of unknown type", where, member.name)
            return False
        return True

    def _set_attributes(self, fd: int, member: tarfile.TarInfo, *, directory: bool) -> None:
        mode = member.mode & 0o7777
        if self.privileged:
            os.fchown(fd, member.uid, member.gid)  # before the mode: chown clears setuid bits
        elif directory:
            mode |= 0o700  # unprivileged: we must still be able to fill and delete it
        os.fchmod(fd, mode)
        for key, value in member.pax_headers.items():
            if key.startswith(_XATTR_PREFIX):
                try:
                    os.setxattr(
                        fd, key[len(_XATTR_PREFIX) :], value.encode("utf-8", "surrogateescape")
                    )
                except OSError as exc:  # e.g. security.* unprivileged, or unsupported here
                    _log.debug("xattr %s of %s not set: %s", key, member.name, exc)
        os.utime(fd, (member.mtime, member.mtime))
