"""The host's blob cache under `base pull`: a base is downloaded once, read back verified, a
damaged entry is fetched again, and a base that is all there needs no registry at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from pants_oci.core.blob_cache import CachedRegistrySource
from pants_oci.core.digest import Digest
from pants_oci.core.layout import ImageLayout
from pants_oci.core.reference import parse_reference
from pants_oci.core.registry import RegistryClient
from tests.core.registry_support import client_for, options_for
from tests.harness.busybox import PushedImage
from tests.harness.registry import Registry


def _source(
    registry: Registry, image: PushedImage, cache: Path, *, offline: bool = False
) -> CachedRegistrySource:
    reference = parse_reference(image.ref)

    def client() -> RegistryClient:
        if offline:
            raise AssertionError("the registry was asked for something the cache has")
        return client_for(registry, repository=image.repository)

    return CachedRegistrySource(reference, options_for(registry), cache, client_factory=client)


def _pull(source: CachedRegistrySource, image: PushedImage, out: Path) -> ImageLayout:
    manifest = source.manifest(Digest.parse(image.manifest_digest))
    assert manifest.digest == Digest.parse(image.manifest_digest)
    layout = ImageLayout.create(out)
    layout.write_blob(source.blob(Digest.parse(image.config_digest)))
    source.copy_blob(Digest.parse(image.layer_digest), layout)
    return layout


def _downloaded_config_and_layer(source: CachedRegistrySource, image: PushedImage) -> bool:
    """Whether `source` took exactly the image's config and layer from the registry."""
    return sorted(map(str, source.downloaded)) == sorted([image.config_digest, image.layer_digest])


def test_a_base_is_downloaded_once_then_read_from_the_cache_without_the_registry(
    tmp_path: Path, busybox_image: PushedImage, registry_anonymous: Registry
) -> None:
    cache = tmp_path / "cache"
    with _source(registry_anonymous, busybox_image, cache) as first:
        _pull(first, busybox_image, tmp_path / "one")
    assert _downloaded_config_and_layer(first, busybox_image)
    with _source(registry_anonymous, busybox_image, cache, offline=True) as second:
        layout = _pull(second, busybox_image, tmp_path / "two")
    assert second.downloaded == []
    assert layout.read_blob(busybox_image.layer_digest) == busybox_image.layer


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_cache_entry_is_fetched_again_never_used(
    tmp_path: Path, busybox_image: PushedImage, registry_anonymous: Registry, damage: str
) -> None:
    cache = tmp_path / "cache"
    with _source(registry_anonymous, busybox_image, cache) as source:
        _pull(source, busybox_image, tmp_path / "one")
    cached = ImageLayout.open(cache)
    for digest in (busybox_image.layer_digest, busybox_image.config_digest):
        path = cached.blob_path(digest)
        data = path.read_bytes()
        path.write_bytes(data[:-10] if damage == "truncate" else bytes([data[0] ^ 1]) + data[1:])
    with _source(registry_anonymous, busybox_image, cache) as again:
        layout = _pull(again, busybox_image, tmp_path / "two")
    assert _downloaded_config_and_layer(again, busybox_image)
    assert layout.read_blob(busybox_image.layer_digest) == busybox_image.layer
    assert cached.read_blob(busybox_image.layer_digest) == busybox_image.layer


def test_a_tag_is_always_asked_of_the_registry(
    tmp_path: Path, busybox_image: PushedImage, registry_anonymous: Registry
) -> None:
    cache = tmp_path / "cache"
    with _source(registry_anonymous, busybox_image, cache) as source:
        _pull(source, busybox_image, tmp_path / "one")
    with (
        _source(registry_anonymous, busybox_image, cache, offline=True) as offline,
        pytest.raises(AssertionError, match="asked for something the cache has"),
    ):
        offline.manifest(busybox_image.tag)
