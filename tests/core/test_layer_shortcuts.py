"""The layer builder's shortcuts make exactly the bytes of its general code: the walk of a
directory that one source fills alone against the general walk, small files read whole
against streamed, headers from HeaderFormatter's templates against ``tar_format.header``,
and an uncompressed blob, hashed once, against its own bytes."""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import resource
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core import _layer_tree, tar_format
from pants_oci.core.compression import BLOCK_SIZE
from pants_oci.core.errors import LayerError
from pants_oci.core.layer import LayerBuilder, Override
from tests.core.images import tar_contents, tar_members

# Sizes either side of whole tar blocks and of the size up to which a file is read whole.
SIZES = (0, 1, 511, 512, 513, 1023, 1024, 4096, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1)
# Names whose code-point order is not their order on disk or in a case-blind sort.
NAMES = ("B", "a", "-dash", "~tilde", "é", "日本", "%s", "a.b", "a-b", "a_b", "n" * 100)


def make_tree(root: Path) -> dict[str, bytes]:
    """Files of every size in SIZES and names in NAMES, nested, an executable, a symlink, a
    hard link, an empty directory and a name too long for ustar; returns the contents."""
    contents = {}
    for index, size in enumerate(SIZES):
        contents[f"sizes/f{size:08d}"] = bytes([index + 1]) * size
    for depth, name in enumerate(NAMES):
        contents[f"names/{'d/' * (depth % 3)}{name}"] = name.encode()
    contents["deep/" + "x" * 60 + "/" + "y" * 60] = b"long\n"  # over 100 bytes: PAX
    contents["bin/run"] = b"#!/bin/sh\n"
    for name, data in contents.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.chmod(root / "bin/run", 0o750)  # noqa: S103 (an executable source)
    os.symlink("../bin/run", root / "sizes/link")
    os.link(root / "names/B", root / "sizes/hardlink-to-B")
    (root / "empty").mkdir()
    return contents


def build(files: dict[str, Any], *, ignore: tuple[str, ...] = (), **builder: Any) -> bytes:
    """The uncompressed layer of ``files``."""
    layer_builder = LayerBuilder(**builder)
    layer_builder.add_files(files, ignore=ignore)
    out = io.BytesIO()
    layer_builder.write(out, compression="none")
    return out.getvalue()


# An override of a path the layer does not have: every directory then takes the general walk.
GENERAL = {"overrides": {"not/in/the/layer": Override(mode=0o600)}}


@pytest.mark.parametrize(
    "builder",
    [
        {},
        {"uid": 1000, "gid": 100, "uname": "app%user", "gname": "staff", "mtime": 1_700_000_000},
        {"follow_symlinks": True},
        {"existing_directories": ["app", "app/names"]},
        {"mtime": 2**40, "uid": 2**22},  # PAX for every entry
    ],
)
def test_lone_source_walk_matches_the_general_walk(tmp_path: Path, builder: Any) -> None:
    contents = make_tree(tmp_path / "src")
    files = {"app": tmp_path / "src"}
    plain = build(files, **builder)
    assert plain == build(files, **builder, **GENERAL)
    assert tar_contents(plain) == {f"app/{name}": data for name, data in contents.items()} | (
        {"app/sizes/link": b"#!/bin/sh\n"} if builder.get("follow_symlinks") else {}
    )


