"""Run the image of an OCI image layout, with runc (as root) or podman: ``pants-oci run``.

With runc, the image is unpacked into a fresh temporary bundle and run by
``runc run``::

    status = run_layout("dist/app-layout", args=["sh", "-c", "echo hi"], env={"MODE": "dev"})

1. The image is the layout's only one, or the one named ``ref`` (a multi-platform ref gives
   this machine's Linux image). Layer blobs the layout lacks (a layout written with
   ``include_base_layers=False``) are fetched from the registry image its ``index.json``
   records (:data:`~pants_oci.core.image.BLOB_SOURCE_ANNOTATION`).
2. The layers are unpacked in order into ``rootfs/``, with OCI whiteouts (``.wh.NAME`` deletes
   NAME of the layers below, ``.wh..wh..opq`` empties its directory of them), hard links,
   symlinks, modes, xattrs and, as root, ownership and device nodes. Every path is reached
   through directory file descriptors, opened without following symlinks: a symlink met on
   the way is resolved as if ``rootfs/`` were ``/`` (as containerd does), so no member can
   write outside ``rootfs/``; a member with a ``..`` component is refused.
3. ``config.json`` runs the image config's entrypoint + cmd (``args`` replace cmd, as
   ``docker run IMAGE ARGS`` does), with its env (``env`` added over it), working directory
   and user (names looked up in the image's ``/etc/passwd`` and ``/etc/group``). The
   container gets its own pid, ipc, uts and mount namespaces but shares the host's network
   namespace (like ``docker run --network host``: servers in it are reachable on the host's
   addresses, and the host's ``/etc/resolv.conf`` and ``/etc/hosts`` are copied in), Docker's
   default capabilities, no seccomp profile, no tty, and a writable root filesystem.
4. ``runc run`` inherits stdin, stdout and stderr; its exit status (the container's; 128+N
   when signal N killed it) is returned. The bundle and runc's state directory are deleted
   afterwards, whatever happens.

With podman (``runtime="podman"``, or ``"auto"`` when runc or root is not available) the
layout is handed to ``podman run --rm -i --network host oci:pants-oci-run[:REF]``, which does
the same. It runs in a temporary directory where ``pants-oci-run`` links to the layout, since
podman names the image after that path (``localhost/pants-oci-run:REF``); ``--ulimit`` flags
give the container this process's limits of open files and processes (as runc's container
inherits them), which podman would otherwise raise, as only CAP_SYS_RESOURCE allows.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import resource
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from pants_oci.core import media_types
from pants_oci.core._compat import zip_strict
from pants_oci.core._settings import LIBRARY, Setting, how_to_set, name_of
from pants_oci.core._transport_options import TransportOptions
from pants_oci.core.errors import RefNotFoundError, RunError, RuntimeNotFoundError
from pants_oci.core.image import BLOB_SOURCE_ANNOTATION
from pants_oci.core.layer import decompressed, member_parts
from pants_oci.core.layout import REF_NAME_ANNOTATION, ImageLayout, LocalImage
from pants_oci.core.models import ImageConfig, Platform, platform_matches

__all__ = ["Mount", "RunSettings", "Runtime", "run_layout"]

Runtime = Literal["auto", "runc", "podman"]

_log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_INSTALL_HINT = (
    "install runc and run as root (Debian/Ubuntu: `apt install runc`), or install podman "
    "(Debian/Ubuntu: `apt install podman`)"
)
# What Docker gives a container by default: enough for entrypoints that chown or drop
# privileges (gosu, su-exec), nothing that administers the host.
_CAPABILITIES = [
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
    "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
]  # fmt: skip
_MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware",
]  # fmt: skip
_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/dev/shm",  # noqa: S108 - a mount in the container
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
    {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
]
_HOST_FILES = ("resolv.conf", "hosts")  # copied in: the container shares the host's network
# After Ctrl-C (which runc passes on to the container) the container gets this long to stop
# before it is killed: a PID 1 without a SIGINT handler ignores the signal.
_STOP_GRACE_SECONDS = 10.0

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_SYMLINKS = 40  # as Linux's path resolution
_OPAQUE_WHITEOUT = ".wh..wh..opq"
_WHITEOUT_PREFIX = ".wh."
_XATTR_PREFIX = "SCHILY.xattr."
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Mount:
    """A host file or directory, bind-mounted read-only into the container."""

    source: Path
    destination: str

    @classmethod
    def parse(cls, text: str) -> Mount:
        """``SOURCE:DESTINATION`` (SOURCE relative to the working directory, or absolute)."""
        source, colon, destination = text.rpartition(":")
        if not colon or not source or not destination.startswith("/"):
            raise RunError(
                f"mount {text!r}: expected SOURCE:DESTINATION, an absolute path in the "
                "container, e.g. `config:/etc/app` (mounted read-only)"
            )
        if ".." in destination.split("/"):
            raise RunError(f"mount {text!r}: the destination must not go up with `..`")
        path = Path(source).absolute()
        if not path.exists():
            raise RunError(f"mount {text!r}: {path} does not exist")
        return cls(path, destination)


@dataclass(frozen=True)
class RunSettings:
    """What ``run`` changes of the image config, as ``docker run`` flags do."""

    mounts: tuple[Mount, ...] = ()  # --volume SOURCE:DESTINATION:ro
    workdir: str | None = None  # --workdir
    user: str | None = None  # --user USER[:GROUP]
    # The most bytes of files the image may unpack to (runc); None: the free space of the
    # temporary directory's file system, less a margin (a small layer can expand to gigabytes).
    max_unpacked_size: int | None = None


# --- Choosing the image -------------------------------------------------------------------------


def _pick_ref(layout: ImageLayout, ref: str | None) -> str:
    """``ref``, or the layout's only image when none is named."""
    if ref is not None:
        return ref
    refs = layout.refs()
    if len(refs) == 1:
        return refs[0]
    digests = {entry.digest for entry in layout.index().manifests}
    if len(digests) == 1:
        return str(next(iter(digests)))
    raise RefNotFoundError(
        f"{layout.root} holds {len(digests)} images ({', '.join(refs) or 'none named'}); "
        "name the one to run with --ref NAME",
        wanted="",
        available=refs,
    )


