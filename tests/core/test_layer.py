"""Deterministic layers: entries, normalisation, compression, and real tools reading them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import zstandard

from pants_oci.core import media_types
from pants_oci.core.compression import GZIP_HEADER, HAVE_ISAL, decompressed
from pants_oci.core.errors import LayerError
from pants_oci.core.layer import CustomFile, LayerBlob, LayerBuilder, Override, compress_layer
from pants_oci.core.layout import ImageLayout
from tests.core.images import add_busybox_base, stack_layer, tar_contents, tar_members
from tests.harness import tools
from tests.harness.busybox import ImageBlobs

LONG_NAME = "d" * 60 + "/" + "n" * 139  # 200 characters: beyond ustar's 100-byte name field


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def make_tree(
    root: Path, *, mask: int = 0o022, mtime: int = 1_000_000, reverse: bool = False
) -> Path:
    """A source tree with a file, an executable, a symlink, a hardlink, an empty dir and a
    200-character path; created under ``mask``, in either order, with every mtime ``mtime``."""
    files = {
        "hello.txt": b"hello from the layer\n",
        "bin/run.sh": b"#!/bin/sh\necho ran\n",
        "lib/data.bin": bytes(range(256)) * 9,
        LONG_NAME: b"long\n",
    }
    with umask(mask):
        root.mkdir(parents=True)
        for name in sorted(files, reverse=reverse):
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(files[name])
        os.chmod(root / "bin/run.sh", 0o777 & ~mask)
        (root / "empty").mkdir()
        os.symlink("hello.txt", root / "link-to-hello")
        os.link(root / "hello.txt", root / "lib/hardlink-to-hello")
    for path in [root, *root.rglob("*")]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


def build(builder: LayerBuilder, **kwargs: object) -> tuple[LayerBlob, bytes]:
    out = io.BytesIO()
    layer = builder.write(out, **kwargs)  # type: ignore[arg-type]
    return layer, out.getvalue()


# --- What goes in the tar ----------------------------------------------------------------------


def test_entries_are_sorted_relative_with_parents_and_normalised_metadata(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src", mask=0o077)
    builder = LayerBuilder(mtime=1_700_000_000)
    builder.add_files({"/app/": tree})
    layer, blob = build(builder, compression="none")
    members = tar_members(blob)
    by_name = {m.name: m for m in members}

    names = [m.name for m in members]
    assert names[0] == "app"  # parent emitted, relative, no "./"
    assert all(not n.startswith(("/", "./")) for n in names)
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert {"app/empty", "app/bin", "app/lib", "app/" + LONG_NAME.split("/", maxsplit=1)[0]} <= set(
        names
    )
    for member in members:
        assert member.mtime == 1_700_000_000
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")
    # umask 077 made these 0600 / 0700 / 0700 on disk; the layer does not care.
    assert by_name["app/hello.txt"].mode == 0o644
    assert by_name["app/bin/run.sh"].mode == 0o755
    assert by_name["app/empty"].isdir() and by_name["app/empty"].mode == 0o755
    assert by_name["app/link-to-hello"].issym()
    assert by_name["app/link-to-hello"].linkname == "hello.txt"
    # The first path of the inode in sorted order holds the content; the other links to it.
    assert by_name["app/hello.txt"].isfile()
    assert by_name["app/lib/hardlink-to-hello"].islnk()
    assert by_name["app/lib/hardlink-to-hello"].linkname == "app/hello.txt"
    assert tar_contents(blob)["app/" + LONG_NAME] == b"long\n"
    assert len("app/" + LONG_NAME) == 204
    assert layer.entry_count == len(members)
    assert layer.digest == layer.diff_id and layer.media_type == media_types.OCI_LAYER


def test_long_names_use_pax_and_directories_end_in_slash(tmp_path: Path) -> None:
    builder = LayerBuilder()
    builder.add_files({LONG_NAME: CustomFile(data=b"x"), "dir": CustomFile(kind="directory")})
    _, blob = build(builder, compression="none")
    # A PAX header carries the full path; the ustar name field cannot.
    assert b"././@PaxHeader" in blob
    assert f"path={LONG_NAME}".encode() in blob
    assert b"dir/\x00" in blob  # directory entries end in '/'
    assert len(blob) % 512 == 0 and blob.endswith(bytes(1024))


def test_layers_are_reproducible_across_directories_mtimes_umasks_and_order(
    tmp_path: Path,
) -> None:
    first = make_tree(tmp_path / "one" / "src", mask=0o022, mtime=1_000_000)
    second = make_tree(
        tmp_path / "two" / "deeper" / "src", mask=0o002, mtime=2_000_000, reverse=True
    )
    assert (first / "hello.txt").stat().st_mode != (second / "hello.txt").stat().st_mode

    for compression in ("gzip", "zstd", "none"):
        results = []
        for tree in (first, second):
            builder = LayerBuilder(mtime=1_234_567)
            builder.add_files({"app": tree, "etc/app.conf": CustomFile(data=b"k = v\n")})
            results.append(build(builder, compression=compression))
        (layer_a, blob_a), (layer_b, blob_b) = results
        assert blob_a == blob_b, compression
        assert (layer_a.digest, layer_a.diff_id) == (layer_b.digest, layer_b.diff_id)


def test_gzip_layer_has_fixed_header_and_consistent_digests(tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "src")
    builder = LayerBuilder()
    builder.add_files({"app": tree})
    layer, blob = build(builder)
    assert blob[:10] == GZIP_HEADER
    assert blob[4:8] == b"\0\0\0\0"  # mtime 0
    assert blob[3] & 0x08 == 0  # FNAME: no file name
    tar_bytes = gzip.decompress(blob)
    assert layer.media_type == media_types.OCI_LAYER_GZIP
    assert str(layer.diff_id) == "sha256:" + hashlib.sha256(tar_bytes).hexdigest()
    assert str(layer.digest) == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert (layer.size, layer.uncompressed_size) == (len(blob), len(tar_bytes))
    assert layer.descriptor().size == len(blob)


def test_zlib_fallback_gives_the_same_tar_in_other_gzip_bytes(tmp_path: Path) -> None:
    builder = LayerBuilder()
    builder.add_files({"app": make_tree(tmp_path / "src")})
    zlib_layer, zlib_blob = build(builder, gzip_engine="zlib")
    assert zlib_blob[:10] == GZIP_HEADER
    assert hashlib.sha256(gzip.decompress(zlib_blob)).hexdigest() == zlib_layer.diff_id.hex
    if HAVE_ISAL:
        isal_layer, _ = build(builder, gzip_engine="isal")
        assert isal_layer.diff_id == zlib_layer.diff_id
        assert isal_layer.digest != zlib_layer.digest


def test_zstd_layer_frame_has_no_varying_fields(tmp_path: Path) -> None:
    builder = LayerBuilder()
    builder.add_files({"app": make_tree(tmp_path / "src")})
    layer, blob = build(builder, compression="zstd")
    params = zstandard.get_frame_parameters(blob)
    assert params.content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert params.dict_id == 0 and not params.has_checksum
    tar_bytes = decompressed(io.BytesIO(blob)).read()  # recognised by its magic bytes
    assert hashlib.sha256(tar_bytes).hexdigest() == layer.diff_id.hex
    assert layer.media_type == media_types.OCI_LAYER_ZSTD


def test_large_files_stream_across_compression_blocks(tmp_path: Path) -> None:
    big = os.urandom(1 << 20) + b"compressible " * 200_000  # ~3.6 MiB: several 1 MiB blocks
    (tmp_path / "big.bin").write_bytes(big)
    builder = LayerBuilder()
    builder.add_files(
        {
            "data/": tmp_path / "big.bin",
            "data/streamed.bin": CustomFile(stream=io.BytesIO(big), size=len(big)),
        }
    )
    layer, blob = build(builder)
    contents = tar_contents(gzip.decompress(blob))
    assert contents["data/big.bin"] == big
    assert contents["data/streamed.bin"] == big
    # The same tar compressed on its own gives the very same blob.
    again = io.BytesIO()
    recompressed = compress_layer(io.BytesIO(gzip.decompress(blob)), again)
    assert (recompressed.digest, recompressed.diff_id) == (layer.digest, layer.diff_id)
    assert again.getvalue() == blob


def test_custom_files_overrides_and_recursive_ownership() -> None:
    builder = LayerBuilder(
        uid=5,
        gid=6,
        overrides={
            "srv": Override(uid=1000, gid=1000, uname="app", gname="app", recursive=True),
            "srv/secret": Override(mode=0o600, uid=0),
        },
    )
    builder.add_files(
        {
            "srv/data.txt": CustomFile(data=b"data"),
            "srv/secret": CustomFile(data=b"s3cret", mode=0o644),
            "srv/cache": CustomFile(kind="directory", mode=0o700),
            "bin/tool": CustomFile(data=b"#!/bin/sh\n", mode=0o4755, uid=7, mtime=99),
            "bin/alias": CustomFile(kind="symlink", link_target="tool"),
        }
    )
    _, blob = build(builder, compression="none")
    m = {member.name: member for member in tar_members(blob)}
    assert (m["bin"].uid, m["bin"].gid, m["bin"].mode) == (5, 6, 0o755)
    assert (m["bin/tool"].mode, m["bin/tool"].uid, m["bin/tool"].mtime) == (0o4755, 7, 99)
    assert m["bin/alias"].issym() and m["bin/alias"].linkname == "tool"
    assert (m["srv"].uid, m["srv"].uname) == (1000, "app")
    assert (m["srv/data.txt"].uid, m["srv/data.txt"].gname, m["srv/data.txt"].mode) == (
        1000,
        "app",
        0o644,
    )
    assert (m["srv/cache"].mode, m["srv/cache"].uid) == (0o700, 1000)
    # The exact override beats the recursive one and the CustomFile's mode.
    assert (m["srv/secret"].mode, m["srv/secret"].uid, m["srv/secret"].gid) == (0o600, 0, 1000)


def test_recursive_override_cannot_set_mode() -> None:
    with pytest.raises(ValueError, match="recursive"):
        Override(mode=0o700, recursive=True)


def test_whiteouts_and_opaque_directories() -> None:
    builder = LayerBuilder()
    builder.add_files(
        {"var/cache/new": CustomFile(data=b"n"), "var/cache/-early": CustomFile(data=b"")}
    )
    builder.add_whiteout("/etc/motd")
    builder.add_opaque_whiteout("var/cache")
    _, blob = build(builder, compression="none")
    names = [m.name for m in tar_members(blob)]
    assert names == [
        "etc",
        "etc/.wh.motd",
        "var",
        "var/cache",
        "var/cache/.wh..wh..opq",  # before this layer's own entries, even "-early"
        "var/cache/-early",
        "var/cache/new",
    ]
    whiteout = {m.name: m for m in tar_members(blob)}["etc/.wh.motd"]
    assert whiteout.isfile() and whiteout.size == 0


def test_whiting_out_a_path_this_layer_adds_is_an_error() -> None:
    builder = LayerBuilder()
    builder.add_files({"etc/motd": CustomFile(data=b"hi")})
    builder.add_whiteout("etc/motd")
    with pytest.raises(LayerError, match="both added and whited out"):
        builder.write(io.BytesIO())


def test_ignore_patterns_have_gitignore_semantics(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in [
        "top.txt",
        "sub/top.txt",
        "app.log",
        "keep.log",
        "sub/debug.log",
        "build/out.o",
        "build/keep.log",
        "sub/build/x",
        "src/build.py",
        "secret.key",
        "docs/readme.md",
        "docs/internal/notes.md",
    ]:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(name)
    ignore_file = tmp_path / "ignore"
    ignore_file.write_text("# comment\n*.key\ndocs/*\n")
    builder = LayerBuilder()
    builder.add_files(
        {"": src},
        ignore=["*.log", "!keep.log", "build/", "/top.txt", "!docs/readme.md"],
        ignore_files=[ignore_file],
    )
    _, blob = build(builder, compression="none")
    files = {m.name for m in tar_members(blob) if m.isfile()}
    assert files == {
        "sub/top.txt",  # "/top.txt" is anchored to the root
        "keep.log",  # negated
        "src/build.py",  # "build/" matches directories only
        "docs/readme.md",  # the ignore list comes after the file, so it can re-include
    }
    names = {m.name for m in tar_members(blob)}
    # Nothing beneath an ignored directory can come back ("!keep.log" is not enough).
    assert not any(n.startswith(("build", "sub/build")) for n in names)
    assert "docs/internal" not in names


def test_ignore_file_names_are_read_in_each_directory(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name in ["a.log", "a.tmp", "sub/b.log", "sub/b.tmp", "sub/deeper/c.tmp", "other/d.tmp"]:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(name)
    (src / ".ignore").write_text("*.log\n")
    (src / "sub/.ignore").write_text("!b.log\n*.tmp\n")
    (src / "other/.ignore").write_text("!d.tmp\n")
    builder = LayerBuilder()
    builder.add_files(
        {"": src},
        ignore=["*.tmp"],  # the files' patterns come after these
        ignore_file_names=[".ignore", ".missing"],
        filter=lambda path: path != "other/d.tmp",  # the filter has the last word
    )
    _, blob = build(builder, compression="none")
    assert {m.name for m in tar_members(blob) if m.isfile()} == {
        ".ignore",
        "other/.ignore",
        "sub/.ignore",
        "sub/b.log",  # re-included by the deeper file
    }


def test_sources_merge_and_clash(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "shared").mkdir(parents=True)
    (b / "shared").mkdir(parents=True)
    (a / "shared/one").write_text("1")
    (b / "shared/two").write_text("2")
    (a / "config.json").write_text("from a")
    builder = LayerBuilder()
    builder.add_files({"app": a})
    builder.add_files({"app": b, "app/config.json": CustomFile(data=b"explicit")})
    _, blob = build(builder, compression="none")
    contents = tar_contents(blob)
    assert contents["app/shared/one"] == b"1" and contents["app/shared/two"] == b"2"
    assert contents["app/config.json"] == b"explicit"  # the more specific target wins

    (b / "shared/one").write_text("other 1")
    with pytest.raises(LayerError, match="comes from both"):
        builder.write(io.BytesIO())


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"../escape": CustomFile(data=b"")}, "'..'"),
        ({".wh.sneaky": CustomFile(data=b"")}, "whiteouts"),
        ({"missing": "/nonexistent/source"}, "No such file"),
    ],
)
def test_bad_inputs_are_layer_errors(files: dict[str, CustomFile | str], message: str) -> None:
    with pytest.raises(LayerError, match=message):
        LayerBuilder().add_files(files)


def test_same_path_twice_and_file_under_file_are_errors() -> None:
    builder = LayerBuilder()
    builder.add_files({"a/b": CustomFile(data=b"")})
    with pytest.raises(LayerError, match="given twice"):
        builder.add_files({"a/b": CustomFile(data=b"")})
    with pytest.raises(LayerError, match="both a directory and a file"):
        builder.add_files({"a/b/c": CustomFile(data=b"")})


def test_fifos_are_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    os.mkfifo(tmp_path / "src/pipe")
    builder = LayerBuilder()
    builder.add_files({"": tmp_path / "src"})
    with pytest.raises(LayerError, match="FIFO"):
        builder.write(io.BytesIO())


def test_following_symlinks_copies_targets_and_catches_loops(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "real").mkdir(parents=True)
    (src / "real/file").write_text("content")
    os.symlink("real", src / "dirlink")
    os.symlink("real/file", src / "filelink")
    builder = LayerBuilder(follow_symlinks=True)
    builder.add_files({"": src})
    _, blob = build(builder, compression="none")
    members = {m.name: m for m in tar_members(blob)}
    assert members["dirlink"].isdir() and members["dirlink/file"].isfile()
    assert members["filelink"].isfile() and tar_contents(blob)["filelink"] == b"content"

    os.symlink("..", src / "real/up")
    with pytest.raises(LayerError, match="loop"):
        builder.write(io.BytesIO())


def test_write_file_is_atomic(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    builder = LayerBuilder()
    builder.add_files({"x": CustomFile(data=b"x")})
    layer = builder.write_file(out / "layer.tar.gz")
    assert hashlib.sha256((out / "layer.tar.gz").read_bytes()).hexdigest() == layer.digest.hex
    assert stat.S_IMODE((out / "layer.tar.gz").stat().st_mode) == 0o644

    broken = LayerBuilder()
    broken.add_files({"y": CustomFile(stream=io.BytesIO(b"short"), size=100)})
    with pytest.raises(LayerError, match="ended 95 bytes early"):
        broken.write_file(out / "broken.tar.gz")
    assert sorted(p.name for p in out.iterdir()) == ["layer.tar.gz"]  # no temp file left


# --- Real tools ----------------------------------------------------------------------------------


def test_layer_on_busybox_unpacks_with_umoci_and_runs_with_runc(
    tmp_path: Path, busybox_image_blobs: ImageBlobs
) -> None:
    tree = make_tree(tmp_path / "src", mask=0o077)
    builder = LayerBuilder(overrides={"app/owned": Override(uid=1000, gid=1000, recursive=True)})
    builder.add_files(
        {
            "app": tree,
            "app/owned/file.txt": CustomFile(data=b"mine\n"),
        }
    )
    builder.add_whiteout("etc/group")  # a file of the busybox base
    layout = ImageLayout.create(tmp_path / "layout")
    base = add_busybox_base(layout, busybox_image_blobs)
    layer = layout.write_layer(builder)
    stack_layer(layout, base, layer, "app")

    bundle = tools.umoci_unpack(layout.root, "app", tmp_path / "bundle")
    rootfs = bundle / "rootfs"
    assert (rootfs / "bin/busybox").is_file()  # the base is there
    assert not (rootfs / "etc/group").exists()  # ... less what the whiteout deleted
    assert (rootfs / "etc/passwd").is_file()
    assert os.readlink(rootfs / "app/link-to-hello") == "hello.txt"
    hello, hardlink = rootfs / "app/hello.txt", rootfs / "app/lib/hardlink-to-hello"
    assert hello.stat().st_ino == hardlink.stat().st_ino
    assert stat.S_IMODE((rootfs / "app/bin/run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE(hello.stat().st_mode) == 0o644
    assert (rootfs / "app/empty").is_dir() and not any((rootfs / "app/empty").iterdir())
    assert (rootfs / "app" / LONG_NAME).read_bytes() == b"long\n"
    owned = (rootfs / "app/owned/file.txt").stat()
    assert (owned.st_uid, owned.st_gid) == (1000, 1000)

    result = tools.runc_run(
        bundle,
        [
            "sh",
            "-c",
            "ls -ln /app/owned; cat /app/hello.txt; /app/bin/run.sh; "
            "test -e /etc/group || echo group-gone; cat /app/lib/hardlink-to-hello",
        ],
    )
    lines = result.stdout.splitlines()
    owned_line = next(line for line in lines if line.endswith("file.txt"))
    assert owned_line.split()[2:4] == ["1000", "1000"]
    assert lines[-4:] == [
        "hello from the layer",
        "ran",
        "group-gone",
        "hello from the layer",
    ]


@pytest.mark.parametrize("compression", ["zstd", "none"])
def test_zstd_and_uncompressed_layers_are_read_by_skopeo_and_umoci(
    tmp_path: Path, busybox_image_blobs: ImageBlobs, compression: str
) -> None:
    builder = LayerBuilder()
    builder.add_files({"app/hello.txt": CustomFile(data=b"hi\n")})
    layout = ImageLayout.create(tmp_path / "layout")
    base = add_busybox_base(layout, busybox_image_blobs)
    layer = layout.write_layer(builder, compression=compression)  # type: ignore[arg-type]
    stack_layer(layout, base, layer, "app")

    info = tools.skopeo_inspect(f"oci:{layout.root}:app")
    assert info["Layers"][-1] == str(layer.digest)
    raw_manifest = json.loads(tools.skopeo_inspect(f"oci:{layout.root}:app", raw=True))
    assert raw_manifest["layers"][-1]["mediaType"] == layer.media_type
    # skopeo copy reads every blob and checks its digest.
    copy = tools.skopeo_copy_to_oci_layout(
        f"oci:{layout.root}:app", tmp_path / "copy", "app", extra_args=["--preserve-digests"]
    )
    assert (copy / "blobs/sha256" / layer.digest.hex).is_file()

    unpack_from = layout.root
    if compression == "zstd":
        # umoci 0.4.7 predates zstd: have skopeo decompress our layer (checking its diff_id)
        # and recompress it as gzip, then unpack that.
        unpack_from = tools.skopeo_copy_to_oci_layout(
            f"oci:{layout.root}:app",
            tmp_path / "as-gzip",
            "app",
            extra_args=["--dest-compress", "--dest-compress-format", "gzip"],
        )
        converted = json.loads(tools.skopeo_inspect(f"oci:{unpack_from}:app", raw=True))
        assert converted["layers"][-1]["mediaType"] == media_types.OCI_LAYER_GZIP
    bundle = tools.umoci_unpack(unpack_from, "app", tmp_path / "bundle")
    assert (bundle / "rootfs/app/hello.txt").read_bytes() == b"hi\n"


def test_gnu_tar_lists_the_layer_like_we_wrote_it(tmp_path: Path) -> None:
    builder = LayerBuilder()
    builder.add_files({"app": make_tree(tmp_path / "src")})
    builder.write_file(tmp_path / "layer.tar.gz")
    listing = subprocess.run(
        ["tar", "-tvzf", str(tmp_path / "layer.tar.gz")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert any(line.endswith(f"app/{LONG_NAME}") for line in listing)
    assert any("app/lib/hardlink-to-hello link to app/hello.txt" in line for line in listing)
    assert any("app/link-to-hello -> hello.txt" in line for line in listing)
