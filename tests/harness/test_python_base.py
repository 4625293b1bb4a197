"""The Python base image is deterministic, clean of third-party packages, and runs the host's
interpreter under real tools (skopeo, umoci, runc)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path, PurePosixPath

import pytest

from tests.harness import tools
from tests.harness.busybox import (
    PATH_ENV,
    ImageBlobs,
    PushedImage,
    host_architecture,
    write_oci_layout,
)
from tests.harness.distribution import sha256_digest
from tests.harness.processes import HarnessError
from tests.harness.python_base import (
    SYSTEM_PYTHON,
    build_python_base_image,
    host_python,
    shared_libraries,
)

# Prints what the tests check: the interpreter's version, that the stdlib's C-backed modules
# import and work, and that nothing outside the image's own stdlib is on sys.path.
_PROBE = """
import hashlib, json, os, ssl, sys, zlib
report = {
    "version": sys.version.split()[0],
    "env_version": os.environ.get("PYTHON_VERSION"),
    "sha256": hashlib.sha256(b"pants-oci").hexdigest(),
    "zlib": zlib.decompress(zlib.compress(b"x" * 1000)) == b"x" * 1000,
    "ssl": ssl.OPENSSL_VERSION,
    "tls_context": ssl.create_default_context().protocol.name,
    "path": [p for p in sys.path if p and os.path.exists(p)],
    "dist_packages": os.path.exists("/usr/lib/python3/dist-packages"),
}
try:
    import sqlite3
except ImportError as e:
    report["sqlite"] = repr(e)
else:
    report["sqlite"] = sqlite3.connect(":memory:").execute("select 6 * 7").fetchone()[0]
