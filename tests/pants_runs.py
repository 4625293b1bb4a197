"""Run the repo's real `./pants` the way users do, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Build roots whose pantsd a test started: stopped by `stop_pantsd` (tests/conftest.py calls
# `stop_started_pantsd` after each test module), so no daemon outlives the module that needed it.
_DAEMON_ROOTS: set[Path] = set()


def run_pants(
    *args: str,
    cwd: Path = REPO,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    pantsd: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `./pants` in `cwd`. With pantsd (the default, as users run it) Pants' start-up (its
    rule graph: some 15-20 s on 2 cores) is paid once per build root, not once per run."""
    if pantsd:
        _DAEMON_ROOTS.add(cwd.resolve())
    result = subprocess.run(
        [str(REPO / "pants"), "--pantsd" if pantsd else "--no-pantsd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        check=False,
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"./pants {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def stop_started_pantsd() -> None:
    """Stop every pantsd that `run_pants` started."""
    while _DAEMON_ROOTS:
        stop_pantsd_in(_DAEMON_ROOTS.pop())


def stop_pantsd_in(root: Path) -> None:
    """Stop the pantsd of build root `root`, found by the pid it wrote there."""
    for pid_file in root.glob(".pids/*/pantsd/pid"):
        pid = int(pid_file.read_text().strip() or 0)
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"pantsd" not in cmdline or str(root).encode() not in cmdline:
            continue  # not ours: a pid reused since
        os.kill(pid, signal.SIGTERM)
        # Waiting is the point here (a daemon holding its build root), not synchronisation.
        deadline = time.monotonic() + 30
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)


def make_pants_repo(
    root: Path, files: Mapping[str, str], *, extra_toml: str = "", python_toml: str = ""
) -> Path:
    """A throwaway Pants repo using this checkout's backend, Pants and pex tool;
    `python_toml` goes into its `[python]` table, `extra_toml` after the tables it has."""
    root.mkdir(parents=True, exist_ok=True)
    config = tomllib.loads((REPO / "pants.toml").read_text())
    pex_cli = config["pex-cli"]
    url = pex_cli["url_template"].replace("%(buildroot)s", str(REPO))
    known = ", ".join(f'"{v}"' for v in pex_cli["known_versions"])
    (root / "pants.toml").write_text(
        f"""[GLOBAL]
pants_version = "{config["GLOBAL"]["pants_version"]}"
pythonpath = ["{REPO / "src/python"}"]
backend_packages = ["pants.backend.python", "pants_oci"]

[python]
interpreter_constraints = ["CPython==3.11.*"]
{python_toml}

[pex-cli]
version = "{pex_cli["version"]}"
url_template = "{url}"
known_versions = [{known}]
{extra_toml}"""
    )
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return root
