"""An image's filesystem as its layers leave it (whiteouts applied), and layers that go through
the base's directories without changing them."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from pants_oci.core.layer import CustomFile, LayerBlob, LayerBuilder
from pants_oci.core.layout import ImageLayout
from pants_oci.core.rootfs import directory_paths
from tests.core.images import add_busybox_base, stack_layer, tar_members
from tests.harness.busybox import ImageBlobs


def _layer(layout: ImageLayout, builder: LayerBuilder) -> LayerBlob:
    return layout.write_blob_with(builder.write)


def test_directories_after_whiteouts_and_symlinks_kept_as_paths(
    tmp_path: Path, busybox_image_blobs: ImageBlobs
) -> None:
    layout = ImageLayout.create(tmp_path / "layout")
    base = add_busybox_base(layout, busybox_image_blobs)
    one = LayerBuilder()
    one.add_files(
        {
            "/home/app/.profile": CustomFile(data=b"x"),
            "/var/run": CustomFile(kind="symlink", link_target="/run"),
            "/opt/old/file": CustomFile(data=b"y"),
        }
    )
    image = stack_layer(layout, base, _layer(layout, one), "one")
    two = LayerBuilder()
    two.add_whiteout("/opt/old")
    stack_layer(layout, image, _layer(layout, two), "two")
    paths = directory_paths(layout.root, "two")
    assert {"bin", "etc", "root", "tmp", "home", "home/app", "var", "var/run"} <= set(paths)
    assert "opt" in paths and "opt/old" not in paths  # whited out, with its tree
    assert "home/app/.profile" not in paths  # a file


def test_a_layer_writes_no_entry_for_directories_below_it_and_owns_those_it_creates() -> None:
    builder = LayerBuilder(
        uid=1000,
        gid=1000,
        directory_mode=0o750,
        existing_directories=["home/app", "home", "tmp", "var/run", "var"],
    )
    builder.add_files(
        {
            "/home/app/notes/todo.txt": CustomFile(data=b"a"),
            "/tmp/cache/x": CustomFile(data=b"b"),
            "/var/run/app.pid": CustomFile(data=b"1"),
        }
    )
    out = io.BytesIO()
    builder.write(out, compression="none")
    members = {m.name.rstrip("/"): m for m in tar_members(out.getvalue())}
    assert set(members) == {
        "home/app/notes",
        "home/app/notes/todo.txt",
        "tmp/cache",
        "tmp/cache/x",
        "var/run/app.pid",
    }
    created = members["home/app/notes"]
    assert created.type == tarfile.DIRTYPE
    assert (created.mode, created.uid, created.gid) == (0o750, 1000, 1000)
    assert (members["tmp/cache/x"].uid, members["tmp/cache/x"].mode) == (1000, 0o644)
