"""Every benchmark next to its peer, in one run: one Markdown table of ratios against the goals.

    .pants-bootstrap/venv-*/bin/python bench/run_all.py [--quick]

The goals are issue 17's (the Python rows: issue 18's). Each row's numbers come from this
run, ours and the peer's measured one after the other on the same machine, with the same
inputs:

* the edit loop under pantsd (bench/package_bench.py's Sandbox): a one-file-edit
  `pants package` against a no-op one, in an examples-like repo (a big generated layer and a
  small app layer on scratch) and in a user's repo (the small app layer on a busybox base in
  a local registry, pinned by digest); there also `pants publish` after an edit;
* build + push of a generated tree from scratch (bench/build_push_bench.py): the Image API
  and the `pants-oci` CLI (3 processes) against `umoci insert` + `skopeo copy`, and a no-op
  re-push through the CLI against skopeo's;
* pull of a random blob to a file, verified (bench/registry_blob_bench.py), against
  `curl -o`;
* the cost per tar entry on 20,000 small files (bench/layer_bench.py), against GNU tar;
* the bytes of a large base's layer moved to package a `sparse-oci-layout` on it and to
  publish it to the base's registry, against the whole base a complete layout downloads;
* ten Python services over one resolve (bench/python_layers_bench.py, issue 18): the unique
  bytes a registry stores with a layer per distribution against one requirements layer per
  image, and what a one-pin bump uploads against that distribution's layer.

Default sizes follow the issue (1 GB tree, 256 MiB blob, 200 MB big layer, 1 GB base, best of
3 runs, Python distributions of 50-500 KB and 4-12 MB); `--quick` (100 MB tree, big layer and
base, 64 MiB blob, 1 run, distributions of 20-120 KB and 1-3 MB) finishes in a few minutes.
Progress goes to stderr; the machine and the table to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src/python"), str(REPO)]

import build_push_bench  # noqa: E402
import python_layers_bench  # noqa: E402
import registry_blob_bench  # noqa: E402
from common import machine, tool_version  # noqa: E402
from layer_bench import make_big_tree, make_small_tree, measure_per_entry  # noqa: E402
from package_bench import Sandbox, package_runs  # noqa: E402

from tests.harness.busybox import (  # noqa: E402
    PushedImage,
    build_busybox_image,
    push_image_to,
    push_large_base,
)
from tests.harness.registry import Registry, access_log, start_registry  # noqa: E402

TOOLS = (
    ["umoci", "--version"],
    ["skopeo", "--version"],
    ["docker-registry", "--version"],
    ["curl", "--version"],
    ["tar", "--version"],
)

# The user's repo: one small layer on a registry base pinned by digest (no lockfile needed).
USER_BUILD = """
files(name="app_files", sources=["app/*"])
oci_layer(name="app", dependencies=[":app_files"], destination="/srv")
oci_image(
    name="img",
    base="{base}",
    dependencies=[":app"],
    registries=["{host}"],
    repository="bench/img",{extra}
)
"""


@dataclass(frozen=True)
class Sizes:
    tree_mb: int  # build + push
    blob_mib: int  # pull
    big_layer_mb: int  # the examples-like repo's big layer
    small_files: int  # per tar entry
    base_mb: int  # the large base's data
    runs: int  # best of
    python: python_layers_bench.Payloads  # the Python distributions' sizes


FULL = Sizes(
    tree_mb=1024,
    blob_mib=256,
    big_layer_mb=200,
    small_files=20_000,
    base_mb=1024,
    runs=3,
    python=python_layers_bench.FULL,
)
QUICK = Sizes(
    tree_mb=100,
    blob_mib=64,
    big_layer_mb=100,
    small_files=20_000,
    base_mb=100,
    runs=1,
    python=python_layers_bench.QUICK,
)


@dataclass(frozen=True)
class Row:
    measure: str
    ours: str
    peer: str
    ratio: str
    goal: str
    met: str


def seconds(value: float) -> str:
    return f"{value:.2f} s"


def times(value: float) -> str:
    return f"{value:.2f}x"


def yes(met: bool) -> str:
    return "yes" if met else "no"


# --- The rows -----------------------------------------------------------------------------


def examples_edit_rows(tmp: Path, sizes: Sizes, caches: Path) -> list[Row]:
    big = tmp / "big-source"
    make_big_tree(big, sizes.big_layer_mb)
    box = Sandbox(tmp / "sandbox", big, pantsd=True, caches=caches)
    try:
        result = package_runs(box, sizes.runs)
    finally:
        box.stop()
    edit = min(run.seconds for run in result.changed)
    noop = min(run.seconds for run in result.noop)
    return [
        Row(
            f"edit one file, `pants package` (pantsd), examples-like repo: "
            f"{sizes.big_layer_mb} MB layer + app layer on scratch; peer: no-op package",
            seconds(edit),
            seconds(noop),
            times(edit / noop),
            "≤ 2.0 s and ≤ 1.3x no-op",
            yes(edit <= 2.0 and edit / noop <= 1.3),
        )
    ]


def user_build(registry: Registry) -> str:
    # The base goes into the sandbox's registry before the BUILD file can name its digest.
    base = push_image_to(build_busybox_image(), registry, "base/busybox")
    return USER_BUILD.format(base=base.ref, host=registry.host, extra="")


def user_edit_rows(tmp: Path, sizes: Sizes, caches: Path) -> list[Row]:
    box = Sandbox(tmp / "sandbox", None, pantsd=True, build=user_build, caches=caches)
    try:
        result = package_runs(box, sizes.runs)
        first, _ = box.pants("publish", ":img")  # the registry holds the image before the loop
        print(f"  first publish       {first.seconds:6.2f} s", flush=True)
        publishes = []
        for _ in range(sizes.runs):
            box.change_one_file()
            run, _ = box.pants("publish", ":img")
            publishes.append(run.seconds)
            print(f"  one-file publish    {run.seconds:6.2f} s", flush=True)
    finally:
        box.stop()
    edit = min(run.seconds for run in result.changed)
    noop = min(run.seconds for run in result.noop)
    publish = min(publishes)
    return [
        Row(
            "same, user's repo: app layer on a registry base pinned by digest; peer: no-op package",
            seconds(edit),
            seconds(noop),
            times(edit / noop),
            "≤ 2.0 s",
            yes(edit <= 2.0),
        ),
        Row(
            "`pants publish` after the edit, user's repo",
            seconds(publish),
            "",
            "",
            "≤ 3.0 s",
            yes(publish <= 3.0),
        ),
    ]


def build_push_rows(tmp: Path, sizes: Sizes) -> list[Row]:
    tree = tmp / "tree"
    make_big_tree(tree, sizes.tree_mb)
    registry = start_registry("anonymous", tmp / "registry")
    try:
        result = build_push_bench.measure("tree", tree, tmp / "work", registry.host, sizes.runs)
    finally:
        registry.stop()
    api, cli, peer = (result.best[m]["total"] for m in ("api", "cli", "peer"))
    cli_repush, peer_repush = result.repush["cli"], result.repush["peer"]
    size = f"{result.bytes / 1e6:,.0f} MB"
    return [
        Row(
            f"build + push a {size} tree from scratch: Image API vs `umoci insert` + `skopeo copy`",
            seconds(api),
            seconds(peer),
            times(api / peer),
            "≤ 0.5x",
            yes(api / peer <= 0.5),
        ),
        Row(
            f"same ({size}) through the `pants-oci` CLI: layer build, image assemble, push",
            seconds(cli),
            seconds(peer),
            times(cli / peer),
            "≤ 0.5x",
            yes(cli / peer <= 0.5),
        ),
        Row(
            "no-op re-push: CLI `push` vs `skopeo copy`",
            seconds(cli_repush),
            seconds(peer_repush),
            times(cli_repush / peer_repush),
            "≤ 2x",
            yes(cli_repush / peer_repush <= 2.0),
        ),
    ]


def pull_rows(tmp: Path, sizes: Sizes) -> list[Row]:
    size = sizes.blob_mib * registry_blob_bench.MIB
    registry = start_registry("anonymous", tmp / "registry")
    try:
        results = registry_blob_bench.measure(
            registry, tmp, size, sizes.runs, pull_to_file_only=True
        )
    finally:
        registry.stop()
    ours = size / min(results[registry_blob_bench.PULL_OURS]) / 1e9
    curl = size / min(results[registry_blob_bench.PULL_CURL]) / 1e9
    return [
        Row(
            f"pull a {sizes.blob_mib} MiB blob to a file, verified (`get_blob`), "
            "vs `curl -o` (throughput)",
            f"{ours:.2f} GB/s",
            f"{curl:.2f} GB/s",
            times(ours / curl),
            "≥ 0.9x",
            yes(ours / curl >= 0.9),
        )
    ]


def per_entry_rows(tmp: Path, sizes: Sizes) -> list[Row]:
    small, out = tmp / "small", tmp / "out"
    out.mkdir()
    make_small_tree(small, sizes.small_files)
    # Cheap (well under a second a run) and noisy: best of 5 even with --quick.
    result = measure_per_entry(small, out, max(5, sizes.runs))
    # Like for like: GNU tar -c writes an uncompressed tar, so ours is the uncompressed layer.
    ours, tar = result.micros(result.ours_none), result.micros(result.tar)
    return [
        Row(
            f"per tar entry ({result.entries:,} entries, {sizes.small_files:,} small files): "
            "uncompressed layer vs GNU `tar -c`",
            f"{ours:.1f} µs",
            f"{tar:.1f} µs",
            times(ours / tar),
            "≤ 1.2x",
            yes(ours / tar <= 1.2),
        )
    ]


LARGE_BASE = "base/large"


def megabytes(value: int) -> str:
    return f"{value:,} B" if value < 1_000_000 else f"{value / 1e6:,.1f} MB"


def base_bytes_rows(tmp: Path, sizes: Sizes, caches: Path) -> list[Row]:
    """Bytes of a large registry base's layer moved to package a sparse layout (the lockfile
    holding the base's facts) and to publish it to the base's registry; the peer is a whole
    layout's package, which downloads the base."""
    pushed: list[PushedImage] = []

    def build(registry: Registry) -> str:
        print(f"  pushing a {sizes.base_mb} MB base", flush=True)
        pushed.append(push_large_base(registry, LARGE_BASE, sizes.base_mb * 1_000_000))
        sparse = '\n    formats=["sparse-oci-layout"],'
        return USER_BUILD.format(base=pushed[0].tag_ref, host=registry.host, extra=sparse)

    box = Sandbox(tmp / "sandbox", None, pantsd=True, build=build, caches=caches)
    try:
        [base] = pushed
        layer_path = f"/v2/{LARGE_BASE}/blobs/{base.layer_digest}"
        layer_size = len(base.layer)
        # The facts are read from the base's layer once, into a blob cache of their own.
        box.pants("generate-oci-lockfile", named_caches=tmp / "lockfile-caches")
        mark = len(access_log(box.registry))
        box.pants("package", ":img")
        downloaded = sum(
            e.sent
            for e in access_log(box.registry)[mark:]
            if e.path.startswith(f"/v2/{LARGE_BASE}/")
        )
        mark = len(access_log(box.registry))
        box.pants("publish", ":img")
        published = access_log(box.registry)[mark:]
        uploaded = {
            digest
            for e in published
            if e.method == "PUT" and "/blobs/uploads/" in e.path
            for digest in e.query.get("digest", [])
        }
        base_uploaded = layer_size if base.layer_digest in uploaded else 0
        base_read = sum(e.sent for e in published if e.path == layer_path)
    finally:
        box.stop()
    print(f"  package: {downloaded} bytes of the base; publish: {base_uploaded + base_read}")
    return [
        Row(
            f"base bytes downloaded to package a sparse layout, {layer_size / 1e6:,.0f} MB base"
            " (lockfile with its facts); peer: a whole layout downloads the base's layer",
            megabytes(downloaded),
            megabytes(layer_size),
            f"{downloaded / layer_size:.5f}",
            "≤ 1 MB",
            yes(downloaded <= 1_000_000),
        ),
        Row(
            "base layer bytes moved to publish it to the base's registry (mounted)",
            megabytes(base_uploaded + base_read),
            megabytes(layer_size),
            f"{(base_uploaded + base_read) / layer_size:.5f}",
            "0: only the image's own layers",
            yes(base_uploaded + base_read == 0),
        ),
    ]


