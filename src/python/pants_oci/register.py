"""Pants backend entry point: `backend_packages = ["pants_oci"]` loads this module."""

from __future__ import annotations

from typing import Iterable, Union

from pants.engine.rules import Rule
from pants.engine.target import Target
from pants.engine.unions import UnionRule

from pants_oci import target_types as oci_target_types
from pants_oci.goals import lockfile as lockfile_goal
from pants_oci.goals import package, publish, run
from pants_oci.util_rules import image, layers, lockfile, python, tool


def target_types() -> Iterable[type[Target]]:
    return oci_target_types.target_types()


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [
        *tool.rules(),
        *layers.rules(),
        *lockfile.rules(),
        *python.rules(),
        *image.rules(),
        *package.rules(),
        *publish.rules(),
        *run.rules(),
        *lockfile_goal.rules(),
    ]
