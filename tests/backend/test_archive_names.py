"""An `oci_image`'s full names (`registry/repository:tag`), from its fields, `[oci].registries`
and `[oci].default_registries`: one computation (`image_names`) for the docker-archive, the
build's `image-info.json` and what `publish` pushes."""

from __future__ import annotations

from typing import Any

import pytest
from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException
from pants.testutil.rule_runner import RuleRunner
from pants.util.frozendict import FrozenDict

from pants_oci.placeholders import TagVars
from pants_oci.target_types import OciImageTarget
from pants_oci.util_rules.registries import (
    OciRegistries,
    OciRegistriesOptionError,
    RegistryNames,
    image_names,
)

HASH = "0123456789ab"
TAG_VARS = TagVars(FrozenDict({"GIT_COMMIT": "c0ffee"}))

REGISTRIES: dict[str, Any] = {
    "ghcr": {"address": "ghcr.io/acme", "default": True},
    "mirror": {
        "address": "registry.example.com:5000",
        "repository": "mirror/{target_repository}",
        "extra_image_tags": ["{tag_vars.GIT_COMMIT}", "{hash}", "latest"],
    },
    "attic": {"address": "attic.example.com", "skip_push": True},
    # An alias `default` is a default unless it says otherwise, as in the docker backend.
    "default": {"address": "quay.io/acme", "repository": "{default_repository}-img"},
}


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(target_types=[OciImageTarget])


def _image(rule_runner: RuleRunner, body: str) -> OciImageTarget:
    rule_runner.write_files({"services/api/BUILD": f"oci_image(name='api', {body})"})
    target = rule_runner.get_target(Address("services/api", target_name="api"))
    assert isinstance(target, OciImageTarget)
    return target


def _names(
    target: OciImageTarget,
    tags: list[str],
    registries: dict[str, Any] | None = None,
    default_registries: tuple[str, ...] = (),
) -> tuple[RegistryNames, ...]:
    options = OciRegistries.from_options(
        REGISTRIES if registries is None else registries, default_registries
    )
    return image_names(target, options, tags, HASH, TAG_VARS)


def _references(names: tuple[RegistryNames, ...]) -> list[str]:
    return [reference for entry in names for reference in entry.references]


def test_addresses_and_aliases_with_their_repository_and_extra_tags(
    rule_runner: RuleRunner,
) -> None:
    target = _image(
        rule_runner,
        """registries=["@mirror", "ghcr.io/other", "attic.example.com"],
        repository="{parent_directory}/{name}", formats=["docker-archive"]""",
    )
    names = _names(target, ["1.0", "latest"])
    assert _references(names) == [
        # The registry's repository, over the target's; its extra tags after the target's
        # (each once), resolved with the build's `{hash}` and `[oci].tag_vars`.
        "registry.example.com:5000/mirror/services/api:1.0",
        "registry.example.com:5000/mirror/services/api:latest",
        "registry.example.com:5000/mirror/services/api:c0ffee",
        f"registry.example.com:5000/mirror/services/api:{HASH}",
        # An address that is not configured: the target's repository and tags.
        "ghcr.io/other/services/api:1.0",
        "ghcr.io/other/services/api:latest",
        # A configured registry's address brings its options (here `skip_push`).
        "attic.example.com/services/api:1.0",
        "attic.example.com/services/api:latest",
    ]
    assert [entry.registry.alias if entry.registry else None for entry in names] == [
        "mirror",
        "",
        "attic",
    ]
    assert [entry.registry.skip_push for entry in names if entry.registry] == [False, False, True]
    assert names[0].to_json() == {
        "alias": "mirror",
        "address": "registry.example.com:5000",
        "repository": "mirror/services/api",
        "tags": ["1.0", "latest", "c0ffee", HASH],
        "references": list(names[0].references),
        "skip_push": False,
    }


