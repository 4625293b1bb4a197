"""RegistryClient against real registries (CNCF distribution 2.8) in every harness mode."""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path

import pytest

from pants_oci.core import media_types
from pants_oci.core.digest import Digest, sha256_of_bytes
from pants_oci.core.errors import (
    DigestMismatchError,
    NotFoundError,
    PlatformNotFoundError,
    UnauthorizedError,
)
from pants_oci.core.models import (
    DockerManifest,
    DockerManifestList,
    OCIIndex,
    OCIManifest,
    Platform,
    parse_manifest,
)
from pants_oci.core.platforms import resolve_platform
from pants_oci.core.reference import Reference
from pants_oci.core.registry import RegistryClient
from tests.core.registry_support import MODE_FIXTURES, client_for, image_manifest
from tests.harness.busybox import PushedImage
from tests.harness.registry import Registry


@pytest.fixture(params=MODE_FIXTURES)
def registry(request: pytest.FixtureRequest) -> Registry:
    mode_registry: Registry = request.getfixturevalue(request.param)
    return mode_registry


def _config(architecture: str, variant: str | None = None) -> bytes:
    config = {"architecture": architecture, "os": "linux", "rootfs": {"type": "layers"}}
    if variant:
        config["variant"] = variant
    config["nonce"] = secrets.token_hex(8)  # a blob of this test's own
    return json.dumps(config, separators=(",", ":")).encode()


# --- Manifests ------------------------------------------------------------------------------


def test_manifest_put_head_get_delete(registry: Registry, unique_repo: str) -> None:
    config, layer = _config("amd64"), secrets.token_bytes(2048)
    raw = image_manifest(config, [layer], media_types.OCI_MANIFEST)
    with client_for(registry, unique_repo) as client:
        client.upload_blobs([config, layer])
        assert client.head_manifest(str(sha256_of_bytes(raw))) is None

        digest = client.put_manifest(raw)  # untagged: stored by digest only
        assert digest == sha256_of_bytes(raw)
        head = client.head_manifest(digest)
        assert head is not None
        assert (head.digest, head.size, head.media_type) == (
            digest,
            len(raw),
            media_types.OCI_MANIFEST,
        )
        with pytest.raises(NotFoundError) as no_tags:  # distribution: a repo without tags
            client.list_tags()
        assert no_tags.value.code == "NAME_UNKNOWN"

        fetched = client.get_manifest(digest)
        assert isinstance(fetched, OCIManifest)
        assert fetched.to_bytes() == raw and fetched.digest == digest

        assert client.put_manifest(parse_manifest(raw), tag="v1") == digest
        by_tag = client.get_manifest("v1")
        assert by_tag.to_bytes() == raw
        tag_head = client.head_manifest("v1")
        assert tag_head is not None and tag_head.digest == digest
        assert client.list_tags() == ["v1"]

        client.delete_manifest(digest)
        assert client.head_manifest(digest) is None
        with pytest.raises(NotFoundError) as missing:
            client.get_manifest(digest)
    error = missing.value
    assert (error.status, error.code) == (404, "MANIFEST_UNKNOWN")
    assert (error.registry, error.repository) == (registry.host, unique_repo)
    assert unique_repo in str(error)


def test_docker_schema2_manifest_keeps_its_media_type(registry: Registry, unique_repo: str) -> None:
    config, layer = _config("amd64"), secrets.token_bytes(1024)
    raw = image_manifest(config, [layer], media_types.DOCKER_MANIFEST)
    with client_for(registry, unique_repo) as client:
        client.upload_blobs([config, layer])
        digest = client.put_manifest(raw, tag="docker")
        head = client.head_manifest("docker")
        fetched = client.get_manifest("docker")
    assert head is not None and head.media_type == media_types.DOCKER_MANIFEST
    assert isinstance(fetched, DockerManifest) and fetched.digest == digest


def test_pushed_busybox_is_read_back_exactly(busybox_image: PushedImage, tmp_path: Path) -> None:
    reference = Reference.parse(busybox_image.tag_ref)
    with client_for(busybox_image.registry, reference.repository) as client:
        manifest = client.get_image_manifest(busybox_image.tag)
        assert manifest.to_bytes() == busybox_image.manifest
        assert str(manifest.digest) == busybox_image.manifest_digest
        layer = manifest.layers[0]
        size = client.get_blob(layer.digest, tmp_path / "layer.tar.gz")
        config = b"".join(client.iter_blob(manifest.config.digest))
    assert size == layer.size
    assert (tmp_path / "layer.tar.gz").read_bytes() == busybox_image.layer
    assert config == busybox_image.config


def test_client_from_reference_normalises_like_docker() -> None:
    client = RegistryClient.from_reference("busybox:1.36")
    try:
        assert (client.registry, client.repository) == ("docker.io", "library/busybox")
        assert str(client.base_url) == "https://registry-1.docker.io"
    finally:
        client.close()


