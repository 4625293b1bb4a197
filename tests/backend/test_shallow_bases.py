"""Shallow bases, through real `./pants` against the loopback registry: an image with a
`sparse-oci-layout` packages on a registry base without downloading its layers (the lockfile
has the base's facts), publishes to the base's registry without uploading them (mounted from
the base's repository), and is the very image a whole build gives; `pants run` still runs it.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.harness.busybox import push_large_base
from tests.harness.layouts import EMPTY_CONFIG_DIGEST, attached_documents
from tests.harness.registry import Registry, access_log
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow


def _base_layer_bytes(registry: Registry, repository: str, digest: str, since: int) -> int:
    """Bytes of the blob `digest` the registry has served from `repository` since request
    number `since` of its access log."""
    path = f"/v2/{repository}/blobs/{digest}"
    return sum(
        entry.sent
        for entry in access_log(registry)[since:]
        if entry.method == "GET" and entry.path == path
    )


def test_sparse_layout_moves_no_base_layer_byte_to_package_or_publish(
    tmp_path: Path, registry_anonymous: Registry
) -> None:
    registry = registry_anonymous
    repository = f"shallow/base-{uuid.uuid4().hex[:8]}"
    base = push_large_base(registry, repository, 4 << 20)
    image = f"""
    base="{base.tag_ref}",
    dependencies=[":script"],
    entrypoint=["/bin/sh", "/app/hello.sh"],
    user="1000:1000",
    registries=["{registry.host}"],
"""
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "app/BUILD": f"""
files(name="script", sources=["hello.sh"])
oci_image(name="sparse", formats=["sparse-oci-layout"], repository="{repository}-app",{image})
oci_image(name="whole", repository="{repository}-whole",{image})
""",
            "app/hello.sh": 'echo "shallow base, $(id -u)"\n',
        },
    )

    # The lockfile records the facts of the base's image, read from its layers once; here
    # through a blob cache of its own, so that builds below find no layer on this machine.
    run_pants(
        f"--named-caches-dir={tmp_path / 'lockfile-caches'}",
        "generate-oci-lockfile",
        cwd=repo,
        pantsd=False,
    )
    lockfile = json.loads((repo / "oci.lock.json").read_text())
    facts = lockfile["images"][base.manifest_digest]
    assert {"bin", "etc", "opt", "opt/data"} <= set(facts["directories"]), facts
    assert facts["pythons"] == []

    # Package: the base's manifest and config, not one byte of its layer.
    before = len(access_log(registry))
    run_pants("package", "app:sparse", cwd=repo)
    assert _base_layer_bytes(registry, repository, base.layer_digest, before) == 0
    fetched = {entry.path for entry in access_log(registry)[before:] if entry.method == "GET"}
    assert f"/v2/{repository}/blobs/{base.config_digest}" in fetched
    sparse_dir = repo / "dist/app/sparse"
    info = json.loads((sparse_dir / "image-info.json").read_text())
    base_layer, own_layer = (layer["digest"] for layer in info["layers"])
    assert base_layer == base.layer_digest
    blobs = {f"sha256:{path.name}" for path in (sparse_dir / "blobs/sha256").iterdir()}
    assert base_layer not in blobs and own_layer in blobs
    [entry, *_attached] = json.loads((sparse_dir / "index.json").read_text())["manifests"]
    assert entry["annotations"]["dev.pants-oci.blob-source"] == base.ref

    # The same image as a whole build, which reads the base's directories from its layer.
    run_pants("package", "app:whole", cwd=repo)
    whole = json.loads((repo / "dist/app/whole/image-info.json").read_text())
    assert whole["manifest_digest"] == info["manifest_digest"]
    whole_blobs = {p.name for p in (repo / "dist/app/whole/blobs/sha256").iterdir()}
    assert base_layer.split(":")[1] in whole_blobs

    # Publish to the base's registry: the base's layer is mounted from its repository, no
    # byte of it uploaded; the image's own layer and config are, and its SBOMs and provenance.
    before = len(access_log(registry))
    run_pants("publish", "app:sparse", cwd=repo)
    published = access_log(registry)[before:]
    uploads = f"/v2/{repository}-app/blobs/uploads/"
    uploaded = {
        digest
        for entry in published
        if entry.method == "PUT" and entry.path.startswith(uploads)
        for digest in entry.query.get("digest", [])
    }
    attached = {*attached_documents(sparse_dir), EMPTY_CONFIG_DIGEST}
    assert uploaded == {own_layer, info["config_digest"], *attached}, published
    mounted = [
        entry.status
        for entry in published
        if entry.method == "POST" and entry.query.get("mount") == [base_layer]
    ]
    assert mounted == [201], published
    assert _base_layer_bytes(registry, repository, base_layer, before) == 0
    with registry.httpx_client() as client:
        pushed = client.get(
            f"/v2/{repository}-app/manifests/latest",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert pushed.headers["Docker-Content-Digest"] == info["manifest_digest"]
        assert client.head(f"/v2/{repository}-app/blobs/{base_layer}").status_code == 200

    # `pants run` builds the whole image (the layer comes from the registry) and runs it.
    ran = run_pants("run", "app:sparse", cwd=repo)
    assert ran.stdout == "shallow base, 1000\n"

    # A lockfile without facts (an older one): the layer is read to build, same image.
    del lockfile["images"]
    (repo / "oci.lock.json").write_text(json.dumps(lockfile))
    run_pants("package", "app:sparse", cwd=repo)
    again = json.loads((sparse_dir / "image-info.json").read_text())
    assert again["manifest_digest"] == info["manifest_digest"]
