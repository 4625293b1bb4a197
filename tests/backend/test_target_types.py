"""The `oci_image` target's fields: values users write in BUILD files and the errors they get."""

from __future__ import annotations

import pytest
from pants.core.goals.run import RestartableField
from pants.engine.addresses import Address
from pants.engine.internals.scheduler import ExecutionError
from pants.testutil.rule_runner import RuleRunner

from pants_oci.core.base_spec import parse_base
from pants_oci.target_types import (
    ImageBase,
    OciImageBaseField,
    OciImageCmdField,
    OciImageEntrypointField,
    OciImageEnvField,
    OciImagePlatformsField,
    OciImageStopSignalField,
    OciImageTarget,
    OciImageWorkdirField,
    OciLayerTarget,
)

DIGEST = "sha256:" + "a" * 64


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(target_types=[OciImageTarget, OciLayerTarget])


def _image(rule_runner: RuleRunner, body: str) -> OciImageTarget:
    rule_runner.write_files({"img/BUILD": f"oci_image(name='img', {body})"})
    target = rule_runner.get_target(Address("img", target_name="img"))
    assert isinstance(target, OciImageTarget)
    return target


def test_fields_read_from_build_file(rule_runner: RuleRunner) -> None:
    target = _image(
        rule_runner,
        f"""base="busybox@{DIGEST}", entrypoint=["/bin/sh", "-c"], cmd=["echo hi"],
        env={{"B": "2", "A": "1"}}, workdir="/app" """,
    )
    assert target[OciImageBaseField].value == f"busybox@{DIGEST}"
    assert target[OciImageEntrypointField].value == ("/bin/sh", "-c")
    assert target[OciImageCmdField].value == ("echo hi",)
    # Insertion order is kept: it becomes the order of the image config's Env.
    assert list(target[OciImageEnvField].value.items()) == [("B", "2"), ("A", "1")]
    assert target[OciImageWorkdirField].value == "/app"


def test_defaults(rule_runner: RuleRunner) -> None:
    target = _image(rule_runner, "")
    assert target[OciImageBaseField].value == "scratch"
    assert target[OciImageEntrypointField].value is None
    assert target[OciImageCmdField].value is None
    assert target[OciImageEnvField].value is None
    assert target[OciImageWorkdirField].value is None


def test_stop_signal_and_restartable(rule_runner: RuleRunner) -> None:
    for signal in ("SIGQUIT", "QUIT", "SIGRTMIN+3", "9"):
        target = _image(rule_runner, f'stop_signal="{signal}", restartable=True')
        assert target[OciImageStopSignalField].value == signal
        assert target[RestartableField].value is True


def test_platforms_are_read_in_their_canonical_spelling(rule_runner: RuleRunner) -> None:
    target = _image(rule_runner, 'platforms=["linux/x86_64", "linux/aarch64/8"]')
    assert target[OciImagePlatformsField].value == ("linux/amd64", "linux/arm64/v8")


@pytest.mark.parametrize(
    "base",
    [":other", "//images/base:base", "oci-layout:images/base", "docker-archive:base.tar"],
)
def test_base_accepts_addresses_and_local_images(rule_runner: RuleRunner, base: str) -> None:
    assert _image(rule_runner, f"base={base!r}")[OciImageBaseField].value == base


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('base="Busybox:latest"', ["`base` field in target img:img", "lowercase"]),
        ('base="busybox@sha256:abc"', ["`base` field in target img:img", "sha256:abc"]),
        ('workdir="app"', ["`workdir` field in target img:img", "absolute", "'/app'"]),
        ('env={"1BAD": "x"}', ["`env` field in target img:img", "'1BAD'"]),
        ('env={"A": 1}', ["env", "img:img", "string"]),
        ('cmd="echo hi"', ["cmd", "img:img"]),
    ],
)
def test_bad_values_name_target_field_and_fix(
    rule_runner: RuleRunner, body: str, expected: list[str]
) -> None:
    with pytest.raises(ExecutionError) as error:
        _image(rule_runner, body)
    message = str(error.value)
    for fragment in expected:
        assert fragment in message, message


def test_layer_destination_must_be_absolute(rule_runner: RuleRunner) -> None:
    rule_runner.write_files({"img/BUILD": "oci_layer(name='layer', destination='srv')"})
    with pytest.raises(ExecutionError) as error:
        rule_runner.get_target(Address("img", target_name="layer"))
    assert "`destination` field in target img:layer" in str(error.value)
    assert "'/srv'" in str(error.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('formats=["tarball"]', ["'formats' field in target img:img", "'tarball'", "oci-layout"]),
        ('exposed_ports=["http"]', ["`exposed_ports` field in target img:img", "'http'"]),
    ],
)
def test_more_bad_values(rule_runner: RuleRunner, body: str, expected: list[str]) -> None:
    with pytest.raises(ExecutionError) as error:
        _image(rule_runner, body)
    for fragment in expected:
        assert fragment in str(error.value)


