"""Shared fixtures for every test: real registries, token service, a BuildGrid remote cache, and
busybox and Python base images (see tests/harness/fixtures.py)."""

from collections.abc import Iterator

import pytest

from tests.harness.fixtures import (  # noqa: F401 - imported so pytest registers them
    buildgrid,
    busybox_image,
    busybox_image_blobs,
    python_base_image,
    python_base_image_blobs,
    registry_anonymous,
    registry_basic,
    registry_factory,
    registry_tls,
    registry_token,
    unique_repo,
)
from tests.harness.podman import podman  # noqa: F401 - a fixture, registered here
from tests.pants_runs import stop_started_pantsd


@pytest.fixture(scope="module", autouse=True)
def _stop_pantsd_after_module() -> Iterator[None]:
    """A module's Pants runs share their build roots' daemons; none outlives the module."""
    yield
    stop_started_pantsd()