def _layer_blobs(
    image: LocalImage, ref: str, download_dir: Path, options: TransportOptions | None
) -> list[Path]:
    """A file holding each layer blob, bottom first: the layout's own, or fetched into
    ``download_dir`` from the registry image the layout records."""
    layout = image.layout
    for layer in image.layers:
        if not media_types.is_layer(layer.media_type):
            raise RunError(
                f"{layout.root}:{ref}: {layer.digest} is a {layer.media_type}, not a filesystem "
                "layer; only container images can be run"
            )
    missing = [layer for layer in image.layers if not layout.has_blob(layer.digest)]
    source = layout.ref_annotations(ref).get(BLOB_SOURCE_ANNOTATION)
    if missing and (source is None or any(layer.urls for layer in missing)):
        raise RunError(
            f"{layout.root} lacks layer blob {missing[0].digest} of {ref!r} and records no "
            "registry to fetch it from; write the layout with its base layers "
            "(`base pull --with-layers` for the base, or include_base_layers=True)"
        )
    if missing:
        assert source is not None
        # The registry stack is imported only when a layout is incomplete.
        from pants_oci.core.reference import parse_reference  # noqa: PLC0415
        from pants_oci.core.registry import RegistryClient  # noqa: PLC0415

        _log.info("fetching %d base layers of %s from %s", len(missing), ref, source)
        download_dir.mkdir()
        with RegistryClient.from_reference(parse_reference(source), options=options) as client:
            for layer in missing:
                client.get_blob(layer.digest, download_dir / layer.digest.hex, size=layer.size)
    return [
        layout.blob_path(layer.digest)
        if layout.has_blob(layer.digest)
        else download_dir / layer.digest.hex
        for layer in image.layers
    ]


# --- Unpacking, never outside the root ----------------------------------------------------------


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


# Left free on the file system the image is unpacked on, when no limit is given.
_FREE_SPACE_MARGIN = 1 << 30


class _UnpackBudget:
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


def _unpack_budget(settings: RunSettings, work: Path, hints_for: str) -> _UnpackBudget:
    if settings.max_unpacked_size is not None:
        name = name_of(Setting.MAX_UNPACKED_SIZE, hints_for)
        return _UnpackBudget(settings.max_unpacked_size, f"{name}", hints_for)
    free = shutil.disk_usage(work).free
    return _UnpackBudget(
        max(free - _FREE_SPACE_MARGIN, 0),
        f"the free space of {work.parent}, {free} bytes, less {_FREE_SPACE_MARGIN} to spare",
        hints_for,
    )


