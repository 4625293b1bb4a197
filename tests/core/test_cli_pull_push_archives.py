"""crane's `pull` (to an OCI layout or a docker-archive), `push` of a docker-archive, `copy
--platform`, `validate` of a docker-archive, and `--platform` on a two-platform index for
`digest`, `manifest`, `config` and `export`: run in-process against real loopback registries,
each held to what skopeo reads from the registry and from the files written."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core import cli
from tests.core.cli_support import Capture, cli_bytes, cli_json, cli_text
from tests.harness import tools
from tests.harness.busybox import (
    PATH_ENV,
    ImageBlobs,
    PushedImage,
    base_files,
    host_architecture,
    image_from_layer,
    pack_layer,
    push_image_to,
    put,
    tar_entry,
)
from tests.harness.registry import Registry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
HOST_ARCH = host_architecture()
OTHER_ARCH = "arm64" if HOST_ARCH == "amd64" else "amd64"
HOST, OTHER = f"linux/{HOST_ARCH}", f"linux/{OTHER_ARCH}"


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.core.registry_support import hermetic_cli_environment

    hermetic_cli_environment(monkeypatch, tmp_path)


@pytest.fixture(params=["registry_anonymous", "registry_token"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Registry:
    """A registry of each mode, its credentials (if any) in the docker config the CLI reads."""
    found: Registry = request.getfixturevalue(request.param)
    (tmp_path / "docker/config.json").write_text(json.dumps(found.auth_json()))
    return found


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _compact(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _image_for(architecture: str) -> ImageBlobs:
    """busybox with /etc/platform saying ``architecture``: a layer and a config of its own."""
    files = base_files()
    put(files, tar_entry("etc/platform", tarfile.REGTYPE, 0o644), f"{architecture}\n".encode())
    tar_bytes, layer = pack_layer(files, compresslevel=1)
    image = image_from_layer(
        tar_bytes, layer, env=[PATH_ENV], cmd=["sh"], created_by=f"test {architecture}"
    )
    config = json.loads(image.config)
    config["architecture"] = architecture
    config_bytes = _compact(config)
    manifest = json.loads(image.manifest)
    manifest["config"].update(digest=_sha256(config_bytes), size=len(config_bytes))
    return dataclasses.replace(
        image, config=config_bytes, manifest=_compact(manifest), architecture=architecture
    )


@pytest.fixture(scope="module")
def two_images() -> dict[str, ImageBlobs]:
    return {HOST: _image_for(HOST_ARCH), OTHER: _image_for(OTHER_ARCH)}


@dataclasses.dataclass(frozen=True)
class TwoPlatforms:
    registry: Registry
    repository: str
    images: dict[str, PushedImage]  # by platform, each tagged by its architecture
    index: bytes  # tagged `multi`

    @property
    def index_ref(self) -> str:
        return self.registry.ref(self.repository, "multi")


@pytest.fixture
def two_platforms(
    two_images: dict[str, ImageBlobs], registry: Registry, unique_repo: str
) -> TwoPlatforms:
    """An index of two images, for this machine's platform and another, as `multi`."""
    pushed = {
        platform: push_image_to(image, registry, unique_repo, image.architecture)
        for platform, image in two_images.items()
    }
    index = _compact(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": image.image.manifest_media_type,
                    "digest": image.manifest_digest,
                    "size": len(image.manifest),
                    "platform": {"architecture": image.image.architecture, "os": "linux"},
                }
                for image in pushed.values()
            ],
        }
    )
    with registry.httpx_client() as client:
        response = client.put(
            f"/v2/{unique_repo}/manifests/multi",
            content=index,
            headers={"Content-Type": OCI_INDEX},
        )
        assert response.status_code == 201, response.text
    return TwoPlatforms(registry, unique_repo, pushed, index)


def _fails(capsys: Capture, *argv: str) -> tuple[str, str]:
    """Run a command that must fail (exit 1): its stdout and stderr."""
    status = cli.main(["-q", *argv])
    out, err = capsys.readouterr()
    assert status == 1, err.decode()
    return out.decode(), err.decode()


def _hidden(directory: Path) -> list[str]:
    """Temporary files or directories a writer left behind."""
    return [path.name for path in directory.iterdir() if path.name.startswith(".")]


