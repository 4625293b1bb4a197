"""The BuildGrid fixture serves the Remote Execution API: bgd's own client gets its capabilities,
and Pants shares processes between two "machines" through it."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from tests.harness import buildgrid as buildgrid_module
from tests.harness.buildgrid import BGD_ENV, BuildGrid, bgd_binary, start_buildgrid
from tests.harness.processes import LOOPBACK, HarnessError, free_port, port_accepts
from tests.pants_runs import make_pants_repo, run_pants


def _assert_serves(server: BuildGrid) -> None:
    result = server.capabilities()
    assert result.returncode == 0, f"{result.stderr}\n--- server log ---\n{server.log_tail()}"
    capabilities = json.loads(result.stdout)
    cache = capabilities["cacheCapabilities"]
    assert cache["digestFunctions"] == ["SHA256"]
    assert cache["actionCacheUpdateCapabilities"]["updateEnabled"] is True  # Pants may write


def test_serves_reapi_capabilities(buildgrid: BuildGrid) -> None:
    assert re.fullmatch(rf"grpc://{re.escape(LOOPBACK)}:\d+", buildgrid.address)
    _assert_serves(buildgrid)
    assert buildgrid.pants_args()[2] == f"--remote-store-address={buildgrid.address}"


def test_stop_makes_it_unreachable_and_start_brings_it_back_on_the_same_address(
    buildgrid: BuildGrid,
) -> None:
    address = buildgrid.address
    buildgrid.stop()
    assert not buildgrid.running()
    assert not port_accepts(buildgrid.port)
    down = buildgrid.capabilities()
    assert down.returncode != 0, down.stdout
    assert "Connection refused" in down.stderr or "failed to connect" in down.stderr, down.stderr
    buildgrid.stop()  # idempotent

    assert buildgrid.start() is buildgrid
    assert buildgrid.running()
    assert buildgrid.address == address
    _assert_serves(buildgrid)


def test_a_second_server_on_a_taken_port_fails_loudly(buildgrid: BuildGrid, tmp_path: Path) -> None:
    # gRPC's default SO_REUSEPORT would let the second server start and steal connections.
    with pytest.raises(HarnessError, match="Failed to bind"):
        start_buildgrid(tmp_path / "second", port=buildgrid.port)
    _assert_serves(buildgrid)


def test_a_clash_on_a_free_port_is_retried_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        # The first port start_buildgrid picks is taken: it must try another.
        ports = iter([taken])
        monkeypatch.setattr(buildgrid_module, "free_port", lambda: next(ports, None) or free_port())
        with start_buildgrid(tmp_path) as server:
            assert server.port != taken
            _assert_serves(server)


def test_missing_bgd_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(BGD_ENV, raising=False)
    with pytest.raises(HarnessError, match=r"PANTS_OCI_BGD is not set: run \./test"):
        bgd_binary()
    monkeypatch.setenv(BGD_ENV, str(tmp_path / "no-such-bgd"))
    with pytest.raises(HarnessError, match=r"not an executable file: run \./test"):
        start_buildgrid(tmp_path / "server")


def _counters(result_stderr: str) -> dict[str, int]:
    """The `--stats-log` counters, as in tests/backend/test_package.py."""
    return {k: int(v) for k, v in re.findall(r"^\s+(\w+): (\d+)$", result_stderr, re.MULTILINE)}


@pytest.mark.slow
def test_pants_on_a_second_machine_reads_what_the_first_wrote(
    buildgrid: BuildGrid, tmp_path: Path
) -> None:
    files = {
        "app/BUILD": (
            'files(name="f", sources=["a.txt"])\n'
            'oci_image(name="img", base="scratch", dependencies=[":f"])\n'
        ),
        "app/a.txt": "shared through the remote cache\n",
    }
    counters: dict[str, dict[str, int]] = {}
    image_infos: dict[str, dict[str, object]] = {}
    for machine in ("a", "b"):
        # Each machine: its own checkout path, local store, named caches and workdir.
        home = tmp_path / machine
        repo = make_pants_repo(home / "repo", files)
        result = run_pants(
            *buildgrid.pants_args(),
            f"--local-store-dir={home / 'lmdb'}",
            f"--named-caches-dir={home / 'named_caches'}",
            f"--pants-workdir={home / 'workdir'}",
            "--stats-log",
            "package",
            "app:img",
            cwd=repo,
        )
        counters[machine] = _counters(result.stderr)
        # A cache that fails does not fail the build (Pants warns and goes on): check the counters.
        for errors in ("remote_cache_read_errors", "remote_cache_write_errors"):
            assert counters[machine][errors] == 0, f"{machine}: {errors}\n{result.stderr}"
        image_infos[machine] = json.loads((repo / "dist/app/img/image-info.json").read_text())

    log = f"\n--- server log ---\n{buildgrid.log_tail()}"
    # Machine a met an empty server and wrote its processes to it ...
    assert counters["a"].get("remote_cache_requests_cached", 0) == 0, counters["a"]
    assert counters["a"].get("remote_cache_write_successes", 0) > 0, f"{counters['a']}{log}"
    # ... which machine b, with an empty local store, read back: every one of them.
    assert counters["b"].get("remote_cache_requests_cached", 0) > 0, f"{counters['b']}{log}"
    assert (
        counters["b"]["remote_cache_requests_cached"]
        == counters["a"]["remote_cache_write_successes"]
    ), f"a: {counters['a']}\nb: {counters['b']}"
    assert image_infos["b"]["manifest_digest"] == image_infos["a"]["manifest_digest"]