class _RootFS:
    """A root filesystem directory, reached only through file descriptors."""

    def __init__(self, path: Path, budget: _UnpackBudget | None = None) -> None:
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
                    os.mkdir(name, 0o755, dir_fd=current)
                    fd = os.open(name, _DIR_FLAGS, dir_fd=current)
                    os.fchmod(fd, 0o755)  # not narrowed by the umask
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    if not stat.S_ISLNK(
                        os.stat(name, dir_fd=current, follow_symlinks=False).st_mode
                    ):
                        inner = "/".join([*(n for _, n in stack), name])
                        raise RunError(f"{where}: /{inner} is not a directory") from None
                    hops += 1
                    if hops > _MAX_SYMLINKS:
                        raise RunError(f"{where}: too many levels of symlinks") from None
                    target = os.readlink(name, dir_fd=current)
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
        name = parts[-1]
        whiteout = name.startswith(_WHITEOUT_PREFIX)
        found = self.open_dir(parts[:-1], create=not whiteout, where=where)
        if found is None:  # a whiteout in a directory the layers below do not have
            return
        dir_fd, real = found
        try:
            if name == _OPAQUE_WHITEOUT:
                self._remove_lower(dir_fd, real, unpacked)
            elif whiteout:
                hidden = name[len(_WHITEOUT_PREFIX) :]
                if hidden in ("", ".", ".."):
                    raise RunError(f"{where}: invalid whiteout {member.name!r}")
                if (*real, hidden) not in unpacked:
                    _remove(dir_fd, hidden)
            else:
                unpacked.add((*real, name))
                self._create(tar, member, dir_fd, name, where)
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
        existing = _lstat(dir_fd, name)
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                _remove(dir_fd, name)
                os.mkdir(name, 0o700, dir_fd=dir_fd)
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                self._set_attributes(fd, member, directory=True)
            finally:
                os.close(fd)
            return
        _remove(dir_fd, name)  # a new inode: never write through a link to a lower file
        mode = member.mode & 0o7777
        if member.isfile():
            if self.budget is not None:
                self.budget.spend(member.size, member.name, where)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            with os.fdopen(os.open(name, flags, 0o600, dir_fd=dir_fd), "wb") as handle:
                source = tar.extractfile(member)
                assert source is not None
                shutil.copyfileobj(source, handle, _CHUNK)
                handle.flush()
                self._set_attributes(handle.fileno(), member, directory=False)
        elif member.issym():
            os.symlink(member.linkname, name, dir_fd=dir_fd)
        elif member.islnk():
            target = _member_parts(member.linkname, where)
            found = self.open_dir(target[:-1], create=False, where=where) if target else None
            if found is None:
                raise RunError(f"{where}: hard link {member.name!r} to missing {member.linkname!r}")
            try:
                os.link(
                    target[-1], name, src_dir_fd=found[0], dst_dir_fd=dir_fd, follow_symlinks=False
                )
            finally:
                os.close(found[0])
            return  # the inode keeps its owner, mode and times
        elif member.ischr() or member.isblk():
            if not self.privileged:
                _log.debug("%s: skipped device node %s (not root)", where, member.name)
                return
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            device = os.makedev(member.devmajor, member.devminor)
            os.mknod(name, kind | mode, device, dir_fd=dir_fd)
        elif member.isfifo():
            os.mkfifo(name, mode, dir_fd=dir_fd)
        else:
            _log.warning("%s: skipped %s, an entry of unknown type", where, member.name)
            return
        if not member.isfile():
            if self.privileged:
                os.chown(name, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)
            if not member.issym():
                os.chmod(name, mode, dir_fd=dir_fd)  # a node just made here, not a link
            os.utime(name, (member.mtime, member.mtime), dir_fd=dir_fd, follow_symlinks=False)

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


# --- The runtime spec ---------------------------------------------------------------------------


