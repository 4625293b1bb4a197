"""An `oci_image`'s own layers, ready to build: its layer plan (layer_plan.py) carried out.

Each planned layer gets its files: an `oci_layer`'s dependencies (layers.py), a `pex_binary`'s
requirements or code (python.py), or the image's other dependencies together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, Tuple

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

from pants_oci.layer_target_types import (
    OciLayerDependenciesField,
    OciLayerDestinationField,
    OciLayerDirectoryModeField,
    OciLayerGidField,
    OciLayerModeField,
    OciLayerUidField,
)
from pants_oci.target_types import OciImageBaseField, OciImageDependenciesField
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
from pants_oci.util_rules.python import PexLayers, PexLayersRequest, is_pex_binary


@dataclass(frozen=True)
class ImageLayersRequest:
    """The own layers of the `oci_image` at `address` (the same for each of its platforms)."""

    address: Address


@dataclass(frozen=True)
class ImageLayers:
    """What an image's own layers are made of, in image order; and its `pex_binary`
    dependencies, whose one, when the image sets no entrypoint, is what it runs."""

    requests: Tuple[BuildLayerRequest, ...]
    pexes: Tuple[PexLayers, ...]


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
async def image_layers(request: ImageLayersRequest) -> ImageLayers:
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
    pexes = await MultiGet(Get(PexLayers, PexLayersRequest(a)) for a in plan.pexes)
    files: Dict[Tuple[Address, LayerSource], Snapshot] = {
        (layer.owner, layer.source): content.snapshot
        for layer, content in zip(oci_layers, contents)
    }
    for pex in pexes:
        files[(pex.address, LayerSource.PEX_REQUIREMENTS)] = pex.requirements
        files[(pex.address, LayerSource.PEX_SOURCES)] = pex.sources
    if plan.other_content:
        rest = await Get(
            LayerContent, LayerContentRequest(Addresses(plan.other_content), request.address)
        )
        files[(request.address, LayerSource.OTHER_CONTENT)] = rest.snapshot
    requests = [
        _layer_request(layer, files[(layer.owner, layer.source)])
        for layer in plan.layers
        # A last layer with no file in it is left out.
        if layer.source is not LayerSource.OTHER_CONTENT or files[(layer.owner, layer.source)].files
    ]
    return ImageLayers(tuple(requests), tuple(pexes))


def rules() -> Iterable[Rule]:
    return collect_rules()