def test_locked_platform_choice_follows_default_variants() -> None:
    from pants_oci.util_rules.lockfile import choose_platform

    locked = {"linux/amd64": "sha256:a", "linux/arm64": "sha256:b", "linux/arm/v6": "sha256:c"}
    assert choose_platform(locked, "linux/arm64/v8") == "linux/arm64"
    assert choose_platform(locked, "linux/arm64") == "linux/arm64"
    assert choose_platform({"linux/arm64/v8": "sha256:b"}, "linux/arm64") == "linux/arm64/v8"
    assert choose_platform(locked, "linux/arm/v7") is None  # only v6 is there
    assert choose_platform(locked, "linux/s390x") is None


# Bad values users write, and what the message must say besides the target and the field:
# (target type, field and value as written in BUILD, the value as the message quotes it, a fix).
BAD_VALUES = [
    ("oci_image", 'base="Busybox:latest"', "'Busybox:latest'", "lowercase"),
    ("oci_image", 'base="busybox@sha256:abc"', "'busybox@sha256:abc'", "@sha256:..."),
    ("oci_image", 'base="oci-layout:"', "'oci-layout:'", "relative to the build root"),
    ("oci_image", 'base="oci-layout:/abs/dir"', "'oci-layout:/abs/dir'", "relative"),
    ("oci_image", 'base="docker-archive:../up.tar"', "'docker-archive:../up.tar'", "inside"),
    ("oci_image", 'workdir="app"', "'app'", "'/app'"),
    ("oci_image", 'workdir="/app/../etc"', "'/app/../etc'", "absolute path it means"),
    ("oci_image", 'env={"1BAD": "x"}', "'1BAD'", "letters, digits and `_`"),
    ("oci_image", 'user="app user"', "'app user'", '"1000:1000"'),
    ("oci_image", 'user="1000:1000:1000"', "'1000:1000:1000'", '"uid:gid"'),
    ("oci_image", 'exposed_ports=["http"]', "'http'", '"8080/tcp"'),
    ("oci_image", 'exposed_ports=["70000"]', "'70000'", "1 to 65535"),
    ("oci_image", 'exposed_ports=["80/http"]', "'80/http'", '"53/udp"'),
    ("oci_image", 'exposed_ports=["80/sctpx"]', "'80/sctpx'", "tcp, udp or sctp"),
    ("oci_image", 'volumes=["data"]', "'data'", "'/data'"),
    ("oci_image", 'platforms=["linux/amd65"]', "'linux/amd65'", "linux/amd64, linux/arm64"),
    ("oci_image", 'platforms=["linux"]', "'linux'", "os/architecture[/variant]"),
    ("oci_image", 'platforms=["darwin/arm64"]', "'darwin/arm64'", "known: linux, windows"),
    ("oci_image", 'platforms=["linux/arm/v9"]', "'linux/arm/v9'", "linux/arm/v7"),
    ("oci_image", 'platforms=["linux/amd64", "linux/amd64"]', "'linux/amd64'", "twice"),
    ("oci_image", 'platforms=["linux/x86_64", "linux/amd64"]', "'linux/amd64'", "twice"),
    ("oci_image", 'stop_signal="SIGSTOPP"', "'SIGSTOPP'", '"SIGQUIT"'),
    ("oci_image", 'stop_signal="99"', "'99'", "1 to 64"),
    ("oci_image", 'image_tags=["-bad"]', "'-bad'", "must not start with '.' or '-'"),
    ("oci_image", 'image_tags=["v1+build"]', "'v1+build'", "letters, digits, '_', '.' or '-'"),
    ("oci_image", 'image_tags=["{version}"]', "'{version}'", "{hash}"),
    ("oci_image", 'image_tags=["' + "x" * 129 + '"]', "'xxxx", "1 to 128"),
    ("oci_image", 'repository="Team/API"', "'Team/API'", '"team/api"'),
    ("oci_image", 'repository="team//api"', "'team//api'", "lowercase path components"),
    ("oci_image", 'repository="{tag}"', "'{tag}'", "{parent_directory}"),
    ("oci_image", 'registries=["ghcr"]', "'ghcr'", '"ghcr.io"'),
    ("oci_image", 'registries=["https://ghcr.io"]', "'https://ghcr.io'", "'ghcr.io'"),
    ("oci_image", 'registries=["ghcr.io/Acme"]', "'ghcr.io/Acme'", "lowercase"),
    ("oci_image", 'registries=["@"]', "'@'", '"@ghcr"'),
    ("oci_image", 'registries=["@team/ghcr"]', "'@team/ghcr'", "a key of `[oci].registries`"),
    ("oci_image", 'formats=["tarball"]', "'tarball'", "docker-archive"),
    ("oci_image", "python_layer_budget=0", "0", "give 1 to 100"),
    ("oci_image", "python_layer_budget=500", "500", "about 127 layers"),
    ("oci_image", 'python_layout="zipapp"', "zipapp", "pex"),
    (
        "oci_image",
        'formats=["oci-layout", "sparse-oci-layout"]',
        "['oci-layout', 'sparse-oci-layout']",
        'keep "oci-layout" for a layout with every blob',
    ),
    ("oci_layer", 'destination="srv"', "'srv'", "'/srv'"),
    ("oci_layer", 'destination="/srv/../etc"', "'/srv/../etc'", "absolute path it means"),
    ("oci_layer", 'mode="rw-r--r--"', "'rw-r--r--'", '"0644"'),
    ("oci_layer", 'mode="0999"', "'0999'", '"0755"'),
    ("oci_layer", "uid=-1", "-1", "0 to 4294967294"),
    ("oci_layer", "gid=4294967295", "4294967295", "0 to 4294967294"),
]