def _command(config: ImageConfig, args: Sequence[str], where: str) -> list[str]:
    run = config.config
    entrypoint = list(run.entrypoint or ()) if run else []
    cmd = list(run.cmd or ()) if run else []
    command = entrypoint + (list(args) if args else cmd)
    if not command:
        raise RunError(
            f"{where} has no entrypoint and no cmd: there is nothing to run; give the command "
            "to run after `--`"
        )
    return command


def _table(text: str | None) -> list[list[str]]:
    """The colon-separated records of /etc/passwd or /etc/group."""
    rows = []
    for line in (text or "").splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _user(root: _RootFS, user: str, where: str) -> tuple[dict[str, Any], str]:
    """The spec's ``process.user`` for the image config's ``User``, and the user's home."""
    name, _, group = (user or "0").partition(":")
    passwd = [row for row in _table(root.read_file("etc/passwd")) if len(row) >= 6]
    if name.isdigit():
        uid = int(name)
        entry = next((row for row in passwd if row[2] == name), None)
    else:
        entry = next((row for row in passwd if row[0] == name), None)
        if entry is None or not entry[2].isdigit():
            raise RunError(
                f"{where} runs as user {user!r}, but the image's /etc/passwd has no user "
                f"{name!r}; add it to the image or set a numeric user (uid[:gid])"
            )
        uid = int(entry[2])
    groups = [row for row in _table(root.read_file("etc/group")) if len(row) >= 4]
    if not group:
        gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    elif group.isdigit():
        gid = int(group)
    else:
        match = next((row for row in groups if row[0] == group and row[2].isdigit()), None)
        if match is None:
            raise RunError(
                f"{where} runs as user {user!r}, but the image's /etc/group has no group "
                f"{group!r}; add it to the image or give a numeric gid"
            )
        gid = int(match[2])
    spec: dict[str, Any] = {"uid": uid, "gid": gid}
    if entry is not None:
        extra = sorted(
            {
                int(row[2])
                for row in groups
                if entry[0] in row[3].split(",") and row[2].isdigit() and int(row[2]) != gid
            }
        )
        if extra:
            spec["additionalGids"] = extra
    return spec, (entry[5] if entry is not None and entry[5] else "/")


def _runtime_spec(
    config: ImageConfig,
    root: _RootFS,
    bundle: Path,
    *,
    command: list[str],
    env: Mapping[str, str],
    where: str,
    settings: RunSettings,
) -> dict[str, Any]:
    run = config.config
    user_text = settings.user if settings.user is not None else (run.user if run else None)
    user, home = _user(root, user_text or "", where)
    variables: dict[str, str] = {}
    for item in (run.env if run else None) or ():
        key, _, value = item.partition("=")
        variables[key] = value
    variables.update(env)
    variables.setdefault("PATH", DEFAULT_PATH)
    variables.setdefault("HOME", home)
    workdir = settings.workdir or (run.working_dir if run else None) or "/"
    cwd = "/" + "/".join(p for p in workdir.split("/") if p)
    root.make_dirs(cwd)  # as docker does: a WORKDIR the layers lack is made (root's, 0755)
    mounts = list(_MOUNTS)
    for mount in settings.mounts:
        root.make_mount_point(mount.destination, directory=mount.source.is_dir())
        mounts.append(
            {
                "destination": mount.destination,
                "type": "bind",
                "source": str(mount.source),
                "options": ["rbind", "ro", "rprivate"],
            }
        )
    for name in _HOST_FILES:
        host = Path("/etc") / name
        if host.is_file():
            shutil.copyfile(host, bundle / name)
            mounts.append(
                {
                    "destination": f"/etc/{name}",
                    "type": "bind",
                    "source": str(bundle / name),
                    "options": ["rbind", "rprivate"],
                }
            )
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": user,
            "args": command,
            "env": [f"{key}={value}" for key, value in variables.items()],
            "cwd": cwd,
            "capabilities": {
                "bounding": _CAPABILITIES,
                "effective": _CAPABILITIES,
                "permitted": _CAPABILITIES,
            },
            "noNewPrivileges": False,  # as docker: setuid programs (su, sudo) still work
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": socket.gethostname(),  # the host's network, so the host's name
        "mounts": mounts,
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            # No network namespace: the host's, as with `docker run --network host`.
            "namespaces": [{"type": kind} for kind in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": _MASKED_PATHS,
            "readonlyPaths": _READONLY_PATHS,
        },
    }


