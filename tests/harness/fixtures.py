"""pytest fixtures over the harness; tests/conftest.py imports them so every test sees them.

Session-scoped servers are shared: each test must use its own repository names
(`unique_repo` gives one).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.harness.buildgrid import BuildGrid, start_buildgrid
from tests.harness.busybox import ImageBlobs, PushedImage, build_busybox_image, push_image_to
from tests.harness.python_base import build_python_base_image
from tests.harness.registry import Mode, Registry, start_registry

RegistryFactory = Callable[..., Registry]


@pytest.fixture
def registry_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryFactory]:
    """make(mode="anonymous", *, tls=None, token_expires_in=300, extra_users=None) -> a fresh
    Registry (extra_users: more htpasswd accounts in basic mode), stopped
    when the test ends. For tests that need a server of their own (e.g. to stop it mid-test
    or to tamper with storage)."""
    started: list[Registry] = []

    def make(mode: Mode = "anonymous", **kwargs: Any) -> Registry:
        registry = start_registry(mode, tmp_path_factory.mktemp(f"registry-{mode}"), **kwargs)
        started.append(registry)
        return registry

    yield make
    for registry in started:
        registry.stop()


def _session_registry(factory: pytest.TempPathFactory, mode: Mode) -> Iterator[Registry]:
    registry = start_registry(mode, factory.mktemp(f"session-registry-{mode}"))
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def registry_anonymous(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from _session_registry(tmp_path_factory, "anonymous")


@pytest.fixture(scope="session")
def registry_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from _session_registry(tmp_path_factory, "basic")


@pytest.fixture(scope="session")
def registry_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from _session_registry(tmp_path_factory, "token")


@pytest.fixture(scope="session")
def registry_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    yield from _session_registry(tmp_path_factory, "tls")


@pytest.fixture(scope="session")
def busybox_image_blobs() -> ImageBlobs:
    """The busybox base image as bytes (manifest, config, layer), in no registry."""
    return build_busybox_image()


@pytest.fixture(scope="session")
def busybox_image(busybox_image_blobs: ImageBlobs, registry_anonymous: Registry) -> PushedImage:
    """The busybox base pushed to registry_anonymous as base/busybox:latest.
    `.push_to(registry, repository, tag)` copies it to any registry mode."""
    return push_image_to(busybox_image_blobs, registry_anonymous, "base/busybox", "latest")


@pytest.fixture(scope="session")
def python_base_image_blobs() -> ImageBlobs:
    """A runnable base image holding the host's system CPython (Cmd /usr/bin/python3, Env
    PYTHON_VERSION) plus busybox, as bytes in no registry; built once per session."""
    return build_python_base_image()


@pytest.fixture(scope="session")
def python_base_image(
    python_base_image_blobs: ImageBlobs, registry_anonymous: Registry
) -> PushedImage:
    """The Python base pushed to registry_anonymous as base/python:latest.
    `.push_to(registry, repository, tag)` copies it to any registry mode."""
    return push_image_to(python_base_image_blobs, registry_anonymous, "base/python", "latest")


@pytest.fixture
def buildgrid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BuildGrid]:
    """A fresh, empty BuildGrid REAPI server of this test's own (start takes a few seconds), stopped
    when the test ends. `.pants_args()` points Pants' remote cache at it (`.address` is
    "grpc://127.0.0.1:PORT"); `.stop()` and `.start()` make an outage on the same port, which
    empties its in-memory ActionCache."""
    with start_buildgrid(tmp_path_factory.mktemp("buildgrid")) as server:
        yield server


@pytest.fixture
def unique_repo(request: pytest.FixtureRequest) -> str:
    """A repository name of this test's own, e.g. "test/test-push-blob-3f9a1c"."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60].strip("-")
    return f"test/{name}-{secrets.token_hex(3)}"
