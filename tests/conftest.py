"""Shared fixtures for every test: real registries, token service, a BuildGrid remote cache, and
busybox and Python base images (see tests/harness/fixtures.py)."""

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
