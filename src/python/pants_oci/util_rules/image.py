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
from typing import Any, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from pants.core.goals.package import OutputPathField
from pants.engine.addresses import Address, Addresses
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import (
    AddPrefix,
    CreateDigest,
    Digest,
    DigestSubset,
    FileContent,
    GlobMatchErrorBehavior,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
    Snapshot,
)
from pants.engine.process import ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import (
    DependenciesRequest,
    InvalidFieldException,
    Target,
    Targets,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.engine.unions import UnionRule
from pants.option.errors import OptionsError
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from pants_oci.core.base_spec import OCI_LAYOUT_PREFIX, SCRATCH, BaseKind
from pants_oci.core.errors import InvalidValueError
from pants_oci.core.platforms import check_platform
from pants_oci.core.reference import parse_reference
from pants_oci.subsystems.oci import OciSubsystem
from pants_oci.target_types import (
    ImageBase,
    OciImageAnnotationsField,
    OciImageBaseField,
    OciImageCmdField,
    OciImageDependenciesField,
    OciImageEntrypointField,
    OciImageEnvField,
    OciImageExposedPortsField,
    OciImageFormatsField,
    OciImageLabelsField,
    OciImagePlatformsField,
    OciImageStopSignalField,
    OciImageTagsField,
    OciImageUserField,
    OciImageVolumesField,
    OciImageWorkdirField,
    OciLayerDependenciesField,
    OciLayerDestinationField,
    OciLayerDirectoryModeField,
    OciLayerGidField,
    OciLayerModeField,
    OciLayerUidField,
    TagVars,
    image_output_path,
    interpolate,
)
from pants_oci.util_rules import base_targets
from pants_oci.util_rules.base_targets import BaseTargets, BaseTargetsRequest
from pants_oci.util_rules.layers import (
    BuildLayerRequest,
    BuiltLayer,
    LayerContent,
    LayerContentRequest,
)
from pants_oci.util_rules.lockfile import BaseLockfile, BaseLockfileRequest, locked_base
from pants_oci.util_rules.python import (
    PexEntrypoint,
    PexEntrypointRequest,
    PexLayers,
    PexLayersRequest,
    is_pex_binary,
)
from pants_oci.util_rules.registries import OciRegistries, RegistryNames, image_names
from pants_oci.util_rules.registries import rules as registry_rules
from pants_oci.util_rules.tool import BLOB_CACHE_DIR, OciToolRequest, RegistryEnvRequest

_LAYOUT_DIR = "image"
_BASE_DIR = "base"
_CONFIG = "__oci_image_config.json"
# The tag `image assemble` and `image index` give an image without `--tag`.
_DEFAULT_TAG = "latest"


def _with_names(info: bytes, names: Tuple[RegistryNames, ...]) -> bytes:
    """The tool's image info plus the image's names in each registry (`registries`): what
    `publish` pushes and `image-info.json` reports."""
    data = json.loads(info)
    data["registries"] = [entry.to_json() for entry in names if entry.registry is not None]
    return json.dumps(data, sort_keys=True).encode()


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
    """Build an image: for each of its platforms, or an index of them. A complete image's
    layout holds every blob, base layers included (what `package` writes); otherwise base
    layers stay in the base's registry (enough to push)."""

    address: Address
    complete: bool = True


@dataclass(frozen=True)
class PlatformImageRequest:
    """Build the image of one of the target's platforms."""

    address: Address
    platform: str
    complete: bool = True


@dataclass(frozen=True)
class BuiltImage:
    """An image as an OCI layout (its files at the digest's root), its image-info JSON, and,
    when the target's `formats` ask for it, a docker-archive (`<output_path basename>.tar`)."""

    address: Address
    layout: Digest
    info: bytes
    docker_archive: Optional[Digest] = None

    @property
    def manifest_digest(self) -> str:
        """The image's manifest digest (its index's, for several platforms)."""
        return str(json.loads(self.info)["manifest_digest"])


@dataclass(frozen=True)
class ResolvedBase:
    """The base as assembly needs it: files in `digest`, and the path of the layout directory
    or docker-archive among them (none for scratch)."""

    digest: Optional[Digest]
    path: Optional[str]
    reference: Optional[str]
    is_docker_archive: bool = False


@dataclass(frozen=True)
class BaseRequest:
    address: Address
    base: ImageBase
    platform: str
    with_layers: bool


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
        built = await Get(
            BuiltImage, PlatformImageRequest(base_address, request.platform, request.with_layers)
        )
        return ResolvedBase(await Get(Digest, AddPrefix(built.layout, _BASE_DIR)), _BASE_DIR, None)
    assert base.spec is not None
    if base.spec.kind is BaseKind.SCRATCH:
        return ResolvedBase(None, None, None)
    if base.spec.is_local:
        return await _local_base(request.address, base)
    reference = base.spec.reference
    assert reference is not None
    if reference.digest is None:
        lockfile = await Get(BaseLockfile, BaseLockfileRequest())
        reference = parse_reference(
            locked_base(
                lockfile, reference, request.platform, request.address, OciImageBaseField.alias
            )
        )
    empty = await Get(Digest, CreateDigest([]))
    # A base may be private: the pull runs with the user's credentials (docker config, helpers,
    # Google), so it is never cached, and reads the host's blob cache, so it downloads only
    # what this machine has never seen. Its output is content pinned by digest: every process
    # after it is keyed by that content, the same for any credentials on any machine.
    credentials = await Get(EnvironmentVars, RegistryEnvRequest())
    result = await Get(
        ProcessResult,
        OciToolRequest(
            argv=(
                "base",
                "pull",
                str(reference),
                "--platform",
                request.platform,
                "--output",
                _BASE_DIR,
                "--blob-cache",
                BLOB_CACHE_DIR,
                *(["--with-layers"] if request.with_layers else []),
            ),
            description=(
                f"Fetch base image {reference.familiar} ({request.platform}) for {request.address}"
            ),
            input_digest=empty,
            output_directories=(_BASE_DIR,),
            uncached_env=FrozenDict(credentials),
            cache_scope=ProcessCacheScope.PER_SESSION,
            blob_cache=True,
        ),
    )
    return ResolvedBase(result.output_digest, _BASE_DIR, str(reference))


@dataclass(frozen=True)
class BaseDirectoriesRequest:
    base: ResolvedBase


@dataclass(frozen=True)
class BaseDirectories:
    """The directories (and symlinks) of a base image's filesystem."""

    paths: FrozenSet[str]


@rule(desc="List the directories of an OCI base image")
async def base_directories(request: BaseDirectoriesRequest) -> BaseDirectories:
    base = request.base
    if base.digest is None or base.path is None or base.is_docker_archive:
        # scratch has none; a docker-archive base is not read (its layers keep their own).
        return BaseDirectories(frozenset())
    result = await Get(
        ProcessResult,
        OciToolRequest(
            argv=("image", "dirs", "--base", base.path),
            description=f"List the directories of base image {base.reference or base.path}",
            input_digest=base.digest,
        ),
    )
    return BaseDirectories(frozenset(json.loads(result.stdout)["directories"]))


def _ancestors(path: str) -> Iterator[str]:
    parts = path.split("/")
    for end in range(1, len(parts)):
        yield "/".join(parts[:end])


async def _on_lower_directories(
    base: ResolvedBase, layer_requests: Sequence[BuildLayerRequest]
) -> List[BuildLayerRequest]:
    """Tell each layer which of the directories its files go through the layers below it
    already have (the base's, or an earlier layer's), so that it writes no entry of its own
    for them: a home directory keeps its owner, `/tmp` its sticky bit, `/var/run` stays a
    symlink. Only those directories go into a layer's cache key, not the whole base's list."""
    existing = set((await Get(BaseDirectories, BaseDirectoriesRequest(base))).paths)
    placed = []
    for layer in layer_requests:
        through = {a for path in layer.paths() for a in _ancestors(path)}
        placed.append(
            dataclasses.replace(layer, existing_directories=tuple(sorted(through & existing)))
        )
        existing |= through
    return placed


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


def _is_layer_target(target: Target) -> bool:
    return target.has_field(OciLayerDestinationField)


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


@dataclass(frozen=True)
class _ImageLayersRequest:
    address: Address


@dataclass(frozen=True)
class _ImagePexTargets:
    addresses: Tuple[Address, ...]


@dataclass(frozen=True)
class _ImageLayerInputs:
    """What an image's own layers are made of, in image order."""

    requests: Tuple[BuildLayerRequest, ...]
    pexes: Tuple[PexLayers, ...]


@dataclass(frozen=True)
class _ImageDependencies:
    layers: Tuple[Target, ...]  # `oci_layer` targets, by address
    pexes: Tuple[Address, ...]  # `pex_binary` targets, by address
    others: Tuple[Address, ...]  # everything else that is content


@rule
async def _image_dependencies(request: _ImageLayersRequest) -> _ImageDependencies:
    target = await _image_target(request.address)
    dependencies, base = await MultiGet(
        Get(Targets, DependenciesRequest(target[OciImageDependenciesField])),
        Get(
            BaseTargets,
            BaseTargetsRequest(request.address, target[OciImageBaseField].image_base()),
        ),
    )
    content = [t for t in dependencies if t.address not in base.addresses]
    for other in content:
        if other.has_field(OciImageBaseField):
            raise InvalidFieldException(
                softwrap(
                    f"""
                    Target {request.address} depends on the `oci_image` {other.address}, which
                    is not its `{OciImageBaseField.alias}`: an image is not content of another.
                    Build on it with `{OciImageBaseField.alias}="{other.address.spec}"`, or
                    remove it from `{OciImageDependenciesField.alias}`.
                    """
                )
            )
    return _ImageDependencies(
        layers=tuple(sorted((t for t in content if _is_layer_target(t)), key=lambda t: t.address)),
        pexes=tuple(sorted(t.address for t in content if is_pex_binary(t))),
        others=tuple(
            t.address for t in content if not _is_layer_target(t) and not is_pex_binary(t)
        ),
    )


@rule
async def _image_pex_targets(request: _ImageLayersRequest) -> _ImagePexTargets:
    dependencies = await Get(_ImageDependencies, _ImageLayersRequest, request)
    return _ImagePexTargets(dependencies.pexes)


@rule(desc="Gather the content of an OCI image's layers")
async def _image_layer_inputs(request: _ImageLayersRequest) -> _ImageLayerInputs:
    """Layer order: each `oci_layer` by address; each pex_binary's requirements, then its
    code (what changes least goes lowest); then one layer with every other dependency."""
    dependencies = await Get(_ImageDependencies, _ImageLayersRequest, request)
    layer_targets = dependencies.layers
    layer_dependencies = await MultiGet(
        Get(Addresses, DependenciesRequest(t[OciLayerDependenciesField])) for t in layer_targets
    )
    contents = await MultiGet(
        Get(LayerContent, LayerContentRequest(addresses, t.address))
        for t, addresses in zip(layer_targets, layer_dependencies)
    )
    pexes = await MultiGet(Get(PexLayers, PexLayersRequest(a)) for a in dependencies.pexes)
    requests = [
        BuildLayerRequest(
            t.address,
            content.snapshot,
            t[OciLayerDestinationField].value,
            mode=t[OciLayerModeField].value,
            uid=t[OciLayerUidField].value,
            gid=t[OciLayerGidField].value,
            directory_mode=t[OciLayerDirectoryModeField].value,
        )
        for t, content in zip(layer_targets, contents)
    ]
    for part in ("requirements", "sources"):
        requests.extend(
            BuildLayerRequest(pex.address, getattr(pex, part), "/", label=part) for pex in pexes
        )
    if dependencies.others:
        rest = await Get(
            LayerContent, LayerContentRequest(Addresses(dependencies.others), request.address)
        )
        if rest.snapshot.files:
            requests.append(BuildLayerRequest(request.address, rest.snapshot, "/"))
    return _ImageLayerInputs(tuple(requests), tuple(pexes))


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
    names = image_names(target, registries, tags or [_DEFAULT_TAG], content_hash, tag_vars)
    return tags, names


@rule(desc="Build an OCI image")
async def build_image(
    request: BuildImageRequest, oci: OciSubsystem, registries: OciRegistries
) -> BuiltImage:
    target = await _image_target(request.address)
    platforms = image_platforms(target, oci)
    if len(platforms) == 1:
        return await Get(
            BuiltImage, PlatformImageRequest(request.address, platforms[0], request.complete)
        )
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
        Get(BuiltImage, PlatformImageRequest(request.address, platform, request.complete))
        for platform in platforms
    )
    placed = await MultiGet(
        Get(Digest, AddPrefix(image.layout, f"platforms/{index}"))
        for index, image in enumerate(images)
    )
    # The index process writes documents only: the layers, already in the platform images'
    # outputs, are merged in below rather than stored again as this process's output.
    argv: List[str] = ["image", "index", "--omit-layers", "--output", _LAYOUT_DIR]
    for index in range(len(images)):
        argv += ["--image", f"platforms/{index}"]
    # `{hash}` in an index's tags: a hash of its images.
    content_hash = hashlib.sha256(
        " ".join(image.manifest_digest for image in images).encode()
    ).hexdigest()[:12]
    tags, names = await _tags_and_names(target, registries, content_hash)
    for tag in tags:
        argv += ["--tag", tag]
    result = await Get(
        ProcessResult,
        OciToolRequest(
            argv=tuple(argv),
            description=f"Assemble OCI image index {request.address} ({', '.join(platforms)})",
            input_digest=await Get(Digest, MergeDigests(placed)),
            output_directories=(_LAYOUT_DIR,),
        ),
    )
    index_layout = await Get(Digest, RemovePrefix(result.output_digest, _LAYOUT_DIR))
    platform_blobs = await MultiGet(
        Get(Digest, DigestSubset(image.layout, PathGlobs(["blobs/**"]))) for image in images
    )
    layout = await Get(Digest, MergeDigests([index_layout, *platform_blobs]))
    return BuiltImage(request.address, layout, _with_names(result.stdout, names))


