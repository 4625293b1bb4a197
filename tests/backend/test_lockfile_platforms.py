"""Base tags pinned by the lockfile, and multi-platform images, with real `./pants` runs
against a loopback registry whose tags the test moves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.busybox import ImageBlobs, host_architecture, push_image_to
from tests.harness.distribution import (
    OCI_INDEX,
    OCI_MANIFEST,
    push_blob,
    push_manifest,
    sha256_digest,
)
from tests.harness.registry import Registry
from tests.harness.tools import runc_run, skopeo_copy_to_oci_layout, skopeo_inspect, umoci_unpack
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow

HOST = f"linux/{host_architecture()}"
OTHER_ARCH = "arm64" if host_architecture() != "arm64" else "amd64"
OTHER = f"linux/{OTHER_ARCH}"


def _compact(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def push_moved_index(
    image: ImageBlobs, registry: Registry, repository: str, tag: str
) -> tuple[str, dict[str, str]]:
    """Point `tag` at a new two-platform index: the image with `MOVED=1` in its env for the
    host, and a copy labelled with another architecture. Returns (index digest, platforms)."""
    manifests: dict[str, bytes] = {}
    configs: list[bytes] = []
    for architecture in (host_architecture(), OTHER_ARCH):
        config = json.loads(image.config)
        config["architecture"] = architecture
        config["config"]["Env"] = [*config["config"].get("Env", []), "MOVED=1"]
        config_bytes = _compact(config)
        manifest = json.loads(image.manifest)
        manifest["config"] = {**manifest["config"], "digest": sha256_digest(config_bytes)}
        manifest["config"]["size"] = len(config_bytes)
        configs.append(config_bytes)
        manifests[f"linux/{architecture}"] = _compact(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256_digest(raw),
                "size": len(raw),
                "platform": {"architecture": platform.split("/")[1], "os": "linux"},
            }
            for platform, raw in manifests.items()
        ],
    }
    with registry.httpx_client() as client:
        for blob in (image.layer, *configs):
            push_blob(client, repository, blob)
        for raw in manifests.values():
            push_manifest(client, repository, sha256_digest(raw), raw)
        index_digest = push_manifest(client, repository, tag, _compact(index), OCI_INDEX)
    return index_digest, {platform: sha256_digest(raw) for platform, raw in manifests.items()}


def _blob(layout: Path, digest: str) -> Any:
    return json.loads((layout / "blobs/sha256" / digest.split(":", 1)[1]).read_text())


def _config_env(layout: Path) -> list[str]:
    info = json.loads((layout / "image-info.json").read_text())
    return list(_blob(layout, info["config_digest"])["config"]["Env"])


def test_lockfile_pins_base_tags_and_builds_multi_platform_indexes(
    tmp_path: Path,
    busybox_image_blobs: ImageBlobs,
    registry_anonymous: Registry,
    unique_repo: str,
) -> None:
    registry = registry_anonymous
    repository = f"bases/{unique_repo}"
    push_image_to(busybox_image_blobs, registry, repository, "stable")
    base = f"{registry.host}/{repository}:stable"
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "app/BUILD": f"""
files(name="scripts", sources=["hello.sh"])
oci_image(name="app", base="{base}", dependencies=[":scripts"],
          entrypoint=["/bin/sh", "/app/hello.sh"], image_tags=["v1"])
oci_image(name="multi", base="{base}", dependencies=[":scripts"],
          entrypoint=["/bin/sh", "/app/hello.sh"], platforms=["{HOST}", "{OTHER}"],
          registries=["{registry.host}"], repository="{unique_repo}-multi", image_tags=["v1"])
