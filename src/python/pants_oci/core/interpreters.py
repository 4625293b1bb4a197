"""Python interpreters in an image, found by their names in its layers.

What a build needs to point a Python app's entrypoint at the base's Python without running
the base (which may be for another architecture): `python3.N` executables in the usual
`bin` directories, after every layer's whiteouts.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass

from pants_oci.core.rootfs import rootfs_entries

__all__ = ["PythonInterpreter", "find_python_interpreters"]

# Where images put Python, most specific first: the official python images build their own
# into /usr/local/bin; distributions' packages are in /usr/bin.
_BIN_DIRS = ("usr/local/bin", "usr/bin", "bin")
_INTERPRETER = re.compile(r"^(usr/local/bin|usr/bin|bin)/python(\d+)\.(\d+)$")


@dataclass(frozen=True)
class PythonInterpreter:
    path: str  # absolute, in the image
    version: str  # major.minor


def find_python_interpreters(layout_dir: str | os.PathLike[str]) -> list[PythonInterpreter]:
    """The interpreters of the one image in an OCI layout (which must hold its layers),
    preferred first: by directory (see _BIN_DIRS), then newest version."""
    entries = rootfs_entries(layout_dir, lambda path: _INTERPRETER.match(path) is not None)
    found: dict[str, str] = {}
    for path, entry in entries.items():
        match = _INTERPRETER.match(path)
        if match and entry.kind in ("file", "symlink", "hardlink"):
            found[path] = f"{match.group(2)}.{match.group(3)}"

    def preference(path: str) -> tuple[int, tuple[int, ...]]:
        version = tuple(-int(part) for part in found[path].split("."))
        return _BIN_DIRS.index(posixpath.dirname(path)), version

    return [PythonInterpreter("/" + path, found[path]) for path in sorted(found, key=preference)]