def python_layers_rows(tmp: Path, sizes: Sizes, caches: Path) -> list[Row]:
    """Ten services over one resolve, each image in both Python layouts in one registry."""
    result = python_layers_bench.measure(tmp, sizes.python, caches)
    print(python_layers_bench.report(result), flush=True)
    venv, pex = result.storage["venv"], result.storage["pex"]
    bump, pex_bump = result.bumps["venv"], result.bumps["pex"]
    layer = result.bumped_layer[1]
    users = f"{result.bumped_users} of {result.services}"
    return [
        Row(
            f"{result.services} services over one resolve ({result.distributions} "
            f"distributions, {megabytes(result.resolve_bytes)}): unique bytes stored (layers + "
            "configs, base left out), venv layers vs one requirements layer per image (pex)",
            megabytes(venv.unique),
            megabytes(pex.unique),
            times(venv.unique / pex.unique),
            "≤ 0.5x",
            yes(venv.unique / pex.unique <= 0.5)
            if result.storage_checked
            else "no: the registry stores blobs not accounted for",
        ),
        Row(
            f"bump one pin (used by {users} services), publish the venv images: layer bytes "
            f"uploaded vs that distribution's layer ({len(bump.layer_digests)} layer, "
            f"uploaded {bump.layer_uploads}x, {bump.mounts} mounts; {bump.configs} configs, "
            f"{megabytes(bump.config_bytes)}; {bump.others} other blobs)",
            megabytes(bump.layer_upload_bytes),
            megabytes(layer),
            times(bump.layer_upload_bytes / layer),
            "= 1.0x (only that layer)",
            yes(result.venv_only_bumped),
        ),
        Row(
            "same bump, all bytes uploaded (layers + configs, every repository): venv images vs "
            f"pex images ({len(pex_bump.layer_digests)} layers: each requirements layer, and "
            "the code layer with its PEX-INFO)",
            megabytes(bump.upload_bytes),
            megabytes(pex_bump.upload_bytes),
            f"{bump.upload_bytes / pex_bump.upload_bytes:.4f}x",
            "(context)",
            "",
        ),
    ]


