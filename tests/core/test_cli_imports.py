"""What each `pants-oci` command imports. The Pants backend starts one process per layer build
and per image assembly, so every module a command imports but does not need (httpx,
google-auth with cryptography, the pydantic models) is start-up time paid again and again.

Each test runs a command in a fresh interpreter, as ``python -m pants_oci.core`` runs it, and
checks which modules it loaded: module presence, not timings, so that these fail the day
someone moves a heavy import back to module level."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core.layout import BLOB_SOURCE_ANNOTATION

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs `python -m pants_oci.core ARGS...` in this interpreter, then writes the exit status and
# every loaded module's name to the file named by argv[1].
_PROBE = """
import json, runpy, sys
report, sys.argv = sys.argv[1], ["pants-oci", *sys.argv[2:]]
try:
    runpy.run_module("pants_oci.core", run_name="__main__", alter_sys=True)
    status = 0
except SystemExit as exit:
    status = exit.code
with open(report, "w") as stream:
    json.dump({"status": status, "modules": sorted(sys.modules)}, stream)
"""

# The HTTP and Google auth stacks, and our modules that import them. (The rest of
# pants_oci.core.auth, keychains and docker config, is the standard library only: the image
# builder imports it on any base.)
REGISTRY_STACK = (
    "httpx",
    "httpcore",
    "certifi",
    "pants_oci.core.transport",
    "pants_oci.core.registry",
    "pants_oci.core.auth._handshake",
    "pants_oci.core.auth._token_service",
)
GOOGLE_STACK = ("google", "cryptography", "pants_oci.core.auth._google")
# pydantic, and the modules whose classes are pydantic models or use them.
MODELS = (
    "pydantic",
    "pydantic_core",
    "pants_oci.core.models",
    "pants_oci.core.layout",
    "pants_oci.core.image",
)


def _env(home: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO_ROOT / "src/python"),
        "DOCKER_CONFIG": str(home / ".docker"),
        "HOME": str(home),  # no host logins, no gcloud credentials
    }


def _loaded(modules: Iterable[str], stacks: Iterable[str]) -> list[str]:
    """The modules among ``modules`` that are, or are inside, one of ``stacks``."""
    wanted = tuple(stacks)
    return [m for m in modules if any(m == s or m.startswith(s + ".") for s in wanted)]


def _run(work: Path, *args: str, expect: int = 0) -> tuple[list[str], str]:
    """Run the command in a fresh interpreter, in ``work``; the modules it loaded, and its
    standard output."""
    report = work / "modules.json"
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(report), *args],
        cwd=work,
        env=_env(work),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(report.read_text())
    assert outcome["status"] == expect, result.stderr
    modules: list[str] = outcome["modules"]
    return modules, result.stdout


def _layer(work: Path) -> list[str]:
    """`layer build` of a small tree into work/layer.tar.gz (metadata in work/layer.json)."""
    (work / "app").mkdir()
    (work / "app/hello.sh").write_text("#!/bin/sh\necho hello\n")
    (work / "app/scratch.tmp").write_text("ignored\n")
    spec = {
        "entries": [{"source": "app", "target": "/srv/app", "mode": "0755"}],
        "compression": "gzip",
        "ignore": ["*.tmp"],
    }
    (work / "spec.json").write_text(json.dumps(spec))
    modules, output = _run(
        work, "layer", "build", "--spec", "spec.json", "--output", "layer.tar.gz"
    )
    (work / "layer.json").write_text(output)
    return modules


def test_layer_build_imports_no_registry_google_or_model_code(tmp_path: Path) -> None:
    modules = _layer(tmp_path)
    assert "pants_oci.core.layer" in modules  # it did run
    assert json.loads((tmp_path / "layer.json").read_text())["digest"].startswith("sha256:")
    assert _loaded(modules, REGISTRY_STACK + GOOGLE_STACK + MODELS) == []


def _assemble(work: Path, base: str, output: str) -> list[str]:
    (work / "config.json").write_text(json.dumps({"cmd": ["/srv/app/hello.sh"]}))
    modules, _output = _run(
        work,
        "image", "assemble", "--base", base, "--layer", "layer.tar.gz=layer.json",
        "--config", "config.json", "--output", output, "--docker-archive", f"{output}.tar",
    )  # fmt: skip
    return modules


def test_image_assemble_on_scratch_or_a_local_layout_imports_no_registry_or_google_code(
    tmp_path: Path,
) -> None:
    _layer(tmp_path)
    on_scratch = _assemble(tmp_path, "scratch", "first")
    assert "pants_oci.core.image" in on_scratch
    assert _loaded(on_scratch, REGISTRY_STACK + GOOGLE_STACK) == []
    # The first image's layout holds all its layers: building on it needs no registry either.
    on_layout = _assemble(tmp_path, "first", "second")
    assert (tmp_path / "second/index.json").is_file()
    assert _loaded(on_layout, REGISTRY_STACK + GOOGLE_STACK) == []


def test_assembling_documents_on_a_base_without_its_layers_imports_no_registry_code(
    tmp_path: Path,
) -> None:
    """As the Pants backend assembles on a registry base: the base layout lacks its layers
    (index.json names the registry image that has them) and `--omit-layers` writes no layer,
    so no registry client is made, nor httpx imported."""
    _layer(tmp_path)
    _assemble(tmp_path, "scratch", "base")
    index = json.loads((tmp_path / "base/index.json").read_text())
    [descriptor] = index["manifests"]
    manifest = json.loads(
        (tmp_path / "base/blobs" / descriptor["digest"].replace(":", "/")).read_text()
    )
    for layer in manifest["layers"]:
        (tmp_path / "base/blobs" / layer["digest"].replace(":", "/")).unlink()
    descriptor.setdefault("annotations", {})[BLOB_SOURCE_ANNOTATION] = (
        f"127.0.0.1:9/base@{descriptor['digest']}"
    )
    (tmp_path / "base/index.json").write_text(json.dumps(index))
    modules, _ = _run(
        tmp_path,
        "image", "assemble", "--base", "base", "--layer", "layer.json", "--omit-layers",
        "--config", "config.json", "--output", "documents",
    )  # fmt: skip
    assert (tmp_path / "documents/index.json").is_file()
    assert _loaded(modules, REGISTRY_STACK + GOOGLE_STACK) == []


class _NotFound(BaseHTTPRequestHandler):
    """A registry that has nothing: 404 with an OCI error body to every request."""

    def do_GET(self) -> None:
        body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "none"}]})
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def empty_registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_command_for_another_registry_imports_no_google_code(
    tmp_path: Path, empty_registry: str
) -> None:
    modules, _output = _run(tmp_path, "inspect", f"{empty_registry}/team/app:1", expect=1)
    assert "pants_oci.core.registry" in modules  # it did ask the registry
    assert _loaded(modules, GOOGLE_STACK) == []


def _python(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; the modules loaded when it ends."""
    result = subprocess.run(
        [sys.executable, "-c", code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
        env=_env(Path("/nonexistent")),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modules: list[str] = json.loads(result.stdout.splitlines()[-1])
    return modules


def test_google_auth_is_imported_only_for_a_google_registry() -> None:
    other = _python(
        "from pants_oci.core.auth import RegistryAuth, default_keychain\n"
        "RegistryAuth(default_keychain(env={})).keychain.resolve('ghcr.io', 'team/app')"
    )
    assert _loaded(other, GOOGLE_STACK) == []
    google = _python(
        "from pants_oci.core.auth import default_keychain\n"
        "assert default_keychain(env={}).resolve('gcr.io', 'p/app') is None"
    )
    assert "pants_oci.core.auth._google" in google
    # The public name still is the class itself.
    _python(
        "from pants_oci.core import GoogleKeychain\n"
        "from pants_oci.core.auth._google import GoogleKeychain as Defined\n"
        "assert GoogleKeychain is Defined"
    )
