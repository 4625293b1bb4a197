"""Python interpreters in an image, found by their names in its layers.

What a build needs to point a Python app's entrypoint at the base's Python without running
the base (which may be for another architecture): `python3.N` executables in the usual
`bin` directories, after every layer's whiteouts.
"""

from __future__ import annotations

import os
import posixpath
import re
import tarfile
from dataclasses import dataclass

from pants_oci.core.errors import ImageArchiveError
from pants_oci.core.layer import decompressed
from pants_oci.core.layout import ImageLayout

__all__ = ["PythonInterpreter", "find_python_interpreters"]

# Where images put Python, most specific first: the official python images build their own
# into /usr/local/bin; distributions' packages are in /usr/bin.
_BIN_DIRS = ("usr/local/bin", "usr/bin", "bin")
_INTERPRETER = re.compile(r"^(usr/local/bin|usr/bin|bin)/python(\d+)\.(\d+)$")
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"


@dataclass(frozen=True)
class PythonInterpreter:
    path: str  # absolute, in the image
    version: str  # major.minor


def _normalized(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def find_python_interpreters(layout_dir: str | os.PathLike[str]) -> list[PythonInterpreter]:
    """The interpreters of the one image in an OCI layout (which must hold its layers),
    preferred first: by directory (see _BIN_DIRS), then newest version."""
    layout = ImageLayout.open(layout_dir)
    digests = sorted({str(entry.digest) for entry in layout.index().manifests})
    if len(digests) != 1:
        raise ImageArchiveError(
            f"{layout.root}: expected one image to look for Python in, found {len(digests)}"
        )
    manifest = layout.manifest(digests[0])
    found: dict[str, str] = {}
    for descriptor in manifest.layers:
        if not layout.has_blob(descriptor.digest):
            raise ImageArchiveError(
                f"{layout.root}: layer {descriptor.digest} is missing; Python can only be "
                "found in an image whose layers are all present"
            )
        # Whiteouts hide what lower layers have (whole trees for a directory), never what
        # their own layer adds, so each layer is read whole before it is applied.
        hidden: list[str] = []  # paths whose lower-layer content (and all below) goes
        added: dict[str, str | None] = {}  # interpreter paths; None: not an executable
        with (
            layout.open_blob(descriptor.digest) as blob,
            decompressed(blob) as stream,
            tarfile.open(fileobj=stream, mode="r|") as tar,
        ):
            for member in tar:
                name = _normalized(member.name)
                directory, base = posixpath.split(name)
                if base == _OPAQUE:
                    hidden.append(directory)
                elif base.startswith(_WHITEOUT):
                    hidden.append(posixpath.join(directory, base[len(_WHITEOUT) :]))
                elif match := _INTERPRETER.match(name):
                    executable = member.isfile() or member.issym() or member.islnk()
                    added[name] = f"{match.group(2)}.{match.group(3)}" if executable else None

        def under(path: str, top: str) -> bool:
            return top in ("", path) or path.startswith(top + "/")

        found = {p: v for p, v in found.items() if not any(under(p, top) for top in hidden)}
        for path, version in added.items():
            if version is None:
                found.pop(path, None)
            else:
                found[path] = version

    def preference(path: str) -> tuple[int, tuple[int, ...]]:
        version = tuple(-int(part) for part in found[path].split("."))
        return _BIN_DIRS.index(posixpath.dirname(path)), version

    return [PythonInterpreter("/" + path, found[path]) for path in sorted(found, key=preference)]
