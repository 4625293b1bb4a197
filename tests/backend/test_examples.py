"""Every example says what it shows and whether it needs the network, and every offline one
packages, in one `./pants package` into a clean dist/, into layouts that skopeo and umoci read."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness.tools import skopeo_inspect, umoci_unpack
from tests.pants_runs import REPO, run_pants

EXAMPLES = REPO / "examples"


def _examples() -> list[Path]:
    return sorted(path.parent for path in EXAMPLES.glob("*/BUILD"))


def _header(example: Path, key: str) -> str:
    match = re.search(rf"^# {key}: (.+)$", (example / "BUILD").read_text(), re.M)
    assert match, f"{example.relative_to(REPO)}/BUILD lacks a `# {key}: ...` line"
    return match.group(1)


def _offline(example: Path) -> bool:
    return _header(example, "Network").startswith("none")


def test_every_example_says_what_it_shows_and_what_network_it_needs() -> None:
    examples = _examples()
    assert {e.name for e in examples} >= {"hello", "derived", "layered", "python-app"}
    index = (EXAMPLES / "README.md").read_text()
    for example in examples:
        assert _header(example, "Shows")
        assert _header(example, "Network")
        assert f"[{example.name}]({example.name}/BUILD)" in index, example.name
    assert not _offline(EXAMPLES / "python-app")


def _image_targets(example: Path) -> list[str]:
    names = re.findall(r'^oci_image\(\s*name="([^"]+)"', (example / "BUILD").read_text(), re.M)
    assert names, f"{example} has no oci_image"
    return [f"examples/{example.name}:{name}" for name in names]


@pytest.mark.slow
def test_offline_examples_package_from_a_clean_dist(tmp_path: Path) -> None:
    offline = [e for e in _examples() if _offline(e)]
    targets = [t for example in offline for t in _image_targets(example)]
    distdir = f"dist/test-{uuid.uuid4().hex}"
    try:
        run_pants(f"--pants-distdir={distdir}", "package", *targets)
        shutil.copytree(REPO / distdir, tmp_path / "dist")
    finally:
        shutil.rmtree(REPO / distdir, ignore_errors=True)
    dist = tmp_path / "dist"

    def info(target: str) -> dict[str, Any]:
        path, name = target.split(":")
        return dict(
            json.loads((dist / path.replace("/", ".") / name / "image-info.json").read_text())
        )

    for target in targets:
        path, name = target.split(":")
        layout = dist / path.replace("/", ".") / name
        tag = info(target)["tags"][0]
        assert skopeo_inspect(f"oci:{layout}:{tag}")["Digest"] == info(target)["manifest_digest"]

    # hello: files, env and workdir, as umoci unpacks them.
    hello = dist / "examples.hello/hello"
    assert skopeo_inspect(f"oci:{hello}:latest")["Env"] == [
        "GREETING_FILE=/examples/hello/greeting.txt"
    ]
    bundle = umoci_unpack(hello, "latest", tmp_path / "hello-bundle")
    greeting = bundle / "rootfs/examples/hello/greeting.txt"
    assert greeting.read_text() == "Hello from a daemonless image.\n"
    assert json.loads((bundle / "config.json").read_text())["process"]["cwd"] == "/examples/hello"

    # derived: hello's layers plus its own, both envs.
    hello_info, derived = info("examples/hello:hello"), info("examples/derived:derived")
    assert derived["layers"][:-1] == hello_info["layers"]
    assert len(derived["layers"]) == len(hello_info["layers"]) + 1
    inspected = skopeo_inspect(f"oci:{dist / 'examples.derived/derived'}:latest")
    assert "GREETING_FILE=/examples/hello/greeting.txt" in inspected["Env"]
    assert "EXTRA_FILE=/examples/derived/extra.txt" in inspected["Env"]

    # layered: two oci_layers, in address order; tags with placeholders.
    layered = info("examples/layered:layered")
    assert len(layered["layers"]) == 2
    assert layered["tags"] == ["latest", "layered"]
    bundle = umoci_unpack(dist / "examples.layered/layered", "layered", tmp_path / "layered")
    banner = bundle / "rootfs/srv/examples/layered/assets/banner.txt"
    assert banner.read_text() == "Static assets: they rarely change.\n"