def _archive_manifest(path: Path) -> list[dict[str, Any]]:
    with tarfile.open(path) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        entries: list[dict[str, Any]] = json.loads(member.read())
    return entries


# --- pull -----------------------------------------------------------------------------------


def test_pull_an_image_to_a_layout_and_to_a_docker_archive(
    capsysbinary: Capture, two_platforms: TwoPlatforms, tmp_path: Path
) -> None:
    registry = two_platforms.registry
    image = two_platforms.images[HOST]
    ref = image.tag_ref
    raw = tools.skopeo_inspect(ref, raw=True, registry=registry)
    raw_config = tools.skopeo_inspect(ref, raw=True, config=True, registry=registry)
    digest = tools.skopeo_inspect(ref, registry=registry)["Digest"]
    assert digest == image.manifest_digest == _sha256(raw)

    layout = tmp_path / "layout"
    assert cli_text(capsysbinary, "pull", ref, str(layout)) == f"{digest}\n"
    assert tools.skopeo_inspect(f"oci:{layout}:{image.tag}", raw=True) == raw
    assert tools.skopeo_inspect(f"oci:{layout}:{image.tag}", raw=True, config=True) == raw_config
    for layer in json.loads(raw)["layers"]:
        blob = layout / "blobs/sha256" / layer["digest"].removeprefix("sha256:")
        assert _sha256(blob.read_bytes()) == layer["digest"]
    validated = cli_json(capsysbinary, "validate", str(layout))
    assert validated["ok"] is True, validated

    archive = tmp_path / "image.tar"
    document = cli_json(capsysbinary, "pull", ref, str(archive), "--format", "docker-archive")
    assert document == {
        "reference": ref,
        "digest": digest,
        "format": "docker-archive",
        "output": str(archive),
        "platforms": [HOST],
    }
    # skopeo reads the archive as the same image: the config's very bytes, the same diff_ids.
    assert tools.skopeo_inspect(f"docker-archive:{archive}", raw=True, config=True) == raw_config
    inspected = tools.skopeo_inspect(f"docker-archive:{archive}")
    assert inspected["Layers"] == json.loads(raw_config)["rootfs"]["diff_ids"]
    assert [entry["RepoTags"] for entry in _archive_manifest(archive)] == [[ref]]

    # By digest: the layout lists the image unnamed; the archive gives it no name.
    by_digest = image.ref
    pinned = tmp_path / "pinned"
    assert cli_json(capsysbinary, "pull", by_digest, str(pinned))["digest"] == digest
    assert tools.skopeo_inspect(f"oci:{pinned}", raw=True) == raw
    pinned_archive = tmp_path / "pinned.tar"
    cli_text(capsysbinary, "pull", by_digest, str(pinned_archive), "--format", "docker-archive")
    assert [entry["RepoTags"] for entry in _archive_manifest(pinned_archive)] == [[]]
    assert _hidden(tmp_path) == []


def test_pull_a_two_platform_index(
    capsysbinary: Capture, two_platforms: TwoPlatforms, tmp_path: Path
) -> None:
    registry, index_ref = two_platforms.registry, two_platforms.index_ref
    raw_index = tools.skopeo_inspect(index_ref, raw=True, registry=registry)
    assert raw_index == two_platforms.index

    # Every platform: the index as the registry has it, each image whole.
    layout = tmp_path / "all"
    document = cli_json(capsysbinary, "pull", index_ref, str(layout))
    assert document == {
        "reference": index_ref,
        "digest": _sha256(raw_index),
        "format": "oci",
        "output": str(layout),
        "platforms": [HOST, OTHER],
    }
    assert tools.skopeo_inspect(f"oci:{layout}:multi", raw=True) == raw_index
    for pushed in two_platforms.images.values():
        blobs = layout / "blobs/sha256"
        for digest in (pushed.manifest_digest, pushed.config_digest, pushed.layer_digest):
            assert (blobs / digest.removeprefix("sha256:")).is_file(), digest
    copied = tmp_path / "by-skopeo"
    tools.skopeo_copy_to_oci_layout(
        f"oci:{layout}:multi", copied, "t", extra_args=["--override-arch", OTHER_ARCH]
    )
    assert tools.skopeo_inspect(f"oci:{copied}:t", raw=True) == two_platforms.images[OTHER].manifest
    assert cli_json(capsysbinary, "validate", str(layout))["ok"] is True

    # One platform: that image alone, in the layout and in an archive.
    other = two_platforms.images[OTHER]
    one = tmp_path / "one"
    document = cli_json(capsysbinary, "pull", index_ref, str(one), "--platform", OTHER)
    assert (document["digest"], document["platforms"]) == (other.manifest_digest, [OTHER])
    assert tools.skopeo_inspect(f"oci:{one}:multi", raw=True) == other.manifest
    assert tools.skopeo_inspect(f"oci:{one}:multi", raw=True, config=True) == other.config
    archive = tmp_path / "other.tar"
    out = cli_text(
        capsysbinary,
        "pull",
        index_ref,
        str(archive),
        "--format=docker-archive",
        "--platform",
        OTHER,
    )
    assert out == f"{other.manifest_digest}\n"
    assert tools.skopeo_inspect(f"docker-archive:{archive}", raw=True, config=True) == other.config
    assert tools.skopeo_inspect(f"docker-archive:{archive}")["Layers"] == [other.diff_id]
    assert [entry["RepoTags"] for entry in _archive_manifest(archive)] == [[index_ref]]


