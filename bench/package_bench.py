"""`./pants package` and `./pants publish` of an image with a ~200 MB layer, end to end.

    cd /work/main && .pants-bootstrap/venv-*/bin/python bench/package_bench.py \\
        [--size-mb 200] [--runs 2] [--no-pantsd-only]

Creates a throwaway Pants repo (tests.pants_runs.make_pants_repo) in a temp dir, holding

* `big/`: ~200 MB of generated files (4 KiB-4 MiB, half random bytes, half compressible
  text: the generator of bench/layer_bench.py), one `oci_layer` under /data;
* `app/`: a few small text files, a second `oci_layer` under /srv;

and an `oci_image` of the two on `scratch`, tagged `latest` and `v1`, whose `registries` is a
local anonymous docker-registry (tests.harness.registry.start_registry). Then times, with
fresh `--local-store-dir` and `--named-caches-dir` under the temp dir:

1. cold package: empty caches (so the tool PEX is resolved from the package index too);
2. no-op package: the same again, nothing changed;
3. one-file-changed package: one small app file gets new content;
4. cold publish: push to the empty registry (the package step is a cache hit);
5. no-op publish: push again, nothing changed.

Every registry request is counted by method from the registry's access log, per publish.
Pants runs take ~20 s just to start without pantsd on a 2-vCPU machine, so the whole
sequence runs twice: with `--no-pantsd`, then with pantsd (fresh caches, a fresh registry,
a fresh copy of the repo), and the daemon is stopped by its pid at the end. The start-up
floor (`./pants --version`) is measured in both modes.

Targets (from the issue): one-file-changed package <= 1.3x the no-op package; a no-op
publish sends only HEADs and one manifest PUT per tag.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src/python"), str(REPO), str(REPO / "bench")]

from common import stats_counters  # noqa: E402
from layer_bench import make_big_tree, tree_bytes  # noqa: E402

from tests.harness.registry import Registry, start_registry  # noqa: E402
from tests.pants_runs import make_pants_repo, stop_pantsd_in  # noqa: E402

TAGS = ("latest", "v1")
APP_FILES = {
    "app/main.py": "print('hello from the app')\n",
    "app/config.toml": "[server]\nport = 8080\n",
    "app/README.txt": "The small, often-changing layer of the benchmark image.\n",
}
CHANGED_FILE = "app/main.py"
COUNTERS = (
    "local_cache_requests_cached",
    "local_cache_requests_uncached",
    "local_execution_requests",
)
ACCESS_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d{3}) ')


def build_file(registry: Registry) -> str:
    tags = ", ".join(f'"{t}"' for t in TAGS)
    return f"""
