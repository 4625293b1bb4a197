"""Wheels made on the spot, for a local find-links directory: no index, no network.

Each wheel is valid (pip installs it, pex resolves it) and deterministic: the same arguments
give the same bytes, whatever the machine's clock or umask (fixed zip timestamps and modes,
members in a fixed order, payloads from a hash of the name and version)::

    links = find_links_with(tmp_path / "wheels", STANDARD_PINS, native=NATIVE_PINS,
                            console_scripts={"ocitest-alpha": "ocitest-alpha"})
    links.requirements()          # ["ocitest-alpha==1.0.0", ..., "ocitest-native==1.0.0"]
    bumped = find_links_with(tmp_path / "bumped", {**STANDARD_PINS, "ocitest-echo": "1.1.0"})

    pex = build_packed_pex(links.directory, links.requirements("ocitest-alpha"), out)
    pex.installed_wheels["ocitest-alpha"]  # its .deps/ocitest_alpha-1.0.0-py3-none-any.whl

A distribution ``ocitest-alpha`` imports as ``ocitest_alpha``; its ``__init__.py`` defines
``NAME``, ``VERSION`` (and ``ARCH`` for a native one) and ``main()``, which prints as JSON what
a test asks of the interpreter that ran it (see ``main`` in ``_init_py``).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.processes import HarnessError

# The wheel spec's normalized names (PEP 503 lower-case, runs of -_. as one `_`).
_NORMALIZE = re.compile(r"[-_.]+")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can hold: no clock in the bytes
ARCHES = ("x86_64", "aarch64")

# Ten pure-Python distributions, and a native one with a wheel for each arch. ocitest-alpha
# requires bravo and charlie (unpinned), so resolving it alone resolves three.
STANDARD_PINS: Mapping[str, str] = {
    f"ocitest-{word}": "1.0.0"
    for word in (
        "alpha",
        "bravo",
        "charlie",
        "delta",
        "echo",
        "foxtrot",
        "golf",
        "hotel",
        "india",
        "juliett",
    )
}
STANDARD_REQUIRES: Mapping[str, Sequence[str]] = {
    "ocitest-alpha": ("ocitest-bravo", "ocitest-charlie>=1"),
}
NATIVE_PINS: Mapping[str, str] = {"ocitest-native": "1.0.0"}
DEFAULT_PAYLOAD_SIZE = 64 * 1024


def normalized_name(name: str) -> str:
    """The name as wheel file names and ``.dist-info`` directories spell it: ``ocitest_alpha``."""
    return _NORMALIZE.sub("_", name).lower()


def import_name(name: str) -> str:
    """The package a harness wheel installs: the normalized name, ``ocitest_alpha``."""
    return normalized_name(name)


def payload_bytes(name: str, version: str, size: int) -> bytes:
    """``size`` pseudo-random (incompressible) bytes that depend only on name and version."""
    return hashlib.shake_256(f"ocitest payload {name} {version}".encode()).digest(size)


def _init_py(name: str, version: str, arch: str | None) -> bytes:
    arch_line = f"ARCH = {arch!r}\n" if arch else ""
    return (
        f'"""{name} {version}: a distribution made by tests/harness/wheels.py."""\n'
        "\n"
        f"NAME = {name!r}\n"
        f"VERSION = {version!r}\n"
        f"{arch_line}"
        "\n"
        "\n"
        "def main():\n"
        '    """The console script: what ran it, as JSON on stdout."""\n'
        "    import json, site, sys\n"
        "\n"
        "    print(json.dumps({\n"
        '        "name": NAME,\n'
        '        "version": VERSION,\n'
        '        "file": __file__,\n'
        '        "executable": sys.executable,\n'
        '        "prefix": sys.prefix,\n'
        '        "base_prefix": sys.base_prefix,\n'
        '        "path": sys.path,\n'
        '        "user_site_enabled": bool(site.ENABLE_USER_SITE),\n'
        '        "argv": sys.argv,\n'
        "    }))\n"
        "    return 0\n"
    ).encode()


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def _write_wheel(path: Path, files: Mapping[str, bytes], dist_info: str) -> Path:
    """A wheel holding ``files`` (package files, then ``.dist-info`` ones) and its RECORD."""
    package = sorted(name for name in files if not name.startswith(f"{dist_info}/"))
    metadata = sorted(name for name in files if name.startswith(f"{dist_info}/"))
    record_name = f"{dist_info}/RECORD"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name in (*package, *metadata):
        writer.writerow([name, _record_hash(files[name]), len(files[name])])
    writer.writerow([record_name, "", ""])
    members = [(name, files[name]) for name in (*package, *metadata)]
    members.append((record_name, record.getvalue().encode()))

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with zipfile.ZipFile(partial, "w") as wheel:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
            info.create_system = 3  # Unix, so that the mode above is read as one
            wheel.writestr(info, data, compresslevel=6)
    os.replace(partial, path)
    return path


def _metadata(
    name: str, version: str, requires: Iterable[str], headers: Mapping[str, str] | None = None
) -> bytes:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"{header}: {value}" for header, value in (headers or {}).items()]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    lines.append(f"Summary: {name}, made by tests/harness/wheels.py")
    return ("\n".join(lines) + "\n\n").encode()


def _wheel_file(purelib: bool, tags: Sequence[str]) -> bytes:
    lines = [
        "Wheel-Version: 1.0",
        "Generator: tests.harness.wheels",
        f"Root-Is-Purelib: {'true' if purelib else 'false'}",
        *(f"Tag: {tag}" for tag in tags),
    ]
    return ("\n".join(lines) + "\n").encode()


def pure_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    payload_size: int = DEFAULT_PAYLOAD_SIZE,
    requires: Sequence[str] = (),
    console_script: str | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` (name normalized) into ``directory``.

    It installs the package ``<import_name>`` (``__init__.py``: NAME, VERSION, ``main()``) with
    ``payload.bin``, ``payload_size`` bytes from :func:`payload_bytes`; ``requires`` are its
    Requires-Dist lines; ``console_script`` names a console script calling ``main``;
    ``metadata`` adds METADATA headers (``License-Expression``, ``License``)."""
    package = import_name(name)
    dist_info = f"{normalized_name(name)}-{version}.dist-info"
    files = {
        f"{package}/__init__.py": _init_py(name, version, None),
        f"{package}/payload.bin": payload_bytes(name, version, payload_size),
        f"{dist_info}/METADATA": _metadata(name, version, requires, metadata),
        f"{dist_info}/WHEEL": _wheel_file(True, ["py3-none-any"]),
    }
    if console_script:
        files[f"{dist_info}/entry_points.txt"] = (
            f"[console_scripts]\n{console_script} = {package}:main\n"
        ).encode()
    path = Path(directory) / f"{normalized_name(name)}-{version}-py3-none-any.whl"
    return _write_wheel(path, files, dist_info)


