"""An `oci_image` target, built: its base, its layers, and the assembled OCI image layout.

Every step is a process of the image tool:

  * the base, when it is a registry reference pinned by digest, is fetched with the user's
    credentials through the host's blob cache (never cached by Pants, never downloaded twice
    on one machine); what follows is keyed by its content;
  * each layer is built from exactly its files (see layers.py), cacheably;
  * assembly, cacheably, writes the image's config and manifest into an OCI layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestEntries,
    DigestSubset,
    FileContent,
    FileEntry,
    GlobMatchErrorBehavior,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
    Snapshot,
)
from pants.engine.process import ProcessResult
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import InvalidFieldException, Target, WrappedTarget, WrappedTargetRequest
from pants.engine.unions import UnionRule
from pants.option.errors import OptionsError
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from pants_oci.core import wire
from pants_oci.core.base_spec import SCRATCH, BaseKind
from pants_oci.core.errors import InvalidValueError
from pants_oci.core.platforms import check_platform
from pants_oci.core.reference import DEFAULT_TAG, parse_reference
from pants_oci.placeholders import TagVars, interpolate
from pants_oci.subsystems.oci import OciSubsystem
from pants_oci.target_types import (
    ImageBase,
    OciImageAnnotationsField,
    OciImageBaseField,
    OciImageCmdField,
    OciImageEntrypointField,
    OciImageEnvField,
    OciImageExposedPortsField,
    OciImageFormatsField,
    OciImageLabelsField,
    OciImagePlatformsField,
    OciImageStopSignalField,
    OciImageSupplyChainField,
    OciImageTagsField,
    OciImageUserField,
    OciImageVolumesField,
    OciImageWorkdirField,
    image_output_path,
)
from pants_oci.util_rules import base_images, base_targets, image_layers, supply_chain
from pants_oci.util_rules.base_images import (
    BASE_DIR,
    BaseDirectories,
    BaseDirectoriesRequest,
    RegistryBaseRequest,
    ResolvedBase,
    blob_paths,
)
from pants_oci.util_rules.base_targets import BaseTargets, BaseTargetsRequest
from pants_oci.util_rules.image_layers import ImageLayers, ImageLayersRequest
from pants_oci.util_rules.layer_plan import lower_directories
from pants_oci.util_rules.layers import BuildLayerRequest, BuiltLayer
from pants_oci.util_rules.lockfile import (
    BaseLockfile,
    BaseLockfileRequest,
    locked_base,
)
from pants_oci.util_rules.registries import OciRegistries, RegistryNames, image_names
from pants_oci.util_rules.registries import rules as registry_rules
from pants_oci.util_rules.supply_chain import BuildFactsRequest
from pants_oci.util_rules.tool_commands import tool_output, tool_request

_LAYOUT_DIR = "image"
_CONFIG = "__oci_image_config.json"
_FACTS = "__oci_build_facts.json"


@dataclass(frozen=True)
class TagVarsRequest:
    pass


@rule(desc="Read `[oci].tag_vars`")
async def resolve_tag_vars(_: TagVarsRequest, oci: OciSubsystem) -> TagVars:
    """`[oci].tag_vars`: `NAME=value` as written, `NAME` from Pants' environment. A name the
    environment lacks is an error only for a tag that uses it (TagVarNotSetError), so images
    that do not are built on a machine without CI's variables."""
    from_env = [spec for spec in oci.tag_vars if "=" not in spec]
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(from_env))
    values: Dict[str, str] = {}
    unset: List[str] = []
    for spec in oci.tag_vars:
        name, equals, value = spec.partition("=")
        if not equals:
            if name not in env:
                unset.append(name)
                continue
            value = env[name]
        values[name] = value
    return TagVars(FrozenDict(values), tuple(unset))


@dataclass(frozen=True)
class BuildImageRequest:
    """Build an image: for each of its platforms, or an index of them; its layout as the
    target's `formats` say (without a registry base's layer blobs for a `sparse-oci-layout`),
    or holding every blob when `complete` (what `run` needs)."""

    address: Address
    complete: bool = False


