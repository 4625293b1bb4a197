"""Cold `./pants package` vs. the same package on a "new machine" with a warm REAPI cache.

    cd /work/main && PANTS_OCI_BGD=$PWD/.pants-bootstrap/buildgrid-venv-*/bin/bgd \\
        .pants-bootstrap/venv-*/bin/python bench/remote_cache_bench.py [--size-mb 200]

(`./test` installs BuildGrid and sets PANTS_OCI_BGD; any run of it leaves the venv there.)

Starts BuildGrid on loopback (tests/harness/buildgrid.py) and a throwaway Pants repo whose
image has a ~200 MB `oci_layer` (the generator of bench/layer_bench.py) and a small app layer,
on `scratch`, with the remote cache lines of docs/remote-cache.md. Then, each with its own
empty `--local-store-dir`, `--named-caches-dir` and workdir, without pantsd:

1. machine A, cold: everything built locally, and written to the remote cache;
2. machine B, warm remote cache: the tool PEX, both layers and the assembly come from
   BuildGrid; B downloads the layer blob instead of building it;
3. the start-up floor, `./pants --version`.

Prints the times, the `--stats-log` cache counters, and the ratio cold / warm, also without
the start-up floor. Both machines write the same manifest digest (checked).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src/python"), str(REPO), str(REPO / "bench")]

from common import stats_counters  # noqa: E402
from layer_bench import make_big_tree  # noqa: E402

from tests.backend.test_remote_cache import docs_toml  # noqa: E402
from tests.harness.buildgrid import start_buildgrid  # noqa: E402
from tests.pants_runs import make_pants_repo  # noqa: E402

BUILD = """
files(name="big_files", sources=["big/**"])
files(name="app_files", sources=["app/*"])
oci_layer(name="1-big", dependencies=[":big_files"], destination="/data")
oci_layer(name="2-app", dependencies=[":app_files"], destination="/srv")
oci_image(name="img", base="scratch", dependencies=[":1-big", ":2-app"])
"""


def machine(root: Path, big: Path, remote_toml: str) -> Path:
    repo = make_pants_repo(root / "repo", {"BUILD": BUILD, "app/main.py": "print('hi')\n"})
    shutil.copytree(big, repo / "big")
    (repo / "remote-cache.toml").write_text(remote_toml)
    return repo


def pants(repo: Path, *args: str) -> tuple[float, str]:
    home = repo.parent
    argv = [
        str(REPO / "pants"),
        "--no-pantsd",
        "--pants-config-files=['pants.toml', 'remote-cache.toml']",
        f"--local-store-dir={home / 'lmdb'}",
        f"--named-caches-dir={home / 'named_caches'}",
        f"--pants-workdir={home / 'workdir'}",
        *args,
    ]
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=repo, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stderr


@dataclass
class Result:
    big_bytes: int
    cold: float  # seconds: machine A
    warm: float  # machine B
    floor: float  # ./pants --version
    cold_counters: dict[str, int]
    warm_counters: dict[str, int]


def measure(size_mb: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="remote-cache-bench-") as tmp:
        root = Path(tmp)
        big_bytes = make_big_tree(root / "big", size_mb)
        server = start_buildgrid(root / "buildgrid")
        try:
            remote = docs_toml(server.address)
            a = machine(root / "a", root / "big", remote)
            b = machine(root / "b", root / "big", remote)
            cold, cold_log = pants(a, "--stats-log", "package", "//:img")
            warm, warm_log = pants(b, "--stats-log", "package", "//:img")
            floor, _ = pants(b, "--version")
            digests = {
                json.loads((repo / "dist/img/image-info.json").read_text())["manifest_digest"]
                for repo in (a, b)
            }
            if len(digests) != 1:
                raise SystemExit(f"the two machines disagree: {digests}")
        finally:
            server.stop()
    return Result(big_bytes, cold, warm, floor, stats_counters(cold_log), stats_counters(warm_log))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    options = parser.parse_args()
    r = measure(options.size_mb)
    keys = ("remote_cache_requests_cached", "remote_cache_requests_uncached",
            "remote_cache_write_successes")  # fmt: skip
    print(f"image: {r.big_bytes / 1e6:.0f} MB layer + a small one, on scratch")
    print(f"machine A, cold:               {r.cold:6.1f} s  {[r.cold_counters[k] for k in keys]}")
    print(f"machine B, warm remote cache:  {r.warm:6.1f} s  {[r.warm_counters[k] for k in keys]}")
    print(f"start-up floor (--version):    {r.floor:6.1f} s")
    print(f"  (counters: {', '.join(keys)})")
    print(f"cold / warm:                   {r.cold / r.warm:6.2f}x")
    above = (r.cold - r.floor) / max(r.warm - r.floor, 0.01)
    print(f"cold / warm, above the floor:  {above:6.2f}x")


if __name__ == "__main__":
    main()
