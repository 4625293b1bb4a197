"""Layers: the content of a set of dependencies, turned into one layer blob by a process.

Each layer is one `OciToolRequest` whose inputs are exactly the layer's files plus a small
spec, so Pants' process cache keys it by content: an unchanged layer is never rebuilt, on any
run or machine that shares the cache.

Where files go in the image, under the layer's destination directory (`/` by default): sources
at the path Pants gives them everywhere else: within their source root where the language uses
source roots (`python_sources`, `resources`), else from the build root (`files`,
`shell_sources`); packages (`pex_binary`, `archive`, ...) at their output path. A dependency
with nothing to put in a layer (`python_requirement`, a bare `target`) is an error, never
silently dropped.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from pants.core.goals.package import BuiltPackage, EnvironmentAwarePackageRequest, PackageFieldSet
from pants.core.target_types import FileSourceField
from pants.core.util_rules import stripped_source_files
from pants.core.util_rules.source_files import SourceFiles, SourceFilesRequest
from pants.core.util_rules.stripped_source_files import StrippedSourceFiles
from pants.engine.addresses import Address, Addresses
from pants.engine.fs import CreateDigest, Digest, FileContent, MergeDigests, Snapshot
from pants.engine.process import ProcessResult
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import (
    FieldSetsPerTarget,
    FieldSetsPerTargetRequest,
    SourcesField,
    Target,
    Targets,
)
from pants.util.strutil import softwrap

from pants_oci.core import wire
from pants_oci.core.python_venv import venv_directories
from pants_oci.subsystems.oci import OciSubsystem
from pants_oci.util_rules.tool_commands import tool_output, tool_request

_SPEC = "__oci_layer_spec.json"
_BLOB = "__oci_layer.blob"


@dataclass(frozen=True)
class LayerContentRequest:
    """The files of some targets (the dependencies of `owner`, an `oci_layer` or `oci_image`):
    their sources, and what `package` builds of them."""

    addresses: Addresses
    owner: Address


@dataclass(frozen=True)
class LayerContent:
    snapshot: Snapshot


class NothingToPutInALayer(Exception):
    """A dependency of an `oci_layer`/`oci_image` that has no files and builds no package."""


@dataclass(frozen=True)
class VenvContent:
    """A layer's part of the Python venv at `venv`: the venv's own files (run by the base's
    `interpreter`, when given), and the distributions whose installed-wheel archives are
    `wheels` (paths in the layer's content, unpacked into the venv's site-packages)."""

    venv: str
    python_version: str
    interpreter: Optional[str] = None
    wheels: Tuple[str, ...] = ()


@dataclass(frozen=True)
class BuildLayerRequest:
    address: Address
    content: Snapshot
    destination: str = "/"
    mode: Optional[str] = None
    uid: Optional[int] = None
    gid: Optional[int] = None
    label: str = ""  # what part of `address` this layer is, when it has several
    directory_mode: Optional[str] = None
    # Directories (or symlinks) of the layers below that this layer's paths go through: it
    # writes no entry for them, so their owner and mode stay the base's.
    existing_directories: Tuple[str, ...] = ()
    venv: Optional[VenvContent] = None

    def paths(self) -> Tuple[str, ...]:
        """Where this layer's files go in the image (relative, no leading `/`); a path ending
        in `/` is a directory it makes. Of a layer of distributions, only the venv's
        directories, which every such layer goes through: what else it makes is left out, so
        it writes the same bytes whatever the layers below it."""
        venv = self.venv
        made = () if venv is None else venv_directories(venv.venv, venv.python_version)
        files = () if venv and venv.wheels else self.content.files
        return (
            *(posixpath.join(self.destination, path).lstrip("/") for path in files),
            *(f"{directory}/" for directory in made),
        )


@dataclass(frozen=True)
class BuiltLayer:
    """A layer blob (in `blob`, at `BuiltLayer.BLOB_PATH`) and what the image needs to know."""

    address: Address
    blob: Digest
    digest: str
    diff_id: str
    size: int
    media_type: str
    # The Python distributions it unpacked (`layer build`'s), for the image's SBOM.
    distributions: Tuple[wire.LayerDistribution, ...] = ()

    BLOB_PATH = _BLOB

    def metadata_json(self) -> bytes:
        metadata: Dict[str, Any] = {
            "digest": self.digest,
            "diff_id": self.diff_id,
            "size": self.size,
            "media_type": self.media_type,
        }
        if self.distributions:
            metadata["distributions"] = [d.to_json() for d in self.distributions]
        return json.dumps(metadata, sort_keys=True).encode()


def _nothing_to_put(owner: Address, target: Target, why: str) -> NothingToPutInALayer:
    return NothingToPutInALayer(
        softwrap(
            f"""
            {owner} depends on {target.address}, a `{target.alias}` target, which {why}: it would
            add nothing to the image. Depend on targets with files (`files`, `resources`,
            `python_sources`, ...) or on something `pants package` builds (`pex_binary`,
            `archive`, ...); to ship a Python requirement, depend on a `pex_binary` that uses
            it (its requirements become a layer of their own). Remove {target.address} from the
            `dependencies` of {owner} if it is there for another reason.
            """
        )
    )


@rule
async def layer_content(request: LayerContentRequest) -> LayerContent:
    targets = await Get(Targets, Addresses, request.addresses)
    package_field_sets = await Get(
        FieldSetsPerTarget, FieldSetsPerTargetRequest(PackageFieldSet, targets)
    )
    packaged = [fs for field_sets in package_field_sets.collection for fs in field_sets]
    packaged_addresses = {fs.address for fs in packaged}
    with_sources = []
    for target in targets:
        if target.address in packaged_addresses:
            continue
        if not target.has_field(SourcesField):
            raise _nothing_to_put(
                request.owner, target, "has no source files and nothing to package"
            )
        with_sources.append(target)
    # Files (and what generators such as `relocated_files` make of them) keep their path from
    # the build root; other sources lose their source root where theirs use one (Python code
    # and resources, as on a PYTHONPATH or in a PEX).
    generated = await MultiGet(
        Get(
            SourceFiles,
            SourceFilesRequest(
                [t[SourcesField]], for_sources_types=(FileSourceField,), enable_codegen=True
            ),
        )
        for t in with_sources
    )
    plain = await MultiGet(
        Get(StrippedSourceFiles, SourceFilesRequest([t[SourcesField]]))
        for t, files in zip(with_sources, generated)
        if not files.snapshot.files
    )
    plain_iter = iter(plain)
    snapshots = [
        files.snapshot if files.snapshot.files else next(plain_iter).snapshot for files in generated
    ]
    for target, snapshot in zip(with_sources, snapshots):
        if not snapshot.files:
            raise _nothing_to_put(request.owner, target, "has no files")
    packages = await MultiGet(
        Get(BuiltPackage, EnvironmentAwarePackageRequest(field_set)) for field_set in packaged
    )
    snapshot = await Get(
        Snapshot,
        MergeDigests([*(s.digest for s in snapshots), *(p.digest for p in packages)]),
    )
    return LayerContent(snapshot)


def _venv_entries(venv: VenvContent) -> List[Dict[str, Any]]:
    entries: List[Dict[str, Any]] = [
        {
            "kind": "installed-wheel",
            "source": wheel,
            "target": venv.venv,
            "python_version": venv.python_version,
        }
        for wheel in sorted(venv.wheels)
    ]
    if venv.interpreter is not None:
        entries.append(
            {
                "kind": "venv",
                "target": venv.venv,
                "interpreter": venv.interpreter,
                "python_version": venv.python_version,
            }
        )
    return entries


def layer_spec(request: BuildLayerRequest, oci: OciSubsystem) -> bytes:
    wheels = set(request.venv.wheels) if request.venv else set()
    entries = [
        {
            "source": path,
            "target": posixpath.join(request.destination, path),
            "mode": request.mode,
            "uid": request.uid,
            "gid": request.gid,
        }
        for path in sorted(request.content.files)
        if path not in wheels
    ]
    if request.venv is not None:
        entries.extend(_venv_entries(request.venv))
    spec = {
        "entries": entries,
        "uid": request.uid,
        "gid": request.gid,
        "directory_mode": request.directory_mode,
        "existing_directories": list(request.existing_directories),
        "compression": oci.compression.value,
        "level": oci.compression_level,
        "source_date_epoch": oci.source_date_epoch,
        "ignore": [],
        "follow_symlinks": False,
    }
    return json.dumps(spec, sort_keys=True, indent=1).encode()


@rule
async def build_layer(request: BuildLayerRequest, oci: OciSubsystem) -> BuiltLayer:
    spec = await Get(
        Digest,
        CreateDigest([FileContent(_SPEC, layer_spec(request, oci))]),
    )
    input_digest = await Get(Digest, MergeDigests([request.content.digest, spec]))
    command = wire.LayerBuild(spec=_SPEC, output=_BLOB)
    label = f" ({request.label})" if request.label else ""
    result = await Get(
        ProcessResult,
        tool_request(command, f"Build OCI layer for {request.address}{label}", input_digest),
    )
    built = tool_output(command, result)
    return BuiltLayer(
        address=request.address,
        blob=result.output_digest,
        digest=built.digest,
        diff_id=built.diff_id,
        size=built.size,
        media_type=built.media_type,
        distributions=built.distributions or (),
    )


def rules() -> Iterable[Rule]:
    return [*collect_rules(), *stripped_source_files.rules()]  # type: ignore[no-untyped-call]