@dataclass(frozen=True)
class PlatformImageRequest:
    """Build the image of one of the target's platforms; `sparse`: its layout without its
    registry base's layer blobs, which stay in that registry."""

    address: Address
    platform: str
    sparse: bool = False


@dataclass(frozen=True)
class BuiltImage:
    """An image as an OCI layout (its files at the digest's root); what the tool says of it
    (`summary`: `image assemble`'s output, or `image index`'s for several platforms); its
    names (`registry/repository:tag` in each of its registries, or `repository:tag` without
    any); and, when the target's `formats` ask for it, a docker-archive (`<output_path
    basename>.tar`)."""

    address: Address
    layout: Digest
    summary: Union[wire.ImageAssembleResult, wire.ImageIndexResult]
    platforms: Tuple[str, ...]
    names: Tuple[RegistryNames, ...]
    docker_archive: Optional[Digest] = None
    sparse: bool = False  # the layout lacks its registry base's layer blobs

    @property
    def manifest_digest(self) -> str:
        """The image's manifest digest (its index's, for several platforms)."""
        return self.summary.manifest_digest

    @property
    def registries(self) -> Tuple[RegistryNames, ...]:
        """Its names in each of its registries (none without registries)."""
        return tuple(entry for entry in self.names if entry.registry is not None)

    def image_info(self) -> Dict[str, Any]:
        """`image-info.json`: the tool's summary, and the image's names in each registry
        (`registries`), which `publish` pushes."""
        return {
            **self.summary.to_json(),
            "registries": [entry.to_json() for entry in self.registries],
        }


@dataclass(frozen=True)
class BaseRequest:
    """A base, with its layers unless `with_layers` is false and the lockfile has the facts
    of its image (a registry base's; any other base is at hand whole)."""

    address: Address
    base: ImageBase
    platform: str
    with_layers: bool = True


async def _local_base(address: Address, base: ImageBase) -> ResolvedBase:
    """An OCI layout directory or docker-archive tar checked into the repo."""
    path = base.local_path
    assert path is not None
    is_archive = base.is_docker_archive
    globs = [path] if is_archive else [f"{path}/**"]
    snapshot = await Get(
        Snapshot,
        PathGlobs(
            globs,
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin=f"the `base` field of {address}",
        ),
    )
    marker = path if is_archive else f"{path}/oci-layout"
    if marker not in snapshot.files:
        kind = (
            "a file" if is_archive else "an OCI image layout directory (with an `oci-layout` file)"
        )
        raise InvalidFieldException(
            softwrap(
                f"""
                The `base` field in target {address} is {base.text!r}, but {path!r} is not
                {kind} relative to the build root.
                """
            )
        )
    return ResolvedBase(snapshot.digest, path, None, is_docker_archive=is_archive)


@rule(desc="Resolve an OCI base image")
async def resolve_base(request: BaseRequest) -> ResolvedBase:
    base = request.base
    if base.address is not None:
        found = await Get(BaseTargets, BaseTargetsRequest(request.address, base))
        [base_address] = found.addresses
        # Whole: its layers are this image's, in no registry yet.
        built = await Get(BuiltImage, PlatformImageRequest(base_address, request.platform))
        assert isinstance(built.summary, wire.ImageAssembleResult), "one platform's image"
        return ResolvedBase(
            await Get(Digest, AddPrefix(built.layout, BASE_DIR)),
            BASE_DIR,
            None,
            layer_blobs=blob_paths(BASE_DIR, (layer.digest for layer in built.summary.layers)),
        )
    assert base.spec is not None
    if base.spec.kind is BaseKind.SCRATCH:
        return ResolvedBase(None, None, None)
    if base.spec.is_local:
        return await _local_base(request.address, base)
    reference = base.spec.reference
    assert reference is not None
    lockfile = await Get(BaseLockfile, BaseLockfileRequest())
    locked_by = None
    if reference.digest is None:
        reference = parse_reference(
            locked_base(
                lockfile, reference, request.platform, request.address, OciImageBaseField.alias
            )
        )
        locked_by = lockfile.path
    facts = None if lockfile.error else lockfile.images.get(str(reference.digest))
    # Shallow: the manifest and config only, when nothing needs the layers' bytes.
    pulled = await Get(
        ResolvedBase,
        RegistryBaseRequest(
            str(reference),
            request.platform,
            with_layers=request.with_layers or facts is None,
            purpose=f"for {request.address}",
        ),
    )
    return dataclasses.replace(pulled, facts=facts, locked_by=locked_by)


