"""Build an image layer from a directory tree and push the image: ours vs umoci + skopeo.

    cd /work/main && .pants-bootstrap/venv-*/bin/python bench/build_push_bench.py \\
        [--size-mb 200] [--runs 3] [--serial-api]

Starts a docker-registry (CNCF distribution) in anonymous mode on loopback with the test
harness, then times, for each tree, the whole job "one gzip layer of the tree under /data on
an empty base, pushed as an image to the registry", three ways:

* pants_oci's API: ``Image("scratch", target)``, ``add_files({"/data": tree})``, ``save()``
  (add_files uploads the layer while it writes it: its "build" step includes the upload,
  and "push" is what is left of it, the config and the manifest); with ``--serial-api``
  also with ``upload_while_building=False`` ("api-serial": build, then push);
* pants_oci's CLI, one process per step as the Pants backend runs it:
  ``layer build``, ``image assemble --base scratch``, ``push``;
* the peer tools: ``umoci init`` + ``umoci new`` + ``umoci insert TREE /data`` (as root),
  then ``skopeo copy oci:LAYOUT:latest docker://...``.

Trees: a generated one of ~200 MB (4 KiB-4 MiB files, half random, half compressible text;
the generator of bench/layer_bench.py) and a copy of /usr/lib/python3.11. Before every
measurement a file naming the method and run is written into the tree, so every layer (and
so every digest) is new: nothing can be skipped as existing or mounted from an earlier
push, neither by our client nor through skopeo's blob-info cache. Repositories are fresh
per run too. The tree is read once beforehand, so every method starts with a warm page
cache. The no-op re-push (same image, same repository, again) is measured as well.

Target (from the issue): ours <= 0.5x the umoci + skopeo time. Best of --runs each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src/python"), str(REPO)]

from common import machine, run, timed, tool_version  # noqa: E402
from layer_bench import make_big_tree, tree_bytes  # noqa: E402

from pants_oci.core import Image  # noqa: E402
from pants_oci.core.compression import HAVE_ISAL  # noqa: E402
from tests.harness.registry import start_registry  # noqa: E402

PYTHON_LIB = Path("/usr/lib/python3.11")
MARKER = ".bench-run"

METHODS = ("api", "cli", "peer")
SERIAL_API = "api-serial"  # the API with the upload left to save(): before/after in one run

Times = dict[str, float]  # step name -> seconds


@dataclass
class TreeResult:
    """One tree's measurements: per method, the best run's steps (with "total" and the
    "median" total) and the best no-op re-push; the layer sizes each method made."""

    bytes: int
    files: int
    best: dict[str, Times]
    repush: dict[str, float]
    sizes: dict[str, int]


def mark(tree: Path, label: str) -> None:
    """Make the tree's layer unique to this measurement (a new digest: nothing to skip)."""
    (tree / MARKER).write_text(f"{label} {time.time_ns()}\n")


def warm(tree: Path) -> None:
    run(["sh", "-c", f"tar -c -C {tree} . > /dev/null"])


# --- The three ways -----------------------------------------------------------------------------


def ours_api(tree: Path, target: str, *, upload_while_building: bool = True) -> tuple[Times, Image]:
    """Build and push; returns the times and the (open) image, for the re-push."""
    times: Times = {}
    start = time.perf_counter()
    image = Image("scratch", target, upload_while_building=upload_while_building)
    image.add_files({"/data": tree})
    times["build"] = time.perf_counter() - start
    times["push"] = timed(image.save)
    return times, image


