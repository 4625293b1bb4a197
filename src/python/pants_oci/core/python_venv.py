"""A Python virtual environment laid out as image layers, run by the base image's Python.

The venv is what `python -m venv` would make, written directly: ``pyvenv.cfg`` whose ``home``
is the directory of the base's interpreter, ``bin/python`` a symlink to that interpreter, and
each distribution unpacked into ``lib/pythonX.Y/site-packages``, its scripts into ``bin`` with
their ``#!python`` shebang pointing at the venv's Python. Python finds ``pyvenv.cfg`` next to
the ``bin`` it was started from, so ``/opt/venv/bin/python`` (or a script whose shebang names
it) runs with the venv's site-packages and without the base's own.

Distributions come as PEX's installed-wheel archives (the ``.deps/*.whl`` of a PEX built with
``--layout packed``): a zip of an installed wheel's files, with ``.layout.json`` and the
scripts and data stashed under ``.prefix/``. A distribution's files in the image depend only on
its archive's file names, contents and modes, and on the venv's path and Python version: the
same distribution gives the same layer in every image and on every platform it is pure Python.

Standard library only, and Python 3.9 compatible: the Pants backend imports the paths.
"""

from __future__ import annotations

import email.parser
import json
import os
import posixpath
import re
import shutil
import zipfile
import zlib
from typing import Dict, Set, Tuple

from pants_oci.core import wire
from pants_oci.core.errors import InvalidValueError, LayerError

__all__ = [
    "DEFAULT_VENV",
    "distribution_metadata",
    "interpreter_links",
    "launcher_script",
    "pyvenv_cfg",
    "site_packages",
    "unpack_installed_wheel",
    "venv_directories",
]

DEFAULT_VENV = "/opt/venv"

_LAYOUT = ".layout.json"
_SKIPPED = ("../", "./", _LAYOUT)
_PYTHON_SHEBANG = re.compile(rb"^#!pythonw?[ \t]*(\r?\n)")
# fullmatch, not `$`: `$` also matches before a trailing newline ("3.11\n").
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_VERSION = re.compile(r"[0-9]+\.[0-9]+")


def _check_version(python_version: str) -> str:
    if not _VERSION.fullmatch(python_version):
        raise InvalidValueError(
            "the Python version", python_version, "is not major.minor, such as 3.11"
        )
    return python_version


def site_packages(venv: str, python_version: str) -> str:
    """The venv's site-packages directory: ``/opt/venv/lib/python3.11/site-packages``."""
    return f"{venv.rstrip('/')}/lib/python{_check_version(python_version)}/site-packages"


def venv_directories(venv: str, python_version: str) -> Tuple[str, ...]:
    """The directories the venv's own layer makes (relative, no leading ``/``), parents first:
    every layer above it goes through them."""
    paths: Set[str] = set()
    for directory in (site_packages(venv, python_version), f"{venv.rstrip('/')}/bin"):
        parts = directory.strip("/").split("/")
        paths.update("/".join(parts[:end]) for end in range(1, len(parts) + 1))
    return tuple(sorted(paths))


def _check_interpreter(interpreter: str) -> str:
    if not interpreter.startswith("/"):
        raise InvalidValueError("the venv's interpreter", interpreter, "is not an absolute path")
    if any(character in interpreter for character in "\0\r\n"):
        # A line break would add a line of its own to pyvenv.cfg.
        raise InvalidValueError(
            "the venv's interpreter", interpreter, "holds a line break or NUL character"
        )
    return interpreter


def pyvenv_cfg(interpreter: str, python_version: str) -> bytes:
    """``pyvenv.cfg`` for a venv run by the base's ``interpreter`` (an absolute path)."""
    return (
        f"home = {posixpath.dirname(_check_interpreter(interpreter))}\n"
        "include-system-site-packages = false\n"
        f"version = {_check_version(python_version)}\n"
    ).encode()


def interpreter_links(venv: str, interpreter: str, python_version: str) -> Dict[str, str]:
    """The venv's ``bin/python``, ``bin/python3`` and ``bin/pythonX.Y`` symlinks."""
    bin_dir = f"{venv.rstrip('/')}/bin"
    major = _check_version(python_version).split(".")[0]
    return {
        f"{bin_dir}/python": _check_interpreter(interpreter),
        f"{bin_dir}/python{major}": "python",
        f"{bin_dir}/python{python_version}": "python",
    }


def launcher_script(venv: str, module: str, function: str) -> bytes:
    """A script that calls ``module:function`` with the venv's Python and exits with what it
    returns, as a console script does."""
    for name, value in (("module", module), ("function", function)):
        if not _IDENTIFIER.fullmatch(value):
            raise InvalidValueError(
                f"the entry point's {name}", value, "is not a dotted Python name"
            )
    head = function.split(".", maxsplit=1)[0]
    return (
        f"#!{venv.rstrip('/')}/bin/python\n"
        "import sys\n"
        f"from {module} import {head}\n"
        "\n"
        'if __name__ == "__main__":\n'
        f"    sys.exit({function}())\n"
    ).encode()