def test_lone_source_walk_with_ignore_patterns_matches_the_general_walk(tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    files = {"/": tmp_path / "src"}
    for ignore in (("a*", "!a.b"), ("d/",), ("sizes/*", "!sizes/f00000512")):
        plain = build(files, ignore=ignore)
        assert plain == build(files, ignore=ignore, **GENERAL), ignore


def test_directories_named_like_whiteouts_take_the_general_walk(tmp_path: Path) -> None:
    # The general walk sorts an opaque whiteout first and refuses a whiteout of a sibling;
    # on disk only files are refused such names, so these reach it from a lone source.
    for name in (".wh..wh..opq", "-first"):
        (tmp_path / "opaque" / name).mkdir(parents=True)
        (tmp_path / "opaque" / name / "f").write_bytes(b"f")
    plain = build({"/": tmp_path / "opaque"})
    assert plain == build({"/": tmp_path / "opaque"}, **GENERAL)
    assert tar_members(plain)[0].name == ".wh..wh..opq"
    for name in (".wh.gone", "gone"):
        (tmp_path / "clash" / "sub" / name).mkdir(parents=True)
    for builder in ({}, GENERAL):
        with pytest.raises(LayerError, match="sub/gone is both added and whited out"):
            build({"/": tmp_path / "clash"}, **builder)


def test_files_read_whole_and_streamed_make_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path / "src")
    files = {"app": tmp_path / "src"}
    for builder in ({}, GENERAL):
        whole = build(files, **builder)
        # Files from 1000 bytes up are streamed (in 1000-byte reads) instead of read whole.
        with monkeypatch.context() as patch:
            patch.setattr(_layer_tree, "BLOCK_SIZE", 1000)
            assert build(files, **builder) == whole


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files in /proc")
def test_a_deep_tree_holds_no_descriptor_per_level(tmp_path: Path) -> None:
    # Files are opened relative to their directory, whose descriptor is closed before the
    # walk goes down into a subdirectory: 200 levels build within 50 more open files.
    deep = tmp_path / "src"
    for _ in range(200):
        deep = deep / "d"
        deep.mkdir(parents=True)
        (deep.parent / "a").write_bytes(b"a")  # a file before the subdirectory
        (deep.parent / "e").write_bytes(b"e")  # and one after it
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 50, hard))
    try:
        layer = build({"/": tmp_path / "src"})
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(tar_contents(layer)) == 400


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_blob_digests_are_of_the_bytes_written(tmp_path: Path, compression: str) -> None:
    make_tree(tmp_path / "src")
    builder = LayerBuilder()
    builder.add_files({"app": tmp_path / "src"})
    out = io.BytesIO()
    layer = builder.write(out, compression=compression)  # type: ignore[arg-type]
    blob = out.getvalue()
    assert layer.digest.encoded == hashlib.sha256(blob).hexdigest()
    assert layer.size == len(blob)
    if compression == "none":
        assert layer.diff_id == layer.digest
        assert layer.uncompressed_size == layer.size


OWNERSHIPS = [
    {"uid": 0, "gid": 0, "mtime": 0, "uname": "", "gname": ""},
    {"uid": 1000, "gid": 1000, "mtime": 1_700_000_000, "uname": "us%er", "gname": "g"},
    {"uid": 0o7777777, "gid": 0, "mtime": 0o77777777777, "uname": "u" * 32, "gname": ""},
    # Each needs PAX for every entry.
    {"uid": 0o7777777 + 1, "gid": 0, "mtime": 0, "uname": "", "gname": ""},
    {"uid": 0, "gid": 0, "mtime": -1, "uname": "", "gname": ""},
    {"uid": 0, "gid": 0, "mtime": 0, "uname": "ü", "gname": ""},
]


@pytest.mark.parametrize("ownership", OWNERSHIPS)
def test_header_templates_make_the_bytes_of_tar_format_header(ownership: Any) -> None:
    formatter = tar_format.HeaderFormatter(**ownership)
    names = ["a", "dir/", "é", "%s%%", "~" * 100, "n" * 100, "n" * 101, "a" * 99 + "é"]
    typeflags = (tar_format.REGULAR, tar_format.DIRECTORY, tar_format.HARDLINK)
    modes = (0o644, 0o755, 0o7777, 0)
    sizes = (0, 1, 512, 0o77777777777, 0o77777777777 + 1)
    for name, typeflag, mode, size in itertools.product(names, typeflags, modes, sizes):
        expected = tar_format.header(name, typeflag, mode, size, **ownership)
        assert formatter.header(name, typeflag, mode, size) == expected, (name, mode, size)
