"""A runnable Python base image built from the host's own system CPython (no internet).

One layer: the busybox rootfs (tests/harness/busybox.py) for a shell, plus the system
interpreter, the shared libraries it and its extension modules load (found with ldd), and the
standard library without tests, tools and third-party packages. Same host, same bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tests.harness.busybox import (
    PATH_ENV,
    ImageBlobs,
    LayerFiles,
    PushedImage,
    base_files,
    host_architecture,
    image_from_layer,
    pack_layer,
    put,
    tar_entry,
)
from tests.harness.distribution import OCI_INDEX, push_blob, push_manifest, sha256_digest
from tests.harness.processes import HarnessError, require_binary
from tests.harness.registry import Registry

# The Debian system interpreter, not the test venv's (pyenv) one: its stdlib lives at the
# /usr prefix the image copies it to, and the libraries it links are the host's.
SYSTEM_PYTHON = Path("/usr/bin/python3.11")
# Directory names left out at any depth: test suites, bytecode caches (their source mtimes would
# not match the layer's mtime 0, so Python would ignore them anyway) and third-party packages.
EXCLUDED_DIR_NAMES = frozenset(
    {"__pycache__", "test", "tests", "idle_test", "site-packages", "dist-packages"}
)
# Top-level stdlib directories left out: GUI, demo and pip-bootstrap code, and Debian's
# config-3.X-<triplet> (static libpython archives for embedding, ~25 MB).
EXCLUDED_TOP_LEVEL = frozenset({"idlelib", "tkinter", "turtledemo", "ensurepip"})
EXCLUDED_TOP_LEVEL_PREFIX = "config-"
# Extension modules left out: Tk would pull in X11.
EXCLUDED_EXTENSION_PREFIXES = ("_tkinter.",)
# gzip level 1: ~0.7 s instead of ~2 s (level 6) or ~7 s (level 9) for ~10% more bytes,
# which cost nothing on a loopback registry.
COMPRESSLEVEL = 1

_PROBE = (
    "import json, platform, sys, sysconfig; print(json.dumps({"
    "'version': platform.python_version(), "
    "'short': '%d.%d' % sys.version_info[:2], "
    "'prefix': sys.prefix, "
    "'stdlib': sysconfig.get_path('stdlib')}))"
)


@dataclass(frozen=True)
class HostPython:
    """What the image copies from the host interpreter."""

    executable: Path  # the real binary, symlinks resolved
    version: str  # e.g. "3.11.2"
    short_version: str  # e.g. "3.11"
    stdlib: Path  # e.g. /usr/lib/python3.11

    @property
    def dynload(self) -> Path:
        return self.stdlib / "lib-dynload"


def host_python(python: Path = SYSTEM_PYTHON) -> HostPython:
    """Ask the interpreter itself (isolated, no site) for its version and stdlib path."""
    if not python.exists():
        raise HarnessError(
            f"{python} is missing: the Python base image copies the host's system CPython "
            "(Debian package python3.11-minimal/libpython3.11-stdlib)"
        )
    executable = Path(os.path.realpath(python))
    result = subprocess.run(
        [str(executable), "-I", "-S", "-c", _PROBE],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        check=False,
    )
    if result.returncode != 0:
        raise HarnessError(f"{executable} failed to report its paths:\n{result.stderr[-2000:]}")
    info = json.loads(result.stdout)
    stdlib = Path(info["stdlib"])
    # The interpreter finds its stdlib from its own location (prefix/bin -> prefix/lib), so the
    # image keeps both where a /usr-prefixed system Python has them.
    if info["prefix"] != "/usr" or stdlib != Path(f"/usr/lib/python{info['short']}"):
        raise HarnessError(
            f"{python} has prefix {info['prefix']} and stdlib {stdlib}; the Python base image "
            "needs a system interpreter installed under /usr"
        )
    if not (stdlib / "lib-dynload").is_dir():
        raise HarnessError(f"{stdlib}/lib-dynload is missing; is libpython3.X-stdlib installed?")
    return HostPython(
        executable=executable,
        version=info["version"],
        short_version=info["short"],
        stdlib=stdlib,
    )


def _file_mode(path: Path) -> int:
    """0755 for anything executable on the host, else 0644: host umask quirks stay out."""
    return 0o755 if os.stat(path).st_mode & 0o111 else 0o644


def _layer_name(path: Path | str) -> str:
    """Absolute host path -> tar member name ("/usr/bin/x" -> "usr/bin/x")."""
    return str(PurePosixPath(path).relative_to("/"))


def _keep_dir(name: str, *, top_level: bool) -> bool:
    if name in EXCLUDED_DIR_NAMES:
        return False
    return not (
        top_level and (name in EXCLUDED_TOP_LEVEL or name.startswith(EXCLUDED_TOP_LEVEL_PREFIX))
    )


def _stdlib_files(files: LayerFiles, stdlib: Path) -> list[Path]:
    """Add the stdlib tree (minus exclusions) to `files`; returns the extension modules."""
    extensions: list[Path] = []
    for root, dirs, names in os.walk(stdlib):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if _keep_dir(d, top_level=here == stdlib))
        put(files, tar_entry(_layer_name(here), tarfile.DIRTYPE, 0o755))
        for name in sorted(names):
            path = here / name
            if here.name == "lib-dynload" and name.startswith(EXCLUDED_EXTENSION_PREFIXES):
                continue
            member = _layer_name(path)
            if path.is_symlink():
                target = os.readlink(path)
                # A sibling link (e.g. Debian's _sysconfigdata__linux_* alias) stays a link; one
                # leaving the tree (sitecustomize.py -> /etc/...) is copied as the file it names.
                if "/" not in target and (here / target).is_file():
                    put(files, tar_entry(member, tarfile.SYMTYPE, 0o777, linkname=target))
                    continue
                if not path.exists():
                    continue  # dangling on the host: it would dangle in the image too
            if not path.is_file():
                continue
            put(files, tar_entry(member, tarfile.REGTYPE, _file_mode(path)), path.read_bytes())
            if here.name == "lib-dynload" and name.endswith(".so"):
                extensions.append(path)
    return extensions


def shared_libraries(elf_files: list[Path]) -> list[str]:
    """Every shared library (and the dynamic loader) the given ELF files load, as the absolute
    paths ldd resolves them to: the SONAME paths the loader looks up, not symlink targets."""
    if not elf_files:
        return []
    ldd = require_binary("ldd")
    # A clean environment: no LD_LIBRARY_PATH from the test process may redirect lookups.
    result = subprocess.run(
        [ldd, *map(str, elf_files)],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise HarnessError(f"ldd {elf_files} exited with {result.returncode}:\n{result.stderr}")
    libraries: set[str] = set()
    missing: list[str] = []
    current = str(elf_files[0])  # with one argument ldd prints no "file:" header
    for line in result.stdout.splitlines():
        if not line.startswith("\t"):
            current = line.rstrip(":")
            continue
        text = line.strip()
        if "=>" in text:
            soname, _, rest = text.partition("=>")
            target = rest.strip().split(" (", 1)[0].strip()
            if target == "not found":
                missing.append(f"{current}: {soname.strip()}")
            elif target.startswith("/"):
                libraries.add(target)
        elif text.startswith("/"):  # the loader: "/lib64/ld-linux-x86-64.so.2 (0x...)"
            libraries.add(text.split(" (", 1)[0])
        # else "linux-vdso.so.1 (0x...)": provided by the kernel, nothing to copy
    if missing:
        raise HarnessError(
            "host libraries needed by the system Python are missing:\n  " + "\n  ".join(missing)
        )
    return sorted(libraries)


def build_python_base_layer(python: Path = SYSTEM_PYTHON) -> tuple[bytes, bytes, HostPython]:
    """(uncompressed tar, gzip of it, the host interpreter's details)."""
    host = host_python(python)
    files = base_files()
    interpreter = f"usr/bin/python{host.short_version}"
    put(files, tar_entry(interpreter, tarfile.REGTYPE, 0o755), host.executable.read_bytes())
    put(
        files,
        tar_entry("usr/bin/python3", tarfile.SYMTYPE, 0o777, linkname=Path(interpreter).name),
    )
    extensions = _stdlib_files(files, host.stdlib)
    for library in shared_libraries([host.executable, *extensions]):
        # Content of the real file (symlinks resolved) under the name the loader looks up.
        put(
            files,
            tar_entry(_layer_name(library), tarfile.REGTYPE, _file_mode(Path(library))),
            Path(library).read_bytes(),
        )
    for name in list(files):
        for parent in PurePosixPath(name).parents:
            parent_name = str(parent)
            if parent_name != "." and parent_name not in files:
                put(files, tar_entry(parent_name, tarfile.DIRTYPE, 0o755))
    tar_bytes, layer = pack_layer(files, compresslevel=COMPRESSLEVEL)
    return tar_bytes, layer, host


def build_python_base_image(python: Path = SYSTEM_PYTHON) -> ImageBlobs:
    """The Python base image as bytes: Cmd /usr/bin/python3, Env PATH and PYTHON_VERSION.
    Push it with busybox.push_image_to, or write a layout with busybox.write_oci_layout."""
    tar_bytes, layer, host = build_python_base_layer(python)
    return image_from_layer(
        tar_bytes,
        layer,
        env=[PATH_ENV, f"PYTHON_VERSION={host.version}"],
        cmd=["/usr/bin/python3"],
        created_by=f"pants_oci test harness: python {host.version} base from {host.executable}",
    )


def multi_platform_python_base(base: PushedImage, registry: Registry, other_arch: str) -> str:
    """The pushed Python base as an index in `registry` (repository `python-multi`, tag
    `3.11`): the host's image, and the same layer labelled for `other_arch` (it would not run
    there; tests only read what is built on it). Returns the index pinned by digest."""
    image = base.image
    other_config = {**json.loads(image.config), "architecture": other_arch}
    config = json.dumps(other_config, sort_keys=True, separators=(",", ":")).encode()
    manifest = json.loads(image.manifest)
    manifest["config"] = {
        **manifest["config"],
        "digest": sha256_digest(config),
        "size": len(config),
    }
    other_manifest = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    entries = [
        (image.manifest, host_architecture()),
        (other_manifest, other_arch),
    ]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": json.loads(body)["mediaType"],
                "digest": sha256_digest(body),
                "size": len(body),
                "platform": {"os": "linux", "architecture": arch},
            }
            for body, arch in entries
        ],
    }
    index_bytes = json.dumps(index, sort_keys=True, separators=(",", ":")).encode()
    with registry.httpx_client() as client:
        for blob in (image.layer, image.config, config):
            push_blob(client, "python-multi", blob)
        for body, _ in entries:
            push_manifest(client, "python-multi", sha256_digest(body), body)
        digest = push_manifest(client, "python-multi", "3.11", index_bytes, OCI_INDEX)
    return f"{registry.host}/python-multi@{digest}"