@pytest.mark.parametrize(("kind", "written", "quoted", "fix"), BAD_VALUES, ids=str)
def test_bad_build_values_are_refused_naming_target_field_value_and_fix(
    rule_runner: RuleRunner, kind: str, written: str, quoted: str, fix: str
) -> None:
    assert len(BAD_VALUES) >= 25
    field = written.split("=", 1)[0]
    rule_runner.write_files({"img/BUILD": f"{kind}(name='bad', {written})"})
    with pytest.raises(ExecutionError) as error:
        rule_runner.get_target(Address("img", target_name="bad"))
    message = " ".join(str(error.value).split())
    assert "img:bad" in message, message
    assert f"`{field}`" in message or f"'{field}'" in message, message
    assert quoted in message, message
    assert fix in message, message


def test_the_base_field_reads_bases_by_the_core_grammar_plus_addresses() -> None:
    for text in ("scratch", "oci:images/base:v1", "docker-archive:b.tar", "python:3.11"):
        assert ImageBase.parse(text).spec == parse_base(text)
    for text in (":base", "//images/base:base"):
        base = ImageBase.parse(text)
        assert base.address == text and base.spec is None and base.local_path is None
    layout = ImageBase.parse("oci-layout:images/base/")
    assert layout.address is None and layout.local_path == "images/base"
    assert (
        not layout.is_docker_archive and ImageBase.parse("docker-archive:b.tar").is_docker_archive
    )


def test_an_unknown_registry_alias_fails_peek_naming_target_field_value_and_aliases() -> None:
    """An `@alias` needs `[oci].registries`, which a field cannot see where it is parsed: it is
    checked where the target's dependencies are first resolved, which `peek` does too."""
    from pants.backend.project_info import peek

    from pants_oci.util_rules import registries

    rule_runner = RuleRunner(
        rules=[*peek.rules(), *registries.rules()], target_types=[OciImageTarget]
    )
    rule_runner.write_files({"img/BUILD": 'oci_image(name="img", registries=["@ghrc"])'})
    with pytest.raises(ExecutionError) as error:
        rule_runner.run_goal_rule(
            peek.Peek,
            global_args=["--oci-registries={'ghcr': {'address': 'ghcr.io/acme'}}"],
            args=["img:img"],
        )
    message = " ".join(str(error.value).split())
    assert "`registries` field in target img:img has '@ghrc'" in message, message
    assert "(its aliases: @ghcr)" in message, message
    fixed = rule_runner.run_goal_rule(
        peek.Peek,
        global_args=["--oci-registries={'ghrc': {'address': 'ghcr.io/acme'}}"],
        args=["img:img"],
    )
    assert '"@ghrc"' in fixed.stdout


def test_a_bad_default_platform_names_the_option_and_the_target(rule_runner: RuleRunner) -> None:
    from pants.option.errors import OptionsError
    from pants.testutil.option_util import create_subsystem

    from pants_oci.subsystems.oci import OciSubsystem
    from pants_oci.util_rules.image import image_platforms

    target = _image(rule_runner, "")
    oci = create_subsystem(OciSubsystem, default_platform="linux/x86_64")
    assert image_platforms(target, oci) == ("linux/amd64",)
    oci = create_subsystem(OciSubsystem, default_platform="linux/amd65")
    with pytest.raises(OptionsError) as caught:
        image_platforms(target, oci)
    message = str(caught.value)
    assert "`[oci].default_platform` has 'linux/amd65'" in message
    assert "unknown architecture 'amd65'" in message
    assert "img:img" in message
