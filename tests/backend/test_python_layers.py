"""The rule that splits a pex_binary's distributions into layers under a budget."""

from __future__ import annotations

import pytest

from pants_oci.util_rules.python_layers import (
    Distribution,
    DistributionLayer,
    plan_distribution_layers,
)


def _dist(name: str, size: int = 1000, version: str = "1.0") -> Distribution:
    return Distribution(f"bin.pex/.deps/{name}-{version}-py3-none-any.whl", name, version, size)


def _names(layers: tuple[DistributionLayer, ...]) -> list[list[str]]:
    return [[d.name for d in layer.distributions] for layer in layers]


def test_distribution_from_a_packed_pex_archive_name() -> None:
    found = Distribution.from_archive(
        "app.pex/.deps/Foo_Bar-2.0.1-cp311-cp311-manylinux_2_17_x86_64.whl", 42
    )
    assert (found.name, found.version, found.size) == ("foo-bar", "2.0.1", 42)


def test_within_the_budget_each_distribution_is_a_layer_in_name_order() -> None:
    layers = plan_distribution_layers([_dist("zeta"), _dist("alpha"), _dist("mid")], 3)
    assert _names(layers) == [["alpha"], ["mid"], ["zeta"]]
    assert all(layer.group is None for layer in layers)
    assert layers[0].label == "requirements: alpha 1.0"


def test_over_the_budget_the_largest_keep_a_layer_and_the_rest_share_hashed_groups() -> None:
    big = [_dist(f"big{n}", size=10_000_000 + n) for n in range(3)]
    small = [_dist(f"small{n:02}", size=100) for n in range(30)]
    layers = plan_distribution_layers([*small, *big], 6)
    assert len(layers) <= 6
    # The 3 largest (budget // 2) first, then up to 3 groups holding all the small ones.
    assert _names(layers)[:3] == [["big0"], ["big1"], ["big2"]]
    grouped = sorted(name for names in _names(layers)[3:] for name in names)
    assert grouped == sorted(d.name for d in small)
    assert all(layer.group is not None for layer in layers[3:])
    assert layers[3].label.startswith(f"requirements group {layers[3].group}: ")


def test_a_bump_changes_only_the_layer_holding_that_distribution() -> None:
    dists = [_dist(f"dist{n:02}", size=100 + n) for n in range(40)]
    before = plan_distribution_layers(dists, 8)
    bumped = [d if d.name != "dist07" else _dist("dist07", 107, "2.0") for d in dists]
    after = plan_distribution_layers(bumped, 8)
    changed = [b for b, a in zip(before, after, strict=True) if a != b]
    assert len(before) == len(after) and len(changed) == 1
    assert "dist07" in [d.name for d in changed[0].distributions]


def test_a_group_depends_only_on_its_members_names() -> None:
    # Dropping a small distribution leaves every other layer as it was.
    big = [_dist(f"big{n}", size=10_000_000) for n in range(4)]
    small = [_dist(f"dist{n:02}") for n in range(40)]
    before = plan_distribution_layers([*big, *small], 8)
    after = plan_distribution_layers([*big, *small[1:]], 8)
    dropped_group = next(layer.group for layer in before if small[0] in layer.distributions)
    assert [layer for layer in before if layer.group != dropped_group] == [
        layer for layer in after if layer.group != dropped_group
    ]
    assert len(before) == 8


def test_a_budget_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        plan_distribution_layers([_dist("a")], 0)
