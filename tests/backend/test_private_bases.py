"""Base images in a registry that wants credentials, through real `./pants`: package, the
base-image lockfile, run and publish, with credentials from docker's config.json and from a
credential helper; and other credentials later get the same cached build with no download."""

from __future__ import annotations

import json
import os
import re
import stat
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.harness.busybox import (
    PATH_ENV,
    PushedImage,
    base_files,
    image_from_layer,
    pack_layer,
    push_image_to,
    put,
    tar_entry,
)
from tests.harness.registry import Registry
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow

HELPER = "pantsocitest"


def _docker_config(directory: Path, document: dict[str, object]) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(document))
    return directory


def _blob_downloads(registry: Registry, repository: str) -> int:
    """GETs of the repository's blobs that the registry answered with content (access log)."""
    return len(
        re.findall(
            rf'"GET /v2/{re.escape(repository)}/blobs/sha256:[0-9a-f]{{64}} HTTP/1\.1" (?:200|307)',
            registry.log_path.read_text(),
        )
    )


def _counters(stderr: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"^\s+(\w+): (\d+)$", stderr, re.MULTILINE)}


def _private_base(registry: Registry, repository: str) -> PushedImage:
    """A busybox base of this test's own (a unique file in its layer), so that no earlier run
    has its blobs in this machine's blob cache."""
    files = base_files()
    put(files, tar_entry("etc/build-id", tarfile.REGTYPE, 0o644), uuid.uuid4().hex.encode())
    tar_bytes, layer = pack_layer(files)
    image = image_from_layer(tar_bytes, layer, env=[PATH_ENV], cmd=["sh"], created_by="private")
    return push_image_to(image, registry, repository, "1.0")


def test_private_base_for_package_lockfile_run_and_publish(
    tmp_path: Path, registry_token: Registry
) -> None:
    registry = registry_token
    repository = f"private/base-{uuid.uuid4().hex[:8]}"
    base = _private_base(registry, repository)
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "app/BUILD": f"""
files(name="script", sources=["hello.sh"])
oci_image(
    name="pinned",
    base="{base.ref}",
    dependencies=[":script"],
    entrypoint=["/bin/sh", "/app/hello.sh"],
    registries=["{registry.host}"],
    repository="{repository}-app",
)
oci_image(
    name="tagged",
    base="{base.tag_ref}",
    dependencies=[":script"],
    entrypoint=["/bin/sh", "/app/hello.sh"],
)
""",
            "app/hello.sh": 'echo "private base, $(id -u)"\n',
        },
    )
    assert registry.users["reader"] and registry.username and registry.password
    tester = _docker_config(tmp_path / "tester", registry.auth_json())
    reader = _docker_config(
        tmp_path / "reader", registry.auth_json(("reader", registry.users["reader"]))
    )
    nobody = _docker_config(tmp_path / "nobody", {"auths": {}})
    # A credential helper on PATH, as docker-credential-gcr or -ecr-login are.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / f"docker-credential-{HELPER}"
    secret = json.dumps({"Username": registry.username, "Secret": registry.password})
    helper.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{secret}'\n")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    helped = _docker_config(tmp_path / "helped", {"credHelpers": {registry.host: HELPER}})

    def pants(config: Path, *args: str, check: bool = True, path: str | None = None) -> str:
        env = {"DOCKER_CONFIG": str(config)}
        if path:
            env["PATH"] = path
        result = run_pants(*args, cwd=repo, env=env, check=check)
        output = result.stdout + result.stderr
        assert registry.password not in output and registry.users["reader"] not in output
        return result.stderr if check else output

    # No credentials: the pull fails, naming the registry.
    failed = pants(nobody, "package", "app:pinned", check=False)
    assert registry.host in failed and "credentials" in failed.lower(), failed[-3000:]
    assert not (repo / "dist/app/pinned").exists()

    # The tag is pinned by the lockfile, looked up with the user's credentials.
    pants(tester, "generate-oci-lockfile")
    locked = json.loads((repo / "oci.lock.json").read_text())
    assert base.manifest_digest in json.dumps(locked)

    before = _blob_downloads(registry, repository)
    pants(tester, "package", "app::")
    pinned = json.loads((repo / "dist/app/pinned/image-info.json").read_text())
    assert pinned["layers"][0]["digest"] == base.layer_digest
    # The config and the layer, once for both images.
    assert _blob_downloads(registry, repository) == before + 2

    # Everything it needs is on this machine now: `run` needs no credentials.
    ran = run_pants("run", "app:tagged", cwd=repo, env={"DOCKER_CONFIG": str(nobody)})
    assert ran.stdout == "private base, 0\n"

    # Publish with a credential helper; the base's layer is already in the registry.
    pants(helped, "publish", "app:pinned", path=f"{bin_dir}:{os.environ['PATH']}")
    manifest = registry.httpx_client().get(
        f"/v2/{repository}-app/manifests/latest",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert manifest.status_code == 200, manifest.text
    assert manifest.headers["Docker-Content-Digest"] == pinned["manifest_digest"]

    # Later, other credentials (a changed password, another account) in a new session: the
    # base comes from this machine's blob cache, no download, and every cacheable process
    # (layers, assembly) is a cache hit, as in a run with the first credentials.
    downloads = _blob_downloads(registry, repository)
    same = _counters(pants(tester, "--stats-log", "package", "app::"))
    other = _counters(pants(reader, "--stats-log", "package", "app::"))
    assert _blob_downloads(registry, repository) == downloads
    assert other["local_cache_requests_uncached"] == same["local_cache_requests_uncached"]
    assert other["local_cache_requests_cached"] == same["local_cache_requests_cached"] > 0
    assert json.loads((repo / "dist/app/pinned/image-info.json").read_text()) == pinned