""",
            "app/hello.sh": "echo hello from $(uname -s)\n",
        },
    )
    lockfile = repo / "oci.lock.json"
    key = base

    # No lockfile yet: a tag base is refused, with the command that fixes it.
    refused = run_pants("package", "app:app", cwd=repo, check=False)
    assert refused.returncode != 0
    assert "app:app" in refused.stderr and "pants generate-oci-lockfile" in refused.stderr

    run_pants("generate-oci-lockfile", cwd=repo)
    locked = json.loads(lockfile.read_text())["bases"]
    assert locked == {
        key: {
            "digest": busybox_image_blobs.manifest_digest,
            "media_type": OCI_MANIFEST,
            "platforms": {HOST: busybox_image_blobs.manifest_digest},
        }
    }
    run_pants("package", "app:app", cwd=repo)
    out = repo / "dist/app/app"
    info = json.loads((out / "image-info.json").read_text())
    assert info["base"]["manifest_digest"] == busybox_image_blobs.manifest_digest
    assert "MOVED=1" not in _config_env(out)
    up_to_date = run_pants("generate-oci-lockfile", "--check", cwd=repo)
    assert "up to date" in up_to_date.stdout

    # The tag moves upstream. Builds keep the locked digest (a changed source forces a new
    # assembly); --check reports the move and fails.
    index_digest, platforms = push_moved_index(busybox_image_blobs, registry, repository, "stable")
    (repo / "app/hello.sh").write_text("echo hello again from $(uname -s)\n")
    run_pants("package", "app:app", cwd=repo)
    assert "MOVED=1" not in _config_env(out)
    moved = run_pants("generate-oci-lockfile", "--check", cwd=repo, check=False)
    assert moved.returncode == 1
    assert f"newer upstream: {key}" in moved.stdout and index_digest in moved.stdout
    assert "pants generate-oci-lockfile" in moved.stderr

    # Regenerating (here through Pants' own `generate-lockfiles`, as for every other resolve)
    # pins the index and each platform's manifest; builds follow the lockfile.
    regenerated = run_pants("generate-lockfiles", "--resolve=oci-bases", cwd=repo)
    assert "Wrote lockfile for the resolve `oci-bases` to oci.lock.json" in regenerated.stderr
    assert json.loads(lockfile.read_text())["bases"][key] == {
        "digest": index_digest,
        "media_type": OCI_INDEX,
        "platforms": platforms,
    }
    run_pants("package", "app:app", "app:multi", cwd=repo)
    assert "MOVED=1" in _config_env(out)

    # Two platforms: an index of one manifest per platform, each on that platform's base.
    multi = repo / "dist/app/multi"
    multi_info = json.loads((multi / "image-info.json").read_text())
    assert multi_info["media_type"] == OCI_INDEX
    [root] = [
        entry
        for entry in json.loads((multi / "index.json").read_text())["manifests"]
        if "artifactType" not in entry  # the platform images' SBOMs and provenance
    ]
    assert root["digest"] == multi_info["manifest_digest"]
    index = _blob(multi, root["digest"])
    assert [m["platform"] for m in index["manifests"]] == [
        {"architecture": host_architecture(), "os": "linux"},
        {"architecture": OTHER_ARCH, "os": "linux"},
    ]
    manifests = [_blob(multi, m["digest"]) for m in index["manifests"]]
    assert [m["layers"][0]["digest"] for m in manifests] == [busybox_image_blobs.layer_digest] * 2
    # The app layer is the same bytes on both platforms: built once.
    assert manifests[0]["layers"][1] == manifests[1]["layers"][1]
    configs = [_blob(multi, m["config"]["digest"]) for m in manifests]
    assert [c["architecture"] for c in configs] == [host_architecture(), OTHER_ARCH]

    # Published as one reference; skopeo reads the index and each platform's manifest.
    run_pants("publish", "app:multi", cwd=repo)
    pushed = f"{registry.host}/{unique_repo}-multi:v1"
    raw = json.loads(skopeo_inspect(pushed, raw=True, registry=registry))
    assert [m["digest"] for m in raw["manifests"]] == [m["digest"] for m in index["manifests"]]
    for entry, config in zip(raw["manifests"], configs, strict=True):
        by_digest = f"{registry.host}/{unique_repo}-multi@{entry['digest']}"
        pushed_config = json.loads(
            skopeo_inspect(by_digest, raw=True, config=True, registry=registry)
        )
        assert pushed_config["architecture"] == config["architecture"]
    layout = skopeo_copy_to_oci_layout(pushed, tmp_path / "pulled", "v1", registry=registry)
    umoci_unpack(layout, "v1", tmp_path / "bundle")
    assert runc_run(tmp_path / "bundle", None).stdout == "hello again from Linux\n"

    # A BUILD file naming a tag the lockfile lacks: out of date, and the error says the fix.
    push_image_to(busybox_image_blobs, registry, repository, "newer")
    build = repo / "app/BUILD"
    build.write_text(build.read_text().replace(":stable", ":newer"))
    stale = run_pants("package", "app:app", cwd=repo, check=False)
    assert stale.returncode != 0
    assert "out of date" in stale.stderr and "pants generate-oci-lockfile" in stale.stderr
    report = run_pants("generate-oci-lockfile", "--check", cwd=repo, check=False)
    assert report.returncode == 1
    assert f"missing: {registry.host}/{repository}:newer" in report.stdout
    assert f"unused: {key}" in report.stdout

    # A lockfile mangled (say, by a merge conflict) fails builds, and generating repairs it.
    lockfile.write_text("<<<<<<< HEAD\n")
    mangled = run_pants("package", "app:app", cwd=repo, check=False)
    assert mangled.returncode != 0 and "not valid" in mangled.stderr
    run_pants("generate-oci-lockfile", cwd=repo)
    assert set(json.loads(lockfile.read_text())["bases"]) == {f"{registry.host}/{repository}:newer"}
