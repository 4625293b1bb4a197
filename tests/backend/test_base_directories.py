"""Layers go into the base's directories without changing them: a non-root user keeps its home,
`/tmp` stays sticky, a symlinked directory stays a symlink; directories a layer creates get its
owner and `directory_mode`. Built by real `./pants`, checked with umoci and runc as uid 1000."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from tests.harness.busybox import (
    PATH_ENV,
    base_files,
    image_from_layer,
    pack_layer,
    put,
    tar_entry,
    write_oci_layout,
)
from tests.harness.tools import runc_run, umoci_unpack
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow

SCRIPT = 'touch "$HOME/written" /tmp/written /var/run/written && echo "wrote as $(id -u)"'


def _base(layout_dir: Path) -> None:
    """busybox (with /tmp 1777) plus a home owned by 1000 with mode 0700 and /var/run -> /run."""
    files = base_files()
    for path, mode, owner in (("home", 0o755, 0), ("home/app", 0o700, 1000), ("run", 0o777, 0)):
        put(files, tar_entry(path, tarfile.DIRTYPE, mode, uid=owner, gid=owner))
    put(files, tar_entry("var", tarfile.DIRTYPE, 0o755))
    put(files, tar_entry("var/run", tarfile.SYMTYPE, 0o777, linkname="/run"))
    tar_bytes, layer = pack_layer(files)
    image = image_from_layer(tar_bytes, layer, env=[PATH_ENV], cmd=["sh"], created_by="home")
    write_oci_layout(image, layout_dir)


def test_layers_keep_the_base_directories_and_a_non_root_user_writes_in_them(
    tmp_path: Path,
) -> None:
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "app/BUILD": f"""
files(name="notes", sources=["notes.txt"])
oci_layer(
    name="1-home",
    dependencies=[":notes"],
    destination="/home/app",
    uid=1000,
    gid=1000,
    directory_mode="0750",
)
oci_layer(name="2-tmp", dependencies=[":notes"], destination="/tmp")
oci_layer(name="3-run", dependencies=[":notes"], destination="/var/run")
oci_image(
    name="img",
    base="oci-layout:base",
    dependencies=[":1-home", ":2-tmp", ":3-run"],
    user="1000:1000",
    env={{"HOME": "/home/app"}},
    entrypoint=["/bin/sh", "-c", {SCRIPT!r}],
)
""",
            "app/notes.txt": "notes\n",
            # The checked-in base image, owned by a target (so `--changed-since` sees it).
            "BUILD": 'files(name="base-layout", sources=["base/**"])\n',
        },
    )
    _base(repo / "base")
    run_pants("package", "app:img", cwd=repo)

    bundle = umoci_unpack(repo / "dist/app/img", "latest", tmp_path / "bundle")
    rootfs = bundle / "rootfs"

    def owner_and_mode(path: str) -> tuple[int, int, int]:
        stat = (rootfs / path).lstat()
        return stat.st_uid, stat.st_gid, stat.st_mode & 0o7777

    assert owner_and_mode("home/app") == (1000, 1000, 0o700)  # the base's, kept
    assert owner_and_mode("tmp") == (0, 0, 0o1777)
    assert (rootfs / "var/run").is_symlink()
    assert (rootfs / "run/app/notes.txt").read_text() == "notes\n"
    # What the layer created is its own: its uid/gid and directory_mode.
    assert owner_and_mode("home/app/app") == (1000, 1000, 0o750)
    assert owner_and_mode("home/app/app/notes.txt")[:2] == (1000, 1000)

    ran = runc_run(bundle, None)
    assert ran.stdout == "wrote as 1000\n"
