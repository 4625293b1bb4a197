"""BuildGrid, a real Remote Execution API (REAPI) server, as the remote cache of Pants in tests.

One server is one `bgd server start` process on a loopback port with the instance name "" (Pants'
`--remote-instance-name=` must match it exactly): the CAS (and ByteStream) on disk under the
server's directory, the ActionCache in memory. The ActionCache is therefore lost by `stop()`
(the CAS survives): keep the runs that must share processes within one server lifetime.

`bgd` comes from the virtualenv that ./test installs (build-support/tool-venvs.sh) and names in
$PANTS_OCI_BGD; BuildGrid's grpcio/protobuf pins keep it out of the test environment itself.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from tests.harness.processes import LOOPBACK, HarnessError, ServerProcess, free_port, log_tail

BGD_ENV = "PANTS_OCI_BGD"
# BuildGrid's instance name; Pants sends `--remote-instance-name`, which must equal it.
INSTANCE_NAME = ""
# bgd imports a lot of Python: a start takes 1.5-7 s, more on a busy machine.
START_TIMEOUT = 60.0


def bgd_binary() -> str:
    """The `bgd` command that ./test installed; an error (never a skip) when it is missing."""
    path = os.environ.get(BGD_ENV, "")
    if not path:
        raise HarnessError(
            f"${BGD_ENV} is not set: run ./test, which installs buildgrid into "
            ".pants-bootstrap/buildgrid-venv-* and sets it"
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise HarnessError(
            f"${BGD_ENV}={path} is not an executable file: run ./test, which installs buildgrid"
        )
    return path


def _config_yaml(port: int, cas_dir: Path) -> str:
    # BuildGrid's config needs YAML tags (!channel, ...), so it is written as text; json.dumps
    # quotes strings in a form YAML reads.
    return f"""\
grpc-server-options:
  # gRPC sets SO_REUSEPORT by default, so a second server on a taken port would start and share
  # its connections with the first; without it, a clash fails to bind, loudly.
  grpc.so_reuseport: 0
# gRPC threads, which also cap concurrent RPCs (5 per CPU by default): Pants sends many reads
# and writes at once, and BuildGrid answers the extra ones "Concurrent RPC limit exceeded!".
thread-pool-size: 100
server:
  - !channel
    address: {json.dumps(f"{LOOPBACK}:{port}")}
    insecure-mode: true
authorization:
  method: none
storages:
  - !disk-storage &cas-storage
    path: {json.dumps(str(cas_dir))}
caches:
  - !lru-action-cache &action-cache
    storage: *cas-storage
    max-cached-refs: 100000
    allow-updates: true
instances:
  - name: {json.dumps(INSTANCE_NAME)}
    services:
      - !action-cache
        cache: *action-cache
      - !cas
        storage: *cas-storage
      - !bytestream
        storage: *cas-storage
"""


@dataclass
class BuildGrid:
    """A BuildGrid server: `address` for Pants, `stop()`/`start()` for an outage on the same
    port, and a context manager that stops it."""

    port: int
    root: Path  # the server's directory: config, CAS, pid file and log
    config_path: Path
    cas_dir: Path
    log_path: Path
    bgd: str = field(repr=False)
    process: ServerProcess = field(repr=False)

    @property
    def address(self) -> str:
        """For Pants' `--remote-store-address`: "grpc://127.0.0.1:PORT"."""
        return f"grpc://{LOOPBACK}:{self.port}"

    @property
    def http_address(self) -> str:
        """For bgd's own `--remote`: "http://127.0.0.1:PORT"."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.root / "bgd.pid"

    def pants_args(self) -> list[str]:
        """Pants options that read from and write to this server as a remote cache."""
        return [
            "--remote-cache-read",
            "--remote-cache-write",
            f"--remote-store-address={self.address}",
            f"--remote-instance-name={INSTANCE_NAME}",
        ]

    def capabilities(self, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """`bgd capabilities` against this server (REAPI GetCapabilities), not checked: a
        stopped server gives a non-zero exit code."""
        return subprocess.run(
            [self.bgd, "capabilities", "--remote", self.http_address],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def running(self) -> bool:
        return self.process.running()

    def _ready(self) -> bool:
        # bgd writes its pid file after the gRPC server started serving, not before.
        try:
            written = self.pid_file.read_text().strip()
        except OSError:
            return False
        return written == str(self.process.pid)

    def _launch(self) -> None:
        self.pid_file.unlink(missing_ok=True)  # a killed bgd leaves its pid file behind
        self.process.start(self._ready, timeout=START_TIMEOUT)

    def start(self) -> BuildGrid:
        """(Re)start the server on its port, with the CAS it had and an empty ActionCache.
        Returns once it serves; a no-op while it runs."""
        if self.running():
            return self
        try:
            self._launch()
        except HarnessError as e:
            if "Failed to bind" in str(e):
                raise HarnessError(
                    f"BuildGrid could not listen on {LOOPBACK}:{self.port} again: another "
                    f"process took the port while the server was stopped\n{e}"
                ) from e
            raise
        return self

    def stop(self) -> None:
        """Stop the server (by pid; idempotent). `start()` listens on the same port again;
        nothing holds the port in between."""
        self.process.stop()

    def log_tail(self, max_chars: int = 4000) -> str:
        return log_tail(self.log_path, max_chars)

    def __enter__(self) -> BuildGrid:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_buildgrid(directory: Path, *, port: int | None = None) -> BuildGrid:
    """Start an empty BuildGrid server in `directory` (config, CAS, pid file and log live there)
    on `port`, or on a free loopback port (retrying on a clash) when it is None. Use it as a
    context manager, or `stop()` it."""
    bgd = bgd_binary()
    directory.mkdir(parents=True, exist_ok=True)
    cas_dir = directory / "cas"
    cas_dir.mkdir(exist_ok=True)
    config_path = directory / "buildgrid.yml"
    last_error: HarnessError | None = None
    # free_port() can race with another process taking the port; retry on a clash only.
    for _attempt in range(1 if port is not None else 3):
        chosen = port if port is not None else free_port()
        config_path.write_text(_config_yaml(chosen, cas_dir))
        server = BuildGrid(
            port=chosen,
            root=directory,
            config_path=config_path,
            cas_dir=cas_dir,
            log_path=directory / "buildgrid.log",
            bgd=bgd,
            process=ServerProcess(
                name="BuildGrid (bgd server)",
                argv=[
                    bgd,
                    "server",
                    "start",
                    "-v",
                    "--pid-file",
                    str(directory / "bgd.pid"),
                    str(config_path),
                ],
                workdir=directory,
                log_path=directory / "buildgrid.log",
            ),
        )
        server.log_path.unlink(missing_ok=True)  # a clash's "Failed to bind" is not this try's
        try:
            server._launch()
        except HarnessError as e:
            if "Failed to bind" not in str(e):
                raise
            last_error = e
            continue
        return server
    assert last_error is not None
    raise last_error
