"""`pants package` of `oci_image` targets, run for real, checked with skopeo, umoci and runc."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness.busybox import PushedImage
from tests.harness.fixtures import RegistryFactory
from tests.harness.podman import Podman
from tests.harness.registry import Registry
from tests.harness.tools import runc_run, skopeo_copy_to_oci_layout, skopeo_inspect, umoci_unpack
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow


def test_image_on_busybox_base_runs_under_runc(tmp_path: Path, busybox_image: PushedImage) -> None:
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "app/BUILD": f"""
files(name="scripts", sources=["greet.sh"])
oci_layer(
    name="data", dependencies=[":data_files"], destination="/srv", mode="0604", uid=1000, gid=1000
)
files(name="data_files", sources=["name.txt"])
oci_image(
    name="app",
    base="{busybox_image.ref}",
    dependencies=[":scripts", ":data"],
    entrypoint=["/bin/sh", "/app/greet.sh"],
    env={{"GREETING": "hello"}},
    image_tags=["v1"],
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
    # The oci_layer's mode and ownership, as unpacked (as root, umoci keeps owners); the
    # container's root lacks CAP_DAC_OVERRIDE, so "other" keeps read access for the script.
    stat = (bundle / "rootfs/srv/app/name.txt").stat()
    assert (stat.st_mode & 0o7777, stat.st_uid, stat.st_gid) == (0o604, 1000, 1000)


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
    image_tags=["1.0", "latest"],
)
oci_image(name="private", base="scratch", registries=["{target.host}"], skip_push=True)
oci_image(name="defaulted", base="scratch", dependencies=[":scripts"])
""",
            "svc/hello.sh": "echo published image runs\n",
        },
    )
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    auth = base64.b64encode(f"{target.username}:{target.password}".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {target.host: {"auth": auth}}}))
    record = tmp_path / "published.json"
    result = run_pants(
        f"--oci-default-registries=['{target.host}']",
        f"--publish-output={record}",
        "publish",
        "svc::",
        cwd=repo,
        env={"DOCKER_CONFIG": str(docker_config)},
    )
    assert target.password not in result.stdout + result.stderr
    pushed = {
        p["reference"]: p["digest"]
        for line in result.stdout.splitlines()
        if '"pushed"' in line
        for p in json.loads(line)["pushed"]
    }
    assert not any("private" in reference for reference in pushed)
    # No `registries` on the target: `[oci].default_registries` applies.
    assert f"{target.host}/defaulted:latest" in pushed
    run_pants("package", "svc:api", cwd=repo)
    info = json.loads((repo / "dist/svc/api/image-info.json").read_text())
    assert pushed[f"{target.host}/team/svc-api:1.0"] == info["manifest_digest"]
    # `publish --output` records each name (each its own push) with the digest it now
    # points at.
    api_records = [r for r in json.loads(record.read_text()) if r["target"] == "svc:api"]
    assert [(r["names"], r["published"]) for r in api_records] == [
        ([f"{target.host}/team/svc-api:1.0"], True),
        ([f"{target.host}/team/svc-api:latest"], True),
    ]
    for api_record in api_records:
        assert api_record["digest"] == info["manifest_digest"]
        assert api_record["pinned"] == [f"{target.host}/team/svc-api@{info['manifest_digest']}"]
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


def _package_counters(repo: Path) -> dict[str, int]:
    result = run_pants("--stats-log", "package", "app:app", cwd=repo)
    return {k: int(v) for k, v in re.findall(r"^\s+(\w+): (\d+)$", result.stderr, re.MULTILINE)}


def test_one_changed_file_rebuilds_only_its_layer(tmp_path: Path) -> None:
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "app/BUILD": """
files(name="vendor_files", sources=["vendor/*"])
oci_layer(name="deps", dependencies=[":vendor_files"], destination="/opt")
files(name="src_files", sources=["src/*"])
oci_layer(name="src", dependencies=[":src_files"], destination="/opt")
oci_image(name="app", dependencies=[":src", ":deps"], image_tags=["latest", "{hash}"])
""",
            # Unique content: the local process cache is shared with every other run.
            "app/vendor/lib.txt": f"library {uuid.uuid4()}\n",
            "app/src/main.txt": f"main {uuid.uuid4()}\n",
        },
    )
    info_path = repo / "dist/app/app/image-info.json"
    _package_counters(repo)
    first = json.loads(info_path.read_text())

    # New mtimes, same bytes: nothing is rebuilt. Pants re-runs a few processes that it never
    # caches across runs (interpreter discovery); they are the baseline.
    for path in (repo / "app/vendor/lib.txt", repo / "app/src/main.txt"):
        os.utime(path, (1_000_000, 1_000_000))
    baseline = _package_counters(repo)["local_cache_requests_uncached"]
    assert json.loads(info_path.read_text()) == first

    (repo / "app/src/main.txt").write_text(f"main {uuid.uuid4()}\n")
    counters = _package_counters(repo)
    second = json.loads(info_path.read_text())
    # Exactly two processes more than a no-op: the changed layer, and the image assembly.
    assert counters["local_cache_requests_uncached"] == baseline + 2
    # Layers in address order: app:deps, then app:src.
    assert second["layers"][0] == first["layers"][0]  # deps: untouched
    assert second["layers"][1]["digest"] != first["layers"][1]["digest"]
    assert second["manifest_digest"] != first["manifest_digest"]
    # `{hash}` follows the content: stable across the no-op run, new after the change.
    assert re.fullmatch(r"[0-9a-f]{12}", first["tags"][1])
    assert second["tags"][1] != first["tags"][1]


def test_separate_empty_caches_give_the_same_manifest(tmp_path: Path) -> None:
    files = {
        "app/BUILD": (
            "files(name='f', sources=['*.txt'])\noci_image(name='app', dependencies=[':f'])"
        ),
        "app/a.txt": f"same bytes {uuid.uuid4()}\n",
    }
    digests = []
    for machine in ("a", "b"):
        repo = make_pants_repo(tmp_path / machine / "repo", files)
        os.utime(repo / "app/a.txt", (hash(machine) % 10**9, hash(machine) % 10**9))
        caches = tmp_path / machine
        run_pants(
            f"--local-store-dir={caches / 'lmdb'}",
            f"--named-caches-dir={caches / 'named'}",
            "package",
            "app:app",
            cwd=repo,
        )
        digests.append(json.loads((repo / "dist/app/app/image-info.json").read_text()))
    assert digests[0]["manifest_digest"] == digests[1]["manifest_digest"]
    assert digests[0]["layers"] == digests[1]["layers"]


def test_errors_name_the_target_and_the_fix(
    tmp_path: Path, busybox_image: PushedImage, registry_factory: RegistryFactory
) -> None:
    missing = busybox_image.ref.split("@")[0] + "@sha256:" + "0" * 64
    unreachable = "127.0.0.1:1/base@sha256:" + "1" * 64  # pinned: no lockfile to write
    locked = registry_factory("token")
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "bad/BUILD": f"""
oci_image(name="unpinned", base="{busybox_image.tag_ref}")
oci_image(name="missing", base="{missing}")
oci_image(name="unreachable", base="{unreachable}")
oci_image(name="relative", workdir="app")
oci_image(name="refused", registries=["{locked.host}"])
""",
        },
    )

    unpinned = run_pants("package", "bad:unpinned", cwd=repo, check=False)
    assert unpinned.returncode != 0
    # A tag with no lockfile to pin it: the error names the command that writes one.
    assert "bad:unpinned" in unpinned.stderr and ", a tag, " in unpinned.stderr
    assert "pants generate-oci-lockfile" in unpinned.stderr

    not_found = run_pants("package", "bad:missing", cwd=repo, check=False)
    assert not_found.returncode != 0
    assert "0" * 64 in not_found.stderr and "Traceback" not in not_found.stderr

    # Nothing listens there: one try, one message naming the target and the registry. A
    # loopback registry is plain HTTP already, so no setting is suggested, neither as an
    # `[oci]` option nor as the image tool's flag (tests/core/test_cli_errors.py has a remote
    # registry's hint in Pants' words).
    down = run_pants("package", "bad:unreachable", cwd=repo, check=False)
    assert down.returncode != 0
    assert "bad:unreachable" in down.stderr and "retrying" not in down.stderr
    assert down.stderr.count("cannot reach registry 127.0.0.1:1 ") == 1, down.stderr
    assert down.stderr.count("Connection refused") == 1, down.stderr
    assert "check that 127.0.0.1:1 is up and listening" in down.stderr
    assert "insecure" not in down.stderr and "ca_bundle" not in down.stderr
    assert "--ca-bundle" not in down.stderr

    relative = run_pants("package", "bad:relative", cwd=repo, check=False)
    assert relative.returncode != 0
    assert "`workdir` field in target bad:relative" in relative.stderr
    assert "'/app'" in relative.stderr

    # No credentials anywhere: the registry refuses the push, and publish says so.
    empty_config = tmp_path / "empty-docker-config"
    empty_config.mkdir()
    refused = run_pants(
        "publish", "bad:refused", cwd=repo, check=False, env={"DOCKER_CONFIG": str(empty_config)}
    )
    assert refused.returncode != 0
    assert locked.host in refused.stdout + refused.stderr
    assert "credentials" in (refused.stdout + refused.stderr).lower()


def _archive_json(archive: Path, member: str) -> Any:
    with tarfile.open(archive) as tar:
        file = tar.extractfile(member)
        assert file is not None, f"{archive} has no file {member}"
        return json.loads(file.read())


def test_local_image_bases_packages_as_content_and_docker_archive_output(
    tmp_path: Path, busybox_image: PushedImage, registry_anonymous: Registry, podman: Podman
) -> None:
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "app/BUILD": """
python_sources(name="lib")
pex_binary(name="tool", entry_point="main.py")
oci_image(
    name="from_layout",
    base="oci-layout:bases/busybox-layout",
    dependencies=[":tool"],
    # The PEX as it is, with an entrypoint of its own: the base has no Python to run a venv.
    python_layout="pex",
    entrypoint=["sh", "-c", "test -f /app/tool.pex/__main__.py && echo pex is there"],
    formats=["oci-layout", "docker-archive"],
    # The archive names the image as `publish` would push it.
    registries=["registry.example.com:5000/team"],
    repository="{directory}/{name}",
    image_tags=["latest", "1.0"],
)
oci_image(
    name="from_archive",
    base="docker-archive:bases/busybox.tar",
    cmd=["echo", "archive base"],
    # No registries: the archive names it `repository:tag`.
    formats=["oci-layout", "docker-archive"],
    # Pants' own field: the layout at dist/images/archive-base/, the archive beside it.
    output_path="images/archive-base",
)
""",
            "app/main.py": "print('hi')\n",
            "bases/BUILD": """