# --- Indexes and platforms ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index_type", "manifest_type"),
    [
        (media_types.OCI_INDEX, media_types.OCI_MANIFEST),
        (media_types.DOCKER_MANIFEST_LIST, media_types.DOCKER_MANIFEST),
    ],
)
def test_index_is_followed_to_the_wanted_platform(
    registry: Registry, unique_repo: str, index_type: str, manifest_type: str
) -> None:
    layer = secrets.token_bytes(512)
    platforms = [("amd64", None), ("arm64", "v8"), ("arm", "v7")]
    entries, manifests = [], {}
    with client_for(registry, unique_repo) as client:
        client.upload_blob(layer)
        for architecture, variant in platforms:
            config = _config(architecture, variant)
            client.upload_blob(config)
            raw = image_manifest(config, [layer], manifest_type)
            digest = client.put_manifest(raw)
            manifests[(architecture, variant)] = digest
            platform = {"os": "linux", "architecture": architecture}
            if variant:
                platform["variant"] = variant
            entries.append(
                {
                    "mediaType": manifest_type,
                    "digest": str(digest),
                    "size": len(raw),
                    "platform": platform,
                }
            )
        index_raw = json.dumps(
            {"schemaVersion": 2, "mediaType": index_type, "manifests": entries}
        ).encode()
        index_digest = client.put_manifest(index_raw, tag="multi")

        index = client.get_manifest("multi")
        assert isinstance(index, OCIIndex | DockerManifestList)
        assert index.digest == index_digest and index.to_bytes() == index_raw

        arm64 = client.get_image_manifest("multi", Platform.parse("linux/arm64"))
        assert arm64.digest == manifests[("arm64", "v8")]
        arm_v7 = client.get_image_manifest(index_digest, Platform.parse("linux/arm/v7"))
        assert arm_v7.digest == manifests[("arm", "v7")]
        assert (
            resolve_platform(index, Platform.parse("linux/amd64")).digest
            == manifests[("amd64", None)]
        )

        with pytest.raises(PlatformNotFoundError) as missing:
            client.get_image_manifest("multi", Platform.parse("linux/s390x"))
    assert missing.value.wanted == "linux/s390x"
    assert missing.value.available == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    assert "linux/amd64, linux/arm64/v8, linux/arm/v7" in str(missing.value)
    assert str(missing.value).startswith(f"{client.registry}/{client.repository}:multi: ")


# --- Blobs ----------------------------------------------------------------------------------