def native_platform_tags(arch: str) -> tuple[str, str]:
    """The manylinux platform tags of a native wheel: PEP 600's, then manylinux2014's."""
    if arch not in ARCHES:
        raise ValueError(f"arch {arch!r} is not one of {ARCHES}")
    return f"manylinux_2_17_{arch}", f"manylinux2014_{arch}"


def native_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    python_tag: str = "cp311",
    arch: str = "x86_64",
    payload_size: int = 4096,
) -> Path:
    """Write ``<name>-<version>-cp311-cp311-manylinux_2_17_<arch>.manylinux2014_<arch>.whl``.

    It installs ``<import_name>/__init__.py`` (NAME, VERSION, ``ARCH = "<arch>"``) and a fake
    extension ``<import_name>/_native.cpython-311-<arch>-linux-gnu.so`` (not an ELF, never
    imported: bytes that name the arch, then a payload that depends on name, version and
    arch)."""
    if not re.fullmatch(r"cp3[0-9]+", python_tag):
        raise ValueError(f"python_tag {python_tag!r} is not cpython's, such as cp311")
    platforms = native_platform_tags(arch)
    package = import_name(name)
    dist_info = f"{normalized_name(name)}-{version}.dist-info"
    extension = f"{package}/_native.cpython-{python_tag[2:]}-{arch}-linux-gnu.so"
    native = f"\x7fFAKE-ELF {arch} {name} {version}\n".encode()
    files = {
        f"{package}/__init__.py": _init_py(name, version, arch),
        extension: native + payload_bytes(f"{name} {arch}", version, payload_size),
        f"{dist_info}/METADATA": _metadata(name, version, ()),
        f"{dist_info}/WHEEL": _wheel_file(
            False, [f"{python_tag}-{python_tag}-{platform}" for platform in platforms]
        ),
    }
    filename = f"{normalized_name(name)}-{version}-{python_tag}-{python_tag}-{'.'.join(platforms)}"
    return _write_wheel(Path(directory) / f"{filename}.whl", files, dist_info)


