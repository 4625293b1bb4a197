"""Outputs that appear whole or not at all: written beside their destination, then renamed.

Every file and directory the library writes for someone else to read (layer blobs, layout
blobs and ``index.json``, docker-archives, downloaded blobs, whole layouts) goes through this
module: it is written in a temporary sibling (same directory, so the rename is atomic) and
renamed into place only once complete; on failure the temporary is removed and the
destination is left as it was. Files end up readable by everyone (0644) and directories 0755,
as any tool would leave them (``mkstemp``/``mkdtemp`` make them 0600/0700).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = ["StagedFile", "atomic_write", "replacing", "staged_directory", "staged_file"]

_FILE_MODE = 0o644
_DIRECTORY_MODE = 0o755


class StagedFile:
    """A temporary file being written; :meth:`commit` renames it onto its destination."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        self.file = file
        self.path = path
        self.committed = False

    def commit(self, target: str | os.PathLike[str], mode: int = _FILE_MODE) -> None:
        """Close the file and rename it onto ``target`` (replacing what is there), with
        permissions ``mode``."""
        os.fchmod(self.file.fileno(), mode)
        self.file.close()
        os.replace(self.path, target)
        self.committed = True


@contextmanager
def staged_file(directory: str | os.PathLike[str], prefix: str) -> Iterator[StagedFile]:
    """A new temporary file in ``directory`` to write; call ``commit(target)`` once it is
    complete (its name may depend on what was written, like a blob's digest). Left without
    a commit, or by an error, the file is removed."""
    fd, temp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    staged = StagedFile(os.fdopen(fd, "wb"), Path(temp))
    try:
        yield staged
    finally:
        if not staged.committed:
            staged.file.close()
            staged.path.unlink(missing_ok=True)


@contextmanager
def replacing(target: str | os.PathLike[str], mode: int = _FILE_MODE) -> Iterator[BinaryIO]:
    """A file to write that replaces ``target`` when the block completes (with permissions
    ``mode``: 0644 unless it holds secrets)."""
    path = Path(target)
    with staged_file(path.parent, f".{path.name}.") as staged:
        yield staged.file
        staged.commit(path, mode)


def atomic_write(target: str | os.PathLike[str], data: bytes, mode: int = _FILE_MODE) -> None:
    """Replace ``target`` with ``data`` (a file of permissions ``mode``)."""
    with replacing(target, mode) as file:
        file.write(data)


# --- Directories --------------------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system
    or the filesystem cannot, for the caller to fall back."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    path, fd = ctypes.c_char_p, ctypes.c_int
    renameat2.argtypes = [fd, path, fd, path, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    flags = _RENAME_EXCHANGE
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), flags) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def publish_directory(
    staged: str | os.PathLike[str],
    target: str | os.PathLike[str],
    check_replaceable: Callable[[Path], None],
) -> None:
    """Move the complete directory ``staged`` to ``target`` (a sibling), replacing the
    directory that may be there once ``check_replaceable(target)`` accepts it.

    A rename cannot land on a non-empty directory (ENOTEMPTY), so the two are swapped
    atomically with RENAME_EXCHANGE and the old one, now at ``staged``, is removed; where
    that is not available the old one is renamed aside first and the rename retried (a
    reader may then briefly find no output). Concurrent publishers each put a complete
    directory in place: the last one wins."""
    staged, target = Path(staged), Path(target)
    while True:
        try:
            os.rename(staged, target)  # target absent, or an empty directory
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        check_replaceable(target)
        if _exchange(staged, target):
            shutil.rmtree(staged, ignore_errors=True)  # the old one
            return
        trash = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
        try:
            os.rename(target, trash)  # onto the empty trash directory
        except FileNotFoundError:  # another publisher moved it; try again
            pass
        finally:
            shutil.rmtree(trash, ignore_errors=True)


@contextmanager
def staged_directory(
    target: str | os.PathLike[str], check_replaceable: Callable[[Path], None]
) -> Iterator[Path]:
    """A new empty directory beside ``target`` to build an output in; when the block
    completes it is published at ``target`` (:func:`publish_directory`), and when it fails
    it is removed, leaving ``target`` as it was. A non-empty ``target`` must pass
    ``check_replaceable`` (raising otherwise) before any work is done."""
    final = Path(target)
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_dir() and any(final.iterdir()):
        check_replaceable(final)  # before any work: never replace something else
    temp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        yield temp
        os.chmod(temp, _DIRECTORY_MODE)
        publish_directory(temp, final, check_replaceable)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
