"""Pants backend entry point: `backend_packages = ["pants_oci"]` loads this module."""

from __future__ import annotations

from pants_oci import target_types as oci_target_types


def target_types():
    return oci_target_types.target_types()


def rules():
    return []
