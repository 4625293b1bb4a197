"""crane's everyday commands (`ls`, `catalog`, `digest`, `manifest`, `config`, `blob`, `tag`,
`delete`), run in-process against real loopback registries (anonymous, and token auth through
a docker config.json), each held to what skopeo (or the registry's own API) sees."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from pants_oci.core import cli
from tests.core.cli_support import Capture, cli_bytes, cli_json, cli_text
from tests.harness import tools
from tests.harness.busybox import ImageBlobs, PushedImage, push_image_to
from tests.harness.json_handler import JsonHandler
from tests.harness.registry import Registry

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


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


@pytest.fixture
def pushed(busybox_image_blobs: ImageBlobs, registry: Registry, unique_repo: str) -> PushedImage:
    """busybox in a repository of this test's own, as `1`; and an index of it as `multi`."""
    image = push_image_to(busybox_image_blobs, registry, unique_repo, "1")
    index = json.dumps(
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
            ],
        }
    ).encode()
    with registry.httpx_client() as client:
        response = client.put(
            f"/v2/{unique_repo}/manifests/multi",
            content=index,
            headers={"Content-Type": OCI_INDEX},
        )
        assert response.status_code == 201, response.text
    return image


def _fails(capsys: Capture, *argv: str) -> str:
    """Run a command that must fail (exit 1): its stderr."""
    status = cli.main(list(argv))
    err = capsys.readouterr().err.decode()
    assert status == 1, err
    return err


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_ls_lists_the_tags_skopeo_lists(
    capsysbinary: Capture, registry: Registry, pushed: PushedImage
) -> None:
    repository = f"{registry.host}/{pushed.repository}"
    expected = tools.skopeo_list_tags(repository, registry=registry)
    assert sorted(expected) == ["1", "multi"]
    assert cli_text(capsysbinary, "ls", repository).splitlines() == expected
    assert cli_json(capsysbinary, "ls", repository) == {"repository": repository, "tags": expected}
    # A tag is not a repository.
    assert "without a tag or digest" in _fails(capsysbinary, "ls", f"{repository}:1")


def _registry_catalog(registry: Registry) -> list[str]:
    """The registry's /v2/_catalog, every page, asked directly."""
    names: list[str] = []
    with registry.httpx_client() as client:
        url: str | None = "/v2/_catalog"
        while url is not None:
            response = client.get(url)
            assert response.status_code == 200, response.text
            names += response.json()["repositories"]
            link = response.headers.get("Link")
            url = link.split(";")[0].strip("<> ") if link else None
    return names


def test_catalog_lists_the_repositories_of_a_registry(
    capsysbinary: Capture, registry: Registry, pushed: PushedImage
) -> None:
    listed = cli_text(capsysbinary, "catalog", registry.host).splitlines()
    assert pushed.repository in listed
    assert listed == _registry_catalog(registry)
    document = cli_json(capsysbinary, "catalog", registry.host)
    assert document["registry"] == registry.host
    assert pushed.repository in document["repositories"]
    assert f"invalid registry '{registry.host}/{pushed.repository}'" in _fails(
        capsysbinary, "catalog", f"{registry.host}/{pushed.repository}"
    )


def test_digest_manifest_and_config_are_what_skopeo_sees(
    capsysbinary: Capture,
    registry: Registry,
    pushed: PushedImage,
) -> None:
    image_ref = pushed.tag_ref
    index_ref = registry.ref(pushed.repository, "multi")
    platform = f"linux/{pushed.image.architecture}"
    raw_image = tools.skopeo_inspect(image_ref, raw=True, registry=registry)
    raw_index = tools.skopeo_inspect(index_ref, raw=True, registry=registry)
    raw_config = tools.skopeo_inspect(image_ref, raw=True, config=True, registry=registry)
    image_digest = tools.skopeo_inspect(image_ref, registry=registry)["Digest"]
    assert image_digest == pushed.manifest_digest == _sha256(raw_image)

    assert cli_text(capsysbinary, "digest", image_ref) == f"{image_digest}\n"
    assert cli_json(capsysbinary, "digest", image_ref) == {
        "reference": image_ref,
        "digest": image_digest,
    }
    assert cli_json(capsysbinary, "digest", index_ref)["digest"] == _sha256(raw_index)
    with_platform = cli_json(capsysbinary, "digest", index_ref, "--platform", platform)
    assert with_platform == {"reference": index_ref, "digest": image_digest}

    assert cli_bytes(capsysbinary, "manifest", image_ref) == raw_image
    assert cli_bytes(capsysbinary, "manifest", index_ref) == raw_index
    assert cli_bytes(capsysbinary, "manifest", index_ref, "--platform", platform) == raw_image
    assert json.loads(raw_index)["mediaType"] == OCI_INDEX

    assert cli_bytes(capsysbinary, "config", image_ref) == raw_config
    assert cli_bytes(capsysbinary, "config", index_ref, "--platform", platform) == raw_config
    assert _sha256(raw_config) == pushed.config_digest

    assert "linux/s390x" in _fails(capsysbinary, "digest", index_ref, "--platform", "linux/s390x")