def test_pull_refuses_a_multi_platform_archive_and_leaves_nothing_behind(
    capsysbinary: Capture, two_platforms: TwoPlatforms, tmp_path: Path
) -> None:
    index_ref = two_platforms.index_ref
    archive = tmp_path / "multi.tar"
    _, err = _fails(capsysbinary, "pull", index_ref, str(archive), "--format", "docker-archive")
    assert f"pants-oci: error: {index_ref} is an index of 2 images ({HOST}, {OTHER})" in err
    assert "a docker-archive holds one image" in err
    assert "hint: choose one of the available platforms with --platform" in err
    assert not archive.exists()
    # An index of one image needs no --platform.
    other = two_platforms.images[OTHER]
    single = json.loads(two_platforms.index)
    single["manifests"] = [
        entry for entry in single["manifests"] if entry["digest"] == other.manifest_digest
    ]
    with two_platforms.registry.httpx_client() as client:
        response = client.put(
            f"/v2/{two_platforms.repository}/manifests/single",
            content=_compact(single),
            headers={"Content-Type": OCI_INDEX},
        )
        assert response.status_code == 201, response.text
    single_ref = two_platforms.registry.ref(two_platforms.repository, "single")
    out = cli_text(capsysbinary, "pull", single_ref, str(archive), "--format", "docker-archive")
    assert out == f"{other.manifest_digest}\n"
    assert tools.skopeo_inspect(f"docker-archive:{archive}", raw=True, config=True) == other.config

    # A pull that fails leaves the layout that was there as it was.
    layout = tmp_path / "layout"
    cli_text(capsysbinary, "pull", two_platforms.images[HOST].tag_ref, str(layout))
    before = sorted(str(path) for path in layout.rglob("*"))
    _, err = _fails(capsysbinary, "pull", index_ref, str(layout), "--platform", "linux/s390x")
    assert "linux/s390x" in err and "--platform" in err
    _, err = _fails(
        capsysbinary,
        "pull",
        two_platforms.registry.ref(two_platforms.repository, "nope"),
        str(layout),
    )
    assert "nope" in err
    assert sorted(str(path) for path in layout.rglob("*")) == before
    assert _hidden(tmp_path) == []
    # An output that is not a layout is never replaced.
    (tmp_path / "other").mkdir()
    (tmp_path / "other/keep.txt").write_text("mine")
    _, err = _fails(capsysbinary, "pull", index_ref, str(tmp_path / "other"))
    assert "is not an OCI image layout; refusing to replace it" in err
    assert (tmp_path / "other/keep.txt").read_text() == "mine"


# --- push of a docker-archive -----------------------------------------------------------------


