"""The names an `oci_image`'s docker-archive gives the image: what `publish` would push
(`registry/repository:tag`), or `repository:tag` without registries; one computation for both."""

from __future__ import annotations

import pytest
from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException
from pants.testutil.rule_runner import RuleRunner

from pants_oci.goals.publish import PublishOciImageFieldSet
from pants_oci.target_types import OciImageTarget
from pants_oci.util_rules.image import archive_names, image_references


@pytest.fixture
def rule_runner() -> RuleRunner:
    return RuleRunner(target_types=[OciImageTarget])


def _image(rule_runner: RuleRunner, body: str) -> OciImageTarget:
    rule_runner.write_files({"services/api/BUILD": f"oci_image(name='api', {body})"})
    target = rule_runner.get_target(Address("services/api", target_name="api"))
    assert isinstance(target, OciImageTarget)
    return target


def test_archive_names_are_the_references_publish_pushes(rule_runner: RuleRunner) -> None:
    target = _image(
        rule_runner,
        """registries=["ghcr.io/acme", "registry.example.com:5000"],
        repository="{parent_directory}/{name}", output=["docker-archive"]""",
    )
    names = archive_names(target, ["latest", "1.0"], default_registries=["ignored.io"])
    assert names == (
        "ghcr.io/acme/services/api:latest",
        "ghcr.io/acme/services/api:1.0",
        "registry.example.com:5000/services/api:latest",
        "registry.example.com:5000/services/api:1.0",
    )
    field_set = PublishOciImageFieldSet.create(target)
    assert field_set.references(("latest", "1.0"), ("ignored.io",)) == names


def test_default_registries_and_no_registries(rule_runner: RuleRunner) -> None:
    target = _image(rule_runner, "")
    assert archive_names(target, ["latest"], ["ghcr.io/acme"]) == ("ghcr.io/acme/api:latest",)
    assert PublishOciImageFieldSet.create(target).references(("latest",), ("ghcr.io/acme",)) == (
        "ghcr.io/acme/api:latest",
    )
    # Without registries the image is not published, but the archive still names it.
    assert archive_names(target, ["latest", "v2"], []) == ("api:latest", "api:v2")
    assert PublishOciImageFieldSet.create(target).references(("latest",), ()) == ()
    assert image_references(target.address, "{directory}", [], ["x"]) == ("api:x",)


def test_an_invalid_name_is_an_error_naming_the_target_and_fields(
    rule_runner: RuleRunner,
) -> None:
    # The target's own fields are checked where they are written (test_target_types.py); a
    # bad `[oci].default_registries` entry is caught here, naming the target and the option.
    target = _image(rule_runner, 'repository="team/{name}", output=["docker-archive"]')
    with pytest.raises(InvalidFieldException) as error:
        archive_names(target, ["latest"], ["registry.example.com/Team"])
    message = str(error.value)
    assert "services/api:api" in message
    assert "'registry.example.com/Team/team/api:latest'" in message
    assert "repository name must be lowercase" in message
    assert "`[oci].default_registries`" in message