def ours_cli(tree: Path, work: Path, target: str) -> Times:
    cli = [sys.executable, "-m", "pants_oci.core", "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src/python")}
    # A spec's sources must be inside the directory `layer build` runs in (as in the Pants
    # sandbox): it runs next to the tree, writing into `work`.
    (work / "spec.json").write_text(
        json.dumps({"entries": [{"source": tree.name, "target": "/data"}]})
    )
    (work / "config.json").write_text("{}")
    meta = work / "layer.json"
    times: Times = {}

    def layer_build() -> None:
        spec, output = str(work / "spec.json"), str(work / "layer.tar.gz")
        result = run(
            [*cli, "layer", "build", "--spec", spec, "--output", output],
            cwd=tree.parent,
            env=env,
        )
        meta.write_text(result.stdout)

    times["layer build"] = timed(layer_build)
    assemble = [
        *cli,
        *("image", "assemble", "--base", "scratch", "--config", "config.json"),
        *("--layer", "layer.tar.gz=layer.json", "--output", "layout"),
    ]
    times["image assemble"] = timed(lambda: run(assemble, cwd=work, env=env))
    times["push"] = timed(lambda: cli_push(work, target))
    return times


def cli_push(work: Path, target: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src/python")}
    argv = [sys.executable, "-m", "pants_oci.core", "-q", "push", "layout", "--to", target]
    run(argv, cwd=work, env=env)


def peer(tree: Path, layout: Path, target: str) -> Times:
    times: Times = {}

    def build() -> None:
        run(["umoci", "init", "--layout", str(layout)])
        run(["umoci", "new", "--image", f"{layout}:latest"])
        run(["umoci", "insert", "--image", f"{layout}:latest", str(tree), "/data"])

    times["umoci init+new+insert"] = timed(build)
    times["push"] = timed(lambda: skopeo_push(layout, target))
    return times


def skopeo_push(layout: Path, target: str) -> None:
    run(
        [
            *("skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false"),
            *(f"oci:{layout}:latest", f"docker://{target}"),
        ]
    )


def layer_sizes(layout: Path) -> list[int]:
    """Sizes of the layers of the layout's one image."""
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":", 1)[1]
    manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
    return [layer["size"] for layer in manifest["layers"]]


# --- Reporting ----------------------------------------------------------------------------------


PEER_TOOLS = (["umoci", "--version"], ["skopeo", "--version"], ["docker-registry", "--version"])


def isal() -> str:
    return f"python-isal {'yes' if HAVE_ISAL else 'no'}"


def best(samples: list[Times]) -> Times:
    """The fastest run (by total), with its steps, its total and the median total."""
    fastest = min(samples, key=lambda s: sum(s.values()))
    median = statistics.median(sum(s.values()) for s in samples)
    return {**fastest, "total": sum(fastest.values()), "median": median}


def fmt(times: Times) -> str:
    steps = ", ".join(f"{k} {v:.2f}" for k, v in times.items() if k not in ("total", "median"))
    return f"{times['total']:.2f} s ({steps})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--serial-api",
        action="store_true",
        help=f"also time the API with upload_while_building=False ({SERIAL_API!r})",
    )
    args = parser.parse_args()
    methods = (*METHODS, SERIAL_API) if args.serial_api else METHODS
    if os.geteuid() != 0:
        print("warning: umoci insert is meant to run as root here", file=sys.stderr)

    started = time.perf_counter()
    print(f"Machine: {machine([isal(), *map(tool_version, PEER_TOOLS)])}\n")
    with tempfile.TemporaryDirectory(prefix="build-push-bench-") as temp:
        tmp = Path(temp)
        registry = start_registry("anonymous", tmp / "registry")
        try:
            generated = tmp / "trees" / "generated"
            make_big_tree(generated, args.size_mb)
            python_lib = tmp / "trees" / "python3.11"
            shutil.copytree(PYTHON_LIB, python_lib, symlinks=True)
            trees = {"generated": generated, "python3.11": python_lib}
            results: dict[str, TreeResult] = {}
            for name, tree in trees.items():
                results[name] = measure(
                    name, tree, tmp / "work", registry.host, args.runs, methods=methods
                )
        finally:
            registry.stop()
    print(f"\nTotal benchmark time {time.perf_counter() - started:.0f} s\n")
    report(results)


