"""Real server processes on loopback for tests: start, poll until ready, stop by pid."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


class HarnessError(RuntimeError):
    """A test server or tool misbehaved; the message carries its log or stderr."""


def _die_with_parent() -> None:
    """Runs in the child before exec: if pytest is killed outright (no fixture teardown), the
    kernel sends the server SIGTERM instead of leaving it orphaned."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def require_binary(name: str) -> str:
    """Path of a tool the tests need; a missing tool is an error, never a skip."""
    path = shutil.which(name)
    if path is None:
        raise HarnessError(
            f"required binary {name!r} is not on PATH; run ./test, which installs the test tools"
        )
    return path


def free_port() -> int:
    """A port that was free a moment ago (the kernel picks it; callers retry on a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_accepts(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def log_tail(path: Path, max_chars: int = 4000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"<no log: {e}>"
    return text[-max_chars:]


@dataclass
class ServerProcess:
    """One started server: its argv, working dir and the log file its output goes to."""

    name: str
    argv: Sequence[str]
    workdir: Path
    log_path: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(
        self,
        ready: Callable[[], bool],
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 20.0,
    ) -> ServerProcess:
        """Start the process and poll `ready` until it answers True, the process dies, or the
        deadline passes; on failure the process is stopped and the log tail is raised."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(
                list(self.argv),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(os.environ if env is None else env),
                # Own process group: a Ctrl-C on pytest does not hit the server first.
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - tests are single-threaded here
            )
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            code = self.popen.poll()
            if code is not None:
                self.popen = None
                raise HarnessError(
                    f"{self.name} exited with {code} before it was ready; argv={list(self.argv)}\n"
                    f"--- {self.log_path} ---\n{log_tail(self.log_path)}"
                )
            if ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError(
                    f"{self.name} was not ready within {timeout}s; argv={list(self.argv)}\n"
                    f"--- {self.log_path} ---\n{log_tail(self.log_path)}"
                )
            # Polling interval, not synchronisation: readiness is what we wait for.
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate by pid, wait, and kill if it does not exit in time. Idempotent."""
        popen, self.popen = self.popen, None
        if popen is None or popen.poll() is not None:
            return
        popen.terminate()
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=timeout)
