"""The process harness reports start failures with the server's log, and stops by pid."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.harness.fixtures import RegistryFactory
from tests.harness.processes import HarnessError, ServerProcess, free_port, port_accepts


def test_exit_before_ready_reports_log_tail(tmp_path: Path) -> None:
    server = ServerProcess(
        name="doomed",
        argv=[sys.executable, "-c", "import sys; print('bad config line 7'); sys.exit(4)"],
        workdir=tmp_path,
        log_path=tmp_path / "doomed.log",
    )
    with pytest.raises(HarnessError) as failed:
        server.start(lambda: False)
    assert "exited with 4" in str(failed.value)
    assert "bad config line 7" in str(failed.value)


def test_not_ready_by_deadline_is_stopped(tmp_path: Path) -> None:
    server = ServerProcess(
        name="silent",
        argv=[sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"],
        workdir=tmp_path,
        log_path=tmp_path / "silent.log",
    )
    with pytest.raises(HarnessError) as failed:
        server.start(lambda: False, timeout=0.5)
    assert "not ready within 0.5s" in str(failed.value)
    assert not server.running()


def test_ready_server_answers_and_stops(tmp_path: Path) -> None:
    port = free_port()
    server = ServerProcess(
        name="http.server",
        argv=[sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        workdir=tmp_path,
        log_path=tmp_path / "http.log",
    )
    server.start(lambda: port_accepts(port))
    (tmp_path / "hello.txt").write_text("hi")
    assert httpx.get(f"http://127.0.0.1:{port}/hello.txt").text == "hi"
    popen = server.popen
    server.stop()
    assert popen is not None and popen.returncode is not None
    assert not port_accepts(port)
    server.stop()  # idempotent


def test_factory_adds_tls_to_basic_auth(
    registry_factory: RegistryFactory, unique_repo: str
) -> None:
    registry = registry_factory("basic", tls=True)
    assert registry.url.startswith("https://") and registry.username
    with registry.httpx_client() as client:
        assert client.get("/v2/").status_code == 200
    with registry.httpx_client(credentials=None) as client:
        assert client.get("/v2/").status_code == 401
