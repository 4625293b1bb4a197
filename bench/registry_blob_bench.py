"""Push and pull one large random blob through a local registry, three ways, and compare.

    .pants-bootstrap/venv-*/bin/python bench/registry_blob_bench.py [--size-mib 256] [--runs 3]

Starts a docker-registry (CNCF distribution) in anonymous mode on loopback with the test
harness, then measures, for fresh random blobs of the same size:

* bare httpx: sha256 of the bytes, POST, one PUT ?digest= of the bytes (the floor to beat);
* RegistryClient.upload_blob from bytes (monolithic), from a file with its digest known
  (monolithic, streamed from disk) and from a file without (one PATCH hashed on the fly);
* skopeo copy of an OCI layout holding the blob as its only layer, to docker://;
* pulls: RegistryClient.get_blob to a file (verified while streaming), ``curl -o`` to a
  file (not verified), iter_blob without a file, a bare httpx GET into memory, and skopeo
  copy docker:// -> oci:.

Targets: our push >= 0.9x the bare upload; pull + verify >= 1 GB/s, and >= 0.9x curl's
throughput. The best of --runs is reported for each (the machine's noise is not what we
measure).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src/python"), str(REPO)]

import httpx  # noqa: E402
from common import run, timed  # noqa: E402

from pants_oci.core.auth import RegistryAuth  # noqa: E402
from pants_oci.core.registry import RegistryClient  # noqa: E402
from tests.harness.registry import Registry, start_registry  # noqa: E402

MIB = 1024 * 1024
PULL_OURS = "pull ours: get_blob to file"
PULL_CURL = "pull curl -o file"
PUSH_BARE = "push bare httpx (bytes)"
PUSH_SKOPEO = "push skopeo copy oci: -> docker://"
PULL_SKOPEO = "pull skopeo copy docker:// -> oci:"

Record = Callable[[str, float], None]  # a measurement's name and seconds


def random_file(path: Path, size: int) -> str:
    """Write `size` random bytes; return their sha256 digest."""
    hasher = hashlib.sha256()
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(8 * MIB, remaining))
            hasher.update(block)
            handle.write(block)
            remaining -= len(block)
    return f"sha256:{hasher.hexdigest()}"


def drain(chunks: Iterable[bytes]) -> int:
    return sum(len(chunk) for chunk in chunks)


def bare_upload(base_url: str, repository: str, data: bytes) -> None:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=base_url, timeout=300) as client:
        started = client.post(f"/v2/{repository}/blobs/uploads/")
        location = httpx.URL(started.headers["Location"]).copy_merge_params({"digest": digest})
        done = client.put(location, content=data)
        assert done.status_code == 201, done.text


def bare_download(base_url: str, repository: str, digest: str) -> None:
    with httpx.Client(base_url=base_url, timeout=300) as client:
        response = client.get(f"/v2/{repository}/blobs/{digest}")
        assert response.status_code == 200 and len(response.content) > 0


def curl_download(base_url: str, repository: str, digest: str, out: Path) -> None:
    run(["curl", "-sSf", "-o", str(out), f"{base_url}/v2/{repository}/blobs/{digest}"])


def oci_layout_with_layer(layout: Path, layer: Path, layer_digest: str) -> None:
    """An OCI image layout whose one image has `layer` as its only layer (hard-linked in)."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict[str, object]:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    os.link(layer, blobs / layer_digest.split(":", 1)[1])
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer.stat().st_size,
            }
        ],
    }
    entry = put(json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **entry,
                "annotations": {"org.opencontainers.image.ref.name": "latest"},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(index))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def skopeo(*args: str) -> None:
    subprocess.run(
        ["skopeo", "--insecure-policy", *args], check=True, capture_output=True, timeout=600
    )


def measure_pushes(
    client: RegistryClient, registry: Registry, work: Path, size: int, *, index: int, record: Record
) -> tuple[str, str]:
    """Push fresh blobs every way; returns the digest our streamed push stored (in
    `client`'s repository) and the docker:// reference skopeo pushed."""
    # A fresh blob for each method, so none finds its blob already stored.
    blobs = {}
    for name in ("bare", "bytes", "file-digest", "file-stream", "skopeo"):
        path = work / f"{name}-{index}.bin"
        blobs[name] = (path, random_file(path, size))

    data = blobs["bare"][0].read_bytes()
    record(PUSH_BARE, timed(bare_upload, registry.url, "bench/bare", data))
    data = blobs["bytes"][0].read_bytes()
    record("push ours: bytes", timed(client.upload_blob, data, check_exists=False))
    del data
    path, digest = blobs["file-digest"]
    record(
        "push ours: file, digest known",
        timed(client.upload_blob, path, digest=digest, check_exists=False),
    )
    path, digest = blobs["file-stream"]
    record("push ours: file, streamed+hashed", timed(client.upload_blob, path))
    path, digest = blobs["skopeo"]
    layout = work / f"layout-{index}"
    oci_layout_with_layer(layout, path, digest)
    target = f"docker://{registry.host}/bench/skopeo:{index}"
    record(
        PUSH_SKOPEO,
        timed(skopeo, "copy", "--dest-tls-verify=false", f"oci:{layout}:latest", target),
    )
    shutil.rmtree(layout)
    for path, _ in blobs.values():
        path.unlink()
    return blobs["file-stream"][1], target


