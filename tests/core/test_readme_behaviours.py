"""One test per behaviour the original library's README states (the npm package
container-image-builder, /work/shared/seed): its Image builder API and CustomFile, walked
bullet by bullet. Each docstring quotes the README; where docs/library.md says we differ on
purpose, the test asserts our documented behaviour and says so.

The registry, client, auth and glossary behaviours are in test_readme_behaviours_registry.py.
Everything runs against the session's loopback registry, on the busybox base pushed there.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pants_oci.core import media_types
from pants_oci.core.auth import StaticKeychain
from pants_oci.core.errors import ImageBuildError, LayerError
from pants_oci.core.image import Image
from pants_oci.core.layer import CustomFile, LayerBuilder
from pants_oci.core.models import Descriptor, DockerManifest, ImageConfig, OCIManifest
from pants_oci.core.registry import RegistryClient
from tests.core.images import tar_contents, tar_members
from tests.core.registry_support import client_for, options_for
from tests.harness import tools
from tests.harness.busybox import PATH_ENV, PushedImage
from tests.harness.proxies import FaultProxy
from tests.harness.registry import Registry

EPOCH = 1_000_000  # every image here is stamped with this SOURCE_DATE_EPOCH


def _image(busybox: PushedImage, target: str, registry: Registry, **kwargs: object) -> Image:
    return Image(
        busybox.tag_ref,
        target,
        keychain=StaticKeychain({}),  # never the user's credentials
        options=options_for(registry),
        source_date_epoch=EPOCH,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def image(
    busybox_image: PushedImage, registry_anonymous: Registry, unique_repo: str
) -> Iterator[Image]:
    """busybox as the base; the target is this test's repository (no tag: latest)."""
    with _image(busybox_image, registry_anonymous.ref(unique_repo), registry_anonymous) as built:
        yield built


@pytest.fixture
def target(registry_anonymous: Registry, unique_repo: str) -> Iterator[RegistryClient]:
    """A client of the image fixture's target repository."""
    with client_for(registry_anonymous, unique_repo) as client:
        yield client