files(name="busybox-layout", sources=["busybox-layout/**"])
files(name="busybox-archive", sources=["busybox.tar"])
""",
        },
    )
    bases = repo / "bases"
    skopeo_copy_to_oci_layout(
        f"docker://{busybox_image.tag_ref}",
        bases / "busybox-layout",
        "latest",
        registry=registry_anonymous,
    )
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--insecure-policy",
            f"oci:{bases / 'busybox-layout'}:latest",
            f"docker-archive:{bases / 'busybox.tar'}",
        ],
        check=True,
        capture_output=True,
    )
    run_pants("package", "app:from_layout", "app:from_archive", cwd=repo)

    outputs = {"from_layout": "dist/app/from_layout", "from_archive": "dist/images/archive-base"}
    for name, expected in (("from_layout", "pex is there"), ("from_archive", "archive base")):
        bundle = tmp_path / f"bundle-{name}"
        umoci_unpack(repo / outputs[name], "latest", bundle)
        assert runc_run(bundle, None).stdout.strip() == expected
    # The docker-archive output is what `docker load` reads; skopeo reads it the same way.
    archive = skopeo_inspect(f"docker-archive:{repo / 'dist/app/from_layout.tar'}")
    info = json.loads((repo / "dist/app/from_layout/image-info.json").read_text())
    assert archive["Layers"][0] == busybox_image.diff_id
    # The base's layer, then the PEX's requirements and its code.
    assert len(archive["Layers"]) == len(info["layers"]) == 3

    # Each archive names its image (manifest.json and the legacy `repositories` file): what
    # `publish` would push, or `repository:tag` without registries.
    named = "registry.example.com:5000/team/app/from_layout"
    expected_names = {
        "from_layout": [f"{named}:latest", f"{named}:1.0"],
        "from_archive": ["from_archive:latest"],
    }
    for name, repo_tags in expected_names.items():
        manifest = _archive_json(repo / f"{outputs[name]}.tar", "manifest.json")
        repositories = _archive_json(repo / f"{outputs[name]}.tar", "repositories")
        assert manifest[0]["RepoTags"] == repo_tags
        listed = [f"{path}:{tag}" for path, tags in repositories.items() for tag in tags]
        assert sorted(listed) == sorted(repo_tags)
    # `podman load` finds them by those names.
    podman.require_info()
    for name in expected_names:
        podman("load", "-i", str(repo / f"{outputs[name]}.tar"))
    assert podman.image_names() == sorted(
        ["localhost/from_archive:latest", f"{named}:latest", f"{named}:1.0"]
    )
    assert podman.image_exists(f"{named}:1.0") and podman.image_exists("from_archive:latest")
    loaded = json.loads(podman("image", "inspect", f"{named}:latest").stdout)
    assert f"sha256:{loaded[0]['Id']}" == info["config_digest"]
