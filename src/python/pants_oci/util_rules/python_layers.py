"""How a `pex_binary`'s third-party distributions are split into layers (`python_layout="venv"`).

Decided from the distributions alone (their names and sizes, which come from the resolve), so
the rule is unit-tested without the engine (tests/backend/test_python_layers.py):

  * Up to `budget` distributions: one layer each. A layer's bytes depend only on its
    distribution (and the venv's path and Python version), so every image that has it shares
    the layer, and bumping one requirement changes only its layer.
  * More than `budget`: the largest `budget // 2` keep a layer each; the others share the
    remaining `budget - budget // 2` groups, each distribution in the group a hash of its
    name picks. A bump changes its own layer, or only its group's.

Layers are ordered singles first (by name), then groups (by number): their order changes the
manifest only, never a layer's digest.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple


@dataclass(frozen=True)
class Distribution:
    """A third-party distribution of a packed PEX: its installed-wheel archive at `path`."""

    path: str
    name: str  # normalized project name (PEP 503)
    version: str
    size: int  # of the archive, in bytes

    @classmethod
    def from_archive(cls, path: str, size: int) -> Distribution:
        """From a `.deps/<name>-<version>-<tags>.whl` path of a packed PEX."""
        stem = posixpath.basename(path)
        if stem.endswith(".whl"):
            stem = stem[: -len(".whl")]
        name, _, rest = stem.partition("-")
        version = rest.split("-", 1)[0]
        return cls(path, normalize_name(name), version, size)


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class DistributionLayer:
    """One layer of distributions: a single one, or a group of small ones (`group` numbered
    from 0, None for a single)."""

    distributions: Tuple[Distribution, ...]
    group: Optional[int] = None

    @property
    def label(self) -> str:
        names = ", ".join(f"{d.name} {d.version}" for d in self.distributions)
        return (
            f"requirements: {names}"
            if self.group is None
            else (f"requirements group {self.group}: {names}")
        )


def _group_of(name: str, groups: int) -> int:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % groups


def plan_distribution_layers(
    distributions: Iterable[Distribution], budget: int
) -> Tuple[DistributionLayer, ...]:
    """The layers of `distributions` under `budget` (at least 1), in image order."""
    if budget < 1:
        raise ValueError(f"a layer budget is at least 1, got {budget}")
    ordered = sorted(distributions, key=lambda d: (d.name, d.version, d.path))
    if len(ordered) <= budget:
        return tuple(DistributionLayer((d,)) for d in ordered)
    single_count = budget // 2
    largest = sorted(ordered, key=lambda d: (-d.size, d.name))[:single_count]
    singles = set(largest)
    groups = budget - single_count
    grouped: Dict[int, List[Distribution]] = {}
    for distribution in ordered:
        if distribution not in singles:
            grouped.setdefault(_group_of(distribution.name, groups), []).append(distribution)
    return (
        *(DistributionLayer((d,)) for d in ordered if d in singles),
        *(DistributionLayer(tuple(grouped[n]), n) for n in sorted(grouped)),
    )
