"""`pants-oci layer build --spec`: a spec's sources are read only from inside the working
directory (the Pants sandbox), so that whatever a layer holds is an input of the process and
part of its cache key. Run as the Pants backend runs it: a subprocess, in its own directory.
The library (LayerBuilder, Image.add_files) still reads any path its caller gives it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core.layer import LayerBuilder

REPO_ROOT = Path(__file__).resolve().parents[2]
PANTS_OCI = (sys.executable, "-m", "pants_oci.core", "-q")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """tmp/work (the working directory: app/hello.txt) and, next to it, tmp/outside."""
    work = tmp_path / "work"
    (work / "app").mkdir(parents=True)
    (work / "app" / "hello.txt").write_text("hello\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("not for the layer\n")
    return work


def _build(
    work: Path, source: str, *, follow_symlinks: bool = False, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    spec = {
        "entries": [{"source": source, "target": "/data/x"}],
        "follow_symlinks": follow_symlinks,
    }
    (work / "spec.json").write_text(json.dumps(spec))
    (work / "layer.tar").unlink(missing_ok=True)
    result = subprocess.run(
        [*PANTS_OCI, "layer", "build", "--spec", "spec.json", "--output", "layer.tar"],
        cwd=work,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO_ROOT / "src/python"),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == expect, f"exit {result.returncode}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def _members(work: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(work / "layer.tar") as tar:
        return {member.name: member for member in tar.getmembers()}


def _refused(work: Path, source: str, resolved: Path, **kwargs: Any) -> str:
    result = _build(work, source, expect=1, **kwargs)
    stderr = result.stderr
    assert stderr.startswith(
        f"pants-oci: error: layer spec spec.json: entries[0]: source {source!r} "
    )
    assert str(resolved) in stderr
    assert f"outside the working directory {work.resolve()}" in stderr
    assert "inside the directory `layer build` runs in" in stderr
    assert not (work / "layer.tar").exists()
    return stderr


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_a_source_outside_the_working_directory_is_refused(work: Path, how: str) -> None:
    secret = (work.parent / "outside" / "secret.txt").resolve()
    source = "../outside/secret.txt" if how == "relative" else str(secret)
    _refused(work, source, secret)


def test_a_system_file_is_refused(work: Path) -> None:
    _refused(work, "/etc/passwd", Path("/etc/passwd"))
    _refused(work, "../../../../../../../../etc/passwd", Path("/etc/passwd"))


def test_a_symlink_source_is_judged_by_what_is_read(work: Path) -> None:
    (work / "link").symlink_to("../outside/secret.txt")
    secret = (work.parent / "outside" / "secret.txt").resolve()
    # Followed, its bytes would come from outside.
    _refused(work, "link", secret, follow_symlinks=True)
    # Not followed, it is archived as a link: nothing outside is read.
    _build(work, "link")
    link = _members(work)["data/x"]
    assert link.issym() and link.linkname == "../outside/secret.txt"
    # A symlinked directory on the way to the source counts, whatever follow_symlinks says.
    (work / "door").symlink_to("../outside")
    _refused(work, "door/secret.txt", secret)


def test_symlinks_inside_a_directory_source(work: Path) -> None:
    (work / "app" / "escape").symlink_to("../../outside/secret.txt")
    (work / "app" / "sibling").symlink_to("hello.txt")
    # Archived as symlinks: builds, and the layer holds the links, not the bytes.
    _build(work, "app")
    members = _members(work)
    assert members["data/x/escape"].issym()
    assert members["data/x/escape"].linkname == "../../outside/secret.txt"
    assert members["data/x/hello.txt"].isfile()
    # Followed, the escaping one would be read: refused, naming the link.
    stderr = _refused(
        work, "app", (work.parent / "outside" / "secret.txt").resolve(), follow_symlinks=True
    )
    assert "through the symlink app/escape" in stderr


def test_sources_inside_the_working_directory_still_build(work: Path) -> None:
    (work / "alias").symlink_to("app", target_is_directory=True)
    (work / "app" / "sibling").symlink_to("hello.txt")
    for source in ("app/hello.txt", "app/../app/hello.txt", str(work / "app" / "hello.txt")):
        _build(work, source)
        assert _members(work)["data/x"].size == len("hello\n")
    _build(work, "alias", follow_symlinks=True)
    members = _members(work)
    assert members["data/x/sibling"].isfile() and members["data/x/hello.txt"].isfile()


def test_a_symlink_loop_inside_is_the_builders_error_not_a_hang(work: Path) -> None:
    (work / "app" / "loop").symlink_to(".", target_is_directory=True)
    stderr = _build(work, "app", follow_symlinks=True, expect=1).stderr
    assert "symlink loop" in stderr


def test_the_library_reads_any_path_its_caller_gives(work: Path, tmp_path: Path) -> None:
    """The rule is the command line's (the Pants process interface), not LayerBuilder's."""
    builder = LayerBuilder()
    builder.add_files({"/secret": str(work.parent / "outside" / "secret.txt")})
    blob = builder.write_file(tmp_path / "lib.tar", compression="none")
    with tarfile.open(tmp_path / "lib.tar") as tar:
        assert tar.getnames() == ["secret"]
    assert blob.size > 0
