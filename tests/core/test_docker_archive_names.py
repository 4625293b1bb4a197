"""`image assemble --docker-archive TAR --archive-name NAME:TAG`: the names `docker load` and
`podman load` give the image (manifest.json `RepoTags`, the legacy `repositories` file), checked
in the archive's bytes and by a real `podman load`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from tests.harness.busybox import ImageBlobs, write_oci_layout
from tests.harness.podman import Podman

REPO_ROOT = Path(__file__).resolve().parents[2]
REF_NAME = "org.opencontainers.image.ref.name"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pants_oci.core", *args],
        cwd=cwd,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO_ROOT / "src/python"),
            "HOME": str(cwd),
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _assemble(work: Path, busybox: ImageBlobs, *extra: str) -> subprocess.CompletedProcess[str]:
    """`image assemble` on a complete busybox layout (so every layer is local)."""
    if not (work / "base").exists():
        write_oci_layout(busybox, work / "base")
        (work / "config.json").write_text(json.dumps({"cmd": ["echo", "named"]}))
    return _cli(
        "image", "assemble", "--base", "base", "--config", "config.json", "--output", "out",
        "--source-date-epoch", "0", *extra,
        cwd=work,
    )  # fmt: skip


def _archive_member(archive: Path, name: str) -> Any:
    with tarfile.open(archive) as tar:
        member = tar.extractfile(name)
        assert member is not None, f"{archive} has no {name}"
        return json.loads(member.read())


def _layout_tags(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    return [entry["annotations"][REF_NAME] for entry in index["manifests"]]


def test_archive_names_are_the_repo_tags_and_repositories_and_podman_loads_them(
    tmp_path: Path, busybox_image_blobs: ImageBlobs, podman: Podman
) -> None:
    result = _assemble(
        tmp_path, busybox_image_blobs,
        "--tag", "latest", "--tag", "1.0", "--docker-archive", "image.tar",
        "--archive-name", "registry.example.com:5000/team/app:latest",
        "--archive-name", "registry.example.com:5000/team/app:1.0",
        "--archive-name", "app:1.0",
        "--archive-name", "docker.io/library/app:2",
        "--archive-name", "app:1.0",  # once only
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    archive = tmp_path / "image.tar"
    [entry] = _archive_member(archive, "manifest.json")
    assert entry["RepoTags"] == [
        "registry.example.com:5000/team/app:latest",
        "registry.example.com:5000/team/app:1.0",
        "app:1.0",
        "docker.io/library/app:2",
    ]
    assert entry["Config"] == info["config_digest"].split(":", 1)[1] + ".json"
    top_layer = busybox_image_blobs.diff_id.split(":", 1)[1]
    assert _archive_member(archive, "repositories") == {
        "registry.example.com:5000/team/app": {"latest": top_layer, "1.0": top_layer},
        "app": {"1.0": top_layer},
        "docker.io/library/app": {"2": top_layer},
    }
    # The layout's own ref names are still the --tags.
    assert _layout_tags(tmp_path / "out") == ["latest", "1.0"]
    assert info["tags"] == ["latest", "1.0"]

    podman.require_info()
    podman("load", "-i", str(archive))
    # podman reads a name without a registry as a local image's, as `podman tag` makes them.
    assert podman.image_names() == [
        "docker.io/library/app:2",
        "localhost/app:1.0",
        "registry.example.com:5000/team/app:1.0",
        "registry.example.com:5000/team/app:latest",
    ]
    assert podman.image_exists("app:1.0") and podman.image_exists("app:2")
    assert not podman.image_exists("app:3")
    assert podman.image_exists("registry.example.com:5000/team/app:1.0")
    config_id = info["config_digest"].split(":", 1)[1]
    inspected = json.loads(podman("image", "inspect", "app:1.0").stdout)
    assert inspected[0]["Id"] == config_id


def test_without_archive_names_the_archive_keeps_the_full_name_tags(
    tmp_path: Path, busybox_image_blobs: ImageBlobs
) -> None:
    result = _assemble(
        tmp_path, busybox_image_blobs,
        "--tag", "latest", "--tag", "example.com/app:1.2", "--docker-archive", "image.tar",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [entry] = _archive_member(tmp_path / "image.tar", "manifest.json")
    assert entry["RepoTags"] == ["example.com/app:1.2"]


def test_invalid_archive_names_fail_before_anything_is_written(
    tmp_path: Path, busybox_image_blobs: ImageBlobs
) -> None:
    cases = {
        "App:1": "invalid image reference 'App:1': repository name must be lowercase",
        "app": "expected NAME:TAG, such as 'app:latest'",
        "ghcr.io/acme/app@sha256:" + "a" * 64: "expected NAME:TAG, such as "
        "'ghcr.io/acme/app:latest' (a docker-archive names images by tag, never by digest)",
        "app:bad tag": "invalid image reference 'app:bad tag'",
    }
    for name, message in cases.items():
        result = _assemble(
            tmp_path, busybox_image_blobs, "--docker-archive", "image.tar", "--archive-name", name
        )
        assert result.returncode == 1, (name, result.stderr)
        prefix = f"pants-oci: error: --archive-name {name!r}: {message}"
        assert result.stderr.startswith(prefix), result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
        assert not (tmp_path / "out").exists() and not (tmp_path / "image.tar").exists()

    result = _assemble(tmp_path, busybox_image_blobs, "--archive-name", "app:1")
    assert result.returncode == 1
    assert result.stderr == (
        "pants-oci: error: --archive-name names the image in a docker-archive; give "
        "--docker-archive TAR_PATH\n"
    )
    assert not (tmp_path / "out").exists()
