"""The Image builder: built on busybox, published to registries, layouts and archives that real
tools (skopeo, umoci, runc) then read and run."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest

from pants_oci.core import media_types
from pants_oci.core.auth import StaticKeychain
from pants_oci.core.digest import Digest
from pants_oci.core.errors import ImageBuildError, RegistryError
from pants_oci.core.image import Image
from pants_oci.core.index import ImageIndex, build_index
from pants_oci.core.layer import CustomFile
from pants_oci.core.layout import ImageLayout
from pants_oci.core.models import History, OCIIndex, OCIManifest
from tests.core.images import add_busybox_base
from tests.core.registry_support import client_for, options_for
from tests.harness import tools
from tests.harness.busybox import ImageBlobs, PushedImage, host_architecture
from tests.harness.fixtures import RegistryFactory
from tests.harness.proxies import FaultProxy
from tests.harness.registry import Registry


def _app_sources(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    script = root / "bin/hello.sh"
    script.write_text('#!/bin/sh\necho "$GREETING from $(pwd)"; cat /app/data.txt\n')
    script.chmod(0o755)
    (root / "data.txt").write_text("payload\n")
    (root / "ignored.log").write_text("must not be in the layer\n")
    return root


def _unpack_and_run(layout: Path, tag: str, bundle: Path) -> tuple[dict[str, object], str]:
    """umoci unpack, then runc run of the process umoci derived from the image config."""
    tools.umoci_unpack(layout, tag, bundle)
    process = json.loads((bundle / "config.json").read_text())["process"]
    result = tools.runc_run(bundle, process["args"])
    return process, result.stdout


def _busybox_layout_base(tmp_path: Path, busybox: ImageBlobs) -> Path:
    layout = ImageLayout.create(tmp_path / "base-layout")
    add_busybox_base(layout, busybox)
    return layout.root


def test_busybox_plus_files_saved_to_a_second_token_registry_runs_under_runc(
    busybox_image: PushedImage,
    registry_factory: RegistryFactory,
    unique_repo: str,
    tmp_path: Path,
) -> None:
    target = registry_factory("token")  # another server, another port, token auth
    assert target.username and target.password
    keychain = StaticKeychain(
        {target.host: {"username": target.username, "password": target.password}}
    )
    sources = _app_sources(tmp_path / "src")
    with Image(
        busybox_image.tag_ref,
        target.ref(unique_repo, "v1"),
        keychain=keychain,
        options=options_for(target),
    ) as image:
        layer = image.add_files(
            {"/app": sources, "/app/VERSION": CustomFile(data=b"1.0\n")}, ignore=["*.log"]
        )
        image.cmd = ["/app/bin/hello.sh"]
        image.workdir = "/app"
        image.set_env("GREETING", "hello")
        image.labels["org.example.team"] = "build"
        digest = image.save(["v1", "stable"])
        data = image.get_image_data()

    assert data.manifest.digest == digest
    assert [d.digest for d in data.manifest.layers] == [
        Digest.parse(busybox_image.layer_digest),
        layer.digest,
    ]
    history = data.config.history or ()
    assert history[-1].created_by == "pants-oci add_files /app, /app/VERSION"
    for tag in ("v1", "stable"):
        info = tools.skopeo_inspect(target.ref(unique_repo, tag), registry=target)
        assert info["Digest"] == str(digest)
        assert info["Labels"] == {"org.example.team": "build"}
    # The base layer came from the first registry; the new one was uploaded: both are there.
    layout = tools.skopeo_copy_to_oci_layout(
        target.ref(unique_repo, "v1"), tmp_path / "copied", "app", registry=target
    )
    process, stdout = _unpack_and_run(layout, "app", tmp_path / "bundle")
    assert process["args"] == ["/app/bin/hello.sh"]
    assert process["cwd"] == "/app"
    assert "GREETING=hello" in process["env"]
    assert stdout == "hello from /app\npayload\n"
    assert not (tmp_path / "bundle/rootfs/app/ignored.log").exists()
    assert (tmp_path / "bundle/rootfs/app/VERSION").read_text() == "1.0\n"
    assert (tmp_path / "bundle/rootfs/bin/busybox").is_file()


def test_entrypoint_drops_the_inherited_cmd_and_env_overrides_in_place(
    tmp_path: Path, busybox_image_blobs: ImageBlobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    base = _busybox_layout_base(tmp_path, busybox_image_blobs)
    with Image(base) as image:
        assert image.cmd == ["sh"]
        path_before = image.env[0]
        image.env = ["A=1", f"PATH=/opt/bin:{path_before.partition('=')[2]}"]
        image.entrypoint = ["/bin/echo"]
        config = image.get_image_data().config
        assert config.created == "1970-01-01T00:00:00Z"
    assert config.config is not None
    assert config.config.entrypoint == ("/bin/echo",)
    assert config.config.cmd is None  # docker semantics: ENTRYPOINT resets the base's CMD
    assert config.config.env is not None
    assert config.config.env[0].startswith("PATH=/opt/bin:")  # replaced where it was
    assert config.config.env[1:] == ("A=1",)

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    with Image(base) as image:
        image.cmd = ["hello"]
        image.entrypoint = ["/bin/echo"]  # a cmd set on this image stays
        config = image.get_image_data().config
    assert config.config is not None and config.config.cmd == ("hello",)
    assert config.created == "1970-01-02T00:00:00Z"


def test_add_and_remove_layer_keep_layers_diff_ids_and_history_aligned(
    tmp_path: Path, busybox_image_blobs: ImageBlobs
) -> None:
    with Image(_busybox_layout_base(tmp_path, busybox_image_blobs)) as image:
        first = image.add_files({"/one.txt": CustomFile(data=b"1")})
        second = image.add_files({"/two.txt": CustomFile(data=b"2")})
        foreign = image.add_layer(
            "sha256:" + "a" * 64,
            "sha256:" + "b" * 64,
            123,
            urls=["https://example.com/layer.tar.gz"],
            media_type=media_types.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        )
        data = image.get_image_data()
        assert len(data.manifest.layers) == len(data.config.rootfs.diff_ids) == 4
        assert [h.created_by for h in data.config.history or ()][1:] == [
            "pants-oci add_files /one.txt",
            "pants-oci add_files /two.txt",
            f"pants-oci add_layer {foreign.digest}",
        ]
        diff_id_of_second = data.config.rootfs.diff_ids[2]

        image.remove_layer(first.digest)
        data = image.get_image_data()
        assert [d.digest for d in data.manifest.layers] == [
            Digest.parse(busybox_image_blobs.layer_digest),
            second.digest,
            foreign.digest,
        ]
        assert data.config.rootfs.diff_ids[1] == diff_id_of_second
        assert data.config.rootfs.diff_ids[2] == Digest.parse("sha256:" + "b" * 64)
        history: tuple[History, ...] = data.config.history or ()
        assert [h.created_by for h in history][1:] == [
            "pants-oci add_files /two.txt",
            f"pants-oci add_layer {foreign.digest}",
        ]
        assert data.manifest.layers[2].urls == ("https://example.com/layer.tar.gz",)
        # The manifest names the config it goes with.
        assert data.manifest.config.digest == data.config.digest

        with pytest.raises(ImageBuildError, match="no layer sha256:cccc"):
            image.remove_layer("sha256:" + "c" * 64)


def test_a_failed_layer_upload_leaves_the_target_tag_where_it_was(
    busybox_image: PushedImage, registry_anonymous: Registry, unique_repo: str
) -> None:
    old = busybox_image.push_to(registry_anonymous, unique_repo, "v1")
    error = json.dumps({"errors": [{"code": "BLOB_UPLOAD_INVALID", "message": "injected"}]})
    with FaultProxy(registry_anonymous.url) as proxy:
        proxy.respond("PUT", r"/blobs/uploads/", 400, body=error.encode(), times=None)
        with Image(
            busybox_image.tag_ref,
            f"{proxy.host}/{unique_repo}:v1",
            keychain=StaticKeychain({}),
            options=options_for(registry_anonymous),
        ) as image:
            image.add_files({"/new.txt": CustomFile(data=b"never published\n")})
            image.cmd = ["cat", "/new.txt"]
            with pytest.raises(RegistryError, match="injected"):
                image.save()
        assert proxy.seen("PUT", r"/blobs/uploads/"), "the layer upload was attempted"
        assert not proxy.seen("PUT", r"/manifests/")
    with client_for(registry_anonymous, unique_repo) as client:
        current = client.head_manifest("v1")
    assert current is not None and str(current.digest) == old.manifest_digest


def test_write_layout_and_docker_archive_are_read_by_skopeo_and_umoci(
    busybox_image: PushedImage, tmp_path: Path
) -> None:
    with Image(
        busybox_image.ref, keychain=StaticKeychain({}), options=options_for(busybox_image.registry)
    ) as image:
        image.add_files({"/etc/motd": CustomFile(data=b"from a layout\n")})
        image.cmd = ["cat", "/etc/motd"]
        digest = image.write_layout(tmp_path / "layout", ["app"])
        image_id = image.write_docker_archive(tmp_path / "image.tar", ["example.com/app:1.0"])
        data = image.get_image_data()
    # The layout is complete: the base layer was fetched from the registry into it.
    layout = ImageLayout.open(tmp_path / "layout")
    assert layout.has_blob(busybox_image.layer_digest)
    raw = tools.skopeo_inspect(f"oci:{tmp_path / 'layout'}:app", raw=True)
    assert OCIManifest.from_bytes(raw).digest == digest
    _, stdout = _unpack_and_run(tmp_path / "layout", "app", tmp_path / "bundle")
    assert stdout == "from a layout\n"

    assert image_id == data.config_digest
    copied = tools.skopeo_copy_to_oci_layout(
        f"docker-archive:{tmp_path / 'image.tar'}", tmp_path / "from-archive", "app"
    )
    config = tools.skopeo_inspect(f"oci:{copied}:app", raw=True, config=True)
    assert json.loads(config)["config"]["Cmd"] == ["cat", "/etc/motd"]
    _, stdout = _unpack_and_run(copied, "app", tmp_path / "bundle-archive")
    assert stdout == "from a layout\n"


def test_multi_platform_index_from_two_platform_images(
    busybox_image_blobs: ImageBlobs,
    busybox_image: PushedImage,
    registry_anonymous: Registry,
    unique_repo: str,
    tmp_path: Path,
) -> None:
    other = "arm64" if host_architecture() != "arm64" else "amd64"
    base = _busybox_layout_base(tmp_path, busybox_image_blobs)
    options = options_for(registry_anonymous)
    target = registry_anonymous.ref(unique_repo, "multi")
    layer_blob = ImageLayout.open(base).blob_path(busybox_image_blobs.layer_digest)
    with (
        Image(base, target, keychain=StaticKeychain({}), options=options) as native,
        Image(
            "scratch",
            target,
            platform=f"linux/{other}",
            keychain=StaticKeychain({}),
            options=options,
        ) as relabelled,
    ):
        # The busybox layer again, in an image that says it is for the other architecture.
        relabelled.add_layer(
            busybox_image_blobs.layer_digest,
            busybox_image_blobs.diff_id,
            len(busybox_image_blobs.layer),
            blob=layer_blob,
        )
        relabelled.cmd = ["sh"]
        index = build_index([native, relabelled])
        assert isinstance(index, ImageIndex)
        digest = index.save()
        layout_digest = index.write_layout(tmp_path / "index-layout", ["multi"])

    raw = tools.skopeo_inspect(target, raw=True, registry=registry_anonymous)
    document = OCIIndex.from_bytes(raw)
    assert document.digest == digest == layout_digest
    assert document.media_type == media_types.OCI_INDEX
    platforms = sorted(f"{e.platform.os}/{e.platform.architecture}" for e in document.manifests)  # type: ignore[union-attr]
    assert platforms == sorted([f"linux/{host_architecture()}", f"linux/{other}"])
    # skopeo resolves the index to this machine's platform, from the registry and the layout.
    info = tools.skopeo_inspect(target, registry=registry_anonymous)
    assert info["Architecture"] == host_architecture()
    assert info["Layers"] == [busybox_image_blobs.layer_digest]
    local = tools.skopeo_inspect(f"oci:{tmp_path / 'index-layout'}:multi")
    assert local["Architecture"] == host_architecture()

    with pytest.raises(ImageBuildError, match="both for"):
        build_index([native, native])


def test_sync_mounts_base_layers_when_base_and_target_share_a_registry(
    busybox_image: PushedImage, registry_anonymous: Registry, unique_repo: str
) -> None:
    with FaultProxy(registry_anonymous.url) as proxy:  # forwards everything, and records it
        base = f"{proxy.host}/{busybox_image.repository}@{busybox_image.manifest_digest}"
        with Image(
            base,
            f"{proxy.host}/{unique_repo}:v1",
            keychain=StaticKeychain({}),
            options=options_for(registry_anonymous),
        ) as image:
            image.sync()
            mounts = [unquote(m.path) for m in proxy.seen("POST", r"/blobs/uploads/\?.*mount=")]
            assert mounts == [
                f"/v2/{unique_repo}/blobs/uploads/?mount={busybox_image.layer_digest}"
                f"&from={busybox_image.repository}"
            ]
            # Mounted, not streamed through us (only the base's config was read, at load).
            assert not proxy.seen("GET", rf"/blobs/{busybox_image.layer_digest}")
            image.cmd = ["true"]
            digest = image.save()
        # save() did not look at the synced layer again: only the config was uploaded.
        assert len(proxy.seen("PUT", r"/blobs/uploads/")) == 1
    with client_for(registry_anonymous, unique_repo) as client:
        assert client.head_manifest("v1") is not None
        assert client.get_image_manifest("v1").digest == digest