files(name="big_files", sources=["big/**/*"])
oci_layer(name="1-big", dependencies=[":big_files"], destination="/data")
files(name="app_files", sources=["app/*"])
oci_layer(name="2-app", dependencies=[":app_files"], destination="/srv")
oci_image(
    name="img",
    base="scratch",
    dependencies=[":1-big", ":2-app"],
    registries=["{registry.host}"],
    repository="bench/img",
    image_tags=[{tags}],
)
"""


@dataclass
class Run:
    seconds: float
    counters: dict[str, int]


@dataclass
class Round:
    """One full sequence, with or without pantsd."""

    pantsd: bool
    startup: float = 0.0
    cold: Run | None = None
    noop: list[Run] = field(default_factory=list)
    changed: list[Run] = field(default_factory=list)
    publish_cold: Run | None = None
    publish_noop: list[Run] = field(default_factory=list)
    requests_cold: collections.Counter[str] = field(default_factory=collections.Counter)
    requests_noop: list[collections.Counter[str]] = field(default_factory=list)
    layers: list[list[dict[str, object]]] = field(default_factory=list)


class Sandbox:
    """A repo, its caches and its registry, driven by the repo's real ./pants.

    `build` writes the BUILD file once the registry runs (the default: this benchmark's
    image, on scratch); `big_source`, if any, becomes the repo's big/; `caches` may be
    shared by sandboxes that run one after the other (the tool PEX is then resolved once).
    """

    def __init__(
        self,
        root: Path,
        big_source: Path | None,
        pantsd: bool,
        *,
        build: Callable[[Registry], str] = build_file,
        caches: Path | None = None,
    ) -> None:
        self.root = root
        self.pantsd = pantsd
        self.registry: Registry = start_registry("anonymous", root / "registry")
        try:
            files = {"BUILD": build(self.registry), **APP_FILES}
            self.repo = make_pants_repo(root / "repo", files)
            if big_source is not None:
                # Hard links: the bytes are read, never written, and copying 200 MB costs time.
                shutil.copytree(big_source, self.repo / "big", copy_function=os.link)
        except BaseException:
            self.registry.stop()  # no caller gets a sandbox to stop
            raise
        self.caches = caches or root / "caches"
        self.docker_config = root / "docker-config"  # no host credentials in the way
        self.docker_config.mkdir()
        self.edits = 0

    def pants(self, *args: str, named_caches: Path | None = None) -> tuple[Run, str]:
        """Run `./pants ARGS` (with other named caches than the sandbox's: `named_caches`)."""
        argv = [
            str(REPO / "pants"),
            "--pantsd" if self.pantsd else "--no-pantsd",
            f"--local-store-dir={self.caches / 'lmdb'}",
            f"--named-caches-dir={named_caches or self.caches / 'named'}",
            "--stats-log",
            *args,
        ]
        env = {**os.environ, "NO_COLOR": "1", "DOCKER_CONFIG": str(self.docker_config)}
        start = time.perf_counter()
        result = subprocess.run(
            argv, check=False, cwd=self.repo, env=env, capture_output=True, text=True, timeout=900
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(
                f"./pants {' '.join(args)} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-8000:]}"
            )
        counters = {k: v for k, v in stats_counters(result.stderr).items() if k in COUNTERS}
        return Run(seconds, counters), result.stdout + result.stderr

    def image_layers(self) -> list[dict[str, object]]:
        info = json.loads((self.repo / "dist/img/image-info.json").read_text())
        layers: list[dict[str, object]] = info["layers"]
        return layers

    def change_one_file(self) -> None:
        self.edits += 1
        path = self.repo / CHANGED_FILE
        path.write_text(f"{APP_FILES[CHANGED_FILE]}# edit {self.edits} {time.time_ns()}\n")

    def requests_during(self, action: str) -> tuple[Run, collections.Counter[str]]:
        """Run `./pants <action> :img` and count the registry requests it made."""
        log = self.registry.log_path
        offset = log.stat().st_size
        run, _ = self.pants(action, ":img")
        time.sleep(0.3)  # let the registry flush its last log lines
        with log.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        counts: collections.Counter[str] = collections.Counter()
        for method, path, status in ACCESS_LINE.findall(text):
            kind = (
                "manifest"
                if "/manifests/" in path
                else "upload"
                if "/blobs/uploads/" in path
                else "blob"
                if "/blobs/" in path
                else path
            )
            counts[f"{method} {kind} {status}"] += 1
        return run, counts

    def stop(self) -> None:
        self.registry.stop()
        if self.pantsd:
            stop_pantsd_in(self.repo)


def package_runs(box: Sandbox, runs: int) -> Round:
    """The package half of a round: cold, then `runs` no-op, then `runs` one-file-changed."""
    result = Round(box.pantsd)
    result.cold, _ = box.pants("package", ":img")
    result.layers.append(box.image_layers())
    print(f"  cold package        {result.cold.seconds:6.2f} s  {result.cold.counters}")
    for _ in range(runs):
        run, _ = box.pants("package", ":img")
        result.noop.append(run)
        print(f"  no-op package       {run.seconds:6.2f} s  {run.counters}", flush=True)
    for _ in range(runs):
        box.change_one_file()
        run, _ = box.pants("package", ":img")
        result.changed.append(run)
        result.layers.append(box.image_layers())
        print(f"  one-file package    {run.seconds:6.2f} s  {run.counters}", flush=True)
    return result


def run_round(root: Path, big_source: Path, pantsd: bool, runs: int) -> Round:
    mode = "pantsd" if pantsd else "--no-pantsd"
    print(f"\n== {mode} ==", flush=True)
    box = Sandbox(root, big_source, pantsd)
    try:
        result = package_runs(box, runs)
        result.publish_cold, result.requests_cold = box.requests_during("publish")
        print(f"  cold publish        {result.publish_cold.seconds:6.2f} s", flush=True)
        print(f"    requests: {dict(sorted(result.requests_cold.items()))}")
        for _ in range(runs):
            run, counts = box.requests_during("publish")
            result.publish_noop.append(run)
            result.requests_noop.append(counts)
            print(f"  no-op publish       {run.seconds:6.2f} s", flush=True)
            print(f"    requests: {dict(sorted(counts.items()))}")
        start = time.perf_counter()
        box.pants("--version")
        result.startup = time.perf_counter() - start
        print(f"  ./pants --version   {result.startup:6.2f} s (start-up floor)")
    finally:
        box.stop()
    return result


def noop_publish_ok(counts: collections.Counter[str]) -> bool:
    """Only HEADs, plus exactly one manifest PUT per tag (and the /v2/ ping, a GET)."""
    puts = sum(n for key, n in counts.items() if key.startswith("PUT manifest"))
    others = [
        key
        for key in counts
        if not key.startswith(("HEAD ", "PUT manifest", "GET /v2/ "))
        or key.startswith("HEAD upload")
    ]
    return puts == len(TAGS) and not others


def summary(r: Round) -> None:
    assert r.cold is not None and r.publish_cold is not None
    noop = min(run.seconds for run in r.noop)
    changed = min(run.seconds for run in r.changed)
    pub_noop = min(run.seconds for run in r.publish_noop)
    mode = "pantsd" if r.pantsd else "--no-pantsd"
    print(f"\n{mode}: best of {len(r.noop)} for the repeated runs (seconds)")
    print(f"  start-up floor       {r.startup:6.2f}")
    print(f"  cold package         {r.cold.seconds:6.2f}")
    print(f"  no-op package        {noop:6.2f}  (all: {[round(x.seconds, 2) for x in r.noop]})")
    print(
        f"  one-file package     {changed:6.2f}  (all: {[round(x.seconds, 2) for x in r.changed]})"
    )
    print(f"  cold publish         {r.publish_cold.seconds:6.2f}")
    print(
        f"  no-op publish        {pub_noop:6.2f}  "
        f"(all: {[round(x.seconds, 2) for x in r.publish_noop]})"
    )
    ratio = changed / noop
    verdict = "met" if ratio <= 1.3 else "NOT met"
    print(f"  one-file / no-op     {ratio:6.2f}x  target <= 1.3x: {verdict}")
    ok = all(noop_publish_ok(c) for c in r.requests_noop)
    print(
        f"  no-op publish: only HEADs + {len(TAGS)} manifest PUTs ({len(TAGS)} tags): "
        f"{'met' if ok else 'NOT met'}"
    )
    for counts in r.requests_noop:
        by_method: collections.Counter[str] = collections.Counter()
        for key, n in counts.items():
            by_method[key.split()[0]] += n
        print(f"    methods: {dict(sorted(by_method.items()))}")
    big = {str(layers[0]["digest"]) for layers in r.layers}
    app = {str(layers[1]["digest"]) for layers in r.layers}
    print(f"  big layer digests across builds: {len(big)}; app layer digests: {len(app)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=2, help="repeats of the no-op/changed runs")
    parser.add_argument("--no-pantsd-only", action="store_true")
    args = parser.parse_args()

    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    total = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="pants-oci-package-bench-"))
    try:
        big_source = tmp / "big-source"
        size = make_big_tree(big_source, args.size_mb)
        files = sum(1 for p in big_source.rglob("*") if p.is_file())
        assert size == tree_bytes(big_source)
        print(f"big layer input: {size / 1e6:.0f} MB in {files} files; tags {list(TAGS)}")
        rounds = [run_round(tmp / "no-pantsd", big_source, False, args.runs)]
        if not args.no_pantsd_only:
            rounds.append(run_round(tmp / "pantsd", big_source, True, args.runs))
        layers = rounds[0].layers[0]
        print("\nlayers: " + ", ".join(f"{int(str(layer['size'])):,} bytes" for layer in layers))
        for r in rounds:
            summary(r)
        if len(rounds) == 2:
            print("\npantsd vs --no-pantsd (best):")
            a, b = rounds
            for label, x, y in (
                ("no-op package", a.noop, b.noop),
                ("one-file package", a.changed, b.changed),
                ("no-op publish", a.publish_noop, b.publish_noop),
            ):
                mx, my = min(r.seconds for r in x), min(r.seconds for r in y)
                print(f"  {label:18} {mx:6.2f} -> {my:6.2f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - total:.0f} s")


if __name__ == "__main__":
    main()
