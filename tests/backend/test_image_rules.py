"""The image rules in-process (RuleRunner): layers, config and assembly into an OCI layout."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from pants.core.target_types import FilesGeneratorTarget, FileTarget
from pants.core.target_types import rules as core_target_types_rules
from pants.core.util_rules import source_files
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, DigestContents
from pants.engine.process import Process, ProcessCacheScope
from pants.engine.rules import QueryRule
from pants.engine.target import InvalidFieldException, InvalidTargetException
from pants.testutil.rule_runner import RuleRunner, engine_error
from pants.util.frozendict import FrozenDict

from pants_oci.target_types import OciImageTarget, OciLayerTarget
from pants_oci.util_rules import image, layers, lockfile, python, tool
from pants_oci.util_rules.image import BuildImageRequest, BuiltImage, TagVarNotSetError
from pants_oci.util_rules.tool import OciToolRequest
from tests.backend.rule_runners import configure

pytestmark = pytest.mark.slow


@pytest.fixture
def rule_runner() -> RuleRunner:
    runner = RuleRunner(
        rules=[
            *tool.rules(),
            *layers.rules(),
            *image.rules(),
            *lockfile.rules(),
            *python.rules(),
            *source_files.rules(),
            *core_target_types_rules(),
            QueryRule(BuiltImage, [BuildImageRequest]),
            QueryRule(DigestContents, [Digest]),
            QueryRule(Digest, [CreateDigest]),
            QueryRule(Process, [OciToolRequest]),
        ],
        target_types=[OciImageTarget, OciLayerTarget, FilesGeneratorTarget, FileTarget],
    )
    return configure(runner)


def _blob(contents: DigestContents, digest: str) -> bytes:
    path = "blobs/sha256/" + digest.split(":", 1)[1]
    return next(c.content for c in contents if c.path == path)


def test_build_image_assembles_layers_and_config(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "img/BUILD": """
files(name="a", sources=["a.txt"])
files(name="b", sources=["b.txt"])
oci_layer(name="layer", dependencies=[":a"], destination="/data")
oci_image(
    name="img",
    dependencies=[":layer", ":b"],
    cmd=["/bin/true"],
    env={"MODE": "test"},
    labels={"team": "oci"},
    platforms=["linux/arm64"],
    image_tags=["{name}-{directory}"],
)
""",
            "img/a.txt": "a\n",
            "img/b.txt": "b\n",
        }
    )
    built = rule_runner.request(BuiltImage, [BuildImageRequest(Address("img", target_name="img"))])
    info = json.loads(built.info)
    contents = rule_runner.request(DigestContents, [built.layout])
    index = json.loads(next(c.content for c in contents if c.path == "index.json"))
    [entry] = index["manifests"]
    assert entry["digest"] == info["manifest_digest"] == built.manifest_digest
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "img-img"
    manifest = json.loads(_blob(contents, info["manifest_digest"]))
    config = json.loads(_blob(contents, manifest["config"]["digest"]))
    # The oci_layer first, then the layer of the other dependencies.
    assert [layer["digest"] for layer in manifest["layers"]] == [
        layer["digest"] for layer in info["layers"]
    ]
    assert len(manifest["layers"]) == 2
    assert config["rootfs"]["diff_ids"] == [layer["diff_id"] for layer in info["layers"]]
    assert config["config"]["Cmd"] == ["/bin/true"]
    assert "MODE=test" in config["config"]["Env"]
    assert config["config"]["Labels"] == {"team": "oci"}
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    assert config["created"] == "1970-01-01T00:00:00Z"


def test_unknown_tag_placeholder_is_a_field_error_before_anything_is_built(
    rule_runner: RuleRunner,
) -> None:
    rule_runner.write_files({"img/BUILD": "oci_image(name='img', image_tags=['{version}'])"})
    with engine_error(InvalidTargetException, contains="`image_tags` field in target img:img"):
        rule_runner.request(BuiltImage, [BuildImageRequest(Address("img", target_name="img"))])


def test_image_tags_take_ci_values_declared_in_tag_vars(rule_runner: RuleRunner) -> None:
    """`{tag_vars.NAME}` from `[oci].tag_vars` (the environment's value, or one written
    there) and `{pants.hash}`; an undeclared or unset one is an error that says which."""
    rule_runner.write_files(
        {
            "img/BUILD": """
