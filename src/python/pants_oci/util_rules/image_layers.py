"""An `oci_image`'s own layers for one platform, ready to build: its layer plan (layer_plan.py)
carried out.

Each planned layer gets its files: an `oci_layer`'s dependencies (layers.py), a `pex_binary`'s
venv and distributions or its code (python_image.py), or the image's other dependencies
together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from pants.engine.addresses import Address, Addresses
from pants.engine.fs import Snapshot
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import (
    DependenciesRequest,
    Target,
    Targets,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.util.frozendict import FrozenDict

from pants_oci.layer_target_types import (
    OciLayerDependenciesField,
    OciLayerDestinationField,
    OciLayerDirectoryModeField,
    OciLayerGidField,
    OciLayerModeField,
    OciLayerUidField,
)
from pants_oci.subsystems.oci import OciSubsystem
from pants_oci.target_types import (
    OciImageBaseField,
    OciImageDependenciesField,
    OciImageEntrypointField,
    OciImagePythonLayerBudgetField,
    OciImagePythonLayoutField,
)
from pants_oci.util_rules import python_image
from pants_oci.util_rules.base_images import ResolvedBase
from pants_oci.util_rules.base_targets import BaseTargets, BaseTargetsRequest
from pants_oci.util_rules.layer_plan import (
    DependencyKind,
    ImageDependency,
    LayerFields,
    LayerSource,
    PlannedLayer,
    plan_layers,
)
from pants_oci.util_rules.layers import BuildLayerRequest, LayerContent, LayerContentRequest
from pants_oci.util_rules.python import is_pex_binary
from pants_oci.util_rules.python_image import PythonFacts, PythonLayers, PythonLayersRequest


@dataclass(frozen=True)
class ImageLayersRequest:
    """The own layers of the `oci_image` at `address` for one of its platforms, on its
    resolved `base` (whose Python runs its `pex_binary`)."""

    address: Address
    platform: str
    base: ResolvedBase


@dataclass(frozen=True)
class ImageLayers:
    """What an image's own layers are made of, in image order; and, when it has a
    `pex_binary`, the entrypoint that runs it and the environment it sets."""

    requests: Tuple[BuildLayerRequest, ...]
    pex_entrypoint: Optional[Tuple[str, ...]]
    pex_env: FrozenDict[str, str]
    python: Optional[PythonFacts] = None  # for the SBOM


def _image_dependency(target: Target) -> ImageDependency:
    """A dependency of an image, as its layer plan sees it."""
    if target.has_field(OciImageBaseField):
        return ImageDependency(target.address, DependencyKind.OCI_IMAGE)
    if target.has_field(OciLayerDestinationField):
        fields = LayerFields(
            destination=target[OciLayerDestinationField].value,
            mode=target[OciLayerModeField].value,
            uid=target[OciLayerUidField].value,
            gid=target[OciLayerGidField].value,
            directory_mode=target[OciLayerDirectoryModeField].value,
        )
        return ImageDependency(target.address, DependencyKind.OCI_LAYER, fields)
    if is_pex_binary(target):
        return ImageDependency(target.address, DependencyKind.PEX_BINARY)
    return ImageDependency(target.address, DependencyKind.CONTENT)


def _layer_request(layer: PlannedLayer, content: Snapshot) -> BuildLayerRequest:
    fields = layer.fields
    return BuildLayerRequest(
        layer.owner,
        content,
        fields.destination,
        mode=fields.mode,
        uid=fields.uid,
        gid=fields.gid,
        label=layer.label,
        directory_mode=fields.directory_mode,
    )


@rule(desc="Gather the content of an OCI image's layers")
async def image_layers(request: ImageLayersRequest, oci: OciSubsystem) -> ImageLayers:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(request.address, description_of_origin="the `oci_image` rules"),
    )
    target = wrapped.target
    dependencies, base = await MultiGet(
        Get(Targets, DependenciesRequest(target[OciImageDependenciesField])),
        Get(
            BaseTargets,
            BaseTargetsRequest(request.address, target[OciImageBaseField].image_base()),
        ),
    )
    plan = plan_layers(
        request.address, [_image_dependency(t) for t in dependencies], base.addresses
    )
    by_address = {t.address: t for t in dependencies}
    oci_layers = [layer for layer in plan.layers if layer.source is LayerSource.OCI_LAYER]
    layer_dependencies = await MultiGet(
        Get(Addresses, DependenciesRequest(by_address[layer.owner][OciLayerDependenciesField]))
        for layer in oci_layers
    )
    contents = await MultiGet(
        Get(LayerContent, LayerContentRequest(addresses, layer.owner))
        for layer, addresses in zip(oci_layers, layer_dependencies)
    )
    layers: Dict[Tuple[Address, LayerSource], List[BuildLayerRequest]] = {
        (layer.owner, layer.source): [_layer_request(layer, content.snapshot)]
        for layer, content in zip(oci_layers, contents)
    }
    python = None
    if plan.pexes:
        python = await Get(
            PythonLayers,
            PythonLayersRequest(
                request.address,
                plan.pexes,
                request.platform,
                request.base,
                base_text=target[OciImageBaseField].image_base().text,
                layout=target[OciImagePythonLayoutField].value or "venv",
                budget=_budget(target, oci),
                entrypoint_set=target[OciImageEntrypointField].value is not None,
            ),
        )
        layers.update(python.layers_by_source())
    if plan.other_content:
        rest = await Get(
            LayerContent, LayerContentRequest(Addresses(plan.other_content), request.address)
        )
        # A last layer with no file in it is left out.
        if rest.snapshot.files:
            other = PlannedLayer(request.address, LayerSource.OTHER_CONTENT)
            layers[(request.address, LayerSource.OTHER_CONTENT)] = [
                _layer_request(other, rest.snapshot)
            ]
    requests = [
        built for layer in plan.layers for built in layers.get((layer.owner, layer.source), ())
    ]
    if python is None:
        return ImageLayers(tuple(requests), None, FrozenDict())
    return ImageLayers(tuple(requests), python.entrypoint, python.env, python.facts)


def _budget(target: Target, oci: OciSubsystem) -> int:
    budget = target[OciImagePythonLayerBudgetField].value
    return oci.python_layer_budget if budget is None else budget


def rules() -> Iterable[Rule]:
    return [*collect_rules(), *python_image.rules()]
