"""Layers: the content of a set of dependencies, turned into one layer blob by a process.

Each layer is one `OciToolRequest` whose inputs are exactly the layer's files plus a small
spec, so Pants' process cache keys it by content: an unchanged layer is never rebuilt, on any
run or machine that shares the cache.

Where files go in the image: `files`/`resources` sources keep their path relative to the build
root, and packages (`pex_binary`, `archive`, ...) their output path, both under the layer's
destination directory (`/` by default).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Iterable, Optional

from pants.core.goals.package import BuiltPackage, EnvironmentAwarePackageRequest, PackageFieldSet
from pants.core.target_types import FileSourceField, ResourceSourceField
from pants.core.util_rules.source_files import SourceFiles, SourceFilesRequest
from pants.engine.addresses import Address, Addresses
from pants.engine.fs import CreateDigest, Digest, FileContent, MergeDigests, Snapshot
from pants.engine.process import ProcessResult
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import (
    FieldSetsPerTarget,
    FieldSetsPerTargetRequest,
    SourcesField,
    Targets,
)

from pants_oci.subsystems.oci import OciSubsystem
from pants_oci.util_rules.tool import OciToolRequest

_SPEC = "__oci_layer_spec.json"
_BLOB = "__oci_layer.blob"


@dataclass(frozen=True)
class LayerContentRequest:
    """The files of some targets: their sources, and what `package` builds of them."""

    addresses: Addresses


@dataclass(frozen=True)
class LayerContent:
    snapshot: Snapshot


@dataclass(frozen=True)
class BuildLayerRequest:
    address: Address
    content: Snapshot
    destination: str = "/"
    mode: Optional[str] = None
    uid: Optional[int] = None
    gid: Optional[int] = None
    label: str = ""  # what part of `address` this layer is, when it has several


@dataclass(frozen=True)
class BuiltLayer:
    """A layer blob (in `blob`, at `BuiltLayer.BLOB_PATH`) and what the image needs to know."""

    address: Address
    blob: Digest
    digest: str
    diff_id: str
    size: int
    media_type: str

    BLOB_PATH = _BLOB

    def metadata_json(self) -> bytes:
        return json.dumps(
            {
                "digest": self.digest,
                "diff_id": self.diff_id,
                "size": self.size,
                "media_type": self.media_type,
            },
            sort_keys=True,
        ).encode()


@rule
async def layer_content(request: LayerContentRequest) -> LayerContent:
    targets = await Get(Targets, Addresses, request.addresses)
    sources_get = Get(
        SourceFiles,
        SourceFilesRequest(
            sources_fields=[t.get(SourcesField) for t in targets],
            for_sources_types=(FileSourceField, ResourceSourceField),
            enable_codegen=True,
        ),
    )
    packages_get = Get(FieldSetsPerTarget, FieldSetsPerTargetRequest(PackageFieldSet, targets))
    sources, package_field_sets = await MultiGet(sources_get, packages_get)
    packages = await MultiGet(
        Get(BuiltPackage, EnvironmentAwarePackageRequest(field_set))
        for field_set in package_field_sets.field_sets
    )
    snapshot = await Get(
        Snapshot, MergeDigests([sources.snapshot.digest, *(p.digest for p in packages)])
    )
    return LayerContent(snapshot)


def layer_spec(request: BuildLayerRequest, oci: OciSubsystem) -> bytes:
    entries = [
        {
            "source": path,
            "target": posixpath.join(request.destination, path),
            "mode": request.mode,
            "uid": request.uid,
            "gid": request.gid,
        }
        for path in sorted(request.content.files)
    ]
    spec = {
        "entries": entries,
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
    result = await Get(
        ProcessResult,
        OciToolRequest(
            argv=("layer", "build", "--spec", _SPEC, "--output", _BLOB),
            description=f"Build OCI layer for {request.address}"
            + (f" ({request.label})" if request.label else ""),
            input_digest=input_digest,
            output_files=(_BLOB,),
        ),
    )
    info = json.loads(result.stdout)
    return BuiltLayer(
        address=request.address,
        blob=result.output_digest,
        digest=info["digest"],
        diff_id=info["diff_id"],
        size=int(info["size"]),
        media_type=info["media_type"],
    )


def rules() -> Iterable[Rule]:
    return collect_rules()