oci_image(name="img", image_tags=["{tag_vars.GIT_COMMIT}", "{tag_vars.CHANNEL}-{pants.hash}"])
oci_image(name="undeclared", image_tags=["{tag_vars.BUILD_ID}"])
"""
        }
    )
    image = BuildImageRequest(Address("img", target_name="img"))
    configure(
        rule_runner,
        "--oci-tag-vars=['GIT_COMMIT', 'CHANNEL=beta']",
        env={"GIT_COMMIT": "0a1b2c3"},
    )
    tags = json.loads(rule_runner.request(BuiltImage, [image]).info)["tags"]
    assert tags[0] == "0a1b2c3"
    assert re.fullmatch(r"beta-[0-9a-f]{12}", tags[1]), tags
    # Another value is another tag (the tag is part of the build).
    configure(
        rule_runner, "--oci-tag-vars=['GIT_COMMIT', 'CHANNEL=beta']", env={"GIT_COMMIT": "d4"}
    )
    assert json.loads(rule_runner.request(BuiltImage, [image]).info)["tags"][0] == "d4"
    with engine_error(
        InvalidFieldException, contains="uses 'tag_vars.BUILD_ID', which is not declared"
    ):
        rule_runner.request(
            BuiltImage, [BuildImageRequest(Address("img", target_name="undeclared"))]
        )
    configure(rule_runner, "--oci-tag-vars=['GIT_COMMIT', 'CHANNEL=beta']")
    with engine_error(
        TagVarNotSetError, contains="reads GIT_COMMIT from the environment, but it is not set"
    ):
        rule_runner.request(BuiltImage, [image])


def test_ca_bundle_goes_into_the_process_by_content_not_path(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({"certs/ca.pem": "-----BEGIN CERTIFICATE-----\ntest\n"})
    configure(rule_runner, "--oci-ca-bundle=certs/ca.pem", "--oci-insecure-registries=['r:5000']")
    empty = rule_runner.request(Digest, [CreateDigest([])])
    process = rule_runner.request(
        Process, [OciToolRequest(argv=("inspect", "x"), description="t", input_digest=empty)]
    )
    argv = list(process.argv)
    assert argv[argv.index("--ca-bundle") + 1] == "__oci_ca_bundle.pem"
    assert argv[argv.index("--insecure-registry") + 1] == "r:5000"
    # Its errors and hints name `[oci].ca_bundle`, not `--ca-bundle`.
    assert argv[argv.index("--hints-for") + 1] == "pants"
    assert not any("certs/ca.pem" in arg for arg in argv)
    contents = rule_runner.request(DigestContents, [process.input_digest])
    [ca] = [c for c in contents if c.path == "__oci_ca_bundle.pem"]
    assert ca.content == b"-----BEGIN CERTIFICATE-----\ntest\n"


def test_cached_tool_processes_carry_nothing_machine_specific(rule_runner: RuleRunner) -> None:
    """Remote caches key processes by argv and env: no host path (not even the interpreter's),
    no host PATH, HOME, locale or credential locations."""
    # Pants passes LANG and SSL_CERT_FILE to every process unless told otherwise.
    configure(rule_runner, env={"LANG": "de_DE.UTF-8", "SSL_CERT_FILE": "/etc/my-ca.pem"})
    empty = rule_runner.request(Digest, [CreateDigest([])])
    process = rule_runner.request(
        Process,
        [OciToolRequest(argv=("layer", "build"), description="t", input_digest=empty)],
    )
    assert process.env["PATH"] == "/usr/bin:/bin"
    assert set(process.env) <= {"PATH", "PEX_ROOT", "PEX_IGNORE_RCFILES"}
    assert not any(
        value.startswith("/") for value in process.env.values() if value != "/usr/bin:/bin"
    )
    assert not any(arg.startswith("/") for arg in process.argv), process.argv
    # Python is run through a link in a named cache, which points at this machine's Python.
    python = process.argv[0]
    cache_dir = process.append_only_caches["pants_oci_python"]
    assert python.startswith(f"{cache_dir}/python-")
    global_options = rule_runner.options_bootstrapper.bootstrap_options.for_global_scope()
    named_caches = Path(global_options.named_caches_dir)
    link = named_caches / "pants_oci_python" / python.split("/", 1)[1]
    assert link.is_symlink() and Path(os.readlink(link)).is_absolute()
    assert subprocess.run([link, "-c", "print(1)"], capture_output=True, text=True).stdout == "1\n"
    assert process.cache_scope == ProcessCacheScope.SUCCESSFUL
    # A never-cached process (a push) does get the user's environment.
    push = rule_runner.request(
        Process,
        [
            OciToolRequest(
                argv=("push",),
                description="t",
                input_digest=empty,
                uncached_env=FrozenDict({"HOME": "/home/me"}),
                cache_scope=ProcessCacheScope.PER_SESSION,
            )
        ],
    )
    assert push.env["LANG"] == "de_DE.UTF-8" and push.env["HOME"] == "/home/me"
