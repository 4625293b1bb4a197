"""Layer-building benchmark (not a test): throughput, per-entry cost and peak memory.

    .pants-bootstrap/venv-*/bin/python bench/layer_bench.py [--size-mb 1024] [--small 20000]

Measures, on trees it generates in a temporary directory:

* throughput building a gzip layer from a ~1 GB tree of many files (half random, half
  compressible), and from /usr/lib/python3.11, against ``tar -c | igzip -1`` (Debian
  package ``isal``) and ``tar -c | gzip -1``;
* the cost per entry on a tree of 20,000 small files, against the bare system calls of
  reading the same files from Python (the floor any Python implementation pays);
* peak RSS of a process that builds the 1 GB layer (``resource.getrusage``).

Prints a Markdown section for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src/python"))

from common import best_of, timed  # noqa: E402

from pants_oci.core.compression import HAVE_ISAL  # noqa: E402
from pants_oci.core.layer import LayerBuilder  # noqa: E402

PYTHON_LIB = Path("/usr/lib/python3.11")


def make_big_tree(root: Path, total_mb: int) -> int:
    """Files of 4 KiB to 4 MiB, half random bytes and half compressible text; returns bytes."""
    rng = random.Random(42)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(6)) for _ in range(500)]
    total, index = 0, 0
    while total < total_mb << 20:
        size = int(4096 * 2 ** rng.uniform(0, 10))
        directory = root / f"d{index % 50:02d}" / f"s{index % 7}"
        directory.mkdir(parents=True, exist_ok=True)
        if index % 2:
            data = os.urandom(size)
        else:
            data = b" ".join(rng.choice(words) for _ in range(size // 6))[:size]
        (directory / f"f{index:05d}.bin").write_bytes(data)
        total += len(data)
        index += 1
    return total


def make_small_tree(root: Path, count: int) -> None:
    for index in range(count):
        directory = root / f"d{index // 100:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index:05d}.txt").write_bytes(b"x" * (64 + index % 900))


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def build(root: Path, out: Path, compression: str = "gzip") -> float:
    builder = LayerBuilder()
    builder.add_files({"data": root})
    return timed(lambda: builder.write_file(out, compression=compression))  # type: ignore[arg-type]


def shell_pipeline(root: Path, compressor: str, out: Path) -> float | None:
    if shutil.which(compressor.split(maxsplit=1)[0]) is None:
        return None
    command = f"tar -c -C {root} . | {compressor} > {out}"
    return timed(lambda: subprocess.run(["sh", "-c", command], check=True))


def syscall_floor(root: Path) -> tuple[float, int]:
    """Seconds to list, open, fstat, read and close every file: no tar, no hashing."""
    count = 0
    start = time.perf_counter()
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
                    os.read(fd, os.fstat(fd).st_size + 1)
                    os.close(fd)
                count += 1
    return time.perf_counter() - start, count


def peak_rss_mb(root: Path | None, out: Path) -> tuple[float, float]:
    """Peak RSS in MB of a fresh process that imports the layer module and, given ``root``,
    builds a gzip layer from it: (getrusage's ru_maxrss, /proc's VmHWM).

    On Linux ru_maxrss survives fork and exec, so it also counts the RSS of the process that
    spawned the child (this one); VmHWM belongs to the child's own address space alone.
    """
    code = (
        "import resource, sys; sys.path.insert(0, sys.argv[3])\n"
        "from pants_oci.core.layer import LayerBuilder\n"
        "if sys.argv[1]:\n"
        "    b = LayerBuilder(); b.add_files({'data': sys.argv[1]}); b.write_file(sys.argv[2])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, hwm)"
    )
    argv = [sys.executable, "-c", code, str(root or ""), str(out), str(REPO / "src/python")]
    result = subprocess.run(argv, check=True, capture_output=True, text=True)
    maxrss, hwm = result.stdout.split()
    return int(maxrss) / 1024, int(hwm) / 1024


@dataclass
class Throughput:
    """Seconds to turn one tree into a layer: ours (gzip, uncompressed) and the shell's."""

    ours_gzip: float
    ours_none: float
    igzip: float | None  # None: the compressor is not installed
    gzip1: float | None


def measure_throughput(root: Path, out: Path, runs: int) -> Throughput:
    return Throughput(
        ours_gzip=best_of(runs, lambda: build(root, out / "layer.tar.gz")),
        ours_none=best_of(runs, lambda: build(root, out / "layer.tar", "none")),
        igzip=shell_pipeline(root, "igzip -1 -c", out / "tar.gz"),
        gzip1=shell_pipeline(root, "gzip -1", out / "tar.gz"),
    )


