"""Run the repo's real `./pants` the way users do, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_pants(*args: str, cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `./pants` without pantsd, so no daemon outlives the test run."""
    result = subprocess.run(
        [str(REPO / "pants"), "--no-pantsd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"./pants {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result
