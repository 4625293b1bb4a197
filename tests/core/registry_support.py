"""Helpers for the registry client tests: clients for each harness mode, recorded sleeps,
a fault proxy in front of the anonymous registry, manifests to push."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pants_oci.core import media_types
from pants_oci.core.auth import RegistryAuth, StaticKeychain
from pants_oci.core.digest import Digest
from pants_oci.core.registry import RegistryClient
from pants_oci.core.transport import TransportOptions
from tests.harness.proxies import FaultProxy
from tests.harness.registry import DEFAULT, Registry

MODE_FIXTURES = ["registry_anonymous", "registry_basic", "registry_token", "registry_tls"]


class RecordedSleeps:
    """A sleep function that records how long it was asked to wait, and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def sleeps_of(client: RegistryClient) -> list[float]:
    """The waits a client made with `RecordedSleeps` (what `options_for` gives it) asked for."""
    sleep = client.options.sleep
    assert isinstance(sleep, RecordedSleeps)
    return sleep.calls


@pytest.fixture(name="proxy")
def proxy_fixture(registry_anonymous: Registry) -> Iterator[FaultProxy]:
    """A FaultProxy in front of the anonymous registry (import this to get `proxy`)."""
    with FaultProxy(registry_anonymous.url) as fault_proxy:
        yield fault_proxy


def auth_for(registry: Registry, credentials: Any = DEFAULT, host: str | None = None) -> httpx.Auth:
    """pants_oci's own RegistryAuth with the mode's credentials (for `host`, when a proxy
    stands in front): never the user's keychain."""
    if credentials == DEFAULT:
        credentials = (registry.username, registry.password) if registry.username else None
    if credentials is None:
        return RegistryAuth(None)
    username, password = credentials
    keychain = StaticKeychain({host or registry.host: {"username": username, "password": password}})
    return RegistryAuth(keychain)


def options_for(registry: Registry, **overrides: Any) -> TransportOptions:
    overrides.setdefault("sleep", RecordedSleeps())
    if registry.tls:
        overrides.setdefault("ca_bundle", registry.ca_bundle)
        overrides.setdefault("https_registries", frozenset({registry.host}))
    return TransportOptions(**overrides)


def client_for(
    registry: Registry,
    repository: str,
    *,
    host: str | None = None,
    credentials: Any = DEFAULT,
    **overrides: Any,
) -> RegistryClient:
    """A client for `repository` of `registry` (or of a proxy in front of it, at `host`)."""
    return RegistryClient(
        host or registry.host,
        repository,
        auth=auth_for(registry, credentials, host),
        options=options_for(registry, **overrides),
    )


def image_manifest(config: bytes, layers: list[bytes], media_type: str) -> bytes:
    """A manifest (OCI or Docker schema 2) for a config and layers, as canonical bytes."""
    from pants_oci.core.digest import sha256_of_bytes

    docker = "docker" in media_type
    config_type = (
        "application/vnd.docker.container.image.v1+json"
        if docker
        else "application/vnd.oci.image.config.v1+json"
    )
    layer_type = (
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
        if docker
        else "application/vnd.oci.image.layer.v1.tar+gzip"
    )
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": config_type,
            "digest": str(sha256_of_bytes(config)),
            "size": len(config),
        },
        "layers": [
            {"mediaType": layer_type, "digest": str(sha256_of_bytes(layer)), "size": len(layer)}
            for layer in layers
        ],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def unique_config(architecture: str = "amd64") -> bytes:
    """An image config no other test pushes (a random nonce in it)."""
    document = {"architecture": architecture, "os": "linux", "nonce": secrets.token_hex(8)}
    return json.dumps(document, separators=(",", ":")).encode()


def push_manifest(client: RegistryClient, tag: str = "latest") -> tuple[Digest, bytes]:
    """Push a fresh config and a manifest with no layers as `tag`: (its digest, its bytes)."""
    config = unique_config()
    client.upload_blob(config)
    raw = image_manifest(config, [], media_types.OCI_MANIFEST)
    return client.put_manifest(raw, tag=tag), raw


def hermetic_cli_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """For the command line run in-process: no host credentials (an empty docker config) and
    no proxy, so every connection goes where the test says."""
    (tmp_path / "docker").mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