@pytest.fixture
def src(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    (root / "sub").mkdir(parents=True)
    (root / "data.txt").write_text("payload\n")
    (root / "debug.log").write_text("left out\n")
    (root / "sub/deep.log").write_text("left out too\n")
    (root / "real.txt").write_text("pointed at\n")
    (root / "link.txt").symlink_to("real.txt")
    return root


def _members(client: RegistryClient, layer: Descriptor) -> dict[str, tarfile.TarInfo]:
    return {m.name: m for m in tar_members(gzip.decompress(client.read_blob(layer.digest)))}


def _contents(client: RegistryClient, layer: Descriptor) -> dict[str, bytes]:
    return tar_contents(gzip.decompress(client.read_blob(layer.digest)))


def _pushed(
    client: RegistryClient, tag: str = "latest"
) -> tuple[OCIManifest | DockerManifest, ImageConfig]:
    manifest = client.get_image_manifest(tag)
    return manifest, ImageConfig.from_bytes(client.read_blob(manifest.config.digest))


# --- new Image(baseImage, targetImage, options) -------------------------------------------------


def test_image_builds_on_the_base_and_save_replaces_the_target(
    busybox_image: PushedImage, registry_anonymous: Registry, unique_repo: str
) -> None:
    """README: "baseImage the name of the base image ... targetImage the name of the image
    you're going to be saving to. calls to image.save() will replace this image." """
    ref = registry_anonymous.ref(unique_repo, "v1")
    with _image(busybox_image, ref, registry_anonymous) as image:
        assert str(image.base_manifest_digest) == busybox_image.manifest_digest
        assert [str(d) for d in image.diff_ids] == [busybox_image.diff_id]
        first = image.save()
        image.cmd = ["true"]
        second = image.save()
    assert first != second
    assert tools.skopeo_inspect(ref, registry=registry_anonymous)["Digest"] == str(second)


# --- image.addFiles -----------------------------------------------------------------------------


def test_add_files_mapping_puts_sources_at_their_targets_in_one_layer(
    image: Image, target: RegistryClient, src: Path
) -> None:
    """README: "tar local directories and place each at targetDirectory in a single layer"
    and "this enables copying the same files into a container to different paths and
    CustomFiles"."""
    layer = image.add_files({"/a": src, "/b": src, "/a/VERSION": CustomFile(data=b"1.0\n")})
    image.save()
    manifest, _ = _pushed(target)
    assert manifest.layers[-1] == layer and len(manifest.layers) == 2  # one layer
    contents = _contents(target, layer)
    assert contents["a/data.txt"] == contents["b/data.txt"] == b"payload\n"
    assert contents["a/VERSION"] == b"1.0\n"


def test_add_files_short_forms_local_and_target_or_local_alone(image: Image, src: Path) -> None:
    """README: "image.addFiles(localDirectory,targetDirectory,options)" and
    "image.addFiles(localDirectory,options)" (ours puts the directory's contents at /)."""
    at_app = image.add_files(src, "/app")
    at_root = image.add_files(str(src))
    with Image("scratch", platform="linux/amd64", source_date_epoch=EPOCH) as mapped:
        assert mapped.add_files({"/app": src}).digest == at_app.digest
        assert mapped.add_files({"/": src}).digest == at_root.digest


def test_symlinks_stay_links_unless_follow_symlinks(
    image: Image, target: RegistryClient, src: Path
) -> None:
    """README: "symlinks are replaced with their files/directories as they are written to the
    layer tarball by default". We differ on purpose (docs/library.md): links stay links, as
    Docker's COPY keeps them; follow_symlinks=True replaces them with their files."""
    kept = image.add_files({"/app": src})
    followed = image.add_files({"/app": src}, follow_symlinks=True)
    image.save()
    link = _members(target, kept)["app/link.txt"]
    assert link.issym() and link.linkname == "real.txt"
    assert _members(target, followed)["app/link.txt"].isfile()
    assert _contents(target, followed)["app/link.txt"] == b"pointed at\n"


def test_ignores_are_gitignore_patterns(image: Image, target: RegistryClient, src: Path) -> None:
    """README: "options.ignores - optional set of globs applied at the root of the local
    directory processed by micromatch". Ours differ on purpose (docs/library.md): `ignore`
    holds gitignore patterns, so `*.log` matches at any depth and `/x` only at the root."""
    anywhere = image.add_files({"/app": src}, ignore=["*.log"])
    rooted = image.add_files({"/app": src}, ignore=["/debug.log"])
    image.save()
    assert sorted(_contents(target, anywhere)) == ["app/data.txt", "app/real.txt"]
    assert "app/sub/deep.log" in _contents(target, rooted)
    assert "app/debug.log" not in _contents(target, rooted)


def test_ignore_files_are_files_of_patterns(
    image: Image, target: RegistryClient, src: Path, tmp_path: Path
) -> None:
    """README: "options.ignoreFiles - optional array of file names to be parsed for ignore
    globs". Ours reads the files at the paths given (docs/library.md: "files of them")."""
    (tmp_path / "build.ignore").write_text("# comment\n*.log\nreal.txt\n")
    layer = image.add_files({"/app": src}, ignore_files=[tmp_path / "build.ignore"])
    image.save()
    assert sorted(_contents(target, layer)) == ["app/data.txt"]


def test_ignore_file_names_are_found_in_the_walked_directories(
    image: Image, target: RegistryClient, src: Path
) -> None:
    """README: "options.ignoreFiles - optional array of file names to be parsed for ignore
    globs. like [".ignore"]": the original reads such a file wherever its walk finds one,
    for what is beneath it. Ours is `ignore_file_names=` (`ignore_files=` takes paths): the
    patterns are gitignore's, and a deeper file's win (here `!deep.log`)."""
    (src / ".ignore").write_text("*.log\n")
    (src / "sub/.ignore").write_text("# below sub/\n*.txt\n!deep.log\n")
    (src / "sub/notes.txt").write_text("left out\n")
    (src / "sub/kept.bin").write_bytes(b"x")
    layer = image.add_files({"/app": src}, ignore_file_names=[".ignore"])
    image.save()
    assert sorted(_contents(target, layer)) == [
        "app/.ignore",
        "app/data.txt",
        "app/real.txt",
        "app/sub/.ignore",
        "app/sub/deep.log",
        "app/sub/kept.bin",
    ]
    with pytest.raises(LayerError, match="not a file name"):
        image.add_files({"/app": src}, ignore_file_names=["sub/.ignore"])


def test_tar_options_are_compression_and_level(image: Image, src: Path) -> None:
    """README: "options.tar - control how the tar is packed with options from node tar".
    Ours differ on purpose (docs/library.md): the tar is fixed for reproducible digests, and
    only its compression is chosen: the diff_id is the same whatever the compression."""
    stored = image.add_files({"/app": src}, level=0)  # gzip levels are isal's: 0-3
    best = image.add_files({"/app": src}, level=3)
    zstd = image.add_files({"/app": src}, compression="zstd")
    plain = image.add_files({"/app": src}, compression="none")
    assert [stored.media_type, zstd.media_type, plain.media_type] == [
        media_types.OCI_LAYER_GZIP,
        media_types.OCI_LAYER_ZSTD,
        media_types.OCI_LAYER,
    ]
    assert len(set(image.diff_ids[1:])) == 1
    assert plain.digest == image.diff_ids[-1]  # uncompressed: the blob is the tar
    assert best.size < stored.size


def test_walk_options_are_filter_and_follow_symlinks(
    image: Image, target: RegistryClient, src: Path
) -> None:
    """README: "control directory traversal with options from walkdir". Ours are `filter=`
    (a callable given each relative path; False leaves it out, a directory with its subtree)
    and `follow_symlinks=` (docs/library.md)."""
    layer = image.add_files({"/app": src}, filter=lambda path: path not in ("sub/", "real.txt"))
    image.save()
    assert sorted(_contents(target, layer)) == ["app/data.txt", "app/debug.log"]
    assert "app/sub" not in _members(target, layer)


# --- image.save(tags, options) ------------------------------------------------------------------


def test_save_defaults_to_the_latest_tag(image: Image, target: RegistryClient) -> None:
    """README: "by default this saves the updated image as the latest tag"."""
    digest = image.save()
    assert target.list_tags() == ["latest"]
    assert target.get_manifest("latest").digest == digest


def test_save_with_tags_tags_each_instead_of_the_default(
    image: Image, target: RegistryClient
) -> None:
    """README: "if you specify tags the manifest will be taged with each of them instead of
    the default"."""
    digest = image.save(["1.0", "stable"])
    assert sorted(target.list_tags()) == ["1.0", "stable"]
    assert {target.get_manifest(t).digest for t in ("1.0", "stable")} == {digest}


def test_save_options_set_cmd_env_and_workdir(image: Image, target: RegistryClient) -> None:
    """README: save options "Cmd", "Env", "WorkingDir" (see image.Cmd, image.Env and
    image.WorkingDir)."""
    image.save(cmd=["ls", "./"], env=["HOME=/workspace"], workdir="/workspace")
    config = _pushed(target)[1].config
    assert config is not None
    assert config.cmd == ("ls", "./")
    assert config.env == (PATH_ENV, "HOME=/workspace")
    assert config.working_dir == "/workspace"


def _foreign_layer(registry: Registry, repository: str) -> bytes:
    """A layer blob, put in another repository of the registry."""
    builder = LayerBuilder(mtime=EPOCH)
    builder.add_files({"licensed.bin": CustomFile(data=b"not for redistribution\n")})
    buffer = io.BytesIO()
    builder.write(buffer)
    with client_for(registry, repository) as client:
        client.upload_blob(buffer.getvalue())
    return buffer.getvalue()


def test_copy_foreign_layers_copies_from_the_first_url_that_answers_200(
    image: Image, target: RegistryClient, registry_anonymous: Registry, unique_repo: str
) -> None:
    """README: "copyRemoteLayers ... layers with a urls field will be copied into the target
    registry by default from the first url to return a 200 in the array"."""
    blob = _foreign_layer(registry_anonymous, f"{unique_repo}-vendor")
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    base_url = f"{registry_anonymous.url}/v2/{unique_repo}-vendor/blobs"
    urls = [f"{base_url}/sha256:{'0' * 64}", f"{base_url}/{digest}"]  # a 404, then the blob
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    media_type = media_types.OCI_LAYER_NONDISTRIBUTABLE_GZIP
    image.add_layer(digest, diff_id, len(blob), urls, media_type)
    image.save(copy_foreign_layers=True)
    assert target.read_blob(digest) == blob
    assert _pushed(target)[0].layers[-1].urls == tuple(urls)


def test_foreign_layers_stay_at_their_urls_by_default(
    image: Image, target: RegistryClient, registry_anonymous: Registry, unique_repo: str
) -> None:
    """README: "copyRemoteLayers, default true - set to false if you use nondistributable
    layers". Our default differs on purpose (docs/library.md): copy_foreign_layers is False,
    as non-distributable layers usually may not be redistributed; the manifest names them."""
    blob = _foreign_layer(registry_anonymous, f"{unique_repo}-vendor")
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    url = f"{registry_anonymous.url}/v2/{unique_repo}-vendor/blobs/{digest}"
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    image.add_layer(digest, diff_id, len(blob), [url], media_types.OCI_LAYER_NONDISTRIBUTABLE_GZIP)
    image.save()
    assert not target.blob_exists(digest)
    assert _pushed(target)[0].layers[-1].urls == (url,)


def test_ignore_exists_sends_blobs_the_target_already_has(
    busybox_image: PushedImage, registry_anonymous: Registry, unique_repo: str
) -> None:
    """README: "ignoreExists, default false. ... this copies a blob into the target registry
    even though it already exists in the target"."""
    with FaultProxy(registry_anonymous.url) as proxy:
        ref = f"{proxy.host}/{unique_repo}:v1"

        def blob_puts(ignore_exists: bool = False) -> int:
            before = len(proxy.seen("PUT", r"/blobs/uploads/"))
            with _image(busybox_image, ref, registry_anonymous) as image:
                image.save(ignore_exists=ignore_exists)
            return len(proxy.seen("PUT", r"/blobs/uploads/")) - before

        assert blob_puts() == 2  # busybox's layer (another registry, seen through the proxy)
        assert blob_puts() == 0  # and the config; then all there
        assert blob_puts(ignore_exists=True) == 2


# --- image.WorkingDir, image.Cmd, image.Env -----------------------------------------------------


def test_workdir_sets_the_default_working_directory(image: Image, target: RegistryClient) -> None:
    """README: "image.WorkingDir ... If set this set the container's default working directory
    for commands"."""
    image.workdir = "/custom working dir"
    image.save()
    config = _pushed(target)[1].config
    assert config is not None and config.working_dir == "/custom working dir"


def test_cmd_replaces_the_base_command(image: Image, target: RegistryClient) -> None:
    """README: "image.Cmd = ["ls","./"] ... this will replace the base images default command
    with the one you specify"."""
    assert image.cmd == ["sh"]  # busybox's
    image.cmd = ["ls", "./"]
    image.save()
    config = _pushed(target)[1].config
    assert config is not None and config.cmd == ("ls", "./")


def test_env_appends_to_the_base_env(image: Image, target: RegistryClient) -> None:
    """README: "image.Env = ["HOME=/workspace"] ... append environment variables to the base
    image's env vars"."""
    image.env = ["HOME=/workspace"]
    image.save()
    config = _pushed(target)[1].config
    assert config is not None and config.env == (PATH_ENV, "HOME=/workspace")


def test_env_replaces_a_variable_of_the_same_name(image: Image) -> None:
    """README: "append environment variables to the base image's env vars". We differ on
    purpose (docs/library.md): an item naming a variable the base sets replaces it in place
    instead of duplicating it."""
    image.env = ["PATH=/opt/bin", "HOME=/workspace"]
    assert image.env == ["PATH=/opt/bin", "HOME=/workspace"]


# --- getImageConfig, getImageData, client ------------------------------------------------------


def test_get_image_config_changes_are_saved(image: Image, target: RegistryClient) -> None:
    """README: "image.getImageConfig() returns reference to the part of the image config
    you're most likely to want to change. changes to this object are saved when you call
    image.save()"."""
    config = image.get_image_config()
    config.user = "nobody"
    config.labels["team"] = "build"
    image.save()
    pushed = _pushed(target)[1].config
    assert pushed is not None and pushed.user == "nobody" and pushed.labels == {"team": "build"}


def test_get_image_data_is_what_save_pushes_and_immutable(
    image: Image, target: RegistryClient
) -> None:
    """README: "image.getImageData() returns internal copies of the image manifest and config
    ... changes to these objects will be saved". We differ on purpose (docs/library.md): the
    documents are immutable (edits go through the image's methods, keeping layers, diff_ids
    and history aligned); they are exactly what save() pushes."""
    data = image.get_image_data()
    with pytest.raises(Exception, match="frozen"):
        data.config.architecture = "s390x"  # type: ignore[misc]
    assert image.save() == data.manifest_digest
    assert target.read_blob(data.config_digest) == data.config.to_bytes()


def test_client_is_authenticated_cached_and_defaults_to_the_target(
    image: Image, busybox_image: PushedImage, unique_repo: str
) -> None:
    """README: "image.client(imageSpecifier,writePermission) ... uses a cached client if one
    already exists ... auth is performed with options passed to new Image ... default is the
    base image". Ours (docs/library.md): image.client(reference), scopes asked per request;
    the default is the target's repository, the one an image writes to."""
    assert image.client() is image.client()
    assert image.client().repository == unique_repo
    base = image.client(busybox_image.tag_ref)
    assert base is image.client(busybox_image.tag_ref)
    assert base.repository == busybox_image.repository
    assert base.blob_exists(busybox_image.layer_digest) is True


# --- image.sync, addLayer, removeLayer ---------------------------------------------------------


def test_sync_copies_base_layers_and_save_does_not_sync_again(
    busybox_image: PushedImage, registry_anonymous: Registry, unique_repo: str
) -> None:
    """README: "image.sync ... manually trigger a sync from base image to target image
    registry ... if the image has been synced it will not be synced in the call to
    image.save()"."""
    with FaultProxy(registry_anonymous.url) as proxy:
        with _image(busybox_image, f"{proxy.host}/{unique_repo}", registry_anonymous) as image:
            image.sync()
            layer = busybox_image.layer_digest
            assert image.client().blob_exists(layer)
            synced = len(proxy.seen(pattern=rf"/blobs/{layer}"))
            image.save()
        assert len(proxy.seen(pattern=rf"/blobs/{layer}")) == synced  # not looked at again
        assert len(proxy.seen("PUT", r"/blobs/uploads/")) == 2  # the layer (sync), the config


def test_add_layer_by_digest_diff_id_and_size(
    image: Image, target: RegistryClient, registry_anonymous: Registry, unique_repo: str
) -> None:
    """README: "image.addLayer(digest, uncompressedDigest, size, urls?) ... digest ... the id
    for the layer in the manifest ... uncompressedDigest ... in the diff_ids array ... size
    ... the number of bytes of the compressed layer tarball"."""
    builder = LayerBuilder(mtime=EPOCH)
    builder.add_files({"etc/motd": CustomFile(data=b"added by hand\n")})
    buffer = io.BytesIO()
    layer = builder.write(buffer)
    target.upload_blob(buffer.getvalue())  # a new blob, straight into the target first
    image.add_layer(layer.digest, layer.diff_id, layer.size)
    image.save()
    info = tools.skopeo_inspect(registry_anonymous.ref(unique_repo), registry=registry_anonymous)
    assert info["Layers"] == [str(image.layers[0].digest), str(layer.digest)]
    assert _pushed(target)[1].rootfs.diff_ids[-1] == layer.diff_id


def test_remove_layer_removes_the_diff_id_at_the_same_offset(image: Image) -> None:
    """README: "image.removeLayer(digest) ... remove the layer tagged in the manifest by
    digest. save it's offset in the array. remove the uncompressedDigest from the image config
    that matches the offset above"."""
    one = image.add_files({"/one": CustomFile(data=b"1")})
    two = image.add_files({"/two": CustomFile(data=b"2")})
    base_diff_id, _, two_diff_id = image.diff_ids
    image.remove_layer(one.digest)
    data = image.get_image_data()
    assert [d.digest for d in data.manifest.layers] == [image.layers[0].digest, two.digest]
    assert list(data.config.rootfs.diff_ids) == [base_diff_id, two_diff_id]
    with pytest.raises(ImageBuildError, match="no layer"):
        image.remove_layer(one.digest)


# --- CustomFile --------------------------------------------------------------------------------


def test_custom_file_writes_in_memory_data(image: Image, target: RegistryClient) -> None:
    """README: "you can pass CustomFile to image.addFiles as a localPath to write in memory
    data ... image.addFiles({'/help.md':new CustomFile({data:Buffer.from('hello')})})"."""
    layer = image.add_files({"/help.md": CustomFile(data=b"hello")})
    image.save()
    assert _contents(target, layer) == {"help.md": b"hello"}


def test_custom_file_stream_needs_its_size(image: Image, target: RegistryClient) -> None:
    """README: "size - required if stream. optional with buffer" ("you must have size
    beforehand for streams")."""
    with pytest.raises(ValueError, match="size"):
        CustomFile(stream=io.BytesIO(b"streamed"))
    layer = image.add_files({"/page.html": CustomFile(stream=io.BytesIO(b"<p>hi</p>"), size=9)})
    image.save()
    assert _contents(target, layer) == {"page.html": b"<p>hi</p>"}


def test_custom_file_mode_defaults_to_0644_and_keeps_permission_bits(
    image: Image, target: RegistryClient
) -> None:
    """README: "mode - defaults to 0o644 ... permission bits are extracted from the mode
    provided via & 0o7777 and type bits are set based on type"."""
    layer = image.add_files(
        {
            "/default": CustomFile(data=b""),
            "/tool": CustomFile(data=b"", mode=0o104755),  # S_IFREG | setuid | 0755
        }
    )
    image.save()
    members = _members(target, layer)
    assert members["default"].mode == 0o644
    assert members["tool"].mode == 0o4755 and members["tool"].isfile()


def test_custom_file_types_file_directory_and_symlink(image: Image, target: RegistryClient) -> None:
    """README: "type - defaults to File - supported are File, Directory, Symlink" and
    "linkPath - only used if Symlink". Ours: kind= and link_target= (docs/library.md)."""
    layer = image.add_files(
        {
            "/etc/app.conf": CustomFile(data=b"x"),
            "/var/cache/app": CustomFile(kind="directory"),
            "/etc/app.link": CustomFile(kind="symlink", link_target="app.conf"),
        }
    )
    image.save()
    members = _members(target, layer)
    assert members["etc/app.conf"].isfile()
    assert members["var/cache/app"].isdir()
    assert members["etc/app.link"].issym() and members["etc/app.link"].linkname == "app.conf"
    with pytest.raises(ValueError, match="link_target"):
        CustomFile(kind="symlink")


def test_custom_file_uid_and_gid_default_to_0(image: Image, target: RegistryClient) -> None:
    """README: "customFile.uid - default 0. set to number if you want to set uid" (and
    gid)."""
    layer = image.add_files(
        {"/root.txt": CustomFile(data=b""), "/app.txt": CustomFile(data=b"", uid=1000, gid=50)}
    )
    image.save()
    members = _members(target, layer)
    assert (members["root.txt"].uid, members["root.txt"].gid) == (0, 0)
    assert (members["app.txt"].uid, members["app.txt"].gid) == (1000, 50)


def test_custom_file_mtime_is_deterministic_and_settable(
    image: Image, target: RegistryClient
) -> None:
    """README: "customFile.mtime - default new Date(). set to Date if you want to set". We
    differ on purpose (docs/library.md): the default is SOURCE_DATE_EPOCH (or 0), not now, so
    layers are reproducible; mtime= sets it."""
    layer = image.add_files(
        {"/now.txt": CustomFile(data=b""), "/then.txt": CustomFile(data=b"", mtime=1234)}
    )
    image.save()
    members = _members(target, layer)
    assert members["now.txt"].mtime == EPOCH
    assert members["then.txt"].mtime == 1234


def test_custom_file_ctime_and_atime_are_not_written(image: Image, target: RegistryClient) -> None:
    """README: "customFile.ctime ... customFile.atime - default new Date()". We differ on
    purpose (docs/library.md): only mtime goes in the tar, so layers stay reproducible."""
    layer = image.add_files({"/file.txt": CustomFile(data=b"x")})
    image.save()
    member = _members(target, layer)["file.txt"]
    assert not {"atime", "ctime"} & set(member.pax_headers)
    assert not hasattr(CustomFile(data=b""), "atime")


def test_whiteouts_are_made_with_add_whiteout_not_custom_files(
    image: Image, target: RegistryClient, tmp_path: Path
) -> None:
    """README: CustomFile is "useful for creating whiteout files etc.". We differ on purpose
    (docs/library.md): add_files refuses `.wh.` names (a stray one would delete base files);
    LayerBuilder.add_whiteout makes them, and add_layer(..., blob=) adds that layer."""
    with pytest.raises(LayerError, match="add_whiteout"):
        image.add_files({"/etc/.wh.passwd": CustomFile(data=b"")})
    builder = LayerBuilder(mtime=EPOCH)
    builder.add_whiteout("etc/passwd")
    layer = builder.write_file(tmp_path / "whiteout.tar.gz")
    blob = tmp_path / "whiteout.tar.gz"
    added = image.add_layer(layer.digest, layer.diff_id, layer.size, blob=blob)
    image.save()
    assert "etc/.wh.passwd" in _members(target, added)
