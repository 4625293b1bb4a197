"""Ten Python services over one shared resolve: what a registry stores, and what a one-pin bump
uploads, with a layer per distribution (`python_layout="venv"`) against one requirements layer
per image (`python_layout="pex"`). Issue 18, point 5.

    .pants-bootstrap/venv-*/bin/python bench/python_layers_bench.py [--quick]

Offline and deterministic (seeded): tests/harness/wheels.py writes a find-links directory of
30 pure-Python distributions, 3 large (4-12 MB of incompressible payload each; 1-3 MB with
`--quick`) and 27 small (50-500 KB; 20-120 KB with `--quick`). Ten services each depend on a
seeded 60-90 % of them and have a small first-party app of their own. Each service is built
twice in ONE Pants repo (real `./pants` under pantsd): an `oci_image` with
`python_layout="venv"` (repository `venv/svcN`) and one with `python_layout="pex"`
(`pex/svcN`), both on the same Python base (tests/harness/python_base.py: the host's CPython
on busybox), pinned by digest in a loopback docker-registry, and `pants publish` puts all 20
images in that registry. Then:

* unique bytes stored: per layout, the distinct blobs (layers and configs) of its ten images'
  manifests as the registry serves them, summed by size; the base's layer, which both share,
  is reported apart. The registry's storage directory is checked to hold exactly the blobs
  accounted for (base, both layouts' layers and configs, manifests);
* a bump: one pin that most services use moves to a new version (its wheel is already in the
  find-links directory), and `pants publish` of the ten venv images, then of the ten pex
  images, is read from the registry's access log: every completed upload (`PUT
  .../blobs/uploads/...?digest=`, 201) by repository and blob, the blobs classed as layers or
  configs by the images' new manifests, and the bumped distribution's new layer found by the
  `.dist-info` directory it holds.

Goals (issue 18): venv's unique bytes <= 0.5x the pex layout's; after the bump, the only layer
the venv images upload is that distribution's.

The publisher mounts a blob that another repository of the registry received before (the
machine's push ledger) rather than uploading it again, so a layer shared by N images'
repositories is sent once and mounted N - 1 times: the distinct blobs uploaded, every upload
and the mounts are reported.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import io
import os
import platform
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src/python"), str(REPO), str(REPO / "bench")]

from common import stats_counters  # noqa: E402

from tests.harness.busybox import PushedImage, push_image_to  # noqa: E402
from tests.harness.distribution import OCI_INDEX, OCI_MANIFEST  # noqa: E402
from tests.harness.python_base import build_python_base_image  # noqa: E402
from tests.harness.registry import Registry, access_log, start_registry  # noqa: E402
from tests.harness.wheels import import_name, normalized_name, pure_wheel  # noqa: E402
from tests.pants_runs import make_pants_repo, stop_pantsd_in  # noqa: E402

SEED = 18
SERVICES = 10
LARGE = 3
SMALL = 27
SHARE = (0.6, 0.9)  # of the resolve's distributions, per service
VERSION = "1.0.0"
BUMPED_VERSION = "1.0.1"
LAYOUTS = ("venv", "pex")
TAG = "1"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST))


@dataclass(frozen=True)
class Payloads:
    """Payload bytes of the distributions, drawn uniformly from these ranges."""

    large: tuple[int, int]
    small: tuple[int, int]


FULL = Payloads(large=(4_000_000, 12_000_000), small=(50_000, 500_000))
QUICK = Payloads(large=(1_000_000, 3_000_000), small=(20_000, 120_000))


# --- The fixture --------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    links: Path  # the find-links directory, the bumped version's wheel already in it
    payloads: Mapping[str, int]  # distribution -> payload bytes
    services: Mapping[str, tuple[str, ...]]  # service -> its distributions
    bumped: str  # the distribution whose pin moves to BUMPED_VERSION

    def users(self, distribution: str) -> list[str]:
        return [s for s, dists in self.services.items() if distribution in dists]


def make_fixture(directory: Path, payloads: Payloads, seed: int = SEED) -> Fixture:
    """The seeded resolve, its wheels, each service's share of it, and the pin to bump: the
    small distribution most services use (ties: the first by name)."""
    rng = random.Random(seed)
    sizes = {f"ocibench-large{i}": rng.randint(*payloads.large) for i in range(LARGE)}
    sizes |= {f"ocibench-lib{i:02d}": rng.randint(*payloads.small) for i in range(SMALL)}
    names = sorted(sizes)
    services = {}
    for i in range(SERVICES):
        count = round(rng.uniform(*SHARE) * len(names))
        services[f"svc{i}"] = tuple(sorted(rng.sample(names, count)))
    users = collections.Counter(d for dists in services.values() for d in dists)
    small = [n for n in names if n.startswith("ocibench-lib")]
    bumped = min(small, key=lambda n: (-users[n], n))
    for name in names:
        pure_wheel(directory, name, VERSION, payload_size=sizes[name])
    pure_wheel(directory, bumped, BUMPED_VERSION, payload_size=sizes[bumped])
    return Fixture(directory, sizes, services, bumped)


def requirements_build(pins: Mapping[str, str]) -> str:
    return "".join(
        f'python_requirement(name="{name}", requirements=["{name}=={version}"])\n'
        for name, version in sorted(pins.items())
    )


def service_files(name: str, dists: Sequence[str], base: str, host: str) -> dict[str, str]:
    """A service's app (main.py, handlers.py), its pex_binary, and its image in both layouts."""
    modules = [import_name(d) for d in dists]
    imports = "".join(f"import {m}\n" for m in modules)
    main = (
        f'"""{name}: a small app over {len(dists)} distributions."""\n\n'
        f"import json\n\n{imports}\nfrom svc.{name} import handlers\n\n"
        f"LOADED = {{m.NAME: m.VERSION for m in ({', '.join(modules)},)}}\n\n"
        'if __name__ == "__main__":\n'
        "    print(json.dumps({'service': handlers.SERVICE, 'loaded': LOADED}))\n"
    )
    routes = "".join(
        f"\ndef handle_{i}(request):\n    return {{'route': {i}, 'service': SERVICE}}\n"
        for i in range(40)
    )
    handlers = f'"""Handlers of {name}."""\n\nSERVICE = "{name}"\n{routes}'
    deps = ", ".join(f'"3rdparty:{d}"' for d in dists)
    images = "".join(
        f"""
oci_image(
    name="{layout}",
    base="{base}",
    dependencies=[":bin"],
    registries=["{host}"],
    repository="{layout}/{name}",
    image_tags=["{TAG}"],
    python_layout="{layout}",
)
"""
        for layout in LAYOUTS
    )
    build = (
        f'python_sources(name="src", dependencies=[{deps}])\n'
        'pex_binary(name="bin", entry_point="main.py", dependencies=[":src"])\n'
        f"{images}"
    )
    return {
        f"svc/{name}/BUILD": build,
        f"svc/{name}/__init__.py": "",
        f"svc/{name}/main.py": main,
        f"svc/{name}/handlers.py": handlers,
    }