def test_blob_streams_or_writes_the_verified_bytes(
    capsysbinary: Capture,
    registry: Registry,
    pushed: PushedImage,
    tmp_path: Path,
) -> None:
    manifest = json.loads(tools.skopeo_inspect(pushed.tag_ref, raw=True, registry=registry))
    [layer] = manifest["layers"]
    layer_ref = registry.ref(pushed.repository, layer["digest"])
    streamed = cli_bytes(capsysbinary, "blob", layer_ref)
    assert _sha256(streamed) == layer["digest"] and len(streamed) == layer["size"]

    output = tmp_path / "layer.tar.gz"
    assert cli_text(capsysbinary, "blob", layer_ref, "-o", str(output)) == ""
    assert output.read_bytes() == streamed
    output.unlink()
    written = cli_json(capsysbinary, "blob", layer_ref, "-o", str(output))
    assert written == {
        "reference": layer_ref,
        "digest": layer["digest"],
        "size": layer["size"],
        "output": str(output),
    }
    assert _sha256(output.read_bytes()) == layer["digest"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    # No digest, or a blob the repository lacks: exit 1, nothing written.
    assert f"invalid blob reference '{pushed.tag_ref}'" in _fails(
        capsysbinary, "blob", pushed.tag_ref, "-o", str(tmp_path / "none")
    )
    missing = registry.ref(pushed.repository, "sha256:" + "0" * 64)
    assert "0" * 64 in _fails(capsysbinary, "blob", missing, "-o", str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()


def test_tag_puts_the_same_manifest_under_another_tag(
    capsysbinary: Capture, registry: Registry, pushed: PushedImage
) -> None:
    new = registry.ref(pushed.repository, "2")
    assert cli_json(capsysbinary, "tag", pushed.tag_ref, "2") == {
        "reference": pushed.tag_ref,
        "tagged": new,
        "digest": pushed.manifest_digest,
    }
    assert tools.skopeo_inspect(new, registry=registry)["Digest"] == pushed.manifest_digest
    assert tools.skopeo_inspect(new, raw=True, registry=registry) == pushed.manifest
    index_ref = registry.ref(pushed.repository, "multi")
    index_digest = _sha256(tools.skopeo_inspect(index_ref, raw=True, registry=registry))
    by_digest = registry.ref(pushed.repository, index_digest)
    assert cli_text(capsysbinary, "tag", by_digest, "multi-2") == (
        f"{registry.ref(pushed.repository, 'multi-2')}@{index_digest}\n"
    )
    raw = tools.skopeo_inspect(
        registry.ref(pushed.repository, "multi-2"), raw=True, registry=registry
    )
    assert _sha256(raw) == index_digest
    assert "invalid tag 'no/slash'" in _fails(capsysbinary, "tag", pushed.tag_ref, "no/slash")


def test_delete_removes_the_manifest(
    capsysbinary: Capture, registry: Registry, pushed: PushedImage
) -> None:
    index_ref = registry.ref(pushed.repository, "multi")
    index_digest = _sha256(tools.skopeo_inspect(index_ref, raw=True, registry=registry))
    deleted = f"{registry.host}/{pushed.repository}@{index_digest}"
    assert cli_json(capsysbinary, "delete", index_ref) == {
        "reference": index_ref,
        "deleted": deleted,
        "digest": index_digest,
    }
    for gone in (index_ref, deleted):
        with pytest.raises(tools.ToolError, match="manifest unknown"):
            tools.skopeo_inspect(gone, raw=True, registry=registry)
    assert "MANIFEST_UNKNOWN" in _fails(capsysbinary, "digest", deleted)

    by_digest = registry.ref(pushed.repository, pushed.manifest_digest)
    assert cli_text(capsysbinary, "delete", by_digest) == f"{by_digest}\n"
    with pytest.raises(tools.ToolError):
        tools.skopeo_inspect(pushed.tag_ref, raw=True, registry=registry)
    assert tools.skopeo_list_tags(f"{registry.host}/{pushed.repository}", registry=registry) == []
    # Nothing left to delete.
    assert pushed.manifest_digest in _fails(capsysbinary, "delete", by_digest)


def test_a_bad_reference_exits_1_naming_it_and_a_bad_command_line_exits_2(
    capsysbinary: Capture,
) -> None:
    for command in ("ls", "digest", "manifest", "config", "blob", "delete"):
        err = _fails(capsysbinary, command, "http://127.0.0.1:9/app")
        assert err.startswith("pants-oci: error: invalid image reference 'http://127.0.0.1:9/app'")
    assert "127.0.0.1:9/Bad" in _fails(capsysbinary, "tag", "127.0.0.1:9/Bad:1", "2")
    for argv in (["ls"], ["tag", "127.0.0.1:9/app:1"], ["digest", "127.0.0.1:9/a", "--bogus"]):
        with pytest.raises(SystemExit) as exited:
            cli.main(argv)
        assert exited.value.code == 2
        assert b"usage: pants-oci" in capsysbinary.readouterr().err
    assert "blob --json needs -o FILE" in _fails(
        capsysbinary, "blob", "127.0.0.1:9/app@sha256:" + "0" * 64, "--json"
    )


class _NoDeletes(JsonHandler):
    """A registry that refuses deletes as docker-registry does without
    REGISTRY_STORAGE_DELETE_ENABLED: 405 UNSUPPORTED."""

    def do_DELETE(self) -> None:
        self.reply(405, {"errors": [{"code": "UNSUPPORTED", "message": "unsupported"}]})


def test_a_registry_that_refuses_deletes_is_a_clear_error(capsysbinary: Capture) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoDeletes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        err = _fails(capsysbinary, "delete", f"{host}/team/app@sha256:{'0' * 64}")
    finally:
        server.shutdown()
        server.server_close()
    assert "405" in err
    assert f"hint: {host} does not allow deleting manifests" in err
    assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in err
