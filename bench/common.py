"""Helpers the benchmarks share: timing, running tools, Pants' stats and the machine's name."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def timed(action: Callable[..., object], *args: object, **kwargs: object) -> float:
    """Seconds that `action(*args, **kwargs)` took, wall clock."""
    start = time.perf_counter()
    action(*args, **kwargs)
    return time.perf_counter() - start


def best_of(runs: int, measure: Callable[[], float]) -> float:
    """The smallest of `runs` measurements: the machine's noise is not what we measure."""
    return min(measure() for _ in range(runs))


def run(argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a tool that must succeed, its output captured as text."""
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)


def stats_counters(stderr: str) -> dict[str, int]:
    """The counters that `pants --stats-log` prints on stderr, by name."""
    return {k: int(v) for k, v in re.findall(r"^\s+(\w+): (\d+)$", stderr, re.MULTILINE)}


def tool_version(argv: Sequence[str]) -> str:
    """The first line a tool prints for its version, or that it is missing."""
    if shutil.which(argv[0]) is None:
        return f"{argv[0]} missing"
    result = subprocess.run(argv, check=False, capture_output=True, text=True)
    line = (result.stdout or result.stderr).strip().splitlines()[0]
    # curl's line goes on with its platform and every library it links: keep the version.
    return re.sub(r" \(\S+\).*", "", line)


def machine(extras: Sequence[str] = ()) -> str:
    """CPUs, their model, RAM, kernel and Python, then `extras` (e.g. tool versions)."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return "; ".join(
        [
            f"{os.cpu_count()} vCPUs ({cpu}), {mem_kb / 2**20:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}",
            f"Python {platform.python_version()}",
            *extras,
        ]
    )