# --- Running ------------------------------------------------------------------------------------


def _choose_runtime(
    runtime: str, hints_for: str = LIBRARY
) -> tuple[Literal["runc", "podman"], str]:
    runc, podman = shutil.which("runc"), shutil.which("podman")
    root = os.geteuid() == 0
    if runtime == "runc":
        if runc is None:
            raise RuntimeNotFoundError(f"runc is not on PATH; {_INSTALL_HINT}")
        if not root:
            raise RuntimeNotFoundError(
                "pants-oci runs images with runc only as root (rootless runc is not supported); "
                f"run as root, or use podman ({how_to_set(Setting.RUNTIME, hints_for, 'podman')})"
            )
        return "runc", runc
    if runtime == "podman":
        if podman is None:
            raise RuntimeNotFoundError(
                "podman is not on PATH; install it (Debian/Ubuntu: `apt install podman`)"
            )
        return "podman", podman
    if runtime != "auto":
        raise RunError(f"unknown runtime {runtime!r}; use 'auto', 'runc' or 'podman'")
    if runc is not None and root:
        return "runc", runc
    if podman is not None:
        return "podman", podman
    found = "runc is on PATH but this is not root" if runc is not None else "neither was found"
    raise RuntimeNotFoundError(
        f"running an image needs runc (as root) or podman, and {found}; {_INSTALL_HINT}"
    )