# --- Running and reporting ----------------------------------------------------------------


Benchmark = Callable[[Path], list[Row]]  # its rows, measured in a directory of its own


def attempt(name: str, measure: Benchmark, directory: Path) -> list[Row]:
    """The rows of one benchmark, or one row saying it failed: the others still report."""
    print(f"\n=== {name}", flush=True)
    start = time.perf_counter()
    try:
        directory.mkdir()
        rows = measure(directory)
    except (Exception, SystemExit) as error:  # Sandbox.pants exits on a failed Pants run
        traceback.print_exc()
        reason = " ".join(str(error).split())[:120]
        return [Row(name, f"failed: {type(error).__name__}: {reason}", "", "", "", "no")]
    print(f"=== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    return rows


BENCHMARKS = (
    "edit-examples",
    "edit-user",
    "build-push",
    "pull",
    "per-entry",
    "base-bytes",
    "python-layers",
)


def measure_all(sizes: Sizes, only: Sequence[str] = BENCHMARKS) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="run-all-bench-") as temp:
        tmp = Path(temp)
        caches = tmp / "pants-caches"  # shared by the Pants repos: the tool PEX resolves once
        benchmarks: dict[str, Benchmark] = {
            "edit-examples": lambda d: examples_edit_rows(d, sizes, caches),
            "edit-user": lambda d: user_edit_rows(d, sizes, caches),
            "build-push": lambda d: build_push_rows(d, sizes),
            "pull": lambda d: pull_rows(d, sizes),
            "per-entry": lambda d: per_entry_rows(d, sizes),
            "base-bytes": lambda d: base_bytes_rows(d, sizes, caches),
            "python-layers": lambda d: python_layers_rows(d, sizes, caches),
        }
        rows: list[Row] = []
        for name in only:
            rows += attempt(name, benchmarks[name], tmp / name)
        return rows


def describe_machine() -> str:
    found = re.search(r'^pants_version = "(.+)"', (REPO / "pants.toml").read_text(), re.MULTILINE)
    pants = found.group(1) if found else "unknown"
    isal = build_push_bench.isal()
    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return machine([isal, f"Pants {pants}", *map(tool_version, TOOLS), load])


def table(rows: list[Row]) -> str:
    lines = [
        "| measure | ours | peer | ratio | goal | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r.measure} | {r.ours} | {r.peer} | {r.ratio} | {r.goal} | {r.met} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and 1 run")
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, help="run this benchmark only (repeatable)"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    # The machine is described before the run: the load average is the one it starts under.
    description = describe_machine()
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # the benchmarks' progress lines
        rows = measure_all(sizes, args.only or BENCHMARKS)
    print(f"Machine: {description}\n")
    print(
        f"{'--quick' if args.quick else 'Default sizes'}: best of {sizes.runs} run(s); "
        f"took {time.perf_counter() - start:.0f} s.\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