def test_push_a_docker_archive(
    capsysbinary: Capture, two_platforms: TwoPlatforms, tmp_path: Path
) -> None:
    registry = two_platforms.registry
    source = two_platforms.images[OTHER]
    archive = tmp_path / "image.tar"
    cli_text(capsysbinary, "pull", source.tag_ref, str(archive), "--format", "docker-archive")
    archive_config = tools.skopeo_inspect(f"docker-archive:{archive}", raw=True, config=True)
    archive_layers = tools.skopeo_inspect(f"docker-archive:{archive}")["Layers"]

    target = registry.ref(two_platforms.repository, "from-archive")
    other = registry.ref(f"{two_platforms.repository}/copy", "2")
    document = json.loads(
        cli_text(capsysbinary, "push", str(archive), "--to", target, "--to", other)
    )
    digest = tools.skopeo_inspect(target, registry=registry)["Digest"]
    assert document == {
        "pushed": [{"reference": target, "digest": digest}, {"reference": other, "digest": digest}]
    }
    for ref in (target, other):
        pushed_config = tools.skopeo_inspect(ref, raw=True, config=True, registry=registry)
        assert pushed_config == archive_config == source.config
        assert json.loads(pushed_config)["rootfs"]["diff_ids"] == archive_layers
        assert cli_json(capsysbinary, "validate", ref)["ok"] is True

    # An archive of two images: push says which it cannot choose between.
    two = tmp_path / "two.tar"
    with tarfile.open(archive) as tar, tarfile.open(two, "w") as out:
        for member in tar.getmembers():
            if member.name != "manifest.json":
                out.addfile(member, tar.extractfile(member))
        [entry] = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        second = {**entry, "RepoTags": ["example.com/second:1"]}
        data = json.dumps([entry, second]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    _, err = _fails(capsysbinary, "push", str(two), "--to", target)
    assert f"docker archive {two} holds 2 images ({source.tag_ref}, example.com/second:1)" in err
    assert "push takes an archive of one image" in err


# --- copy --platform --------------------------------------------------------------------------


def test_copy_one_platform_of_an_index(capsysbinary: Capture, two_platforms: TwoPlatforms) -> None:
    registry = two_platforms.registry
    other = two_platforms.images[OTHER]
    destination = registry.ref(f"{two_platforms.repository}/one", "1")
    out = cli_text(capsysbinary, "copy", two_platforms.index_ref, destination, "--platform", OTHER)
    assert json.loads(out) == {
        "source": two_platforms.index_ref,
        "destination": destination,
        "digest": other.manifest_digest,
    }
    assert tools.skopeo_inspect(destination, raw=True, registry=registry) == other.manifest
    assert (
        tools.skopeo_inspect(destination, raw=True, config=True, registry=registry) == other.config
    )

    every = registry.ref(f"{two_platforms.repository}/every", "1")
    cli_text(capsysbinary, "copy", two_platforms.index_ref, every)
    assert tools.skopeo_inspect(every, raw=True, registry=registry) == two_platforms.index
    _, err = _fails(
        capsysbinary, "copy", two_platforms.index_ref, every, "--platform", "linux/s390x"
    )
    assert "linux/s390x" in err
    assert tools.skopeo_inspect(every, raw=True, registry=registry) == two_platforms.index


# --- --platform of digest, manifest, config, export --------------------------------------------


def test_platform_picks_the_image_of_a_two_platform_index(
    capsysbinary: Capture, two_platforms: TwoPlatforms, tmp_path: Path
) -> None:
    registry, index_ref = two_platforms.registry, two_platforms.index_ref
    entries = {
        f"{entry['platform']['os']}/{entry['platform']['architecture']}": entry
        for entry in json.loads(tools.skopeo_inspect(index_ref, raw=True, registry=registry))[
            "manifests"
        ]
    }
    for platform, pushed in two_platforms.images.items():
        digest = entries[platform]["digest"]
        assert digest == pushed.manifest_digest
        by_digest = registry.ref(two_platforms.repository, digest)
        raw = tools.skopeo_inspect(by_digest, raw=True, registry=registry)
        raw_config = tools.skopeo_inspect(by_digest, raw=True, config=True, registry=registry)
        assert cli_json(capsysbinary, "digest", index_ref, "--platform", platform) == {
            "reference": index_ref,
            "digest": digest,
        }
        assert cli_bytes(capsysbinary, "manifest", index_ref, "--platform", platform) == raw
        assert cli_bytes(capsysbinary, "config", index_ref, "--platform", platform) == raw_config
        output = tmp_path / f"{pushed.image.architecture}.tar"
        assert (
            cli_text(capsysbinary, "export", index_ref, str(output), "--platform", platform) == ""
        )
        with tarfile.open(output) as tar:
            marker = tar.extractfile("etc/platform")
            assert marker is not None
            assert marker.read() == f"{pushed.image.architecture}\n".encode()


# --- validate of a docker-archive ---------------------------------------------------------------


def test_validate_a_docker_archive(
    capsysbinary: Capture, two_platforms: TwoPlatforms, tmp_path: Path
) -> None:
    image = two_platforms.images[HOST]
    archive = tmp_path / "good.tar"
    cli_text(capsysbinary, "pull", image.tag_ref, str(archive), "--format", "docker-archive")
    assert cli_text(capsysbinary, "validate", str(archive)) == f"OK {archive}\n"
    for target in (str(archive), f"docker-archive:{archive}"):
        assert cli_json(capsysbinary, "validate", target) == {
            "reference": target,
            "ok": True,
            "problems": [],
        }

    # One byte of the layer changed: its tar no longer hashes to the config's diff_id.
    layer_member = f"{image.diff_id.removeprefix('sha256:')}.tar"
    corrupt = tmp_path / "corrupt.tar"
    data = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        member = tar.getmember(layer_member)
        data[member.offset_data + member.size // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    changed = _sha256(bytes(data[member.offset_data : member.offset_data + member.size]))
    out, _ = _fails(capsysbinary, "validate", str(corrupt))
    assert out == (
        f"config {image.config_digest.removeprefix('sha256:')}.json of image 0 of manifest.json "
        f"of {corrupt}: rootfs.diff_ids[0] is {image.diff_id}, but layer 0 ({layer_member}) "
        f"hashes to {changed}\n"
    )
    status = cli.main(["-q", "validate", str(corrupt), "--json"])
    document = json.loads(capsysbinary.readouterr().out)
    assert status == 1
    assert document["ok"] is False
    assert [problem["kind"] for problem in document["problems"]] == ["diff-ids"]

    # A config whose bytes are not the digest its name says; a layer the archive lacks.
    broken = tmp_path / "broken.tar"
    with tarfile.open(archive) as tar, tarfile.open(broken, "w") as out_tar:
        for member in tar.getmembers():
            if member.name == layer_member:
                continue
            content = tar.extractfile(member)
            assert content is not None
            body = content.read()
            if member.name.endswith(".json") and member.name != "manifest.json":
                body += b" "
            member.size = len(body)
            out_tar.addfile(member, io.BytesIO(body))
    status = cli.main(["-q", "validate", str(broken), "--json"])
    document = json.loads(capsysbinary.readouterr().out)
    assert status == 1
    assert sorted(problem["kind"] for problem in document["problems"]) == ["digest", "missing"]


def test_editing_an_index_without_platform_says_the_others_are_left_out(
    capsysbinary: Capture, two_platforms: TwoPlatforms
) -> None:
    index_ref = two_platforms.index_ref
    target = two_platforms.registry.ref(two_platforms.repository, "edited")
    assert cli.main(["-q", "mutate", index_ref, "-t", target, "--env", "A=1"]) == 0
    err = capsysbinary.readouterr().err.decode()
    assert f"{index_ref} is an index: only the image for {HOST} (this machine's) is edited" in err
    manifest = json.loads(tools.skopeo_inspect(target, raw=True, registry=two_platforms.registry))
    assert manifest["mediaType"] != OCI_INDEX  # the one image, as the warning said

    args = ["-q", "mutate", index_ref, "-t", target, "--env", "A=1", "--platform", OTHER]
    assert cli.main(args) == 0
    assert capsysbinary.readouterr().err == b""  # chosen: nothing to warn about


def test_a_platform_an_image_is_not_for_names_the_one_it_is_for(
    capsysbinary: Capture, two_platforms: TwoPlatforms
) -> None:
    image = two_platforms.images[HOST].tag_ref
    assert cli.main(["-q", "digest", image, "--platform", OTHER]) == 1
    err = capsysbinary.readouterr().err.decode()
    assert f"is an image for {HOST}, not {OTHER}" in err
    assert f"hint: the image is for {HOST} only: give that with --platform" in err