class _OneWayStream(io.RawIOBase):
    """A readable stream that cannot seek (like a pipe)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(min(len(buffer), 7000))  # short reads, as pipes give
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_blob_uploads_in_every_strategy(
    registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    blobs = {name: secrets.token_bytes(300_000 + i) for i, name in enumerate("abcdef")}
    file_path = tmp_path / "blob-b"
    file_path.write_bytes(blobs["b"])
    (tmp_path / "blob-c").write_bytes(blobs["c"])
    expected = {name: sha256_of_bytes(data) for name, data in blobs.items()}
    with client_for(registry, unique_repo) as client:
        results = {
            "a": client.upload_blob(blobs["a"]),  # bytes: one PUT
            "b": client.upload_blob(file_path, digest=expected["b"]),  # file, digest known: PUT
            "c": client.upload_blob(tmp_path / "blob-c"),  # file, digest unknown: streamed PATCH
            "d": client.upload_blob(_OneWayStream(blobs["d"])),  # pipe: streamed PATCH
            "e": client.upload_blob(io.BytesIO(blobs["e"]), chunk_size=64 * 1024),  # chunks
            "f": client.upload_blob(_OneWayStream(blobs["f"]), chunk_size=100_000),
        }
        for name, data in blobs.items():
            assert results[name] == (expected[name], len(data)), name
            assert client.blob_size(expected[name]) == len(data)
            assert b"".join(client.iter_blob(expected[name])) == data
    for name, data in blobs.items():
        assert registry.blob_path(str(expected[name])).read_bytes() == data


def test_upload_of_an_existing_blob_sends_nothing(registry: Registry, unique_repo: str) -> None:
    data = secrets.token_bytes(1000)
    with client_for(registry, unique_repo) as client:
        client.upload_blob(data)
        progress: list[tuple[int, int | None]] = []
        result = client.upload_blob(
            data, progress=lambda done, total: progress.append((done, total))
        )
    assert result == (sha256_of_bytes(data), 1000)
    assert progress == [(1000, 1000)]


def test_upload_with_a_wrong_digest_is_refused(
    registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    data = secrets.token_bytes(5000)
    wrong = sha256_of_bytes(b"something else")
    path = tmp_path / "blob"
    path.write_bytes(data)
    with client_for(registry, unique_repo) as client:
        with pytest.raises(DigestMismatchError):
            client.upload_blob(io.BytesIO(data), digest=wrong, chunk_size=1024)
        assert client.blob_size(wrong) is None


def test_get_blob_to_a_path_a_writer_and_with_progress(
    registry: Registry, unique_repo: str, tmp_path: Path
) -> None:
    data = secrets.token_bytes(3 * 1024 * 1024 + 17)
    with client_for(registry, unique_repo) as client:
        digest, _ = client.upload_blob(data)
        progress: list[tuple[int, int | None]] = []
        size = client.get_blob(
            digest, tmp_path / "out", progress=lambda d, t: progress.append((d, t))
        )
        buffer = io.BytesIO()
        client.get_blob(str(digest), buffer)
    assert size == len(data)
    assert (tmp_path / "out").read_bytes() == data and buffer.getvalue() == data
    assert progress[-1] == (len(data), len(data))
    assert [done for done, _ in progress] == sorted(done for done, _ in progress)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary file left


def test_missing_blob(registry: Registry, unique_repo: str, tmp_path: Path) -> None:
    missing = Digest("sha256", "0" * 64)
    with client_for(registry, unique_repo) as client:
        client.upload_blob(b"make the repository exist")
        assert client.blob_size(missing) is None
        with pytest.raises(NotFoundError) as error:
            client.get_blob(missing, tmp_path / "never")
    assert error.value.code == "BLOB_UNKNOWN"
    assert not any(tmp_path.iterdir())


# --- Mounting and copying -------------------------------------------------------------------


def test_mount_between_repositories_and_the_202_fallback(
    registry: Registry, unique_repo: str
) -> None:
    data = secrets.token_bytes(4096)
    with client_for(registry, f"{unique_repo}/source") as source:
        digest, _ = source.upload_blob(data)
        target = source.for_repository(f"{unique_repo}/target")
        if registry.token_service is not None:
            registry.token_service.reset_stats()
        assert target.mount_blob(digest, source.repository) is True
        assert target.blob_size(digest) == len(data)
        if registry.token_service is not None:
            scopes = {
                scope for entry in registry.token_service.stats() for scope in entry["scopes"]
            }
            assert any(
                s.startswith(f"repository:{source.repository}:") and "pull" in s for s in scopes
            )
            assert any(
                s.startswith(f"repository:{target.repository}:") and "push" in s for s in scopes
            )

        # A blob the source does not have: the registry answers 202 (a plain upload session).
        absent = sha256_of_bytes(secrets.token_bytes(64))
        other = source.for_repository(f"{unique_repo}/other")
        assert other.mount_blob(absent, source.repository) is False
        assert other.blob_size(absent) is None

        # copy_blob mounts when it can, and uploads when it cannot.
        fresh = source.for_repository(f"{unique_repo}/copy")
        assert fresh.copy_blob(source, digest) == (digest, len(data))
        assert b"".join(fresh.iter_blob(digest)) == data


def test_copy_blobs_between_registries(
    registry: Registry, registry_anonymous: Registry, unique_repo: str
) -> None:
    blobs = [secrets.token_bytes(200_000 + i) for i in range(3)]
    with (
        client_for(registry_anonymous, f"{unique_repo}/from") as source,
        client_for(registry, f"{unique_repo}/to", max_concurrency=2) as target,
    ):
        digests = [digest for digest, _ in source.upload_blobs(blobs)]
        progress: list[int] = []
        copied = target.copy_blobs(source, digests, progress=lambda done, _t: progress.append(done))
        assert copied == [(d, len(b)) for d, b in zip(digests, blobs, strict=True)]
        for digest, data in zip(digests, blobs, strict=True):
            assert b"".join(target.iter_blob(digest)) == data
    assert progress[-1] == sum(len(b) for b in blobs)


# --- Listing and errors ---------------------------------------------------------------------


def test_tags_and_catalog(registry: Registry, unique_repo: str) -> None:
    config = _config("amd64")
    raw = image_manifest(config, [], media_types.OCI_MANIFEST)
    tags = [f"t{i:03d}" for i in range(12)]
    with client_for(registry, unique_repo) as client:
        client.upload_blob(config)
        for tag in tags:
            client.put_manifest(raw, tag=tag)
        assert sorted(client.list_tags(page_size=5)) == tags
        repositories = client.catalog(page_size=3)
    assert unique_repo in repositories
    assert len(repositories) == len(set(repositories))


def test_wrong_credentials_are_reported_without_them(
    registry_basic: Registry, unique_repo: str
) -> None:
    password = "not-the-password-" + secrets.token_hex(4)
    client = client_for(registry_basic, unique_repo, credentials=("tester", password))
    with client, pytest.raises(UnauthorizedError) as error:
        client.get_manifest("latest")
    assert error.value.status == 401 and error.value.code == "UNAUTHORIZED"
    assert error.value.registry == registry_basic.host
    for text in (str(error.value), repr(error.value), repr(error.value.detail)):
        assert password not in text
        assert "Basic " not in text and "Authorization" not in text