def test_unset_registries_are_the_defaults_and_empty_is_none(rule_runner: RuleRunner) -> None:
    target = _image(rule_runner, "")
    # `default = true`, the alias `default`, and `[oci].default_registries`, by address.
    assert _references(_names(target, ["latest"], default_registries=("docker.io/acme",))) == [
        "docker.io/acme/api:latest",
        "ghcr.io/acme/api:latest",
        "quay.io/acme/api-img:latest",
    ]
    # `[oci].default_registries` alone still works; an entry also configured in
    # `[oci].registries` brings its options.
    only_list = _names(
        target,
        ["latest"],
        registries={"m": REGISTRIES["mirror"]},
        default_registries=("registry.example.com:5000",),
    )
    assert _references(only_list)[0] == "registry.example.com:5000/mirror/api:latest"
    # `registries=[]`: none, as in the docker backend; the archive still names the image.
    nowhere = _image(rule_runner, "registries=[]")
    [entry] = _names(nowhere, ["latest", "v2"])
    assert entry.registry is None and entry.references == ("api:latest", "api:v2")


def test_an_invalid_name_is_an_error_naming_the_target_fields_and_option(
    rule_runner: RuleRunner,
) -> None:
    # Option values are checked when read (below); a name is checked whole, for its image,
    # with the build's values: here a `[oci].tag_vars` value that is no tag.
    target = _image(rule_runner, 'repository="team/{name}", registries=["@ci"]')
    registries = OciRegistries.from_options(
        {"ci": {"address": "ci.example.com", "extra_image_tags": ["{tag_vars.BRANCH}"]}}, ()
    )
    branch = TagVars(FrozenDict({"BRANCH": "feature/x"}))
    with pytest.raises(InvalidFieldException) as error:
        image_names(target, registries, ["latest"], HASH, branch)
    message = " ".join(str(error.value).split())
    assert "services/api:api" in message, message
    assert "'ci.example.com/team/api:feature/x'" in message, message
    assert "`[oci].registries` entry 'ci'" in message, message


def test_option_values_are_checked_when_read() -> None:
    bad: list[tuple[dict[str, Any], tuple[str, ...], str]] = [
        ({"a": {"address": "ghcr.io", "defualt": True}}, (), "unknown keys defualt"),
        ({"a": {"address": "ghcr.io", "use_local_alias": True}}, (), "local Docker daemon"),
        ({"a": {"default": True}}, (), "entry 'a' has no `address`"),
        ({"a": {"address": "https://ghcr.io"}}, (), "write the host alone, 'ghcr.io'"),
        ({"a": {"address": "ghcr.io", "repository": "Team/{name}"}}, (), "lowercase"),
        ({"a": {"address": "ghcr.io", "repository": "{tag}"}}, (), "{target_repository}"),
        ({"a": {"address": "ghcr.io", "extra_image_tags": ["{version}"]}}, (), "{hash}"),
        ({"a": {"address": "ghcr.io", "extra_image_tags": ["v1+b"]}}, (), "not a valid tag"),
        ({"a": {"address": "ghcr.io", "extra_image_tags": "v1"}}, (), "a list of tags"),
        ({"a": {"address": "ghcr.io", "skip_push": "maybe"}}, (), "entry 'a'"),
        ({}, ("registry.example.com/Team",), "`[oci].default_registries` has"),
    ]
    for registries, default_registries, expected in bad:
        with pytest.raises(OciRegistriesOptionError) as error:
            OciRegistries.from_options(registries, default_registries)
        assert expected in str(error.value), (registries, str(error.value))
    # Booleans as the docker backend reads them.
    read = OciRegistries.from_options({"a": {"address": "ghcr.io", "default": "true"}}, ())
    assert [r.address for r in read.default] == ["ghcr.io"]


def test_an_unknown_alias_names_the_target_field_value_and_known_aliases(
    rule_runner: RuleRunner,
) -> None:
    target = _image(rule_runner, 'registries=["@ghrc"]')
    with pytest.raises(InvalidFieldException) as error:
        _names(target, ["latest"])
    message = " ".join(str(error.value).split())
    assert "`registries` field in target services/api:api has '@ghrc'" in message, message
    assert "@attic, @default, @ghcr, @mirror" in message, message
    assert "`[oci].registries`" in message and "[oci.registries.ghrc]" in message, message