class _Stop(Exception):
    """SIGTERM to this process: stop the container, as Ctrl-C does."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop()


def _run_runc(runc: str, bundle: Path, state: Path, stop_signal: str | None) -> int:
    """``runc run``; on Ctrl-C or SIGTERM the container gets the image's stop signal (as
    ``docker stop`` sends it; SIGTERM without one), then SIGKILL after a grace period."""
    container = f"pants-oci-{secrets.token_hex(6)}"
    base = [runc, "--root", str(state)]
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    process = subprocess.Popen([*base, "run", "--bundle", str(bundle), container])
    try:
        return process.wait()
    except (KeyboardInterrupt, _Stop):
        kill = [*base, "kill", container]
        subprocess.run([*kill, stop_signal or "TERM"], capture_output=True, check=False)
        try:
            process.wait(timeout=_STOP_GRACE_SECONDS)
        except (subprocess.TimeoutExpired, KeyboardInterrupt, _Stop):
            subprocess.run([*kill, "KILL"], capture_output=True, check=False)
            process.wait()
        return process.returncode
    finally:
        signal.signal(signal.SIGTERM, previous)
        # `runc run` deletes the container when it ends; this is for when runc itself did not.
        subprocess.run([*base, "delete", "--force", container], capture_output=True, check=False)


def _podman_ulimits() -> list[str]:
    """``--ulimit`` flags that give the container this process's limits of open files and
    processes, as runc's container inherits them.

    Left to itself, podman (as root) asks the runtime for 1048576 of each, which only a
    process with CAP_SYS_RESOURCE may raise them to: in a container without it, ``runc create``
    fails with "error setting rlimit type 7: operation not permitted". podman also lowers its
    own process limit to ``kernel.pid_max`` before it starts the runtime, so that caps the
    process limit asked for too."""

    def value(limit: int, cap: int | None = None) -> str:
        if cap is not None and (limit == resource.RLIM_INFINITY or limit > cap):
            limit = cap
        return "-1" if limit == resource.RLIM_INFINITY else str(limit)

    try:
        pid_max: int | None = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = None
    flags = []
    for name, kind, cap in (
        ("nofile", resource.RLIMIT_NOFILE, None),
        ("nproc", resource.RLIMIT_NPROC, pid_max),
    ):
        soft, hard = resource.getrlimit(kind)
        flags.append(f"--ulimit={name}={value(soft, cap)}:{value(hard, cap)}")
    return flags


# podman's oci: transport names the image it copies into its storage after the path it is
# given, `localhost/PATH:REF`, and refuses a path that is not a valid image name (one with an
# uppercase letter, as Pants' sandbox directories have). So podman gets this relative path, a
# symlink to the layout in a new temporary directory it runs in: whatever the layout's path, the
# image is `localhost/pants-oci-run:REF`, one name that each run moves on.
_PODMAN_LINK = "pants-oci-run"


def _run_podman(
    podman: str,
    layout: ImageLayout,
    ref: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    settings: RunSettings,
) -> int:
    target = f"oci:{_PODMAN_LINK}"
    if ref.startswith("sha256:"):
        # podman's oci: transport takes ref names only: a name of that digest, if any (with
        # several tags, index.json has several entries and podman will not guess).
        names = [
            (entry.annotations or {}).get(REF_NAME_ANNOTATION)
            for entry in layout.index().manifests
            if str(entry.digest) == ref
        ]
        ref = next((name for name in names if name), "")
    if ref:
        target += f":{ref}"
    flags = [*_podman_ulimits(), *(f"--env={key}={value}" for key, value in env.items())]
    flags += [f"--volume={m.source}:{m.destination}:ro" for m in settings.mounts]
    if settings.workdir:
        flags.append(f"--workdir={settings.workdir}")
    if settings.user is not None:
        flags.append(f"--user={settings.user}")
    argv = [podman, "run", "--rm", "-i", "--network=host", *flags, target, *args]
    work = Path(tempfile.mkdtemp(prefix="pants-oci-podman-"))
    try:
        (work / _PODMAN_LINK).symlink_to(layout.root.resolve(), target_is_directory=True)
        return subprocess.run(argv, cwd=work, check=False).returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_layout(
    layout_dir: str | os.PathLike[str],
    *,
    ref: str | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    runtime: Runtime | str = "auto",
    options: TransportOptions | None = None,
    settings: RunSettings | None = None,
) -> int:
    """Run the image ``ref`` (default: the only one) of the OCI layout ``layout_dir`` in the
    foreground and return its exit status. ``args`` replace the image's cmd (its entrypoint
    stays); ``env`` is added over the image's env; ``settings`` mount host paths read-only
    and override the working directory and user. ``runtime``: ``"runc"`` (as root),
    ``"podman"``, or ``"auto"`` (runc when it is on PATH and this is root, else podman).
    ``options`` reach the registry that has blobs an incomplete layout lacks."""
    env = dict(env or {})
    settings = settings or RunSettings()
    layout = ImageLayout.open(layout_dir)
    name = _pick_ref(layout, ref)
    image = layout.image(name)
    where = f"image {layout.root}:{name}"
    host = Platform.host_linux()
    if not platform_matches(host, image.config.platform):
        _log.warning("%s is for %s; this machine is %s", where, image.config.platform, host)
    command = _command(image.config, args, where)
    kind, program = _choose_runtime(runtime, (options or TransportOptions()).hints_for)
    if kind == "podman":
        missing = [layer for layer in image.layers if not layout.has_blob(layer.digest)]
        if missing:
            raise RunError(
                f"{layout.root} lacks layer blob {missing[0].digest} of {name!r}, which podman "
                "cannot fetch; write the layout with its base layers, or run as root with runc"
            )
        return _run_podman(program, layout, name, args, env=env, settings=settings)

    work = Path(tempfile.mkdtemp(prefix="pants-oci-run-"))
    try:
        blobs = _layer_blobs(image, name, work / "blobs", options)
        bundle = work / "bundle"
        (bundle / "rootfs").mkdir(parents=True)
        os.chmod(bundle / "rootfs", 0o755)  # noqa: S103 - the container's `/`, for any user
        hints_for = (options or TransportOptions()).hints_for
        root = _RootFS(bundle / "rootfs", _unpack_budget(settings, work, hints_for))
        try:
            for number, (layer, path) in enumerate(zip_strict(image.layers, blobs), 1):
                with path.open("rb") as blob:
                    root.unpack(blob, f"{where}: layer {number} ({layer.digest})")
            spec = _runtime_spec(
                image.config,
                root,
                bundle,
                command=command,
                env=env,
                where=where,
                settings=settings,
            )
        finally:
            root.close()
        (bundle / "config.json").write_text(json.dumps(spec, indent=2))
        run_config = image.config.config
        stop_signal = run_config.stop_signal if run_config else None
        return _run_runc(program, bundle, work / "state", stop_signal)
    finally:
        try:
            shutil.rmtree(work)
        except OSError as exc:
            _log.warning("could not delete the run's temporary directory %s: %s", work, exc)