@rule(desc="Build an OCI image for one platform")
async def build_platform_image(
    request: PlatformImageRequest, oci: OciSubsystem, registries: OciRegistries
) -> BuiltImage:
    target = await _image_target(request.address)
    platform = request.platform
    platforms = image_platforms(target, oci)
    if platform not in platforms:
        # Only reachable through another image's `base`.
        raise InvalidFieldException(
            softwrap(
                f"""
                An image built on {request.address} needs it for platform {platform}, but its
                `{OciImagePlatformsField.alias}` are {", ".join(platforms)}. Add {platform}
                to them, or build the derived image for the same platforms.
                """
            )
        )
    image_base = target[OciImageBaseField].image_base()
    pex_targets = await Get(_ImagePexTargets, _ImageLayersRequest(request.address))
    # The base (maybe a download) and the layers' inputs (maybe PEX builds) at once. Finding
    # the base's Python for a pex_binary needs the base's layers.
    base_request = BaseRequest(
        request.address, image_base, platform, request.complete or bool(pex_targets.addresses)
    )
    base, inputs = await MultiGet(
        Get(ResolvedBase, BaseRequest, base_request),
        Get(_ImageLayerInputs, _ImageLayersRequest(request.address)),
    )
    layer_requests = list(inputs.requests)
    pexes = inputs.pexes
    base_field = image_base
    config_values = image_config(target, platform)
    if pexes and config_values["entrypoint"] is None:
        if len(pexes) > 1:
            raise InvalidFieldException(
                softwrap(
                    f"""
                    Target {request.address} depends on several pex_binary targets
                    ({", ".join(str(pex.address) for pex in pexes)}), so it cannot tell which
                    one to run. Set its `{OciImageEntrypointField.alias}` field.
                    """
                )
            )
        if base.is_docker_archive:
            raise InvalidFieldException(
                softwrap(
                    f"""
                    Target {request.address} runs the pex_binary {pexes[0].address} on the
                    `{OciImageBaseField.alias}` {base_field.text!r}, whose Python cannot be looked
                    up in a docker-archive. Set the `{OciImageEntrypointField.alias}` field
                    (e.g. `["/usr/local/bin/python3.11", "/{pexes[0].pex_path}"]`), or use the
                    base as an `{OCI_LAYOUT_PREFIX}` directory.
                    """
                )
            )
        entrypoint = await Get(
            PexEntrypoint,
            PexEntrypointRequest(
                request.address, base_field.text, base.digest, base.path, pexes[0]
            ),
        )
        config_values["entrypoint"] = list(entrypoint.argv)
    layer_requests = await _on_lower_directories(base, layer_requests)
    layers = await MultiGet(Get(BuiltLayer, BuildLayerRequest, r) for r in layer_requests)

    # Each layer's blob and metadata go under layers/<index>/, in image order.
    metadata = await MultiGet(
        Get(Digest, CreateDigest([FileContent("meta.json", layer.metadata_json())]))
        for layer in layers
    )
    merged = await MultiGet(
        Get(Digest, MergeDigests([layer.blob, meta])) for layer, meta in zip(layers, metadata)
    )
    placed_layers = await MultiGet(
        Get(Digest, AddPrefix(digest, f"layers/{index}")) for index, digest in enumerate(merged)
    )
    argv: List[str] = ["image", "assemble", "--base", base.path or SCRATCH]
    for index in range(len(layers)):
        argv += ["--layer", f"layers/{index}/{BuiltLayer.BLOB_PATH}=layers/{index}/meta.json"]
    config = json.dumps(config_values, sort_keys=True, indent=1).encode()
    config_digest = await Get(Digest, CreateDigest([FileContent(_CONFIG, config)]))
    argv += ["--config", _CONFIG, "--output", _LAYOUT_DIR]
    argv += ["--source-date-epoch", str(oci.source_date_epoch)]
    # `{hash}` in tags: a hash of everything the image is made of, known before assembly.
    content_hash = hashlib.sha256(
        json.dumps(
            [base.reference, [layer.digest for layer in layers], config.decode()],
            sort_keys=True,
        ).encode()
        + (base.digest.fingerprint.encode() if base.digest else b"")
    ).hexdigest()[:12]
    tags, names = await _tags_and_names(target, registries, content_hash)
    for tag in tags:
        argv += ["--tag", tag]
    if base.reference:
        argv += ["--base-reference", base.reference]
    # The assembled layout holds only this image's own blobs: base layers are added below
    # from the base's own output, so no image's cached output repeats them.
    base_is_layout = base.path is not None and not base.is_docker_archive
    if base_is_layout:
        argv.append("--omit-base-layers")
    # Named as `package` writes it (`<output_path>.tar`), placed in its directory there.
    archive = f"{os.path.basename(image_output_path(target[OutputPathField]))}.tar"
    want_archive = request.complete and "docker-archive" in (
        target[OciImageFormatsField].value or ()
    )
    if want_archive:
        argv += ["--docker-archive", archive]
        # Named as `publish` would push it, so `docker load` gives a named image.
        for entry in names:
            for name in entry.references:
                argv += ["--archive-name", name]

    input_digest = await Get(
        Digest,
        MergeDigests([*placed_layers, config_digest, *([base.digest] if base.digest else [])]),
    )
    result = await Get(
        ProcessResult,
        OciToolRequest(
            argv=tuple(argv),
            description=f"Assemble OCI image {request.address}",
            input_digest=input_digest,
            output_directories=(_LAYOUT_DIR,),
            output_files=(archive,) if want_archive else (),
        ),
    )
    layout_files, archive_files = await MultiGet(
        Get(Digest, DigestSubset(result.output_digest, PathGlobs([f"{_LAYOUT_DIR}/**"]))),
        Get(Digest, DigestSubset(result.output_digest, PathGlobs([archive]))),
    )
    layout = await Get(Digest, RemovePrefix(layout_files, _LAYOUT_DIR))
    if base_is_layout and base.digest is not None:
        layer_blobs = [
            f"{base.path}/blobs/sha256/{layer['digest'].split(':', 1)[1]}"
            for layer in json.loads(result.stdout)["layers"]
        ]
        base_blobs = await Get(
            Digest,
            DigestSubset(
                base.digest,
                PathGlobs(layer_blobs, glob_match_error_behavior=GlobMatchErrorBehavior.ignore),
            ),
        )
        base_blobs = await Get(Digest, RemovePrefix(base_blobs, base.path or ""))
        layout = await Get(Digest, MergeDigests([layout, base_blobs]))
    return BuiltImage(
        request.address,
        layout,
        _with_names(result.stdout, names),
        archive_files if want_archive else None,
    )


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [*collect_rules(), *base_targets.rules(), *registry_rules()]
