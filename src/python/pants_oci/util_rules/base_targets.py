"""An image's `base` as an edge of the target graph.

A `base` naming another `oci_image` makes that image a dependency; a local image file
(`oci-layout:DIR`, `docker-archive:TAR`) makes the targets that own its files dependencies. So
`pants dependencies`/`dependents`, `filedeps` and `--changed-since --changed-dependents` see
what an image is built on, as they see a Dockerfile's `FROM` in Pants' docker backend. The
image's build takes these targets as its base, never as content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Union

from pants.engine.addresses import Address, Addresses, AddressInput
from pants.engine.fs import PathGlobs, Paths
from pants.engine.internals.graph import Owners, OwnersRequest
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.target import (
    FieldSet,
    InferDependenciesRequest,
    InferredDependencies,
    InvalidFieldException,
    WrappedTarget,
    WrappedTargetRequest,
)
from pants.engine.unions import UnionRule
from pants.util.strutil import softwrap

from pants_oci.target_types import ImageBase, OciImageBaseField, OciImageDependenciesField


@dataclass(frozen=True)
class BaseTargetsRequest:
    address: Address
    base: ImageBase


@dataclass(frozen=True)
class BaseTargets:
    """The targets an image's `base` names: another `oci_image`, or the owners of a local
    image's files (none for scratch and registry images)."""

    addresses: Addresses


def _owner_fix(base: ImageBase, path: str) -> str:
    # Sources relative to the build root's BUILD file are right wherever the image is.
    sources = path if base.is_docker_archive else f"{path}/**"
    return (
        f'Declare them in a target, e.g. `files(name="base", sources=["{sources}"])` in the '
        "BUILD file at the build root (a `files` target: what `pants --changed-since` "
        "watches), so that a change to them rebuilds the image."
    )


@rule(desc="Find the targets an OCI image's base names")
async def base_targets(request: BaseTargetsRequest) -> BaseTargets:
    base = request.base
    alias = OciImageBaseField.alias
    if base.address is not None:
        address = await Get(
            Address,
            AddressInput,
            AddressInput.parse(
                base.address,
                relative_to=request.address.spec_path,
                description_of_origin=f"the `{alias}` field of {request.address}",
            ),
        )
        wrapped = await Get(
            WrappedTarget,
            WrappedTargetRequest(
                address, description_of_origin=f"the `{alias}` field of {request.address}"
            ),
        )
        if not wrapped.target.has_field(OciImageBaseField):
            raise InvalidFieldException(
                softwrap(
                    f"""
                    The `{alias}` field in target {request.address} has {base.text!r}, which
                    is a `{wrapped.target.alias}` target, not an `oci_image`. Name an
                    `oci_image` target, or a registry image, or a local image file with an
                    `oci-layout:`/`docker-archive:` prefix.
                    """
                )
            )
        return BaseTargets(Addresses([address]))
    path = base.local_path
    if path is None:
        return BaseTargets(Addresses())
    files = await Get(Paths, PathGlobs([path] if base.is_docker_archive else [path, f"{path}/**"]))
    owners = await Get(Owners, OwnersRequest(tuple(files.files)))
    marker = path if base.is_docker_archive else f"{path}/oci-layout"
    if marker in files.files and not owners:
        raise InvalidFieldException(
            softwrap(
                f"""
                The `{alias}` field in target {request.address} has {base.text!r}, but no
                target owns the files of {path!r}. {_owner_fix(base, path)}
                """
            )
        )
    # A missing base is reported where the build reads it, naming the path it looked for.
    return BaseTargets(Addresses(sorted(owners)))


@dataclass(frozen=True)
class OciImageBaseFieldSet(FieldSet):
    required_fields = (OciImageBaseField, OciImageDependenciesField)

    base: OciImageBaseField


class InferOciImageBaseDependencies(InferDependenciesRequest[OciImageBaseFieldSet]):
    infer_from = OciImageBaseFieldSet


@rule(desc="Infer an OCI image's dependency on its base")
async def infer_base_dependencies(request: InferOciImageBaseDependencies) -> InferredDependencies:
    field_set = request.field_set
    found = await Get(
        BaseTargets, BaseTargetsRequest(field_set.address, field_set.base.image_base())
    )
    return InferredDependencies(found.addresses)


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [
        *collect_rules(),
        UnionRule(InferDependenciesRequest, InferOciImageBaseDependencies),
    ]