# --- Pants and the registry ---------------------------------------------------------------


@dataclass(frozen=True)
class PantsRun:
    seconds: float
    processes: int  # processes Pants ran (not found in its cache)
    cached: int  # processes found in its local cache

    def __str__(self) -> str:
        return f"{self.seconds:.1f} s, {self.processes} processes run, {self.cached} cache hits"


class PantsRepo:
    """The repo, driven by this checkout's `./pants` under pantsd, with caches of its own
    (`caches`: shared with other benchmarks run one after the other)."""

    def __init__(self, root: Path, files: Mapping[str, str], links: Path, caches: Path) -> None:
        extra = f'[python-repos]\nfind_links = ["file://{links}"]\n'
        self.root = make_pants_repo(root, files, extra_toml=extra)
        self.caches = caches
        self.docker_config = root.parent / "docker-config"  # no host credentials in the way
        self.docker_config.mkdir(exist_ok=True)

    def pants(self, *args: str) -> PantsRun:
        """Run `./pants ARGS`: its time and process counts. Exits with Pants' output if it
        fails."""
        argv = [
            str(REPO / "pants"),
            "--pantsd",
            f"--local-store-dir={self.caches / 'lmdb'}",
            f"--named-caches-dir={self.caches / 'named'}",
            "--stats-log",
            *args,
        ]
        env = {**os.environ, "NO_COLOR": "1", "DOCKER_CONFIG": str(self.docker_config)}
        start = time.perf_counter()
        result = subprocess.run(
            argv, cwd=self.root, env=env, capture_output=True, text=True, timeout=1800, check=False
        )
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(
                f"./pants {' '.join(args[:3])} ... exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-8000:]}"
            )
        counters = stats_counters(result.stderr)
        return PantsRun(
            seconds,
            counters.get("local_execution_requests", 0),
            counters.get("local_cache_requests_cached", 0),
        )

    def stop(self) -> None:
        stop_pantsd_in(self.root)