async def _on_lower_directories(
    base: ResolvedBase, layer_requests: Sequence[BuildLayerRequest]
) -> List[BuildLayerRequest]:
    """Each layer, told which directories its files go through the layers below it already
    have (see `lower_directories`)."""
    existing = await Get(BaseDirectories, BaseDirectoriesRequest(base))
    placed = lower_directories(existing.paths, [layer.paths() for layer in layer_requests])
    return [
        dataclasses.replace(layer, existing_directories=directories)
        for layer, directories in zip(layer_requests, placed)
    ]


async def _supply_chain_facts(
    target: Target,
    oci: OciSubsystem,
    base: ResolvedBase,
    inputs: ImageLayers,
    layers: Sequence[BuiltLayer],
) -> Optional[wire.BuildFacts]:
    """The build facts of the image's SBOM and provenance; None when they are off."""
    wanted = target[OciImageSupplyChainField].value
    if not (oci.supply_chain if wanted is None else wanted):
        return None
    code = inputs.python.code_layer if inputs.python else None
    code_digest = next(
        (built.digest for request, built in zip(inputs.requests, layers) if request == code),
        None,
    )
    return await Get(
        wire.BuildFacts,
        BuildFactsRequest(
            target.address,
            base,
            target[OciImageBaseField].image_base().text,
            tuple(request.address for request in inputs.requests),
            inputs.python,
            code_digest,
        ),
    )


def image_config(target: Target, platform: str) -> Dict[str, Any]:
    """The `image assemble` config: None means inherit from the base."""

    def listed(value: Optional[Iterable[str]]) -> Optional[List[str]]:
        return None if value is None else list(value)

    return {
        "entrypoint": listed(target[OciImageEntrypointField].value),
        "cmd": listed(target[OciImageCmdField].value),
        "env": dict(target[OciImageEnvField].value or {}),
        "workdir": target[OciImageWorkdirField].value,
        "user": target[OciImageUserField].value,
        "labels": dict(target[OciImageLabelsField].value or {}),
        "annotations": dict(target[OciImageAnnotationsField].value or {}),
        "exposed_ports": list(target[OciImageExposedPortsField].value or ()),
        "volumes": list(target[OciImageVolumesField].value or ()),
        "stop_signal": target[OciImageStopSignalField].value,
        "platform": platform,
    }


def image_platforms(target: Target, oci: OciSubsystem) -> Tuple[str, ...]:
    platforms = target[OciImagePlatformsField].value
    if platforms:
        return platforms
    try:
        return ("/".join(filter(None, check_platform(oci.default_platform))),)
    except InvalidValueError as exc:
        raise OptionsError(
            f"The option `[oci].default_platform` has {oci.default_platform!r}, which "
            f"{exc.problem} It is the platform of {target.address}, which sets no `platforms`."
        ) from None


async def _image_target(address: Address) -> Target:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(address, description_of_origin="the `oci_image` rules"),
    )
    return wrapped.target


async def _tags_and_names(
    target: Target, registries: OciRegistries, content_hash: str
) -> Tuple[List[str], Tuple[RegistryNames, ...]]:
    """The layout's tags (`image_tags`, placeholders filled) and the image's full names in its
    registries. Extra tags of its registries are resolved here too, where `{hash}` is known:
    they are names in a registry (and in the docker-archive), not tags of the layout. Names
    use the tags the layout gets (the tool's default, `latest`, without `image_tags`)."""
    tag_vars = await Get(TagVars, TagVarsRequest())
    tags = [
        interpolate(tag, target.address, OciImageTagsField.alias, content_hash, tag_vars)
        for tag in target[OciImageTagsField].value or ()
    ]
    names = image_names(target, registries, tags or [DEFAULT_TAG], content_hash, tag_vars)
    return tags, names