def measure_pulls(
    client: RegistryClient,
    registry: Registry,
    work: Path,
    digest: str,
    *,
    record: Record,
    skopeo_target: str | None,
) -> None:
    """Pull blob `digest` of `client`'s repository every way; through skopeo too when
    given the reference it pushed (without it: only ours and curl's pull to a file)."""
    pulled = work / "pulled.bin"
    record(PULL_OURS, timed(client.get_blob, digest, pulled))
    pulled.unlink()
    record(PULL_CURL, timed(curl_download, registry.url, client.repository, digest, pulled))
    pulled.unlink()
    if skopeo_target is None:
        return
    record("pull ours: iter_blob (no file)", timed(lambda d: drain(client.iter_blob(d)), digest))
    record(
        "pull bare httpx (to memory)",
        timed(bare_download, registry.url, client.repository, digest),
    )
    out = work / "pulled-layout"
    record(
        PULL_SKOPEO,
        timed(skopeo, "copy", "--src-tls-verify=false", skopeo_target, f"oci:{out}:x"),
    )
    shutil.rmtree(out)


def measure(
    registry: Registry, work: Path, size: int, runs: int, *, pull_to_file_only: bool = False
) -> dict[str, list[float]]:
    """Seconds of every run, by measurement name, for blobs of `size` bytes written in
    `work`. `pull_to_file_only`: no push is timed, and of the pulls only ours and curl's to
    a file (bench/run_all.py's comparison)."""
    results: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        results.setdefault(name, []).append(seconds)
        print(f"  {name:<34} {seconds:7.3f}s  {size / seconds / 1e9:6.2f} GB/s", flush=True)

    with RegistryClient(registry.host, "bench/ours", auth=RegistryAuth(None)) as client:
        for index in range(runs):
            print(f"run {index + 1}/{runs}", flush=True)
            if pull_to_file_only:
                path = work / f"pull-{index}.bin"
                digest = random_file(path, size)
                client.upload_blob(path, digest=digest, check_exists=False)
                path.unlink()
                skopeo_target = None
            else:
                digest, skopeo_target = measure_pushes(
                    client, registry, work, size, index=index, record=record
                )
            measure_pulls(
                client, registry, work, digest, record=record, skopeo_target=skopeo_target
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    size = arguments.size_mib * MIB
    work = Path(tempfile.mkdtemp(prefix="registry-blob-bench-"))
    registry = start_registry("anonymous", work / "registry")
    try:
        results = measure(registry, work, size, arguments.runs)
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)

    best = {name: min(times) for name, times in results.items()}
    print(f"\nbest of {arguments.runs} runs, {arguments.size_mib} MiB blob:")
    for name, seconds in best.items():
        spread = statistics.median(results[name])
        print(f"  {name:<34} {size / seconds / 1e9:6.2f} GB/s  (median {size / spread / 1e9:.2f})")
    bare = best[PUSH_BARE]
    print("\npush ratios (bare time / our time; >= 0.9 is the target):")
    for name in (
        "push ours: bytes",
        "push ours: file, digest known",
        "push ours: file, streamed+hashed",
    ):
        print(f"  {name:<34} {bare / best[name]:.2f}x")
    print(f"  {'push skopeo':<34} {bare / best[PUSH_SKOPEO]:.2f}x")
    pull = size / best[PULL_OURS] / 1e9
    print(f"\npull + verify to a file: {pull:.2f} GB/s (target >= 1 GB/s)")
    vs_curl = best[PULL_CURL] / best[PULL_OURS]
    print(f"pull ours vs curl -o (throughput): {vs_curl:.2f}x (target >= 0.9x)")
    print(f"pull ours vs skopeo: {best[PULL_SKOPEO] / best[PULL_OURS]:.2f}x")


if __name__ == "__main__":
    main()