@dataclass(frozen=True)
class Manifest:
    digest: str
    size: int  # of the manifest itself
    config: tuple[str, int]  # digest, size
    layers: tuple[tuple[str, int], ...]

    @property
    def blobs(self) -> dict[str, int]:
        return dict([self.config, *self.layers])


def read_manifest(registry: Registry, repository: str, reference: str = TAG) -> Manifest:
    """The image manifest `repository:reference` as the registry serves it."""
    with registry.httpx_client() as client:
        response = client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT})
        response.raise_for_status()
    document: dict[str, Any] = response.json()
    if "manifests" in document:
        raise SystemExit(f"{repository}:{reference} is an index; the benchmark builds images")
    digest = response.headers["Docker-Content-Digest"]
    config = document["config"]
    return Manifest(
        digest,
        len(response.content),
        (config["digest"], config["size"]),
        tuple((layer["digest"], layer["size"]) for layer in document["layers"]),
    )


def read_blob(registry: Registry, repository: str, digest: str) -> bytes:
    with registry.httpx_client() as client:
        response = client.get(f"/v2/{repository}/blobs/{digest}", follow_redirects=True)
        response.raise_for_status()
    return response.content


def layer_names(layer: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        return tar.getnames()


def stored_blobs(registry: Registry) -> dict[str, int]:
    """Every blob in the registry's filesystem storage, by digest: what it stores."""
    root = registry.storage_dir / "docker/registry/v2/blobs/sha256"
    return {f"sha256:{data.parent.name}": data.stat().st_size for data in root.glob("*/*/data")}


@dataclass(frozen=True)
class Upload:
    repository: str
    digest: str


def uploads_since(registry: Registry, mark: int) -> tuple[list[Upload], int]:
    """The blob uploads the registry completed since access-log entry `mark`, and the mounts.

    No wait is needed: the registry writes a request's access-log line (to its log file)
    before the response leaves its buffer, so every request Pants saw answered is logged."""
    uploads, mounts = [], 0
    for entry in access_log(registry)[mark:]:
        if entry.method == "PUT" and "/blobs/uploads/" in entry.path and entry.status == 201:
            repository = entry.path.removeprefix("/v2/").split("/blobs/uploads/", 1)[0]
            uploads.append(Upload(repository, entry.query["digest"][0]))
        elif entry.method == "POST" and "mount" in entry.query and entry.status == 201:
            mounts += 1
    return uploads, mounts


# --- Measuring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Storage:
    """One layout's ten images in the registry."""

    unique: int  # bytes of the distinct layers and configs, the base's layer left out
    blobs: int  # how many distinct blobs
    per_image: int  # bytes, were each image's layers and config stored apart
    requirements: int  # distinct bytes of the layers below the code (venv: venv + dists)


@dataclass(frozen=True)
class BumpUploads:
    """What `publish` uploaded after the bump, for one layout's ten images."""

    layer_digests: frozenset[str]  # distinct layers uploaded
    layer_bytes: int  # their bytes, once each
    layer_uploads: int  # every upload of a layer (one per repository it went to)
    layer_upload_bytes: int
    configs: int  # config uploads
    config_bytes: int
    others: int  # uploads of blobs neither a layer nor a config of the new images
    mounts: int
    repositories: int  # repositories that got an upload

    @property
    def upload_bytes(self) -> int:
        return self.layer_upload_bytes + self.config_bytes


@dataclass
class Result:
    payloads: Payloads
    distributions: int = 0
    resolve_bytes: int = 0  # payload bytes of the whole resolve
    services: int = 0
    base_layer: int = 0  # bytes of the base's layer, shared by every image
    storage: dict[str, Storage] = field(default_factory=dict)
    storage_checked: bool = False  # the registry stores exactly the blobs accounted for
    first_publish_uploads: dict[str, int] = field(default_factory=dict)  # layout -> bytes
    bumped: str = ""
    bumped_users: int = 0  # services that have the bumped distribution
    bumped_layer: tuple[str, int] = ("", 0)  # its new layer in the venv images
    bumps: dict[str, BumpUploads] = field(default_factory=dict)
    runs: dict[str, PantsRun] = field(default_factory=dict)  # step -> its Pants run

    @property
    def venv_only_bumped(self) -> bool:
        """The venv images' bump uploaded that layer (once: the other repositories mount
        it), their configs, and nothing else."""
        venv = self.bumps["venv"]
        return (
            venv.layer_digests == {self.bumped_layer[0]}
            and venv.layer_uploads == 1
            and venv.configs == self.bumped_users
            and venv.others == 0
        )


def storage_of(manifests: Sequence[Manifest], base_layers: set[str]) -> Storage:
    distinct: dict[str, int] = {}
    below_code: dict[str, int] = {}
    per_image = 0
    for manifest in manifests:
        blobs = {d: s for d, s in manifest.blobs.items() if d not in base_layers}
        distinct |= blobs
        per_image += sum(blobs.values())
        # The code layer is the last one; the base's layers are first.
        below_code |= {d: s for d, s in manifest.layers[:-1] if d not in base_layers}
    return Storage(sum(distinct.values()), len(distinct), per_image, sum(below_code.values()))


def bump_uploads(
    uploads: Sequence[Upload], mounts: int, manifests: Sequence[Manifest]
) -> BumpUploads:
    layers = {d: s for m in manifests for d, s in m.layers}
    configs = dict(m.config for m in manifests)
    layer_uploads = [u for u in uploads if u.digest in layers]
    config_uploads = [u for u in uploads if u.digest in configs]
    distinct = frozenset(u.digest for u in layer_uploads)
    return BumpUploads(
        layer_digests=distinct,
        layer_bytes=sum(layers[d] for d in distinct),
        layer_uploads=len(layer_uploads),
        layer_upload_bytes=sum(layers[u.digest] for u in layer_uploads),
        configs=len(config_uploads),
        config_bytes=sum(configs[u.digest] for u in config_uploads),
        others=len(uploads) - len(layer_uploads) - len(config_uploads),
        mounts=mounts,
        repositories=len({u.repository for u in uploads}),
    )


def bumped_layer(
    registry: Registry, fixture: Fixture, before: Sequence[Manifest], after: Sequence[Manifest]
) -> tuple[str, int]:
    """The venv images' new layer holding the bumped distribution's new `.dist-info`."""
    old = {d for m in before for d, _ in m.layers}
    new = {d: s for m in after for d, s in m.layers if d not in old}
    dist_info = f"{normalized_name(fixture.bumped)}-{BUMPED_VERSION}.dist-info"
    repository = f"venv/{fixture.users(fixture.bumped)[0]}"
    for digest, size in sorted(new.items()):
        names = layer_names(read_blob(registry, repository, digest))
        if any(part == dist_info for name in names for part in name.split("/")):
            return digest, size
    raise SystemExit(f"no new layer of the venv images holds {dist_info}")


def targets(fixture: Fixture, layout: str) -> list[str]:
    return [f"svc/{name}:{layout}" for name in fixture.services]


def manifests_of(registry: Registry, fixture: Fixture, layout: str) -> list[Manifest]:
    return [read_manifest(registry, f"{layout}/{name}") for name in fixture.services]


def first_publish(
    result: Result, registry: Registry, repo: PantsRepo, fixture: Fixture, base: PushedImage
) -> dict[str, list[Manifest]]:
    """Package and publish both layouts; what the registry stores of each."""
    every = [t for layout in LAYOUTS for t in targets(fixture, layout)]
    print("  package 20 images (10 services x 2 layouts)", flush=True)
    result.runs["package"] = repo.pants("package", *every)
    print(f"    {result.runs['package']}", flush=True)
    mark = len(access_log(registry))
    result.runs["publish"] = repo.pants("publish", *every)
    print(f"  publish 20 images: {result.runs['publish']}", flush=True)
    uploads, _ = uploads_since(registry, mark)
    manifests = {layout: manifests_of(registry, fixture, layout) for layout in LAYOUTS}
    base_layers = {base.layer_digest}
    for layout, ms in manifests.items():
        result.storage[layout] = storage_of(ms, base_layers)
        sizes = {d: s for m in ms for d, s in m.blobs.items()}
        mine = [u for u in uploads if u.repository.startswith(f"{layout}/")]
        result.first_publish_uploads[layout] = sum(sizes.get(u.digest, 0) for u in mine)
    accounted = {
        base.layer_digest,
        base.config_digest,
        base.manifest_digest,
        *(d for ms in manifests.values() for m in ms for d in (m.digest, *m.blobs)),
    }
    result.storage_checked = set(stored_blobs(registry)) == accounted
    return manifests


def bump_and_publish(
    result: Result,
    registry: Registry,
    repo: PantsRepo,
    fixture: Fixture,
    before: Mapping[str, list[Manifest]],
) -> None:
    """Move the bumped pin, then publish the venv images, then the pex images."""
    pins = dict.fromkeys(fixture.payloads, VERSION)
    (repo.root / "3rdparty/BUILD").write_text(
        requirements_build({**pins, fixture.bumped: BUMPED_VERSION})
    )
    for layout in LAYOUTS:
        mark = len(access_log(registry))
        step = f"bump: publish {layout}"
        result.runs[step] = repo.pants("publish", *targets(fixture, layout))
        uploads, mounts = uploads_since(registry, mark)
        after = manifests_of(registry, fixture, layout)
        result.bumps[layout] = bump_uploads(uploads, mounts, after)
        print(f"  {step} images: {result.runs[step]}", flush=True)
        if layout == "venv":
            result.bumped_layer = bumped_layer(registry, fixture, before[layout], after)


def measure(tmp: Path, payloads: Payloads, caches: Path | None = None) -> Result:
    """The whole benchmark in `tmp` (its own registry and repo; `caches` for Pants)."""
    result = Result(payloads)
    fixture = make_fixture(tmp / "wheels", payloads)
    result.distributions = len(fixture.payloads)
    result.resolve_bytes = sum(fixture.payloads.values())
    result.services = len(fixture.services)
    result.bumped = fixture.bumped
    result.bumped_users = len(fixture.users(fixture.bumped))
    print(
        f"  resolve: {result.distributions} distributions, {result.resolve_bytes / 1e6:.1f} MB;"
        f" services use {', '.join(str(len(d)) for d in fixture.services.values())} of them",
        flush=True,
    )
    registry = start_registry("anonymous", tmp / "registry")
    repo: PantsRepo | None = None
    try:
        base = push_image_to(build_python_base_image(), registry, "base/python", "3.11")
        result.base_layer = len(base.image.layer)
        files = {"3rdparty/BUILD": requirements_build(dict.fromkeys(fixture.payloads, VERSION))}
        for name, dists in fixture.services.items():
            files |= service_files(name, dists, base.ref, registry.host)
        repo = PantsRepo(tmp / "repo", files, fixture.links, caches or tmp / "caches")
        before = first_publish(result, registry, repo, fixture, base)
        bump_and_publish(result, registry, repo, fixture, before)
    finally:
        if repo is not None:
            repo.stop()
        registry.stop()
    return result


# --- Reporting ----------------------------------------------------------------------------


def megabytes(value: int) -> str:
    return f"{value:,} B" if value < 1_000_000 else f"{value / 1e6:,.1f} MB"


def report(result: Result) -> str:
    venv, pex = result.storage["venv"], result.storage["pex"]
    bv, bp = result.bumps["venv"], result.bumps["pex"]
    layer = result.bumped_layer[1]
    lines = [
        f"resolve: {result.distributions} distributions, {megabytes(result.resolve_bytes)} of "
        f"payload; {result.services} services; base layer {megabytes(result.base_layer)} "
        "(shared, left out below)",
        "",
        "unique bytes stored (layers + configs), 10 images per layout:",
        f"  venv  {megabytes(venv.unique):>10} in {venv.blobs} blobs "
        f"(requirements part {megabytes(venv.requirements)}; "
        f"{megabytes(venv.per_image)} were each image stored apart)",
        f"  pex   {megabytes(pex.unique):>10} in {pex.blobs} blobs "
        f"(requirements part {megabytes(pex.requirements)}; "
        f"{megabytes(pex.per_image)} were each image stored apart)",
        f"  venv / pex = {venv.unique / pex.unique:.3f}x (goal <= 0.5x: "
        f"{'met' if venv.unique / pex.unique <= 0.5 else 'NOT met'})",
        "  the registry's storage holds exactly the blobs accounted for: "
        f"{'yes' if result.storage_checked else 'NO'}",
        f"  first publish uploaded: venv {megabytes(result.first_publish_uploads['venv'])}, "
        f"pex {megabytes(result.first_publish_uploads['pex'])}",
        "",
        f"bump {result.bumped} {VERSION} -> {BUMPED_VERSION} "
        f"(used by {result.bumped_users} of {result.services} services); "
        f"its new layer: {megabytes(layer)}",
    ]
    for layout, b in (("venv", bv), ("pex", bp)):
        lines.append(
            f"  {layout:4}: {len(b.layer_digests)} distinct layer(s), {megabytes(b.layer_bytes)};"
            f" {b.layer_uploads} layer upload(s), {megabytes(b.layer_upload_bytes)}; "
            f"{b.configs} config(s), {megabytes(b.config_bytes)}; other blobs {b.others}; "
            f"mounts {b.mounts}; {b.repositories} repositories"
        )
    lines += [
        f"  venv distinct layer bytes / that layer = {bv.layer_bytes / layer:.2f}x; "
        f"only that layer and {result.bumped_users} configs: "
        f"{'yes' if result.venv_only_bumped else 'NO'}",
        f"  all upload bytes, venv / pex = {bv.upload_bytes / bp.upload_bytes:.4f}x "
        f"({megabytes(bv.upload_bytes)} vs {megabytes(bp.upload_bytes)})",
        "",
        "Pants (under pantsd):",
        *(f"  {step}: {run}" for step, run in result.runs.items()),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--quick", action="store_true", help="smaller payloads (1-3 MB large)")
    args = parser.parse_args()
    payloads = QUICK if args.quick else FULL
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="python-layers-bench-") as temp:
        result = measure(Path(temp), payloads)
    print()
    print(report(result))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
