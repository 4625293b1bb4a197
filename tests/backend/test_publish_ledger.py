"""`./pants publish` of two images to two repositories of one registry, sharing a layer: each
name is its own push (its own process), and the push ledger in the blob cache's named cache
lets the second mount the shared layer from the first's repository instead of uploading it."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.harness.registry import Registry, access_log
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow

_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _layers(registry: Registry, repository: str) -> list[str]:
    response = registry.httpx_client().get(
        f"/v2/{repository}/manifests/1", headers={"Accept": _OCI_MANIFEST}
    )
    assert response.status_code == 200, response.text
    return [layer["digest"] for layer in response.json()["layers"]]


def test_publish_mounts_a_layer_another_repository_received(
    tmp_path: Path, registry_anonymous: Registry
) -> None:
    registry = registry_anonymous
    unique = f"ledger-{uuid.uuid4().hex[:8]}"
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "svc/BUILD": f"""
files(name="shared_files", sources=["shared.txt"])
oci_layer(name="shared", dependencies=[":shared_files"], destination="/srv")
files(name="one_files", sources=["one.txt"])
files(name="two_files", sources=["two.txt"])
oci_image(
    name="one",
    dependencies=[":shared", ":one_files"],
    registries=["{registry.host}"],
    repository="{unique}/one",
    image_tags=["1"],
)
oci_image(
    name="two",
    dependencies=[":shared", ":two_files"],
    registries=["{registry.host}"],
    repository="{unique}/two",
    image_tags=["1"],
)
""",
            # Unique content: no earlier run's ledger or registry has these layers.
            "svc/shared.txt": f"shared by both images {unique}\n" * 5000,
            "svc/one.txt": f"one {unique}\n",
            "svc/two.txt": f"two {unique}\n",
        },
    )
    start = len(access_log(registry))
    record = tmp_path / "published.json"
    run_pants(f"--publish-output={record}", "publish", "svc::", cwd=repo)
    assert [entry["status"] for entry in json.loads(record.read_text())] == ["published"] * 2
    log = access_log(registry)[start:]

    one, two = f"{unique}/one", f"{unique}/two"
    layers = {repository: _layers(registry, repository) for repository in (one, two)}
    [shared] = set(layers[one]) & set(layers[two])
    own = {repository: set(layers[repository]) - {shared} for repository in (one, two)}
    uploads = [
        (entry.path.split("/blobs/")[0][len("/v2/") :], entry.query["digest"][0])
        for entry in log
        if entry.method == "PUT" and "/blobs/uploads/" in entry.path and entry.status == 201
    ]
    mounts = [
        (entry.path.split("/blobs/")[0][len("/v2/") :], entry.query["from"][0], entry.status)
        for entry in log
        if entry.method == "POST" and entry.query.get("mount") == [shared]
    ]
    # Whichever was pushed first uploaded the shared layer; the other mounted it from there.
    [(first, _)] = [upload for upload in uploads if upload[1] == shared]
    second = two if first == one else one
    assert mounts == [(second, first, 201)], (mounts, uploads)
    for repository in (one, two):
        assert own[repository] and all((repository, d) in uploads for d in own[repository])
