"""Plain-httpx distribution API calls for tests (the product's own client lives in core)."""

from __future__ import annotations

import hashlib

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(client: httpx.Client, repository: str, data: bytes) -> str:
    """Monolithic upload: POST to open a session, one PUT ?digest= with all bytes."""
    digest = sha256_digest(data)
    started = client.post(f"/v2/{repository}/blobs/uploads/")
    if started.status_code != 202:
        raise AssertionError(f"upload POST for {repository}: {started.status_code} {started.text}")
    # Location may be relative or absolute and carries upload state in its query: add the
    # digest to that query (httpx's params= would replace it).
    location = httpx.URL(started.headers["Location"]).copy_merge_params({"digest": digest})
    done = client.put(
        location,
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    if done.status_code != 201:
        raise AssertionError(f"upload PUT for {repository}: {done.status_code} {done.text}")
    if done.headers.get("Docker-Content-Digest") != digest:
        raise AssertionError(f"registry stored {done.headers.get('Docker-Content-Digest')}")
    return digest


def pull_blob(client: httpx.Client, repository: str, digest: str) -> bytes:
    response = client.get(f"/v2/{repository}/blobs/{digest}", follow_redirects=True)
    response.raise_for_status()
    return response.content


def push_manifest(
    client: httpx.Client,
    repository: str,
    reference: str,
    body: bytes,
    media_type: str = OCI_MANIFEST,
) -> str:
    response = client.put(
        f"/v2/{repository}/manifests/{reference}",
        content=body,
        headers={"Content-Type": media_type},
    )
    if response.status_code != 201:
        raise AssertionError(
            f"manifest PUT {repository}:{reference}: {response.status_code} {response.text}"
        )
    digest = sha256_digest(body)
    if response.headers.get("Docker-Content-Digest") != digest:
        raise AssertionError(f"registry stored {response.headers.get('Docker-Content-Digest')}")
    return digest
