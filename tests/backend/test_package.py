"""`pants package` of `oci_image` targets, run for real, checked with skopeo, umoci and runc."""

from __future__ import annotations

import base64
import json
import shutil
import uuid
from pathlib import Path

import pytest

from tests.harness.busybox import PushedImage
from tests.harness.fixtures import RegistryFactory
from tests.harness.tools import runc_run, skopeo_copy_to_oci_layout, skopeo_inspect, umoci_unpack
from tests.pants_runs import REPO, make_pants_repo, run_pants

pytestmark = pytest.mark.slow


def test_package_hello_example_writes_a_layout_that_umoci_unpacks(tmp_path: Path) -> None:
    # The distdir must be inside the build root: a unique one, removed afterwards.
    distdir = f"dist/test-{uuid.uuid4().hex}"
    try:
        run_pants(f"--pants-distdir={distdir}", "package", "examples/hello:hello")
        shutil.copytree(REPO / distdir, tmp_path / "dist")
    finally:
        shutil.rmtree(REPO / distdir, ignore_errors=True)
    out = tmp_path / "dist/examples/hello/hello"
    info = json.loads((out / "image-info.json").read_text())
    inspected = skopeo_inspect(f"oci:{out}:latest")
    assert inspected["Digest"] == info["manifest_digest"]
    assert inspected["Env"] == ["GREETING_FILE=/examples/hello/greeting.txt"]
    bundle = tmp_path / "bundle"
    umoci_unpack(out, "latest", bundle)
    greeting = bundle / "rootfs/examples/hello/greeting.txt"
    assert greeting.read_text() == "Hello from a daemonless image.\n"
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["cwd"] == "/examples/hello"


def test_image_on_busybox_base_runs_under_runc(tmp_path: Path, busybox_image: PushedImage) -> None:
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "app/BUILD": f"""
files(name="scripts", sources=["greet.sh"])
oci_layer(name="data", dependencies=[":data_files"], destination="/srv")
files(name="data_files", sources=["name.txt"])
oci_image(
    name="app",
    base="{busybox_image.ref}",
    dependencies=[":scripts", ":data"],
    entrypoint=["/bin/sh", "/app/greet.sh"],
    env={{"GREETING": "hello"}},
    tags=["v1"],
)
""",
            "app/greet.sh": 'echo "$GREETING $(cat /srv/app/name.txt) from $(pwd)"\n',
            "app/name.txt": "world\n",
        },
    )
    run_pants("package", "app:app", cwd=repo)
    out = repo / "dist/app/app"
    info = json.loads((out / "image-info.json").read_text())
    # Base layer first, then the oci_layer, then the layer of the remaining files.
    assert len(info["layers"]) == 3
    assert info["layers"][0]["digest"] == busybox_image.layer_digest
    bundle = tmp_path / "bundle"
    umoci_unpack(out, "v1", bundle)
    result = runc_run(bundle, None)
    assert result.stdout.strip() == "hello world from /"


def test_publish_pushes_every_tag_with_credentials_from_docker_config(
    tmp_path: Path, busybox_image: PushedImage, registry_factory: RegistryFactory
) -> None:
    target = registry_factory("token")
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "svc/BUILD": f"""
files(name="scripts", sources=["hello.sh"])
oci_image(
    name="api",
    base="{busybox_image.ref}",
    dependencies=[":scripts"],
    cmd=["/bin/sh", "/svc/hello.sh"],
    registries=["{target.host}"],
    repository="team/{{directory}}-{{name}}",
    tags=["1.0", "latest"],
)
oci_image(name="private", base="scratch", registries=["{target.host}"], skip_push=True)
""",
            "svc/hello.sh": "echo published image runs\n",
        },
    )
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    auth = base64.b64encode(f"{target.username}:{target.password}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {target.host: {"auth": auth}}}))
    result = run_pants("publish", "svc::", cwd=repo, env={"DOCKER_CONFIG": str(docker_config)})
    assert target.password not in result.stdout + result.stderr
    [pushed_line] = [line for line in result.stdout.splitlines() if '"pushed"' in line]
    pushed = {p["reference"]: p["digest"] for p in json.loads(pushed_line)["pushed"]}
    assert "private" not in pushed_line
    run_pants("package", "svc:api", cwd=repo)
    info = json.loads((repo / "dist/svc/api/image-info.json").read_text())
    assert set(pushed.values()) == {info["manifest_digest"]}
    for tag in ("1.0", "latest"):
        ref = f"{target.host}/team/svc-api:{tag}"
        inspected = skopeo_inspect(f"docker://{ref}", registry=target)
        assert inspected["Digest"] == info["manifest_digest"]
    assert "skip_push" in result.stderr
    layout = tmp_path / "pulled"
    skopeo_copy_to_oci_layout(
        f"docker://{target.host}/team/svc-api:1.0", layout, "1.0", registry=target
    )
    bundle = tmp_path / "bundle"
    umoci_unpack(layout, "1.0", bundle)
    assert runc_run(bundle, None).stdout.strip() == "published image runs"