print(json.dumps(report))
"""


def _members(image: ImageBlobs) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(image.layer))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert len(names) == len(set(names))
    return {m.name: m for m in members}


def _has_sqlite() -> bool:
    return any(host_python().dynload.glob("_sqlite3.*.so"))


def test_build_is_deterministic(python_base_image_blobs: ImageBlobs) -> None:
    again = build_python_base_image()
    assert again.layer_digest == python_base_image_blobs.layer_digest
    assert again.manifest_digest == python_base_image_blobs.manifest_digest
    assert again.layer == python_base_image_blobs.layer
    layer = python_base_image_blobs.layer
    assert layer[3] == 0  # gzip flags: no FNAME, so no file name in the header
    assert layer[4:8] == b"\0\0\0\0"  # gzip header mtime
    assert sha256_digest(gzip.decompress(layer)) == python_base_image_blobs.diff_id


def test_layer_contents(python_base_image_blobs: ImageBlobs) -> None:
    host = host_python()
    members = _members(python_base_image_blobs)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members.values())
    for name in members:
        for parent in PurePosixPath(name).parents:
            if str(parent) != ".":
                assert members[str(parent)].isdir(), f"{name} has no parent dir {parent}"

    python = members[f"usr/bin/python{host.short_version}"]
    assert python.isfile() and python.mode == 0o755
    assert python.size == host.executable.stat().st_size
    assert members["usr/bin/python3"].issym()
    assert members["usr/bin/python3"].linkname == f"python{host.short_version}"
    stdlib = str(host.stdlib).lstrip("/")
    for module in ("os.py", "json/__init__.py", "encodings/utf_8.py", "lib-dynload"):
        assert f"{stdlib}/{module}" in members
    assert any(n.startswith(f"{stdlib}/lib-dynload/_ssl.") for n in members)

    # Each library the interpreter and the extension modules load is a regular file under the
    # name the loader looks up (e.g. lib/x86_64-linux-gnu/libc.so.6), loader included.
    extensions = sorted(host.dynload.glob("*.so"))
    libraries = shared_libraries([host.executable, *extensions])
    assert any(PurePosixPath(lib).name == "libc.so.6" for lib in libraries)
    assert any(PurePosixPath(lib).name.startswith("ld-linux") for lib in libraries)
    for library in libraries:
        member = members[library.lstrip("/")]
        assert member.isfile(), f"{library} is not a regular file in the layer"
        assert member.size == Path(library).stat().st_size

    # Busybox gives the image a shell; the rest of the busybox rootfs comes along.
    assert members["bin/busybox"].isfile()
    assert members["bin/sh"].issym() and members["bin/sh"].linkname == "busybox"
    assert members["tmp"].isdir() and members["tmp"].mode == 0o1777
    assert members["root"].isdir()
    assert {"etc/passwd", "etc/group"} <= members.keys()

    # A clean interpreter: no third-party packages, tests, bytecode caches or static libpython.
    assert not [n for n in members if n.startswith("usr/lib/python3/")]
    excluded_parts = {"__pycache__", "site-packages", "dist-packages", "test", "tests"}
    in_stdlib = [n for n in members if n.startswith(f"{stdlib}/")]
    assert not [n for n in in_stdlib if excluded_parts & set(PurePosixPath(n).parts)]
    for top in ("idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3/tests"):
        assert f"{stdlib}/{top}" not in members
    assert not [n for n in members if n.startswith(f"{stdlib}/config-")]


def test_config(python_base_image_blobs: ImageBlobs) -> None:
    config = json.loads(python_base_image_blobs.config)
    assert config["os"] == "linux"
    assert config["architecture"] == host_architecture()
    assert config["config"]["Env"] == [PATH_ENV, f"PYTHON_VERSION={host_python().version}"]
    assert config["config"]["Cmd"] == ["/usr/bin/python3"]
    assert config["rootfs"] == {"type": "layers", "diff_ids": [python_base_image_blobs.diff_id]}


def _check_probe(bundle: Path) -> None:
    host_version = host_python().version
    result = tools.runc_run(bundle, ["/usr/bin/python3", "-c", _PROBE])
    report = json.loads(result.stdout)
    assert report["version"] == host_version
    assert report["env_version"] == host_version
    assert report["sha256"] == hashlib.sha256(b"pants-oci").hexdigest()
    assert report["zlib"] is True
    assert report["ssl"].startswith("OpenSSL")
    assert report["tls_context"] == "PROTOCOL_TLS_CLIENT"
    assert report["path"] == [str(host_python().stdlib), str(host_python().dynload)]
    assert report["dist_packages"] is False
    if _has_sqlite():
        assert report["sqlite"] == 42


def test_pushed_image_runs_under_runc(python_base_image: PushedImage, tmp_path: Path) -> None:
    layout = tools.skopeo_copy_to_oci_layout(
        python_base_image.ref, tmp_path / "layout", "py", registry=python_base_image.registry
    )
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == python_base_image.manifest_digest
    bundle = tools.umoci_unpack(layout, "py", tmp_path / "bundle")
    spec = json.loads((bundle / "config.json").read_text())
    assert spec["process"]["args"] == ["/usr/bin/python3"]

    _check_probe(bundle)
    # The shell works, and finds python3 on PATH as a `#!/usr/bin/env python3` script would.
    result = tools.runc_run(
        bundle, ["/bin/sh", "-c", "echo hi; env python3 -c 'import sys; print(sys.executable)'"]
    )
    assert result.stdout.splitlines() == ["hi", "/usr/bin/python3"]


def test_layout_writer_output_is_accepted_by_skopeo_and_umoci(
    python_base_image_blobs: ImageBlobs, tmp_path: Path
) -> None:
    image = python_base_image_blobs
    layout = write_oci_layout(image, tmp_path / "layout", "py")
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    [descriptor] = index["manifests"]
    assert descriptor["annotations"] == {"org.opencontainers.image.ref.name": "py"}
    assert descriptor["digest"] == image.manifest_digest
    blobs = sorted(p.name for p in (layout / "blobs/sha256").iterdir())
    assert blobs == sorted(d.split(":")[1] for d in (*image.blobs, image.manifest_digest))

    info = tools.skopeo_inspect(f"oci:{layout}:py")
    assert info["Digest"] == image.manifest_digest
    assert info["Layers"] == [image.layer_digest]
    assert tools.skopeo_inspect(f"oci:{layout}:py", raw=True) == image.manifest
    assert tools.skopeo_inspect(f"oci:{layout}:py", raw=True, config=True) == image.config

    bundle = tools.umoci_unpack(layout, "py", tmp_path / "bundle")
    assert (bundle / "rootfs/usr/bin/python3").is_symlink()
    _check_probe(bundle)

    with pytest.raises(HarnessError, match="already holds an OCI layout"):
        write_oci_layout(image, layout, "again")


def test_missing_interpreter_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="system CPython"):
        host_python(tmp_path / "python3.11")
    assert SYSTEM_PYTHON.is_file()
