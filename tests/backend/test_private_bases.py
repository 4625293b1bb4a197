"""Base images in a registry that wants credentials, through real `./pants`: package, the
base-image lockfile, run and publish, with credentials from docker's config.json and from a
credential helper, and from a Google service account (GOOGLE_APPLICATION_CREDENTIALS) for a
Google registry; other credentials later get the same cached build with no download."""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import stat
import tarfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

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
from tests.harness.fixtures import RegistryFactory
from tests.harness.google import (
    CLOUD_PLATFORM,
    GOOGLE_USERNAME,
    JWT_BEARER,
    SERVICE_ACCOUNT_EMAIL,
    GoogleTokenEndpoint,
)
from tests.harness.processes import LOOPBACK
from tests.harness.proxies import FaultProxy
from tests.harness.registry import Registry, access_log, blob_downloads
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow

HELPER = "pantsocitest"
# An Artifact Registry host: Google credentials are given to Google registries only.
GOOGLE_REGISTRY = "europe-docker.pkg.dev"


def _docker_config(directory: Path, document: dict[str, object]) -> Path:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(document))
    return directory


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
    password, reader_password = registry.password, registry.users["reader"]
    assert password and reader_password and registry.username
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

    def pants(
        config: Path, *args: str, check: bool = True, path: str | None = None, pantsd: bool = True
    ) -> str:
        env = {"DOCKER_CONFIG": str(config)}
        if path:
            env["PATH"] = path
        result = run_pants(*args, cwd=repo, env=env, check=check, pantsd=pantsd)
        output = result.stdout + result.stderr
        assert password not in output and reader_password not in output
        return result.stderr if check else output

    # No credentials: the pull fails, naming the registry.
    failed = pants(nobody, "package", "app:pinned", check=False)
    assert registry.host in failed and "credentials" in failed.lower(), failed[-3000:]
    assert not (repo / "dist/app/pinned").exists()

    # The tag is pinned by the lockfile, looked up with the user's credentials.
    pants(tester, "generate-oci-lockfile")
    locked = json.loads((repo / "oci.lock.json").read_text())
    assert base.manifest_digest in json.dumps(locked)

    before = blob_downloads(registry, repository)
    pants(tester, "package", "app::")
    pinned = json.loads((repo / "dist/app/pinned/image-info.json").read_text())
    assert pinned["layers"][0]["digest"] == base.layer_digest
    # The config and the layer, once for both images.
    assert blob_downloads(registry, repository) == before + 2

    # Everything it needs is on this machine now: `run` needs no credentials.
    ran = run_pants("run", "app:tagged", cwd=repo, env={"DOCKER_CONFIG": str(nobody)})
    assert ran.stdout == "private base, 0\n"

    # Publish with a credential helper; the base's layer is already in the registry.
    logged_before = len(access_log(registry))
    pants(helped, "publish", "app:pinned", path=f"{bin_dir}:{os.environ['PATH']}")
    manifest = registry.httpx_client().get(
        f"/v2/{repository}-app/manifests/latest",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert manifest.status_code == 200, manifest.text
    assert manifest.headers["Docker-Content-Digest"] == pinned["manifest_digest"]
    published = access_log(registry)[logged_before:]

    # Later, other credentials (a changed password, another account) in a new session: the
    # base comes from this machine's blob cache, no download, and every cacheable process
    # (layers, assembly) is a cache hit, as in a run with the first credentials.
    downloads = blob_downloads(registry, repository)
    # (New sessions without pantsd, whose memo would hide the cache look-ups.)
    same = _counters(pants(tester, "--stats-log", "package", "app::", pantsd=False))
    other = _counters(pants(reader, "--stats-log", "package", "app::", pantsd=False))
    assert blob_downloads(registry, repository) == downloads
    assert other["local_cache_requests_uncached"] == same["local_cache_requests_uncached"]
    assert other["local_cache_requests_cached"] == same["local_cache_requests_cached"] > 0
    assert json.loads((repo / "dist/app/pinned/image-info.json").read_text()) == pinned

    # Publishing put the base's layer in the app's repository by mounting it from the base's
    # repository on the same registry (one request), not by uploading its bytes again.
    uploads = f"/v2/{repository}-app/blobs/uploads/"
    mounts = [
        (r.query.get("from"), r.status)
        for r in published
        if r.method == "POST" and r.path == uploads and r.query.get("mount") == [base.layer_digest]
    ]
    blob_requests = [
        (r.method, r.query.get("mount") or r.query.get("digest"), r.status)
        for r in published
        if r.path.startswith(uploads)
    ]
    log = f"base layer {base.layer_digest}; uploads requests:\n" + "\n".join(
        f"{method} {digest} {status}" for method, digest, status in blob_requests
    )
    assert ([repository], 201) in mounts, log
    # Every upload ends in a PUT naming the blob's digest (a monolithic PUT, or the last one
    # after PATCHes): none names the base layer's.
    assert not [b for b in blob_requests if b[:2] == ("PUT", [base.layer_digest])], log
    # The app's own blobs were uploaded that way: the log does show uploads when they happen.
    assert [b for b in blob_requests if b[0] == "PUT" and b[2] == 201], log


def test_google_service_account_for_lockfile_package_run_and_publish(
    tmp_path: Path, registry_factory: RegistryFactory
) -> None:
    """GOOGLE_APPLICATION_CREDENTIALS names a service-account key: google-auth signs a grant
    for an access token, and a Google registry gets `oauth2accesstoken:<token>`.

    The registry is a loopback basic-auth registry with that account, reached under the
    Artifact Registry host name through a forward proxy (HTTP_PROXY, plain HTTP by the explicit
    `[oci].insecure_registries`); the key's token endpoint is on loopback too (NO_PROXY)."""
    access_token = f"ya29.{secrets.token_urlsafe(32)}"
    registry = registry_factory("basic", extra_users={GOOGLE_USERNAME: access_token})
    project = f"pants-oci-test/private-{uuid.uuid4().hex[:8]}"
    base = _private_base(registry, f"{project}/base")
    with (
        GoogleTokenEndpoint() as endpoint,
        FaultProxy(registry.url, forward_for=[GOOGLE_REGISTRY]) as proxy,
    ):
        endpoint.token_value = access_token
        repo = make_pants_repo(
            tmp_path / "repo",
            {
                "app/BUILD": f"""
files(name="script", sources=["hello.sh"])
oci_image(
    name="app",
    base="{GOOGLE_REGISTRY}/{project}/base:1.0",
    dependencies=[":script"],
    entrypoint=["/bin/sh", "/app/hello.sh"],
    registries=["{GOOGLE_REGISTRY}"],
    repository="{project}/app",
)
""",
                "app/hello.sh": 'echo "google base, $(id -u)"\n',
            },
            extra_toml=f'\n[oci]\ninsecure_registries = ["{GOOGLE_REGISTRY}"]\n',
        )
        key_file = endpoint.key_file(tmp_path)
        no_docker_credentials = _docker_config(tmp_path / "docker", {"auths": {}})
        env = {
            "GOOGLE_APPLICATION_CREDENTIALS": str(key_file),
            "DOCKER_CONFIG": str(no_docker_credentials),
        }
        for name in ("HTTP_PROXY", "http_proxy"):
            env[name] = proxy.url
        for name in ("NO_PROXY", "no_proxy"):
            env[name] = f"{LOOPBACK},localhost"
        secret_lines = [access_token, *endpoint.private_key_pem().splitlines()[1:-1]]

        def pants(*args: str) -> str:
            result = run_pants(*args, cwd=repo, env=env)
            output = result.stdout + result.stderr
            assert not [line for line in secret_lines if line in output]
            return result.stdout

        # The tag, looked up with an access token from the service account's key.
        pants("generate-oci-lockfile")
        locked = json.loads((repo / "oci.lock.json").read_text())
        assert base.manifest_digest in json.dumps(locked)
        assert f"{GOOGLE_REGISTRY}/{project}/base" in json.dumps(locked)
        lockfile_grants = len(endpoint.grants)
        assert lockfile_grants >= 1

        # One session: package (the base's blobs come from the Google registry), publish to
        # it, and run the image.
        out = pants("package", "publish", "run", "app:app")
        info = json.loads((repo / "dist/app/app/image-info.json").read_text())
        assert info["layers"][0]["digest"] == base.layer_digest
        assert out.splitlines()[-1:] == ["google base, 0"], out
        # Two more processes got tokens of their own: the base pull and the push.
        assert len(endpoint.grants) >= lockfile_grants + 2
        manifest = registry.httpx_client().get(
            f"/v2/{project}/app/manifests/latest",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert manifest.status_code == 200, manifest.text
        assert manifest.headers["Docker-Content-Digest"] == info["manifest_digest"]

    # The token is in no file the runs wrote either (dist/, the lockfile, .pants.d/ logs).
    assert not [
        path
        for path in repo.rglob("*")
        if path.is_file() and access_token.encode() in path.read_bytes()
    ]
    # google-auth's real flow: JWT-bearer grants signed with the key (checked by the endpoint).
    assert {g["grant_type"] for g in endpoint.grants} == {JWT_BEARER}
    assert {g["iss"] for g in endpoint.grants} == {SERVICE_ACCOUNT_EMAIL}
    assert all(CLOUD_PLATFORM in g["scope"].split() for g in endpoint.grants)
    # Everything went to the Google name through the proxy, with the Google credential only.
    google_basic = (
        "Basic " + base64.b64encode(f"{GOOGLE_USERNAME}:{access_token}".encode()).decode()
    )
    assert all(r.path.startswith(f"http://{GOOGLE_REGISTRY}/v2/") for r in proxy.requests)
    sent = {r.headers.get("authorization") for r in proxy.requests}
    assert google_basic in sent and sent <= {None, google_basic}
    seen = {(r.method, urlsplit(r.path).path) for r in proxy.requests}
    assert ("GET", f"/v2/{project}/base/blobs/{base.layer_digest}") in seen
    assert ("PUT", f"/v2/{project}/app/manifests/latest") in seen