def _stash_directory(wheel: zipfile.ZipFile, where: str) -> str:
    """Where the archive keeps what goes outside site-packages (PEX's `.prefix/`)."""
    try:
        layout = json.loads(wheel.read(_LAYOUT))
        stash = layout["stash_dir"]
    except (KeyError, ValueError, TypeError):
        raise LayerError(
            f"{where}: not an installed-wheel archive of PEX (no readable {_LAYOUT} with a "
            "`stash_dir`); give the `.deps/*.whl` of a PEX built with `--layout packed`"
        ) from None
    if not isinstance(stash, str) or not stash.strip("/"):
        raise LayerError(f"{where}: {_LAYOUT} has the stash directory {stash!r}")
    return stash.strip("/") + "/"


def _venv_relative(name: str, stash: str, python_version: str, where: str) -> str:
    """Where a member of an installed-wheel archive goes, relative to the venv."""
    if name == stash:
        return ""
    if name.startswith(stash):
        relative = name[len(stash) :]
    else:
        relative = f"lib/python{python_version}/site-packages/{name}"
    parts = relative.rstrip("/").split("/")
    if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise LayerError(
            f"{where}: the archive member {name!r} is not a relative path inside it; an "
            "installed-wheel archive (a packed PEX's `.deps/*.whl`) holds only such paths"
        )
    return relative


def _open_archive(archive: str, where: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except OSError as exc:  # missing, a directory, unreadable
        raise LayerError(f"{where}: cannot read it: {exc.strerror or exc}") from None


def unpack_installed_wheel(archive: str, staging: str, venv: str, python_version: str) -> int:
    """Unpack the installed-wheel ``archive`` into ``staging``, a directory standing for the
    venv at ``venv``: its importable files into ``lib/pythonX.Y/site-packages``, its stashed
    scripts and data (``.prefix/``) into the venv's root, scripts' ``#!python`` shebangs
    pointing at ``<venv>/bin/python``. Modes are 0755 for members whose owner may execute
    them, else 0644. Returns how many files it wrote."""
    _check_version(python_version)
    where = f"installed wheel {archive}"
    shebang = f"#!{venv.rstrip('/')}/bin/python".encode()
    written = 0
    try:
        with _open_archive(archive, where) as wheel:
            stash = _stash_directory(wheel, where)
            for info in wheel.infolist():
                if info.filename in _SKIPPED:
                    continue
                relative = _venv_relative(info.filename, stash, python_version, where)
                if not relative:
                    continue
                path = os.path.join(staging, *relative.split("/"))
                if info.is_dir():
                    os.makedirs(path, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with wheel.open(info) as source, open(path, "wb") as target:
                    if relative.startswith("bin/"):
                        first = source.readline(4096)
                        target.write(_PYTHON_SHEBANG.sub(lambda m: shebang + m.group(1), first))
                    shutil.copyfileobj(source, target, 1 << 20)
                executable = (info.external_attr >> 16) & 0o100
                os.chmod(path, 0o755 if executable else 0o644)
                written += 1
    except (zipfile.BadZipFile, ValueError, KeyError, zlib.error, EOFError) as exc:
        # zlib.error and EOFError: a member whose compressed bytes are damaged or cut short.
        raise LayerError(f"{where}: not a readable installed-wheel zip ({exc})") from None
    return written


# A `License` field may hold a whole license text: its first line, at most this long, names it.
_LICENSE_TEXT_LIMIT = 200


def distribution_metadata(archive: str) -> wire.LayerDistribution:
    """The name, version and declared license of the distribution in the installed-wheel
    ``archive``, from its ``*.dist-info/METADATA`` (``License-Expression``, else the first
    line of ``License``)."""
    where = f"installed wheel {archive}"
    try:
        with _open_archive(archive, where) as wheel:
            names = [
                name
                for name in wheel.namelist()
                if name.count("/") == 1 and name.endswith(".dist-info/METADATA")
            ]
            if len(names) != 1:
                raise LayerError(f"{where}: has {len(names)} top-level *.dist-info/METADATA, not 1")
            headers = email.parser.BytesHeaderParser().parsebytes(wheel.read(names[0]))
    except (zipfile.BadZipFile, ValueError, KeyError, zlib.error, EOFError) as exc:
        raise LayerError(f"{where}: not a readable installed-wheel zip ({exc})") from None
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        raise LayerError(f"{where}: its METADATA has no Name or no Version")
    expression = (headers.get("License-Expression") or "").strip() or None
    text = (headers.get("License") or "").strip().splitlines()
    license_text = text[0].strip()[:_LICENSE_TEXT_LIMIT] if text and text[0].strip() else None
    return wire.LayerDistribution(
        name=str(name).strip(),
        version=str(version).strip(),
        license_expression=expression,
        license=None if expression else license_text,
    )
