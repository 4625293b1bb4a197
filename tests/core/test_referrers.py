"""Artifacts attached to images as OCI 1.1 referrers, pushed and read back.

The harness's registry (distribution 2.8) has no referrers API, so against it every push takes
the fallback tag scheme; that it has none is asserted, so the day it gains one these tests say
so. The referrers-API path runs against an in-memory registry behind a mock transport, which
answers as distribution-spec 1.1 says (OCI-Subject, GET /referrers)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from pants_oci.core import cli, media_types
from pants_oci.core.auth import StaticKeychain
from pants_oci.core.digest import sha256_of_bytes
from pants_oci.core.errors import ImageBuildError
from pants_oci.core.image import Image
from pants_oci.core.layout import ImageLayout
from pants_oci.core.models import Descriptor, OCIIndex, OCIManifest, parse_manifest
from pants_oci.core.referrers import (
    EMPTY_CONFIG,
    Artifact,
    artifact_manifest,
    attached_document,
    fallback_tag,
    layout_referrers,
    list_referrers,
    push_referrers,
    registry_referrers,
)
from pants_oci.core.registry import RegistryClient
from pants_oci.core.remote import push_layout
from pants_oci.core.supply_chain import (
    CYCLONEDX_MEDIA_TYPE,
    IN_TOTO_MEDIA_TYPE,
    SPDX_MEDIA_TYPE,
    SubjectImage,
    attach_supply_chain,
)
from pants_oci.core.transport import TransportOptions
from tests.core.registry_support import (
    RecordedSleeps,
    client_for,
    hermetic_cli_environment,
    options_for,
    proxy_fixture,  # noqa: F401 (the `proxy` fixture)
)
from tests.harness import tools
from tests.harness.proxies import FaultProxy
from tests.harness.registry import Registry, access_log
from tests.harness.validators import oras_pull

SUPPLY_CHAIN = [SPDX_MEDIA_TYPE, CYCLONEDX_MEDIA_TYPE, IN_TOTO_MEDIA_TYPE]


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hermetic_cli_environment(monkeypatch, tmp_path)


def _attached_image(tmp_path: Path, name: str = "image", content: str = "app") -> Path:
    """A one-layer image with its SBOMs and provenance attached, as an OCI layout."""
    files = tmp_path / f"files-{name}"
    files.mkdir()
    (files / "app.txt").write_text(content)
    layout_dir = tmp_path / name
    with Image("scratch", platform="linux/amd64") as image:
        image.add_files({"/": str(files)})
        digest = image.write_layout(layout_dir, ["latest"])
        data = image.get_image_data()
    layout = ImageLayout.open(layout_dir)
    subject = SubjectImage(
        name=f"test:{name}",
        manifest_digest=str(digest),
        platform="linux/amd64",
        layers=tuple(str(layer.digest) for layer in data.manifest.layers),
        created="1970-01-01T00:00:00Z",
    )
    attach_supply_chain(layout, data.manifest.descriptor(), subject)
    return layout_dir


def _keychain(registry: Registry) -> StaticKeychain:
    if registry.username is None:
        return StaticKeychain({})
    return StaticKeychain(
        {registry.host: {"username": registry.username, "password": registry.password}}
    )


def test_a_layout_lists_its_artifacts_untagged_beside_the_image(tmp_path: Path) -> None:
    layout_dir = _attached_image(tmp_path)
    layout = ImageLayout.open(layout_dir)
    index = layout.index()
    image, *artifacts = index.manifests
    assert layout.refs() == ["latest"]
    assert [entry.artifact_type for entry in artifacts] == SUPPLY_CHAIN
    assert all(entry.annotations and "org.opencontainers.image.ref.name" not in entry.annotations
               for entry in artifacts)  # fmt: skip
    # The layout still holds one image: what needs one finds it.
    assert layout.only_image("test") == image
    assert layout_referrers(layout, image.digest) == artifacts
    for entry in artifacts:
        manifest = parse_manifest(layout.read_blob(entry.digest))
        assert isinstance(manifest, OCIManifest)
        assert manifest.subject is not None and manifest.subject.digest == image.digest
        assert manifest.config == EMPTY_CONFIG
        assert layout.read_blob(manifest.config.digest) == b"{}"
        assert manifest.layers[0].media_type == entry.artifact_type
    # Others' tools read the image past the artifacts.
    assert json.loads(tools.skopeo_inspect(f"oci:{layout_dir}:latest", raw=True))["config"][
        "digest"
    ] == str(parse_manifest(layout.read_blob(image.digest)).config.digest)  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", ["anonymous", "token"])
def test_a_push_to_a_registry_without_the_api_lists_them_under_the_fallback_tag(
    tmp_path: Path, request: pytest.FixtureRequest, mode: str, unique_repo: str
) -> None:
    registry: Registry = request.getfixturevalue(f"registry_{mode}")
    layout_dir = _attached_image(tmp_path)
    layout = ImageLayout.open(layout_dir)
    image = layout.only_image("test")
    keychain, options = _keychain(registry), options_for(registry)
    with client_for(registry, unique_repo) as client:
        # distribution 2.8 has no referrers API: a spec-1.1 registry answers 200 here.
        assert client.get_referrers(image.digest) is None
        push_layout(layout_dir, [registry.ref(unique_repo)], keychain=keychain, options=options)
        fallback = client.get_manifest(fallback_tag(image.digest))
        assert isinstance(fallback, OCIIndex)
        assert fallback.media_type == media_types.OCI_INDEX
        expected = layout_referrers(layout, image.digest)
        assert list(fallback.manifests) == expected  # artifactType and annotations on each
        assert registry_referrers(client, image.digest) == expected
        assert registry_referrers(client, image.digest, CYCLONEDX_MEDIA_TYPE) == expected[1:2]
        # Pushing again adds nothing: each referrer is listed once.
        push_layout(layout_dir, [registry.ref(unique_repo)], keychain=keychain, options=options)
        assert client.get_manifest(fallback_tag(image.digest)) == fallback
    found = list_referrers(registry.ref(unique_repo), keychain=keychain, options=options)
    assert [(item.subject, item.descriptor) for item in found] == [
        (image.digest, entry) for entry in expected
    ]
    spdx = attached_document(
        registry.ref(unique_repo), SPDX_MEDIA_TYPE, keychain=keychain, options=options
    )
    manifest = parse_manifest(layout.read_blob(expected[0].digest))
    assert isinstance(manifest, OCIManifest)
    assert spdx == layout.read_blob(manifest.layers[0].digest)


def test_entries_others_put_under_the_fallback_tag_are_kept(
    registry_anonymous: Registry, tmp_path: Path, unique_repo: str
) -> None:
    registry = registry_anonymous
    layout_dir = _attached_image(tmp_path)
    image = ImageLayout.open(layout_dir).only_image("test")
    with client_for(registry, unique_repo) as client:
        push_layout(layout_dir, [registry.ref(unique_repo)], options=options_for(registry))
        # Someone else (a signer) attaches a signature the same way.
        theirs = artifact_manifest(
            Artifact("application/vnd.dev.cosign.simplesigning.v1+json", b"sig", "sig"), image
        )
        assert push_referrers(client, [(theirs, [b"sig"])]) == "fallback"
        # Our next push of the same image leaves it there.
        push_layout(layout_dir, [registry.ref(unique_repo)], options=options_for(registry))
        listed = registry_referrers(client, image.digest)
    assert [entry.artifact_type for entry in listed] == [
        *SUPPLY_CHAIN,
        "application/vnd.dev.cosign.simplesigning.v1+json",
    ]


def test_the_command_line_lists_and_prints_them(
    registry_anonymous: Registry,
    tmp_path: Path,
    unique_repo: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = registry_anonymous
    layout_dir = _attached_image(tmp_path)
    layout = ImageLayout.open(layout_dir)
    image = layout.only_image("test")
    ref = registry.ref(unique_repo)
    assert cli.main(["push", str(layout_dir), "--to", ref]) == 0
    capsys.readouterr()
    assert cli.main(["referrers", ref]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["reference"] == ref
    assert [(r["subject"], r["artifact_type"]) for r in listed["referrers"]] == [
        (str(image.digest), t) for t in SUPPLY_CHAIN
    ]
    assert cli.main(["referrers", ref, "--artifact-type", IN_TOTO_MEDIA_TYPE]) == 0
    [provenance] = json.loads(capsys.readouterr().out)["referrers"]
    assert provenance["annotations"]["in-toto.io/predicate-type"] == (
        "https://slsa.dev/provenance/v1"
    )
    for fmt, spec in (("spdx", "spdxVersion"), ("cyclonedx", "bomFormat")):
        assert cli.main(["sbom", ref, "--format", fmt]) == 0
        assert spec in json.loads(capsys.readouterr().out)
    # An image with nothing attached: a clear error naming the image and the way out.
    bare = tmp_path / "bare"
    with Image("scratch", platform="linux/amd64") as plain:
        plain.write_layout(bare, ["latest"])
    assert cli.main(["push", str(bare), "--to", registry.ref(f"{unique_repo}-bare")]) == 0
    capsys.readouterr()
    assert cli.main(["sbom", registry.ref(f"{unique_repo}-bare")]) == 1
    error = capsys.readouterr().err
    assert "has no application/spdx+json artifact attached" in error
    assert "supply_chain" in error


def test_others_tools_fetch_the_artifacts(
    registry_anonymous: Registry, tmp_path: Path, unique_repo: str
) -> None:
    registry = registry_anonymous
    layout_dir = _attached_image(tmp_path)
    layout = ImageLayout.open(layout_dir)
    image = layout.only_image("test")
    push_layout(layout_dir, [registry.ref(unique_repo)], options=options_for(registry))
    spdx_entry = layout_referrers(layout, image.digest, SPDX_MEDIA_TYPE)[0]
    artifact_ref = registry.ref(unique_repo, str(spdx_entry.digest))
    raw = tools.skopeo_inspect(artifact_ref, raw=True, registry=registry)
    document = json.loads(raw)
    assert document["artifactType"] == SPDX_MEDIA_TYPE
    assert document["subject"]["digest"] == str(image.digest)
    [pulled] = oras_pull(registry.host, artifact_ref, tmp_path / "oras")
    assert pulled.name == "sbom.spdx.json"
    manifest = parse_manifest(layout.read_blob(spdx_entry.digest))
    assert isinstance(manifest, OCIManifest)
    assert pulled.read_bytes() == layout.read_blob(manifest.layers[0].digest)


# --- A registry with the referrers API (mock transport) ------------------------------------------


class _ReferrersRegistry:
    """Blobs and manifests in memory; a manifest with a subject is indexed, and said to be
    (OCI-Subject), as a distribution-spec 1.1 registry does."""

    def __init__(self, *, filters: bool) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.filters = filters

    def __call__(self, request: httpx.Request) -> httpx.Response:
        method, path = request.method, request.url.path
        self.requests.append((method, path))
        name = "/v2/app/"
        assert path.startswith(name), path
        rest = path[len(name) :]
        if rest.startswith("blobs/uploads/"):
            if method == "POST":
                return httpx.Response(202, headers={"Location": f"{name}blobs/uploads/u1"})
            digest = request.url.params["digest"]
            self.blobs[digest] = request.read()
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        if rest.startswith("blobs/"):
            data = self.blobs.get(rest[len("blobs/") :])
            if data is None:
                return httpx.Response(404)
            return httpx.Response(200, content=b"" if method == "HEAD" else data,
                                  headers={"Content-Length": str(len(data))})  # fmt: skip
        if rest.startswith("manifests/") and method == "PUT":
            body = request.read()
            digest = str(sha256_of_bytes(body))
            self.manifests[rest[len("manifests/") :]] = body
            self.manifests[digest] = body
            headers = {"Docker-Content-Digest": digest}
            subject = json.loads(body).get("subject")
            if subject:
                headers["OCI-Subject"] = subject["digest"]
            return httpx.Response(201, headers=headers)
        if rest.startswith("referrers/"):
            return self._referrers(rest[len("referrers/") :], request.url.params)
        return httpx.Response(404)

    def _referrers(self, digest: str, params: Any) -> httpx.Response:
        entries = []
        for stored_digest, body in sorted(self.manifests.items()):
            document = json.loads(body)
            if not stored_digest.startswith("sha256:"):
                continue
            if (document.get("subject") or {}).get("digest") != digest:
                continue
            entries.append(
                {
                    "mediaType": document["mediaType"],
                    "digest": stored_digest,
                    "size": len(body),
                    "artifactType": document["artifactType"],
                    "annotations": document.get("annotations", {}),
                }
            )
        headers = {}
        if self.filters and "artifactType" in params:
            entries = [e for e in entries if e["artifactType"] == params["artifactType"]]
            headers["OCI-Filters-Applied"] = "artifactType"
        index = {"schemaVersion": 2, "mediaType": media_types.OCI_INDEX, "manifests": entries}
        return httpx.Response(200, json=index, headers=headers)


def _mock_client(registry: _ReferrersRegistry) -> RegistryClient:
    return RegistryClient(
        "127.0.0.1:1",
        "app",
        auth=httpx.Auth(),
        options=TransportOptions(sleep=RecordedSleeps()),
        http_client=httpx.Client(transport=httpx.MockTransport(registry)),
    )


@pytest.mark.parametrize("filters", [True, False])
def test_a_registry_with_the_api_indexes_them_itself(filters: bool) -> None:
    registry = _ReferrersRegistry(filters=filters)
    client = _mock_client(registry)
    image = Descriptor.for_bytes(media_types.OCI_MANIFEST, b'{"an":"image"}')
    attached = [
        (artifact_manifest(Artifact(media_type, data, "doc.json"), image), [data])
        for media_type, data in ((SPDX_MEDIA_TYPE, b"{}\n"), (IN_TOTO_MEDIA_TYPE, b"{ }\n"))
    ]
    assert push_referrers(client, attached) == "api"
    pushed = [manifest.digest for manifest, _ in attached]
    # No fallback tag was written or read: the registry keeps the list.
    assert not any(fallback_tag(image.digest) in path for _, path in registry.requests)
    listed = registry_referrers(client, image.digest)
    assert sorted(entry.digest for entry in listed) == sorted(pushed)
    [spdx] = registry_referrers(client, image.digest, SPDX_MEDIA_TYPE)
    assert spdx.digest == pushed[0] and spdx.artifact_type == SPDX_MEDIA_TYPE
    assert ("GET", f"/v2/app/referrers/{image.digest}") in registry.requests


def test_a_manifest_without_a_subject_is_no_referrer() -> None:
    registry = _ReferrersRegistry(filters=True)
    client = _mock_client(registry)
    image = Descriptor.for_bytes(media_types.OCI_MANIFEST, b'{"an":"image"}')
    manifest = artifact_manifest(Artifact(SPDX_MEDIA_TYPE, b"{}", "doc.json"), image)
    with pytest.raises(Exception, match="needs a subject"):
        push_referrers(client, [(manifest.replace(subject=None), [b"{}"])])
    assert registry.requests == []


def test_a_push_sends_each_artifact_and_the_fallback_index_once_per_repository(
    registry_anonymous: Registry, tmp_path: Path, unique_repo: str
) -> None:
    registry = registry_anonymous
    layout_dir = _attached_image(tmp_path)
    start = len(access_log(registry))
    targets = [registry.ref(f"{unique_repo}/one"), registry.ref(f"{unique_repo}/two")]
    push_layout(layout_dir, targets, options=options_for(registry))
    log = access_log(registry)[start:]
    for repository in (f"{unique_repo}/one", f"{unique_repo}/two"):
        prefix = f"/v2/{repository}/manifests/"
        puts = [e.path for e in log if e.method == "PUT" and e.path.startswith(prefix)]
        # The image's manifest (tagged), three artifacts by digest, and the fallback index,
        # written once for all three.
        assert len([p for p in puts if p.endswith("/latest")]) == 1
        assert len([p for p in puts if "/sha256:" in p]) == 3
        assert len([p for p in puts if "/sha256-" in p]) == 1


def test_a_registry_that_refuses_the_artifacts_fails_the_push_naming_them(
    registry_anonymous: Registry, proxy: FaultProxy, tmp_path: Path, unique_repo: str
) -> None:
    layout_dir = _attached_image(tmp_path)
    proxy.respond(
        "PUT",
        r"/manifests/sha256:",
        400,
        body=b'{"errors":[{"code":"MANIFEST_INVALID","message":"unknown artifact type"}]}',
        times=None,
    )
    with pytest.raises(ImageBuildError) as refused:
        push_layout(
            layout_dir, [f"{proxy.host}/{unique_repo}:1"], options=options_for(registry_anonymous)
        )
    message = str(refused.value)
    assert f"{unique_repo} received the image, but not the 3 artifacts" in message
    assert "MANIFEST_INVALID" in message or "unknown artifact type" in message
    assert "supply chain off" in message
    # The image itself is there, tagged.
    with client_for(registry_anonymous, unique_repo) as client:
        assert client.head_manifest("1") is not None
