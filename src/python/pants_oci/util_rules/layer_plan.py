"""The plan of an `oci_image`'s own layers: which layers, bottom first, made of what.

Decided from the image's dependencies and their fields alone (no file read, no process run), so
the order rules are unit-tested without the engine (tests/backend/test_layer_plan.py);
util_rules/image.py gathers each planned layer's files and builds it. The order:

  * each `oci_layer` dependency, by address: its own dependencies, under its `destination`;
  * each `pex_binary`'s third-party requirements (and the PEX runtime), then each one's code:
    what changes least goes lowest, so a code change rebuilds only the top layers;
  * one layer with every other dependency, when they have files.

An image's base is never its content, and another `oci_image` can only be its base.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Collection, Iterable, List, Optional, Sequence, Set, Tuple

from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException
from pants.util.strutil import softwrap

from pants_oci.target_types import OciImageBaseField, OciImageDependenciesField


class DependencyKind(Enum):
    OCI_LAYER = "oci_layer"
    PEX_BINARY = "pex_binary"
    OCI_IMAGE = "oci_image"
    CONTENT = "content"  # anything else with files: sources, packages


@dataclass(frozen=True)
class LayerFields:
    """Where a layer's files go, and their owner and modes (an `oci_layer`'s fields)."""

    destination: str = "/"
    mode: Optional[str] = None
    uid: Optional[int] = None
    gid: Optional[int] = None
    directory_mode: Optional[str] = None


@dataclass(frozen=True)
class ImageDependency:
    address: Address
    kind: DependencyKind
    layer_fields: LayerFields = LayerFields()  # an `oci_layer`'s


class LayerSource(Enum):
    OCI_LAYER = "oci_layer"  # the dependencies of an `oci_layer`
    PEX_REQUIREMENTS = "requirements"  # a `pex_binary`'s `.bootstrap` and `.deps`
    PEX_SOURCES = "sources"  # the rest of a `pex_binary`
    OTHER_CONTENT = "other"  # the image's other dependencies, together


@dataclass(frozen=True)
class PlannedLayer:
    owner: Address  # what the layer is built for: an `oci_layer`, a `pex_binary`, the image
    source: LayerSource
    fields: LayerFields = LayerFields()

    @property
    def label(self) -> str:
        """Which part of `owner` this layer is, when it makes several (a `pex_binary`)."""
        if self.source in (LayerSource.PEX_REQUIREMENTS, LayerSource.PEX_SOURCES):
            return str(self.source.value)
        return ""


@dataclass(frozen=True)
class LayerPlan:
    layers: Tuple[PlannedLayer, ...]  # bottom first
    pexes: Tuple[Address, ...]  # the `pex_binary` dependencies, by address
    # The image's other dependencies: its last layer, when they have files.
    other_content: Tuple[Address, ...]


def _not_content(image: Address, other: Address) -> InvalidFieldException:
    return InvalidFieldException(
        softwrap(
            f"""
            Target {image} depends on the `oci_image` {other}, which is not its
            `{OciImageBaseField.alias}`: an image is not content of another. Build on it with
            `{OciImageBaseField.alias}="{other.spec}"`, or remove it from
            `{OciImageDependenciesField.alias}`.
            """
        )
    )


def plan_layers(
    image: Address, dependencies: Iterable[ImageDependency], base: Collection[Address]
) -> LayerPlan:
    """The layers of the image at `image` from its `dependencies`, but for those its base
    names (`base`: another image, or the targets owning a local base's files)."""
    content = [dependency for dependency in dependencies if dependency.address not in base]
    for dependency in content:
        if dependency.kind is DependencyKind.OCI_IMAGE:
            raise _not_content(image, dependency.address)
    oci_layers = sorted(
        (d for d in content if d.kind is DependencyKind.OCI_LAYER), key=lambda d: d.address
    )
    pexes = tuple(sorted(d.address for d in content if d.kind is DependencyKind.PEX_BINARY))
    others = tuple(d.address for d in content if d.kind is DependencyKind.CONTENT)
    layers: List[PlannedLayer] = [
        PlannedLayer(d.address, LayerSource.OCI_LAYER, d.layer_fields) for d in oci_layers
    ]
    for source in (LayerSource.PEX_REQUIREMENTS, LayerSource.PEX_SOURCES):
        layers.extend(PlannedLayer(pex, source) for pex in pexes)
    if others:
        layers.append(PlannedLayer(image, LayerSource.OTHER_CONTENT))
    return LayerPlan(tuple(layers), pexes, others)


def _ancestors(path: str) -> Iterable[str]:
    parts = path.split("/")
    for end in range(1, len(parts)):
        yield "/".join(parts[:end])


def lower_directories(
    base_directories: Iterable[str], layer_paths: Sequence[Iterable[str]]
) -> Tuple[Tuple[str, ...], ...]:
    """For each layer, bottom first (given by the paths of its files in the image, relative),
    the directories its paths go through that the layers below it already have: the base's
    (`base_directories`), or an earlier layer's. A layer writes no entry of its own for them,
    so a home directory keeps its owner, `/tmp` its sticky bit, `/var/run` stays a symlink;
    and only they, not the whole base's list, go into the layer's cache key."""
    existing: Set[str] = set(base_directories)
    placed = []
    for paths in layer_paths:
        through = {ancestor for path in paths for ancestor in _ancestors(path)}
        placed.append(tuple(sorted(through & existing)))
        existing |= through
    return tuple(placed)