def measure(
    name: str,
    tree: Path,
    work_root: Path,
    host: str,
    runs: int,
    *,
    methods: tuple[str, ...] = METHODS,
) -> TreeResult:
    """Build and push `tree` `runs` times each way, to fresh repositories of `host`."""
    nbytes = tree_bytes(tree)
    files = sum(1 for p in tree.rglob("*") if p.is_file())
    warm(tree)
    print(f"== {name}: {nbytes / 1e6:,.0f} MB in {files:,} files")
    samples: dict[str, list[Times]] = {method: [] for method in methods}
    repush: dict[str, list[float]] = {method: [] for method in methods}
    sizes: dict[str, int] = {}
    for index in range(runs):
        # Rotate the order so no method always runs first (or last) on a warm machine.
        turn = index % len(methods)
        for method in methods[turn:] + methods[:turn]:
            label = f"{name}-{method}-{index}"
            work = work_root / label
            work.mkdir(parents=True)
            target = f"{host}/bench/{label}:latest"
            mark(tree, label)
            if method in ("api", SERIAL_API):
                times, image = ours_api(tree, target, upload_while_building=method == "api")
                with image:
                    repush[method].append(timed(image.save))
                    sizes[method] = image.layers[-1].size
            elif method == "cli":
                times = ours_cli(tree, work, target)
                repush["cli"].append(timed(lambda work=work, t=target: cli_push(work, t)))
                sizes["cli"] = layer_sizes(work / "layout")[-1]
            else:
                layout = work / "layout"
                times = peer(tree, layout, target)
                repush["peer"].append(timed(lambda lay=layout, t=target: skopeo_push(lay, t)))
                sizes["peer"] = layer_sizes(layout)[-1]
            samples[method].append(times)
            load = os.getloadavg()[0]
            print(
                f"  run {index} {method:<4} {sum(times.values()):6.2f} s  {times}  load {load:.2f}"
            )
            shutil.rmtree(work)
    (tree / MARKER).unlink()
    return TreeResult(
        bytes=nbytes,
        files=files,
        best={method: best(samples[method]) for method in methods},
        repush={method: min(repush[method]) for method in methods},
        sizes=sizes,
    )


def report(results: dict[str, TreeResult]) -> None:
    print(
        "| tree | input | ours, API | ours, CLI (3 processes) | umoci + skopeo "
        "| API / peer | CLI / peer |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        api, cli, peer_ = r.best["api"], r.best["cli"], r.best["peer"]
        print(
            f"| {name} | {r.bytes / 1e6:,.0f} MB, {r.files:,} files "
            f"| {api['total']:.2f} s ({api['median']:.2f}) | {cli['total']:.2f} s "
            f"({cli['median']:.2f}) | {peer_['total']:.2f} s ({peer_['median']:.2f}) "
            f"| {api['total'] / peer_['total']:.2f}x ({api['median'] / peer_['median']:.2f}) "
            f"| {cli['total'] / peer_['total']:.2f}x ({cli['median'] / peer_['median']:.2f}) |"
        )
    print("\nBest of the runs (median in brackets).\n\nSteps of the best run, seconds:")
    for name, r in results.items():
        for method in r.best:
            print(f"  {name:<10} {method:<4} {fmt(r.best[method])}")
        if SERIAL_API in r.best:
            serial, peer_ = r.best[SERIAL_API], r.best["peer"]
            print(
                f"  {name:<10} {SERIAL_API} / peer: {serial['total'] / peer_['total']:.2f}x "
                f"({serial['median'] / peer_['median']:.2f})"
            )
    print("\nNo-op re-push (same image, same repository), best, seconds; layer sizes, bytes:")
    for name, r in results.items():
        repushes = ", ".join(f"{m} {r.repush[m]:.3f}" for m in r.repush)
        print(f"  {name:<10} {repushes}; layer sizes {r.sizes}")


if __name__ == "__main__":
    main()
