"""The seed library's call forms on Image, against the loopback registry: add_files(local,
target) and add_files(local), the walk's options (a filter, following symlinks), and save()'s
options (Cmd/Env/WorkingDir at save time, copyRemoteLayers, ignoreExists)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pants_oci.core.auth import StaticKeychain
from pants_oci.core.image import Image
from pants_oci.core.models import ImageConfig
from pants_oci.core.registry import RegistryClient
from tests.core.images import tar_contents, tar_members
from tests.core.registry_support import client_for, options_for
from tests.harness.busybox import PushedImage
from tests.harness.proxies import FaultProxy
from tests.harness.registry import Registry


def _sources(root: Path) -> Path:
    (root / "cache").mkdir(parents=True)
    (root / "cache/big.bin").write_bytes(b"x" * 100)
    (root / "data.txt").write_text("payload\n")
    (root / "debug.log").write_text("left out\n")
    (root / "real.txt").write_text("pointed at\n")
    (root / "link.txt").symlink_to("real.txt")
    return root


def _image(busybox: PushedImage, registry: Registry, target: str, **kwargs: object) -> Image:
    return Image(
        busybox.tag_ref,
        target,
        keychain=StaticKeychain({}),
        options=options_for(registry),
        **kwargs,  # type: ignore[arg-type]
    )


def _top_layer(client: RegistryClient, tag: str, count: int = 1) -> list[bytes]:
    """The gunzipped tars of the ``count`` top layers of the pushed image, lowest first."""
    import gzip

    manifest = client.get_image_manifest(tag)
    return [gzip.decompress(client.read_blob(layer.digest)) for layer in manifest.layers[-count:]]


def _pushed_config(client: RegistryClient, tag: str) -> ImageConfig:
    manifest = client.get_image_manifest(tag)
    return ImageConfig.from_bytes(client.read_blob(manifest.config.digest))


def test_add_files_local_dir_and_target_short_forms(
    busybox_image: PushedImage, registry_anonymous: Registry, unique_repo: str, tmp_path: Path
) -> None:
    sources = _sources(tmp_path / "src")
    target = registry_anonymous.ref(unique_repo, "v1")
    with _image(busybox_image, registry_anonymous, target) as image:
        at_app = image.add_files(sources, "/app")  # add_files(localDirectory, targetDirectory)
        at_root = image.add_files(str(sources))  # add_files(localDirectory): at /
        image.save()
    with Image(busybox_image.tag_ref, keychain=StaticKeychain({})) as mapped:
        # The same layers as the mapping form makes.
        assert mapped.add_files({"/app": sources}).digest == at_app.digest
        assert mapped.add_files({"/": sources}).digest == at_root.digest
    with client_for(registry_anonymous, unique_repo) as client:
        app_tar, root_tar = _top_layer(client, "v1", 2)
    assert tar_contents(app_tar)["app/data.txt"] == b"payload\n"
    assert tar_contents(root_tar)["data.txt"] == b"payload\n"
    assert not any(name.startswith("app") for name in tar_contents(root_tar))

    with Image() as image, pytest.raises(TypeError, match="target_dir"):
        image.add_files({"/app": sources}, "/other")


def test_add_files_filter_and_follow_symlinks(
    busybox_image: PushedImage, registry_anonymous: Registry, unique_repo: str, tmp_path: Path
) -> None:
    sources = _sources(tmp_path / "src")
    seen: list[str] = []

    def keep(path: str) -> bool:
        seen.append(path)
        return path != "cache/" and not path.endswith(".log")

    with _image(busybox_image, registry_anonymous, registry_anonymous.ref(unique_repo)) as image:
        image.add_files(sources, "/app", filter=keep, follow_symlinks=True)
        image.add_files(sources, "/links")  # symlinks stay links by default
        image.save()
    assert "cache/" in seen and "cache/big.bin" not in seen  # a left-out directory's subtree
    with client_for(registry_anonymous, unique_repo) as client:
        filtered, linked = _top_layer(client, "latest", 2)
    assert sorted(tar_contents(filtered)) == ["app/data.txt", "app/link.txt", "app/real.txt"]
    assert tar_contents(filtered)["app/link.txt"] == b"pointed at\n"  # followed: a file
    link = next(m for m in tar_members(linked) if m.name == "links/link.txt")
    assert link.issym() and link.linkname == "real.txt"

    with Image() as image, pytest.raises(TypeError, match="filter"):
        image.add_files(sources, filter="*.log")  # type: ignore[arg-type]


def test_save_sets_cmd_env_and_workdir(
    busybox_image: PushedImage, registry_anonymous: Registry, unique_repo: str
) -> None:
    with _image(busybox_image, registry_anonymous, registry_anonymous.ref(unique_repo)) as image:
        path = image.env[0]
        digest = image.save(["v2"], cmd=["ls", "./"], env=["HOME=/workspace"], workdir="/workspace")
    with client_for(registry_anonymous, unique_repo) as client:
        assert client.get_image_manifest("v2").digest == digest
        config = _pushed_config(client, "v2").config
    assert config is not None
    assert config.cmd == ("ls", "./")
    assert config.env == (path, "HOME=/workspace")  # appended to the base's
    assert config.working_dir == "/workspace"


def test_save_ignore_exists_sends_blobs_the_target_has(
    busybox_image: PushedImage, registry_anonymous: Registry, unique_repo: str, tmp_path: Path
) -> None:
    sources = _sources(tmp_path / "src")
    with FaultProxy(registry_anonymous.url) as proxy:
        target = f"{proxy.host}/{unique_repo}:v1"

        def puts() -> int:
            return len(proxy.seen("PUT", r"/blobs/uploads/"))

        def save(**options: bool) -> int:
            before = puts()
            with _image(
                busybox_image, registry_anonymous, target, upload_while_building=False
            ) as image:
                image.add_files(sources, "/app")
                image.save(**options)
            return puts() - before

        # busybox's layer (streamed: through the proxy the registry looks like another one),
        # the new layer and the config
        assert save() == 3
        assert save() == 0  # all there: HEADs only
        assert save(ignore_exists=True) == 3
        before = puts()
        with _image(busybox_image, registry_anonymous, target) as image:
            image.sync(ignore_exists=True)  # the seed's sync({ignoreExists: true})
        assert puts() - before == 1
