"""The image rules in-process (RuleRunner): layers, config and assembly into an OCI layout."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from pants.core.target_types import FilesGeneratorTarget, FileTarget
from pants.core.target_types import rules as core_target_types_rules
from pants.core.util_rules import source_files
from pants.engine.addresses import Address, Addresses
from pants.engine.env_vars import EnvironmentVars
from pants.engine.fs import CreateDigest, Digest, DigestContents
from pants.engine.process import Process, ProcessCacheScope
from pants.engine.rules import QueryRule
from pants.engine.target import (
    DependenciesRequest,
    InvalidFieldException,
    InvalidTargetException,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.testutil.rule_runner import RuleRunner, engine_error
from pants.util.frozendict import FrozenDict

from pants_oci.placeholders import TagVarNotSetError
from pants_oci.target_types import OciImageDependenciesField, OciImageTarget, OciLayerTarget
from pants_oci.util_rules import image, layers, lockfile, python, tool
from pants_oci.util_rules.image import BuildImageRequest, BuiltImage
from pants_oci.util_rules.tool import OciToolRequest, RegistryEnvRequest
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
            QueryRule(EnvironmentVars, [RegistryEnvRequest]),
            QueryRule(Addresses, [DependenciesRequest]),
            QueryRule(WrappedTarget, [WrappedTargetRequest]),
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
    stop_signal="SIGQUIT",
)
""",
            "img/a.txt": "a\n",
            "img/b.txt": "b\n",
        }
    )
    built = rule_runner.request(BuiltImage, [BuildImageRequest(Address("img", target_name="img"))])
    info = built.image_info()
    contents = rule_runner.request(DigestContents, [built.layout])
    index = json.loads(next(c.content for c in contents if c.path == "index.json"))
    # The image, then its SBOMs and provenance (`[oci].supply_chain` is on by default).
    [entry, *attached] = index["manifests"]
    assert [a["artifactType"] for a in attached] == [
        "application/spdx+json",
        "application/vnd.cyclonedx+json",
        "application/vnd.in-toto+json",
    ]
    assert [r["subject"] for r in info["referrers"]] == [built.manifest_digest] * 3
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
    assert config["config"]["StopSignal"] == "SIGQUIT"
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    assert config["created"] == "1970-01-01T00:00:00Z"


def _attached_types(rule_runner: RuleRunner, name: str) -> list[str]:
    built = rule_runner.request(BuiltImage, [BuildImageRequest(Address("img", target_name=name))])
    contents = rule_runner.request(DigestContents, [built.layout])
    index = json.loads(next(c.content for c in contents if c.path == "index.json"))
    return [m["artifactType"] for m in index["manifests"] if "artifactType" in m]


def test_the_supply_chain_is_turned_off_per_target_or_for_all(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "img/BUILD": """
oci_image(name="on")
oci_image(name="off", supply_chain=False)
oci_image(name="forced", supply_chain=True)
"""
        }
    )
    assert len(_attached_types(rule_runner, "on")) == 3
    assert _attached_types(rule_runner, "off") == []
    configure(rule_runner, "--oci-supply-chain=false")
    assert _attached_types(rule_runner, "on") == []
    assert len(_attached_types(rule_runner, "forced")) == 3


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
oci_image(name="plain", image_tags=["latest"])
"""
        }
    )
    image = BuildImageRequest(Address("img", target_name="img"))
    configure(
        rule_runner,
        "--oci-tag-vars=['GIT_COMMIT', 'CHANNEL=beta']",
        env={"GIT_COMMIT": "0a1b2c3"},
    )
    tags = rule_runner.request(BuiltImage, [image]).image_info()["tags"]
    assert tags[0] == "0a1b2c3"
    assert re.fullmatch(r"beta-[0-9a-f]{12}", tags[1]), tags
    # Another value is another tag (the tag is part of the build).
    configure(
        rule_runner, "--oci-tag-vars=['GIT_COMMIT', 'CHANNEL=beta']", env={"GIT_COMMIT": "d4"}
    )
    assert rule_runner.request(BuiltImage, [image]).image_info()["tags"][0] == "d4"
    with engine_error(
        InvalidFieldException, contains="uses 'tag_vars.BUILD_ID', which is not declared"
    ):
        rule_runner.request(
            BuiltImage, [BuildImageRequest(Address("img", target_name="undeclared"))]
        )
    configure(rule_runner, "--oci-tag-vars=['GIT_COMMIT', 'CHANNEL=beta']")
    # Unset where no tag uses it: nothing to complain about.
    plain = BuildImageRequest(Address("img", target_name="plain"))
    assert rule_runner.request(BuiltImage, [plain]).image_info()["tags"] == ["latest"]
    with engine_error(
        TagVarNotSetError, contains="reads GIT_COMMIT from the environment, but it is not set"
    ):
        rule_runner.request(BuiltImage, [image])


def _registry_request(empty: Digest) -> OciToolRequest:
    """A process that reaches a registry: never cached, it sees the user's environment."""
    return OciToolRequest(
        argv=("inspect", "x"),
        description="t",
        input_digest=empty,
        uncached_env=FrozenDict({"HOME": "/home/me"}),
        cache_scope=ProcessCacheScope.PER_SESSION,
    )


