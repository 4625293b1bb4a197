"""Pants backend entry point: `backend_packages = ["pants_oci"]` loads this module, and so does
`plugins = ["pants-oci==..."]` through the distribution's `pantsbuild.plugin` entry points."""

from __future__ import annotations

import logging
from typing import Iterable, Optional, Tuple, Union

from pants.engine.rules import Rule
from pants.engine.target import Target
from pants.engine.unions import UnionRule
from pants.version import PANTS_SEMVER

from pants_oci import __version__
from pants_oci import target_types as oci_target_types
from pants_oci.goals import generate_lockfile, package, publish, run
from pants_oci.util_rules import image, layers, lockfile, python, tool

logger = logging.getLogger(__name__)

# The Pants releases this plugin is tested with (major, minor).
TESTED_PANTS = (2, 17)


def untested_pants_warning(pants_version: Tuple[int, int, str]) -> Optional[str]:
    """A warning for a Pants release this plugin is not tested with, else None."""
    major, minor, text = pants_version
    if (major, minor) == TESTED_PANTS:
        return None
    tested = ".".join(map(str, TESTED_PANTS))
    return (
        f"pants-oci {__version__} is tested with Pants {tested}, and this is Pants {text}. "
        "It relies on plugin APIs that Pants may have changed since (pants-oci's "
        "docs/adopting.md, 'Pants versions'): if a goal fails, pin "
        f'`pants_version = "{tested}.1"`, or use a pants-oci release made for your Pants.'
    )


def _warn_on_untested_pants() -> None:
    warning = untested_pants_warning((PANTS_SEMVER.major, PANTS_SEMVER.minor, str(PANTS_SEMVER)))
    if warning:
        logger.warning(warning)


def target_types() -> Iterable[type[Target]]:
    return oci_target_types.target_types()


def rules() -> Iterable[Union[Rule, UnionRule]]:
    _warn_on_untested_pants()
    return [
        *tool.rules(),
        *layers.rules(),
        *lockfile.rules(),
        *python.rules(),
        *image.rules(),
        *package.rules(),
        *publish.rules(),
        *run.rules(),
        *generate_lockfile.rules(),
    ]