@dataclass
class PerEntry:
    """Seconds for a whole tree of small files, and how many entries (files and
    directories) it has: ours (uncompressed, gzip), GNU tar, the bare system calls."""

    entries: int
    ours_none: float
    ours_gzip: float
    tar: float
    floor: float

    def micros(self, seconds: float) -> float:
        return seconds / self.entries * 1e6


def measure_per_entry(small: Path, out: Path, runs: int) -> PerEntry:
    """Best of ``runs`` of each; every run measures all four, one after the other, so that
    a change in the machine's load between runs hits them alike."""
    tar_argv = ["tar", "-c", "-f", str(out / "t.tar"), "-C", str(small), "."]
    measures: dict[str, Callable[[], float]] = {
        "ours_none": lambda: build(small, out / "s.tar", "none"),
        "ours_gzip": lambda: build(small, out / "s.tar.gz"),
        "tar": lambda: timed(subprocess.run, tar_argv, check=True),
        "floor": lambda: syscall_floor(small)[0],
    }
    seconds: dict[str, list[float]] = {name: [] for name in measures}
    measures["ours_none"]()  # warm up: the first reader of a new tree pays for its inodes
    for _ in range(runs):
        for name, measure in measures.items():
            seconds[name].append(measure())
    return PerEntry(
        entries=syscall_floor(small)[1],
        ours_none=min(seconds["ours_none"]),
        ours_gzip=min(seconds["ours_gzip"]),
        tar=min(seconds["tar"]),
        floor=min(seconds["floor"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="layer-bench-") as temp:
        tmp = Path(temp)
        big, small, out = tmp / "big", tmp / "small", tmp / "out"
        out.mkdir()
        size = make_big_tree(big, args.size_mb)
        make_small_tree(small, args.small)
        rows = []

        def throughput(name: str, root: Path, nbytes: int) -> None:
            t = measure_throughput(root, out, args.runs)
            ours, none, igzip, gzip1 = t.ours_gzip, t.ours_none, t.igzip, t.gzip1
            mb = nbytes / 1e6
            rows.append(
                f"| {name} | {mb:,.0f} MB | {mb / ours:,.0f} MB/s ({ours:.2f} s) "
                f"| {mb / none:,.0f} MB/s | "
                + (f"{mb / igzip:,.0f} MB/s ({igzip:.2f} s)" if igzip else "igzip missing")
                + (f" | {mb / gzip1:,.0f} MB/s |" if gzip1 else " | |")
            )

        throughput("generated tree", big, size)
        if PYTHON_LIB.is_dir():
            throughput(str(PYTHON_LIB), PYTHON_LIB, tree_bytes(PYTHON_LIB))

        per_entry = measure_per_entry(small, out, args.runs)
        rss = peak_rss_mb(big, out / "rss.tar.gz")
        rss_import_only = peak_rss_mb(None, out / "unused")

    def us(seconds: float) -> str:
        return f"{per_entry.micros(seconds):.1f} µs"

    isal = "yes" if HAVE_ISAL else "NO (zlib fallback)"
    print("## Layers\n")
    print(
        f"Machine: {os.cpu_count()} CPUs, {platform.machine()}, Python "
        f"{platform.python_version()}, python-isal {isal}. Best of {args.runs} runs.\n"
    )
    print(
        "Reproduce: `.pants-bootstrap/venv-*/bin/python bench/layer_bench.py` "
        "(`apt-get install -y isal` for the igzip comparison).\n"
    )
    print(
        "| tree | input | pants_oci gzip layer | pants_oci uncompressed "
        "| tar -c \\| igzip -1 | tar -c \\| gzip -1 |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    entries = per_entry.entries
    print(f"\nPer entry, {entries:,} entries ({args.small:,} small files and their directories):\n")
    print(
        "| uncompressed layer | gzip layer | GNU tar -c "
        "| syscall floor (scandir+open+fstat+read+close from Python) |"
    )
    print("| --- | --- | --- | --- |")
    p = per_entry
    print(f"| {us(p.ours_none)} | {us(p.ours_gzip)} | {us(p.tar)} | {us(p.floor)} |")
    print(
        f"\nPeak RSS of a fresh process building the {args.size_mb} MB gzip layer: "
        f"{rss[1]:.0f} MB (VmHWM); importing the module alone: {rss_import_only[1]:.0f} MB. "
        f"(getrusage's ru_maxrss says {rss[0]:.0f} MB and {rss_import_only[0]:.0f} MB: on "
        "Linux it also counts the spawning process, whose RSS it inherits through fork/exec.)"
    )


if __name__ == "__main__":
    main()
