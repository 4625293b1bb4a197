"""`pants-oci run --runtime podman`: the command line podman gets, and a real podman run of the
harness busybox image with podman configured for this machine (tests/harness/podman.py)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from pants_oci.core.run import run_layout
from tests.harness.busybox import ImageBlobs, write_oci_layout
from tests.harness.podman import Podman
from tests.harness.processes import require_binary

REPO_ROOT = Path(__file__).resolve().parents[2]


def _limit(value: int) -> str:
    return "-1" if value == resource.RLIM_INFINITY else str(value)


def test_podman_gets_this_processs_limits(
    tmp_path: Path, busybox_image_blobs: ImageBlobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """podman (as root) would ask the runtime for 1048576 open files and processes, which fails
    without CAP_SYS_RESOURCE; the container gets this process's limits instead, as with runc.
    A stand-in podman on PATH records the command line."""
    layout = write_oci_layout(busybox_image_blobs, tmp_path / "layout")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "argv.txt"
    (bin_dir / "podman").write_text(
        f"#!/bin/sh\n{require_binary('readlink')} -f pants-oci-run > {record}\n"
        f'printf "%s\\n" "$@" >> {record}\n'
    )
    (bin_dir / "podman").chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert run_layout(layout, args=["true"], runtime="podman") == 0
    # podman runs where `pants-oci-run` links to the layout (it names the image after the path).
    link_target, *argv = record.read_text().splitlines()
    assert link_target == str(layout.resolve())
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc_soft, nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())

    def capped(value: int) -> int:
        return pid_max if value == resource.RLIM_INFINITY else min(value, pid_max)

    assert f"--ulimit=nofile={_limit(nofile[0])}:{_limit(nofile[1])}" in argv
    assert f"--ulimit=nproc={capped(nproc_soft)}:{capped(nproc_hard)}" in argv
    assert argv[-2:] == ["oci:pants-oci-run:latest", "true"]


def test_run_under_real_podman_prints_the_output_and_exits_with_the_status(
    tmp_path: Path, busybox_image_blobs: ImageBlobs, podman: Podman
) -> None:
    podman.require_containers(write_oci_layout(busybox_image_blobs, tmp_path / "probe"))
    # Not a valid image name, as Pants' sandbox directories are not: podman would refuse it.
    layout = write_oci_layout(busybox_image_blobs, tmp_path / "Sandbox-XyZ" / "image")
    result = subprocess.run(
        [
            sys.executable, "-m", "pants_oci.core", "run", str(layout), "--runtime", "podman",
            "--env", "WHO=podman", "--",
            "sh", "-c", 'echo "hello from $WHO"; read line; echo "read $line"; exit 3',
        ],
        env={
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "PYTHONPATH": str(REPO_ROOT / "src/python"),
            "HOME": str(tmp_path),
            **podman.env,
        },
        input="stdin\n",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (3, "hello from podman\nread stdin\n"), (
        result.stderr
    )
    assert "localhost/pants-oci-run:latest" in podman.image_names()