def _index_content_hash(images: Sequence[BuiltImage]) -> str:
    """`{hash}` in an index's tags: a hash of its images."""
    digests = " ".join(image.manifest_digest for image in images)
    return hashlib.sha256(digests.encode()).hexdigest()[:12]


@rule(desc="Build an OCI image")
async def build_image(
    request: BuildImageRequest, oci: OciSubsystem, registries: OciRegistries
) -> BuiltImage:
    target = await _image_target(request.address)
    platforms = image_platforms(target, oci)
    sparse = not request.complete and is_sparse(target)
    if len(platforms) == 1:
        return await Get(BuiltImage, PlatformImageRequest(request.address, platforms[0], sparse))
    if "docker-archive" in (target[OciImageFormatsField].value or ()):
        raise InvalidFieldException(
            softwrap(
                f"""
                Target {request.address} asks for a docker-archive in its
                `{OciImageFormatsField.alias}` field, but builds {len(platforms)} platforms
                ({", ".join(platforms)}), and `docker load` archives hold one. Remove
                "docker-archive", or build one platform.
                """
            )
        )
    images = await MultiGet(
        Get(BuiltImage, PlatformImageRequest(request.address, platform, sparse))
        for platform in platforms
    )
    image_dirs = tuple(f"platforms/{number}" for number in range(len(images)))
    placed = await MultiGet(
        Get(Digest, AddPrefix(image.layout, directory))
        for image, directory in zip(images, image_dirs)
    )
    tags, names = await _tags_and_names(target, registries, _index_content_hash(images))
    # The index process writes documents only: the layers, already in the platform images'
    # outputs, are merged in below rather than stored again as this process's output.
    index = wire.ImageIndex(
        images=image_dirs,
        output=_LAYOUT_DIR,
        tags=tuple(tags),
        omit_layers=True,
    )
    result = await Get(
        ProcessResult,
        tool_request(
            index,
            f"Assemble OCI image index {request.address} ({', '.join(platforms)})",
            await Get(Digest, MergeDigests(placed)),
        ),
    )
    index_layout = await Get(Digest, RemovePrefix(result.output_digest, _LAYOUT_DIR))
    platform_blobs = await MultiGet(
        Get(Digest, DigestSubset(image.layout, PathGlobs(["blobs/**"]))) for image in images
    )
    layout = await Get(Digest, MergeDigests([index_layout, *platform_blobs]))
    return BuiltImage(
        request.address, layout, tool_output(index, result), platforms, names, sparse=sparse
    )


def _check_platform(target: Target, platform: str, oci: OciSubsystem) -> None:
    platforms = image_platforms(target, oci)
    if platform not in platforms:
        # Only reachable through another image's `base`.
        raise InvalidFieldException(
            softwrap(
                f"""
                An image built on {target.address} needs it for platform {platform}, but its
                `{OciImagePlatformsField.alias}` are {", ".join(platforms)}. Add {platform}
                to them, or build the derived image for the same platforms.
                """
            )
        )


def _layer_directory(index: int) -> str:
    """Where the `index`th layer's blob and metadata are in the assembly's sandbox."""
    return f"layers/{index}"


_LAYER_METADATA = "meta.json"