def test_ca_bundle_goes_into_the_process_by_content_not_path(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({"certs/ca.pem": "-----BEGIN CERTIFICATE-----\ntest\n"})
    configure(rule_runner, "--oci-ca-bundle=certs/ca.pem", "--oci-insecure-registries=['r:5000']")
    empty = rule_runner.request(Digest, [CreateDigest([])])
    process = rule_runner.request(Process, [_registry_request(empty)])
    argv = list(process.argv)
    assert argv[argv.index("--ca-bundle") + 1] == "__oci_ca_bundle.pem"
    assert argv[argv.index("--insecure-registry") + 1] == "r:5000"
    # Its errors and hints name `[oci].ca_bundle`, not `--ca-bundle`.
    assert argv[argv.index("--hints-for") + 1] == "pants"
    assert not any("certs/ca.pem" in arg for arg in argv)
    contents = rule_runner.request(DigestContents, [process.input_digest])
    [ca] = [c for c in contents if c.path == "__oci_ca_bundle.pem"]
    assert ca.content == b"-----BEGIN CERTIFICATE-----\ntest\n"


def test_timeouts_and_retries_reach_registry_processes(rule_runner: RuleRunner) -> None:
    """`[oci].connect_timeout`, `read_timeout` and `retries` become the tool's global flags;
    their defaults are the core library's (a registry that never answers fails in a minute)."""
    from pants_oci.core.transport import TransportOptions

    def flags() -> dict[str, str]:
        empty = rule_runner.request(Digest, [CreateDigest([])])
        argv = list(rule_runner.request(Process, [_registry_request(empty)]).argv)
        names = ("--connect-timeout", "--read-timeout", "--retries")
        return {name: argv[argv.index(name) + 1] for name in names}

    configure(rule_runner)
    defaults = TransportOptions()
    got = flags()
    assert float(got["--connect-timeout"]) == defaults.connect_timeout
    assert float(got["--read-timeout"]) == defaults.read_timeout
    assert int(got["--retries"]) == defaults.max_retries
    configure(rule_runner, "--oci-connect-timeout=3", "--oci-read-timeout=45.5", "--oci-retries=1")
    assert flags() == {"--connect-timeout": "3.0", "--read-timeout": "45.5", "--retries": "1"}


def test_cached_tool_processes_carry_nothing_machine_specific(rule_runner: RuleRunner) -> None:
    """Remote caches key processes by argv and env: no host path (not even the interpreter's),
    no host PATH, HOME, locale or credential locations."""
    # Pants passes LANG and SSL_CERT_FILE to every process unless told otherwise.
    configure(
        rule_runner,
        "--oci-insecure-registries=['r:5000']",
        "--oci-read-timeout=45",
        env={"LANG": "de_DE.UTF-8", "SSL_CERT_FILE": "/etc/my-ca.pem"},
    )
    empty = rule_runner.request(Digest, [CreateDigest([])])
    process = rule_runner.request(
        Process,
        [OciToolRequest(argv=("layer", "build"), description="t", input_digest=empty)],
    )
    assert process.env["PATH"] == "/usr/bin:/bin"
    assert set(process.env) <= {"PATH", "PEX_ROOT", "PEX_IGNORE_RCFILES"}
    # How to reach registries is no part of a cached process (nor of its cache key).
    assert not {"--insecure-registry", "--read-timeout", "--retries"} & set(process.argv)
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
    # The tool PEX is linked into each sandbox as an immutable input, not copied into it; and
    # it is a venv PEX, so that a process starts in a venv, not through the PEX bootstrap.
    # A launcher starts it in the venv the PEX installed (linked in the same named cache as
    # Python), or through the PEX where there is none.
    [(tool_dir, tool_digest)] = process.immutable_input_digests.items()
    assert process.argv[1] == f"{tool_dir}/launch.py"
    assert process.argv[2].startswith(f"{cache_dir}/venv-")
    assert process.input_digest == empty
    [pex_info] = [
        json.loads(file.content)
        for file in rule_runner.request(DigestContents, [tool_digest])
        if file.path == "pants-oci-tool.pex/PEX-INFO"
    ]
    assert pex_info["venv"] is True
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


REGISTRIES = {
    "ghcr": {"address": "ghcr.io/acme", "default": True, "extra_image_tags": ["stable"]},
    "mirror": {
        "address": "registry.example.com:5000",
        "repository": "mirror/{target_repository}",
        "extra_image_tags": ["{tag_vars.GIT_COMMIT}-{hash}"],
        "skip_push": True,
    },
}


def test_registries_name_the_image_with_their_repository_and_extra_tags(
    rule_runner: RuleRunner,
) -> None:
    """`[oci].registries`: the build resolves each registry's extra tags with its own `{hash}`
    and `[oci].tag_vars` and records the image's names per registry in its info
    (`image-info.json`), which the docker-archive names the image by too."""
    rule_runner.write_files(
        {
            "img/BUILD": """
oci_image(name="img", image_tags=["1.0", "{hash}"], formats=["oci-layout", "docker-archive"])
oci_image(
    name="aliased",
    registries=["@mirror"],
    repository="team/{name}",
    image_tags=["1.0"],
    env={"OTHER": "content"},
)
oci_image(
    name="multi", registries=["@mirror"], platforms=["linux/amd64", "linux/arm64"], image_tags=["1"]
)
"""
        }
    )
    configure(
        rule_runner,
        f"--oci-registries={REGISTRIES!r}",
        "--oci-default-registries=['docker.io/acme']",
        "--oci-tag-vars=['GIT_COMMIT=c0ffee']",
    )
    built = rule_runner.request(BuiltImage, [BuildImageRequest(Address("img", target_name="img"))])
    info = built.image_info()
    content_hash = info["tags"][1]
    assert info["tags"] == ["1.0", content_hash]
    # No `registries` on the target: the defaults, `default = true` and
    # `[oci].default_registries`; a registry's extra tags for that registry only.
    assert [(r["alias"], r["references"], r["skip_push"]) for r in info["registries"]] == [
        (None, ["docker.io/acme/img:1.0", f"docker.io/acme/img:{content_hash}"], False),
        (
            "ghcr",
            ["ghcr.io/acme/img:1.0", f"ghcr.io/acme/img:{content_hash}", "ghcr.io/acme/img:stable"],
            False,
        ),
    ]
    # The layout is tagged with the target's own tags; the archive names it everywhere.
    contents = rule_runner.request(DigestContents, [built.layout])
    index = json.loads(next(c.content for c in contents if c.path == "index.json"))
    refs = [m["annotations"].get("org.opencontainers.image.ref.name") for m in index["manifests"]]
    assert [ref for ref in refs if ref] == [
        "1.0",
        content_hash,
    ]
    assert built.docker_archive is not None
    [archive] = rule_runner.request(DigestContents, [built.docker_archive])
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        [entry] = json.loads(manifest_file.read())
    assert entry["RepoTags"] == [n for r in info["registries"] for n in r["references"]]

    aliased = rule_runner.request(
        BuiltImage, [BuildImageRequest(Address("img", target_name="aliased"))]
    ).image_info()
    [mirror] = aliased["registries"]
    # The registry's repository, over the target's; `{hash}` is this image's.
    assert mirror["repository"] == "mirror/team/aliased"
    assert mirror["tags"][0] == "1.0"
    assert re.fullmatch(r"c0ffee-[0-9a-f]{12}", mirror["tags"][1]), mirror
    assert mirror["tags"][1] != f"c0ffee-{content_hash}"
    assert (mirror["alias"], mirror["skip_push"]) == ("mirror", True)
    # An index: its extra tags, with the index's `{hash}`, are recorded the same way.
    multi = rule_runner.request(
        BuiltImage, [BuildImageRequest(Address("img", target_name="multi"))]
    ).image_info()
    [index_names] = multi["registries"]
    assert multi["tags"] == ["1"] and index_names["tags"][0] == "1"
    assert index_names["references"] == [
        f"registry.example.com:5000/mirror/multi:{tag}" for tag in index_names["tags"]
    ]
    assert re.fullmatch(r"c0ffee-[0-9a-f]{12}", index_names["tags"][1]), index_names


def test_an_unknown_registry_alias_fails_where_the_targets_dependencies_are_read(
    rule_runner: RuleRunner,
) -> None:
    """Fields cannot see options where they are parsed: aliases are checked as soon as the
    target's dependencies are resolved (what `peek`, `dependencies`, `package` and `publish`
    all do), with a message naming the target, the field, the value and the known aliases."""
    rule_runner.write_files({"img/BUILD": 'oci_image(name="img", registries=["@ghrc"])'})
    configure(rule_runner, f"--oci-registries={REGISTRIES!r}")
    address = Address("img", target_name="img")
    target = rule_runner.request(
        WrappedTarget, [WrappedTargetRequest(address, description_of_origin="test")]
    ).target
    expected = (
        "The `registries` field in target img:img has '@ghrc', which is not a registry alias "
        "of `[oci].registries` (its aliases: @ghcr, @mirror)"
    )
    with engine_error(InvalidFieldException, contains=expected, normalize_tracebacks=True):
        rule_runner.request(Addresses, [DependenciesRequest(target[OciImageDependenciesField])])
    with engine_error(InvalidFieldException, contains=expected, normalize_tracebacks=True):
        rule_runner.request(BuiltImage, [BuildImageRequest(address)])


def test_env_vars_reach_registry_processes_and_no_cached_process(rule_runner: RuleRunner) -> None:
    """`[oci].env_vars` (`NAME` from Pants' environment, or `NAME=value`) join the built-in
    credential variables for the processes that talk to registries, which are never cached;
    a cached process never sees them."""
    configure(
        rule_runner,
        "--oci-env-vars=['AWS_PROFILE', 'AZURE_TENANT_ID=t-1', 'NOT_SET_ANYWHERE']",
        env={"AWS_PROFILE": "ci", "DOCKER_CONFIG": "/home/me/.docker"},
    )
    env = rule_runner.request(EnvironmentVars, [RegistryEnvRequest()])
    assert env["AWS_PROFILE"] == "ci" and env["AZURE_TENANT_ID"] == "t-1"
    assert env["DOCKER_CONFIG"] == "/home/me/.docker" and "NOT_SET_ANYWHERE" not in env
    empty = rule_runner.request(Digest, [CreateDigest([])])
    push = rule_runner.request(
        Process,
        [
            OciToolRequest(
                argv=("push",),
                description="t",
                input_digest=empty,
                uncached_env=FrozenDict(env),
                cache_scope=ProcessCacheScope.PER_SESSION,
            )
        ],
    )
    assert push.env["AWS_PROFILE"] == "ci" and push.env["AZURE_TENANT_ID"] == "t-1"
    cached = rule_runner.request(
        Process, [OciToolRequest(argv=("layer", "build"), description="t", input_digest=empty)]
    )
    assert cached.cache_scope == ProcessCacheScope.SUCCESSFUL
    assert not {"AWS_PROFILE", "AZURE_TENANT_ID", "DOCKER_CONFIG"} & set(cached.env)
    configure(rule_runner, "--oci-env-vars=['1BAD']")
    with engine_error(ValueError, contains="`[oci].env_vars` has '1BAD'"):
        rule_runner.request(EnvironmentVars, [RegistryEnvRequest()])
