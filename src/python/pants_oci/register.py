"""Pants backend entry point: `backend_packages = ["pants_oci"]` loads this module."""

from __future__ import annotations

from typing import Iterable

from pants.engine.rules import Rule
from pants.engine.target import Target

from pants_oci import target_types as oci_target_types


def target_types() -> Iterable[type[Target]]:
    return oci_target_types.target_types()


def rules() -> Iterable[Rule]:
    return []