async def _assembly_input(
    layers: Sequence[BuiltLayer],
    config: bytes,
    base: ResolvedBase,
    facts: Optional[wire.BuildFacts],
    *,
    with_blobs: bool,
) -> Digest:
    """The layers' metadata (under `_layer_directory`), the config and the base; the layer
    blobs, the base's too, only `with_blobs`."""
    metadata = await MultiGet(
        Get(Digest, CreateDigest([FileContent(_LAYER_METADATA, layer.metadata_json())]))
        for layer in layers
    )
    merged = await MultiGet(
        Get(Digest, MergeDigests([layer.blob, meta] if with_blobs else [meta]))
        for layer, meta in zip(layers, metadata)
    )
    placed_layers = await MultiGet(
        Get(Digest, AddPrefix(digest, _layer_directory(index)))
        for index, digest in enumerate(merged)
    )
    files = [FileContent(_CONFIG, config)]
    if facts is not None:
        files.append(FileContent(_FACTS, json.dumps(facts.to_json(), sort_keys=True).encode()))
    config_digest = await Get(Digest, CreateDigest(files))
    base_files = await _base_files(base, with_layers=with_blobs)
    return await Get(
        Digest,
        MergeDigests([*placed_layers, config_digest, *([base_files] if base_files else [])]),
    )


async def _base_files(base: ResolvedBase, *, with_layers: bool) -> Optional[Digest]:
    """The base's files, without its layer blobs unless `with_layers`: a base of a gigabyte is
    not copied into every assembly's sandbox when only its manifest and config are read."""
    if base.digest is None or with_layers or not base.layer_blobs:
        return base.digest
    return await Get(
        Digest,
        DigestSubset(
            base.digest,
            PathGlobs(
                [f"{base.path}/**", *(f"!{path}" for path in base.layer_blobs)],
                glob_match_error_behavior=GlobMatchErrorBehavior.ignore,
            ),
        ),
    )


def _content_hash(base: ResolvedBase, layers: Sequence[BuiltLayer], config: bytes) -> str:
    """`{hash}` in tags: a hash of everything the image is made of, known before assembly."""
    made_of = [base.reference, [layer.digest for layer in layers], config.decode()]
    # A registry base is named by digest; any other by its files.
    files = base.digest if base.reference is None else None
    return hashlib.sha256(
        json.dumps(made_of, sort_keys=True).encode()
        + (files.fingerprint.encode() if files else b"")
    ).hexdigest()[:12]


def is_sparse(target: Target) -> bool:
    """Whether the target's `formats` ask for a layout without its registry base's layers."""
    return "sparse-oci-layout" in (target[OciImageFormatsField].value or ())


def _docker_archive(target: Target) -> Optional[str]:
    """The docker-archive the target's `formats` ask for: named as `package` writes it
    (`<output_path>.tar`), placed in its directory there."""
    if "docker-archive" not in (target[OciImageFormatsField].value or ()):
        return None
    return f"{os.path.basename(image_output_path(target[OutputPathField]))}.tar"


async def _with_layer_blobs(
    documents: Digest,
    base: ResolvedBase,
    layers: Sequence[BuiltLayer],
    summary: wire.ImageAssembleResult,
    *,
    base_layers: bool,
) -> Digest:
    """The assembled layout's documents (`--omit-layers`) plus the image's own layer blobs
    from their `layer build` outputs and, with `base_layers`, the base's from the base's own
    output. Placed by digest in Pants' store, never copied through a process: no assembly
    reads a layer, and no image's cached output repeats one."""
    own_blobs = await MultiGet(Get(DigestEntries, Digest, layer.blob) for layer in layers)
    placed = await Get(
        Digest,
        CreateDigest(
            FileEntry(blob_paths("", [layer.digest])[0], entry.file_digest)
            for layer, entries in zip(layers, own_blobs)
            for entry in entries
            if isinstance(entry, FileEntry) and entry.path == BuiltLayer.BLOB_PATH
        ),
    )
    if base.digest is None or base.path is None or not base_layers:
        return await Get(Digest, MergeDigests([documents, placed]))
    base_blobs = await Get(
        Digest,
        DigestSubset(
            base.digest,
            PathGlobs(
                # The image's layers that the base has: its own are not there.
                blob_paths(base.path, [layer.digest for layer in summary.layers]),
                glob_match_error_behavior=GlobMatchErrorBehavior.ignore,
            ),
        ),
    )
    base_blobs = await Get(Digest, RemovePrefix(base_blobs, base.path))
    return await Get(Digest, MergeDigests([documents, placed, base_blobs]))


