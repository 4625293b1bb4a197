"""Images built on one machine and reused on another through a REAPI remote cache (BuildGrid),
with the pants.toml lines of docs/remote-cache.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.harness.buildgrid import BuildGrid
from tests.harness.busybox import PushedImage
from tests.pants_runs import REPO, make_pants_repo, run_pants

pytestmark = pytest.mark.slow

DOCS = REPO / "docs/remote-cache.md"
DOCS_ADDRESS = "grpc://cache.example.com:50051"
OUR_PROCESSES = ("Build OCI layer", "Fetch base image", "Assemble OCI image")


def docs_toml(address: str) -> str:
    """The pants.toml lines of the docs page, pointed at `address`."""
    [block] = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert DOCS_ADDRESS in block
    return block.replace(DOCS_ADDRESS, address)


def _files(busybox: PushedImage, app_text: str) -> dict[str, str]:
    return {
        "app/BUILD": f"""
files(name="asset_files", sources=["assets/*"])
files(name="app_files", sources=["src/*"])
oci_layer(name="1-assets", dependencies=[":asset_files"], destination="/srv")
oci_layer(name="2-app", dependencies=[":app_files"], destination="/srv")
oci_image(name="app", base="{busybox.ref}", dependencies=[":1-assets", ":2-app"])
""",
        "app/assets/logo.txt": "an asset that never changes\n",
        "app/src/main.sh": app_text,
    }


def _machine(root: Path, files: dict[str, str], remote_toml: str, credentials: Any = None) -> Path:
    """A checkout with its own local store, named caches (so its own blob cache), workdir and
    docker config (`credentials` for a private base's registry): another machine."""
    repo = make_pants_repo(root / "repo", files)
    (repo / "remote-cache.toml").write_text(remote_toml)
    (root / "docker").mkdir()
    (root / "docker/config.json").write_text(json.dumps(credentials or {"auths": {}}))
    return repo


def _relocated_python(machine_a: Path, root: Path) -> Path:
    """A copy of the Python that machine A's tool ran on, at another path (its standard library
    linked in): the interpreter of a machine where Python is installed elsewhere."""
    [link] = (machine_a.parent / "named_caches/pants_oci_python").glob("python-*")
    python = Path(os.readlink(link))
    (root / "bin").mkdir(parents=True)
    shutil.copy2(python, root / "bin" / python.name)
    (root / "lib").symlink_to(python.parent.parent / "lib")
    return root / "bin"


def _package(repo: Path, *options: str) -> tuple[str, dict[str, int], list[str], str]:
    """Package app:app; (manifest digest, --stats-log counters, descriptions of our processes
    that ran locally, stderr)."""
    home = repo.parent
    result = run_pants(
        *options,
        "--pants-config-files=['pants.toml', 'remote-cache.toml']",
        f"--local-store-dir={home / 'lmdb'}",
        f"--named-caches-dir={home / 'named_caches'}",
        f"--pants-workdir={home / 'workdir'}",
        "--keep-sandboxes=always",  # Pants logs each process it runs locally
        "--stats-log",
        "package",
        "app:app",
        cwd=repo,
        env={"DOCKER_CONFIG": str(home / "docker")},
        # Each run a new Pants, as each CI job is: pantsd's memo would hide the cache look-ups.
        pantsd=False,
    )
    counters = {k: int(v) for k, v in re.findall(r"^\s+(\w+): (\d+)$", result.stderr, re.MULTILINE)}
    ran_locally = [
        match
        for match in re.findall(
            r'[Pp]reserving local process execution dir \S+ for "?([^"\n]+)', result.stderr
        )
        if match.startswith(OUR_PROCESSES)
    ]
    info = json.loads((repo / "dist/app/app/image-info.json").read_text())
    return str(info["manifest_digest"]), counters, sorted(ran_locally), result.stderr


def test_second_machine_builds_nothing_and_a_change_rebuilds_only_its_layer(
    tmp_path: Path, buildgrid: BuildGrid, busybox_image: PushedImage, registry_factory: Any
) -> None:
    # The base is private, and each machine logs in with an account of its own: the base pull
    # (never cached: it runs with credentials) is keyed by nothing that differs between them.
    registry = registry_factory("basic", extra_users={"machine-b": "b-password"})
    base = busybox_image.push_to(registry, "private/busybox")
    machine_b = registry.auth_json(("machine-b", "b-password"))
    remote = docs_toml(buildgrid.address)
    v1 = _files(base, "echo v1\n")
    machine_a = _machine(tmp_path / "a", v1, remote, registry.auth_json())
    digest_a, counters_a, ran_a, _ = _package(machine_a)
    assert "Build OCI layer for app:1-assets" in ran_a and "Build OCI layer for app:2-app" in ran_a
    written = counters_a["remote_cache_write_successes"]
    assert written >= 3, counters_a  # the tool PEX, two layers, the assembly
    # BuildGrid on a loaded machine now and then fails a write (Pants warns and goes on):
    # another empty machine stores what is missing, so that B meets a complete cache.
    for attempt in range(3):
        if counters_a["remote_cache_write_errors"] == 0:
            break
        digest, counters_a, _, _ = _package(
            _machine(tmp_path / f"a{attempt}", v1, remote, registry.auth_json())
        )
        assert digest == digest_a
        written += counters_a["remote_cache_write_successes"]

    # Machine B, empty local store, other credentials: it pulls the base itself (into its own
    # blob cache), and every cacheable process is a remote hit; none ran locally to completion
    # (Pants starts local runs speculatively and cancels them when the cache answers: the
    # counters tell which finished first).
    digest_b, counters_b, _, _ = _package(_machine(tmp_path / "b", v1, remote, machine_b))
    assert counters_b["remote_cache_read_errors"] == 0, counters_b
    assert counters_b["remote_cache_requests_cached"] == written, counters_b
    assert counters_b["remote_cache_requests_uncached"] == 0, counters_b
    assert counters_b["remote_cache_speculation_local_completed_first"] == 0, counters_b
    assert digest_b == digest_a

    # One source changes; machine C (empty, its Python installed at another path) misses
    # exactly that layer and the assembly, and takes the other layer from the remote cache:
    # no tool process's cache key holds the interpreter's path.
    v2 = _files(base, "echo v2\n")
    machine_c = _machine(tmp_path / "c", v2, remote, registry.auth_json())
    python_c = _relocated_python(machine_a, tmp_path / "c/python")
    digest_c, counters_c, ran_c, stderr_c = _package(
        machine_c, f"--python-bootstrap-search-path=['{python_c}']"
    )
    [link_c] = (tmp_path / "c/named_caches/pants_oci_python").glob("python-*")
    assert Path(os.readlink(link_c)).parent == python_c, stderr_c[-3000:]
    # The same tool PEX: its link is named after it.
    [link_a] = (tmp_path / "a/named_caches/pants_oci_python").glob("python-*")
    assert link_c.name == link_a.name
    # Misses: that layer, the assembly, and Pants' own process that builds the tool PEX (its
    # argv names the interpreter; it builds the same PEX). The other layer is a hit.
    assert counters_c["remote_cache_read_errors"] == 0, counters_c
    assert counters_c["remote_cache_requests_uncached"] == 3, json.dumps([counters_c, ran_c])
    assert counters_c["remote_cache_requests_cached"] == written - 3, json.dumps(counters_c)
    assert {"Assemble OCI image app:app", "Build OCI layer for app:2-app"} <= set(ran_c)
    assert digest_c != digest_a


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_cache_down_builds_from_the_local_cache_and_says_so_once(
    tmp_path: Path, busybox_image: PushedImage
) -> None:
    nothing_there = docs_toml(f"grpc://127.0.0.1:{_unused_port()}")
    repo = _machine(tmp_path / "a", _files(busybox_image, "echo v1\n"), nothing_there)
    first, _, _, _ = _package(repo)
    # A changed file: several processes (the layer, the assembly) would ask the cache.
    (repo / "app/src/main.sh").write_text("echo v2\n")
    second, counters, _, stderr = _package(repo)
    assert second != first
    assert counters["remote_cache_read_errors"] >= 2, counters
    # The unchanged tool PEX and asset layer came from the local cache.
    assert counters["local_cache_requests_cached"] >= 2, counters
    # Several processes met the dead cache; Pants said so once for reads and once for writes.
    warnings = [line for line in stderr.splitlines() if "remote cache" in line.lower()]
    assert [line.split("] ", 1)[1].split(" (")[0] for line in warnings] == [
        "Failed to read from remote cache",
        "Failed to write to remote cache",
    ], stderr