@dataclass(frozen=True)
class FindLinks:
    """A find-links directory: its wheels, and the version of each distribution in it."""

    directory: Path
    pins: Mapping[str, str]
    wheels: tuple[Path, ...]

    def requirements(self, *names: str) -> list[str]:
        """``name==version`` for ``names`` (default: every distribution), sorted by name."""
        return [f"{name}=={self.pins[name]}" for name in sorted(names or self.pins)]


def find_links_with(
    directory: Path,
    dists: Mapping[str, str] = STANDARD_PINS,
    *,
    native: Mapping[str, str] = NATIVE_PINS,
    requires: Mapping[str, Sequence[str]] = STANDARD_REQUIRES,
    console_scripts: Mapping[str, str] | None = None,
    payload_size: int = DEFAULT_PAYLOAD_SIZE,
    python_tag: str = "cp311",
    metadata: Mapping[str, Mapping[str, str]] | None = None,
) -> FindLinks:
    """Fill ``directory`` with a pure wheel per ``dists`` entry (name -> version) and a native
    wheel per arch per ``native`` entry. ``requires`` gives a distribution's Requires-Dist
    lines (only for those in ``dists``), ``console_scripts`` a distribution's console script
    name (default: ``ocitest-alpha`` has the script ``ocitest-alpha`` when in ``dists``),
    ``metadata`` a pure distribution's extra METADATA headers.

    With the defaults: ten pure distributions (``ocitest-alpha`` ... ``ocitest-juliett``, all
    1.0.0) and ``ocitest-native`` 1.0.0 for x86_64 and aarch64. To bump one pin, give
    ``{**STANDARD_PINS, "ocitest-echo": "1.1.0"}``: every other wheel keeps its bytes."""
    if console_scripts is None:
        console_scripts = {"ocitest-alpha": "ocitest-alpha"} if "ocitest-alpha" in dists else {}
    clash = sorted(set(dists) & set(native))
    if clash:
        raise ValueError(f"{clash} are both pure and native distributions")
    wheels = [
        pure_wheel(
            directory,
            name,
            version,
            payload_size=payload_size,
            requires=tuple(requires.get(name, ())),
            console_script=console_scripts.get(name),
            metadata=(metadata or {}).get(name),
        )
        for name, version in sorted(dists.items())
    ]
    for name, version in sorted(native.items()):
        wheels += [
            native_wheel(directory, name, version, python_tag=python_tag, arch=arch)
            for arch in ARCHES
        ]
    return FindLinks(Path(directory), {**dists, **native}, tuple(wheels))


# --- PEX ----------------------------------------------------------------------------------------


def pex_binary() -> Path:
    """The pex CLI of the test venv (build-support/bootstrap.sh installs pex 2.1.137)."""
    pex = Path(sys.executable).parent / "pex"
    if not pex.is_file():
        raise HarnessError(f"{pex} is missing: run the tests with ./test (its venv has pex)")
    return pex


@dataclass(frozen=True)
class PackedPex:
    """A PEX built with ``--layout packed``: a directory whose ``.deps/`` holds one
    installed-wheel zip per distribution."""

    path: Path
    installed_wheels: Mapping[str, Path] = field(default_factory=dict)  # project name -> zip

    @property
    def pex_info(self) -> dict[str, object]:
        info: dict[str, object] = json.loads((self.path / "PEX-INFO").read_text())
        return info


def build_packed_pex(
    find_links: Path,
    requirements: Sequence[str],
    output: Path,
    *,
    platform: str | None = None,
    pex_root: Path | None = None,
    console_script: str | None = None,
) -> PackedPex:
    """``pex --no-pypi -f find_links REQUIREMENTS --layout packed -o output``, offline, with
    its own pex root (``pex_root``, default ``<output>.pex-root``) so no cache of the user's is
    read or written. ``platform`` is a pex platform (``linux_aarch64-cp-311-cp311``)."""
    root = pex_root or output.with_name(f"{output.name}.pex-root")
    argv = [
        str(pex_binary()),
        "--no-pypi",
        "--find-links",
        str(find_links),
        *requirements,
        "--layout",
        "packed",
        "--pex-root",
        str(root),
        "--output-file",
        str(output),
    ]
    if platform:
        argv += ["--platform", platform]
    if console_script:
        argv += ["--console-script", console_script]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "PIP_CONFIG_FILE": os.devnull,  # no index or proxy from the user's pip.conf
        "PIP_NO_INDEX": "1",
    }
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, check=False)
    if result.returncode != 0:
        raise HarnessError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}")
    wheels = {}
    for wheel in sorted((output / ".deps").glob("*.whl")):
        project = wheel.name.split("-", 1)[0]
        wheels[project.replace("_", "-")] = wheel
    return PackedPex(output, wheels)
