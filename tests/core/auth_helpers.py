"""Shared helpers for the auth tests: clients over RegistryAuth, blob push/pull, a fake clock."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx

from pants_oci.core.auth import SCOPES_EXTENSION, RegistryAuth, StaticKeychain, repository_scope
from tests.harness.registry import Registry


class FakeClock:
    """Wall-clock time plus an offset the test moves forward: expiry without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def keychain_for(registry: Registry, user: str = "tester") -> StaticKeychain:
    return StaticKeychain({registry.host: {"username": user, "password": registry.users[user]}})


def client_for(
    registry: Registry, auth: RegistryAuth, seen: list[tuple[str, str, int]] | None = None
) -> httpx.Client:
    hooks: dict[str, list[Any]] = {}
    if seen is not None:

        def record(response: httpx.Response) -> None:
            request = response.request
            seen.append((request.method, request.url.path, response.status_code))

        hooks["response"] = [record]
    return httpx.Client(
        base_url=registry.url,
        verify=registry.verify(),
        auth=auth,
        timeout=30.0,
        event_hooks=hooks,
    )


def scopes(*values: str) -> dict[str, Any]:
    return {SCOPES_EXTENSION: tuple(values)}


def push_blob(
    client: httpx.Client, repository: str, data: bytes, *, declare: bool = True
) -> httpx.Response:
    """POST then PUT ?digest= (merged into the Location's own query)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    extensions = scopes(repository_scope(repository, "pull", "push")) if declare else None
    started = client.post(f"/v2/{repository}/blobs/uploads/", extensions=extensions)
    if started.status_code != 202:
        return started
    location = httpx.URL(started.headers["Location"]).copy_merge_params({"digest": digest})
    return client.put(
        location,
        content=data,
        headers={"Content-Type": "application/octet-stream"},
        extensions=extensions,
    )


def pull_blob(client: httpx.Client, repository: str, digest: str) -> httpx.Response:
    return client.get(
        f"/v2/{repository}/blobs/{digest}",
        extensions=scopes(repository_scope(repository, "pull")),
    )


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
