"""Images in the target graph, through real `./pants` in a user's git repo: `base` is a
dependency edge (another `oci_image`, or the `files` target owning a local layout), so
`dependencies`, `dependents`, `filedeps` and `--changed-since --changed-dependents` see it; and
`image_tags` leaves Pants' own `tags` to group targets."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from pants_oci.core.image import Image
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def _local_layout(directory: Path, scratch: Path) -> None:
    """An OCI layout checked into the repo, as a team vendors a base image."""
    (scratch / "etc").mkdir(parents=True)
    (scratch / "etc/base-release").write_text("vendored base 1\n")
    with Image("scratch", platform="linux/amd64") as image:
        image.add_files({"/": str(scratch)})
        image.write_layout(directory, ["latest"])


def _lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line]


def test_base_is_a_dependency_edge_and_image_tags_leave_tags_to_pants(tmp_path: Path) -> None:
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "base/BUILD": """
files(name="files", sources=["hello.sh"])
oci_image(name="base", dependencies=[":files"], tags=["images"])
""",
            "base/hello.sh": "echo base v1\n",
            "derived/BUILD": """
oci_image(
    name="derived",
    base="//base:base",
    image_tags=["v1", "latest"],
    tags=["images", "integration"],
)
""",
            "local/BUILD": """
files(name="layout", sources=["layout/**"])
oci_image(name="on-layout", base="oci-layout:local/layout")
""",
            ".gitignore": "/dist/\n/.pants.d/\n/.pids/\n",
        },
    )
    _local_layout(repo / "local/layout", tmp_path / "scratch")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "init")

    assert _lines(run_pants("dependencies", "derived:derived", cwd=repo).stdout) == ["base:base"]
    # The targets of the layout's files (those `files(name="layout")` generates).
    layout_files = sorted(
        str(p.relative_to(repo)) for p in (repo / "local/layout").rglob("*") if p.is_file()
    )
    on_layout = _lines(run_pants("dependencies", "local:on-layout", cwd=repo).stdout)
    assert sorted(address.split(":")[0] for address in on_layout) == layout_files
    assert "derived:derived" in _lines(run_pants("dependents", "base:base", cwd=repo).stdout)
    index = "local/layout/index.json:../layout"
    assert "local:on-layout" in _lines(run_pants("dependents", index, cwd=repo).stdout)
    filedeps = _lines(run_pants("filedeps", "--transitive", "derived:derived", cwd=repo).stdout)
    assert "base/hello.sh" in filedeps

    # Pants' `tags` group targets; `image_tags` name the image.
    assert _lines(run_pants("--tag=integration", "list", "::", cwd=repo).stdout) == [
        "derived:derived"
    ]
    fields = re.findall(r"^(\w+)$", run_pants("help", "oci_image", cwd=repo).stdout, re.M)
    assert fields.count("tags") == 1 and fields.count("image_tags") == 1, fields
    [peeked] = json.loads(run_pants("peek", "derived:derived", cwd=repo).stdout)
    assert peeked["tags"] == ["images", "integration"]
    assert peeked["image_tags"] == ["v1", "latest"]

    # A change to the base's file: "package what changed" packages the derived image too,
    # and it is built on the new base.
    (repo / "base/hello.sh").write_text("echo base v2\n")
    run_pants("--changed-since=HEAD", "--changed-dependents=transitive", "package", cwd=repo)
    derived_info = json.loads((repo / "dist/derived/derived/image-info.json").read_text())
    base_info = json.loads((repo / "dist/base/base/image-info.json").read_text())
    assert derived_info["layers"] == base_info["layers"]
    assert not (repo / "dist/local").exists()
    # A change to the vendored layout selects the image built on it, and nothing else.
    _git(repo, "commit", "-qam", "base v2")
    annotations = repo / "local/layout/oci-layout"
    annotations.write_text(annotations.read_text() + "\n")
    changed = run_pants(
        "--changed-since=HEAD", "--changed-dependents=transitive", "list", cwd=repo
    ).stdout
    assert "local:on-layout" in _lines(changed)
    assert not {"base:base", "derived:derived"} & set(_lines(changed)), changed

    # A `base` naming no target fails when the graph is resolved, naming field and target.
    (repo / "bad/BUILD").parent.mkdir()
    (repo / "bad/BUILD").write_text('oci_image(name="bad", base=":missing")\n')
    failed = run_pants("dependencies", "bad:bad", cwd=repo, check=False)
    assert failed.returncode != 0
    assert "bad:missing from the `base` field of bad:bad does not exist" in failed.stderr, (
        failed.stderr[-3000:]
    )
    assert "missing" in failed.stderr
    # A layout that no target owns: the message says how to declare one.
    (repo / "bad/BUILD").write_text('oci_image(name="bad", base="oci-layout:local/layout")\n')
    (repo / "local/BUILD").write_text(
        'oci_image(name="on-layout", base="oci-layout:local/layout")\n'
    )
    failed = run_pants("dependencies", "bad:bad", cwd=repo, check=False)
    assert failed.returncode != 0
    assert "no target owns the files of 'local/layout'" in failed.stderr, failed.stderr[-3000:]
    assert 'files(name="base", sources=["local/layout/**"])' in failed.stderr
