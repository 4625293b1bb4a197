"""`[oci].registries` as `[docker].registries` users know them, and `[oci].env_vars`, through
real `./pants publish` against two loopback registries: aliases, default registries, a
registry's own repository and extra tags, a registry's `skip_push`, an image with no registry,
and a credential helper that reads a variable named only in `[oci].env_vars`."""

from __future__ import annotations

import json
import os
import re
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.harness.registry import Registry
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow

HELPER = "pantsociregistries"
# Only `[oci].env_vars` names it: without that option the push never sees it.
PASSWORD_VARIABLE = "PANTS_OCI_TEST_REGISTRY_PASSWORD"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _manifest_digest(registry: Registry, repository: str, tag: str) -> str | None:
    response = registry.httpx_client().get(
        f"/v2/{repository}/manifests/{tag}", headers={"Accept": _OCI_MANIFEST}
    )
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    return response.headers["Docker-Content-Digest"]


def test_publish_to_aliased_and_default_registries_with_their_options_and_env_vars(
    tmp_path: Path, registry_anonymous: Registry, registry_basic: Registry
) -> None:
    public, private = registry_anonymous, registry_basic
    assert private.username and private.password
    unique = f"registries-{uuid.uuid4().hex[:8]}"
    repo = make_pants_repo(
        tmp_path / "repo",
        {
            "svc/BUILD": f"""
files(name="content", sources=["hello.txt"])
oci_image(
    name="defaulted",
    dependencies=[":content"],
    repository="{unique}/{{name}}",
    image_tags=["1.0"],
)
oci_image(
    name="aliased",
    dependencies=[":content"],
    registries=["@private", "@attic"],
    repository="{unique}/{{name}}",
    image_tags=["1.0"],
    env={{"IMAGE": "aliased"}},
)
oci_image(name="nowhere", dependencies=[":content"], registries=[])
""",
            "svc/hello.txt": "hello\n",
        },
        extra_toml=f"""
[oci]
env_vars = ["{PASSWORD_VARIABLE}"]
tag_vars = ["CHANNEL=beta"]

[oci.registries.public]
address = "{public.host}"
default = true
extra_image_tags = ["{{tag_vars.CHANNEL}}-{{hash}}"]

[oci.registries.private]
address = "{private.host}"
repository = "mirror/{{target_repository}}"
extra_image_tags = ["mirrored"]

[oci.registries.attic]
address = "{public.host}/attic"
skip_push = true
""",
    )
    # A credential helper on PATH, as docker-credential-ecr-login is, reading its secret from
    # a variable that only `[oci].env_vars` passes to the push.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / f"docker-credential-{HELPER}"
    helper.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        f'printf \'{{"Username": "{private.username}", "Secret": "%s"}}\\n\' '
        f'"${PASSWORD_VARIABLE}"\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps({"credHelpers": {private.host: HELPER}}))
    record = tmp_path / "published.json"
    result = run_pants(
        f"--publish-output={record}",
        "publish",
        "svc::",
        cwd=repo,
        env={
            "DOCKER_CONFIG": str(docker_config),
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            PASSWORD_VARIABLE: private.password,
        },
    )
    assert private.password not in result.stdout + result.stderr
    published: dict[str, list[dict[str, Any]]] = {}
    for entry in json.loads(record.read_text()):
        published.setdefault(entry["target"], []).append(entry)

    # No `registries`: the default registry, with its extra tag resolved like `image_tags`.
    # One record per name pushed (each its own push, published or failed on its own).
    defaulted = published["svc:defaulted"]
    assert [d["status"] for d in defaulted] == ["published", "published"], defaulted
    public_names = [names for d in defaulted for names in d["registries"]]
    assert {(n["alias"], n["address"]) for n in public_names} == {("public", public.host)}
    assert {n["repository"] for n in public_names} == {f"{unique}/defaulted"}
    [[first], [extra]] = [n["tags"] for n in public_names]
    assert first == "1.0" and re.fullmatch(r"beta-[0-9a-f]{12}", extra), public_names
    for record_, tag in zip(defaulted, ("1.0", extra), strict=True):
        assert record_["names"] == [f"{public.host}/{unique}/defaulted:{tag}"], record_
        assert record_["pinned"] == [f"{public.host}/{unique}/defaulted@{record_['digest']}"]
        digest = _manifest_digest(public, f"{unique}/defaulted", tag)
        assert digest == record_["digest"], tag

    # `@private`: its own repository and extra tag, with the helper's credentials; `@attic`
    # (`skip_push`) is listed as skipped, and nothing goes there.
    *pushed, skipped = sorted(published["svc:aliased"], key=lambda e: e["status"] != "published")
    assert [p["status"] for p in pushed] == ["published", "published"], pushed
    assert {r["alias"] for p in pushed for r in p["registries"]} == {"private"}
    assert {r["repository"] for p in pushed for r in p["registries"]} == {
        f"mirror/{unique}/aliased"
    }
    assert [p["names"] for p in pushed] == [
        [f"{private.host}/mirror/{unique}/aliased:1.0"],
        [f"{private.host}/mirror/{unique}/aliased:mirrored"],
    ]
    for record_, tag in zip(pushed, ("1.0", "mirrored"), strict=True):
        digest = _manifest_digest(private, f"mirror/{unique}/aliased", tag)
        assert digest == record_["digest"], tag
    assert "skip_push" in skipped["status"] and "'attic'" in skipped["status"], skipped
    assert [r["alias"] for r in skipped["registries"]] == ["attic"]
    assert skipped["names"] == [f"{public.host}/attic/{unique}/aliased:1.0"]
    assert _manifest_digest(public, f"attic/{unique}/aliased", "1.0") is None

    # No registry at all: skipped, saying why and what to set, in the record too.
    [nowhere] = published["svc:nowhere"]
    assert nowhere["published"] is False and nowhere["registries"] == []
    assert "its `registries` field is empty" in nowhere["status"], nowhere
    assert "`[oci].registries`" in nowhere["status"]
    stderr = " ".join(result.stderr.split())
    assert "svc:nowhere skipped (its `registries` field is empty" in stderr, stderr[-3000:]
