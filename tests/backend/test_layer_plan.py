"""The layer plan of an `oci_image` (util_rules/layer_plan.py): plain data in, plain data out,
no engine."""

from __future__ import annotations

from typing import Any

import pytest
from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException

from pants_oci.util_rules.layer_plan import (
    DependencyKind,
    ImageDependency,
    LayerFields,
    LayerSource,
    PlannedLayer,
    lower_directories,
    plan_layers,
)

IMAGE = Address("app", target_name="img")


def _address(name: str) -> Address:
    return Address("app", target_name=name)


def _dependency(name: str, kind: DependencyKind, **fields: Any) -> ImageDependency:
    return ImageDependency(_address(name), kind, LayerFields(**fields))


def test_layers_go_oci_layers_by_address_then_requirements_then_code_then_the_rest() -> None:
    dependencies = [
        _dependency("files", DependencyKind.CONTENT),
        _dependency("z-pex", DependencyKind.PEX_BINARY),
        _dependency("b-layer", DependencyKind.OCI_LAYER, destination="/srv", uid=5),
        _dependency("a-pex", DependencyKind.PEX_BINARY),
        _dependency("a-layer", DependencyKind.OCI_LAYER, mode="0644"),
        _dependency("resources", DependencyKind.CONTENT),
    ]
    plan = plan_layers(IMAGE, dependencies, base=())
    assert plan.layers == (
        PlannedLayer(_address("a-layer"), LayerSource.OCI_LAYER, LayerFields(mode="0644")),
        PlannedLayer(
            _address("b-layer"), LayerSource.OCI_LAYER, LayerFields(destination="/srv", uid=5)
        ),
        PlannedLayer(_address("a-pex"), LayerSource.PEX_REQUIREMENTS),
        PlannedLayer(_address("z-pex"), LayerSource.PEX_REQUIREMENTS),
        PlannedLayer(_address("a-pex"), LayerSource.PEX_SOURCES),
        PlannedLayer(_address("z-pex"), LayerSource.PEX_SOURCES),
        PlannedLayer(IMAGE, LayerSource.OTHER_CONTENT),
    )
    assert plan.pexes == (_address("a-pex"), _address("z-pex"))
    # The rest in the order of the dependencies, as they are gathered into one layer.
    assert plan.other_content == (_address("files"), _address("resources"))
    assert [layer.label for layer in plan.layers] == [
        *("", "", "requirements", "requirements", "sources", "sources", ""),
    ]


def test_what_the_base_names_is_no_layer() -> None:
    base_image = _dependency("base", DependencyKind.OCI_IMAGE)
    base_files = _dependency("base-files", DependencyKind.CONTENT)
    plan = plan_layers(
        IMAGE, [base_image, base_files], base=(base_image.address, base_files.address)
    )
    assert plan.layers == plan.pexes == plan.other_content == ()


def test_no_dependencies_no_layers() -> None:
    assert plan_layers(IMAGE, [], base=()).layers == ()


def test_another_image_as_content_is_an_error_naming_both_and_the_fix() -> None:
    other = _dependency("other", DependencyKind.OCI_IMAGE)
    with pytest.raises(InvalidFieldException) as caught:
        plan_layers(IMAGE, [_dependency("f", DependencyKind.CONTENT), other], base=())
    message = str(caught.value)
    assert "Target app:img depends on the `oci_image` app:other, which is not its `base`" in message
    assert 'Build on it with `base="app:other"`' in message
    assert "remove it from `dependencies`" in message


def test_lower_directories_are_the_bases_and_the_earlier_layers() -> None:
    layers = [
        ["srv/app/main.py", "srv/app/lib/util.py"],
        ["srv/app/data.txt", "tmp/x", "home/app/.profile"],
        ["srv/app/lib/extra.py", "etc/new/conf"],
    ]
    assert lower_directories(["home", "home/app", "tmp", "var", "var/run"], layers) == (
        (),
        # Only the directories its own paths go through: not `var`.
        ("home", "home/app", "srv", "srv/app", "tmp"),
        ("srv", "srv/app", "srv/app/lib"),
    )


def test_a_file_at_the_root_goes_through_no_directory() -> None:
    assert lower_directories(["etc"], [["motd"], ["etc/motd"]]) == ((), ("etc",))