@rule(desc="Build an OCI image for one platform")
async def build_platform_image(
    request: PlatformImageRequest, oci: OciSubsystem, registries: OciRegistries
) -> BuiltImage:
    target = await _image_target(request.address)
    _check_platform(target, request.platform, oci)
    image_base = target[OciImageBaseField].image_base()
    archive = _docker_archive(target)
    # A sparse layout leaves a registry base's layers in its registry (`publish` mounts or
    # copies them from there); a docker-archive holds them all.
    sparse = request.sparse and archive is None
    base = await Get(
        ResolvedBase,
        BaseRequest(request.address, image_base, request.platform, with_layers=not sparse),
    )
    # A pex_binary is resolved for the platform and the base's Python.
    inputs = await Get(ImageLayers, ImageLayersRequest(request.address, request.platform, base))
    config_values = image_config(target, request.platform)
    if inputs.pex_entrypoint is not None and config_values["entrypoint"] is None:
        config_values["entrypoint"] = list(inputs.pex_entrypoint)
    config_values["env"] = {**inputs.pex_env, **config_values["env"]}
    layer_requests = await _on_lower_directories(base, inputs.requests)
    layers = await MultiGet(Get(BuiltLayer, BuildLayerRequest, r) for r in layer_requests)
    facts = await _supply_chain_facts(target, oci, base, inputs, layers)
    config = json.dumps(config_values, sort_keys=True, indent=1).encode()
    tags, names = await _tags_and_names(target, registries, _content_hash(base, layers, config))
    # The layout's layer blobs are placed in Pants' store (`_with_layer_blobs`), not written by
    # the process: it needs them only for a docker-archive, or to take a docker-archive base's
    # out of its tar.
    documents_only = not base.is_docker_archive
    with_blobs = archive is not None or not documents_only
    assemble = wire.ImageAssemble(
        base=base.path or SCRATCH,
        layers=tuple(
            wire.LayerInput(
                f"{_layer_directory(index)}/{BuiltLayer.BLOB_PATH}" if with_blobs else None,
                f"{_layer_directory(index)}/{_LAYER_METADATA}",
            )
            for index in range(len(layers))
        ),
        config=_CONFIG,
        output=_LAYOUT_DIR,
        source_date_epoch=oci.source_date_epoch,
        tags=tuple(tags),
        base_reference=base.reference,
        omit_layers=documents_only,
        docker_archive=archive,
        # Named as `publish` would push it, so `docker load` gives a named image.
        archive_names=tuple(name for entry in names for name in entry.references)
        if archive
        else (),
        supply_chain=_FACTS if facts else None,
    )
    result = await Get(
        ProcessResult,
        tool_request(
            assemble,
            f"Assemble OCI image {request.address}",
            await _assembly_input(layers, config, base, facts, with_blobs=with_blobs),
        ),
    )
    summary = tool_output(assemble, result)
    layout_files, archive_files = await MultiGet(
        Get(Digest, DigestSubset(result.output_digest, PathGlobs([f"{_LAYOUT_DIR}/**"]))),
        Get(Digest, DigestSubset(result.output_digest, PathGlobs([archive] if archive else []))),
    )
    layout = await Get(Digest, RemovePrefix(layout_files, _LAYOUT_DIR))
    # Only a registry base's layers can be left out: the registry holds them.
    sparse = sparse and base.reference is not None
    if documents_only:
        layout = await _with_layer_blobs(layout, base, layers, summary, base_layers=not sparse)
    return BuiltImage(
        request.address,
        layout,
        summary,
        (request.platform,),
        names,
        archive_files if archive else None,
        sparse=sparse,
    )


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [
        *collect_rules(),
        *base_images.rules(),
        *base_targets.rules(),
        *image_layers.rules(),
        *supply_chain.rules(),
        *registry_rules(),
    ]
