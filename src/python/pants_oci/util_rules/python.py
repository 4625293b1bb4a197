"""Python-aware layers: a `pex_binary` that an `oci_image` depends on directly becomes two
layers, its third-party requirements and its first-party code.

The PEX is built with Pants' `packed` layout whatever its own `layout` field says: a directory
whose `.bootstrap` (the PEX runtime) and `.deps/*.whl` (one zip per distribution) change only
with the requirements, and whose sources are loose files. So editing a source file rebuilds
and re-pushes only the small code layer; the requirements layer keeps its digest.

The entrypoint runs the PEX with the base's own Python, found by name in the base's layers and
checked against the PEX's interpreter constraints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Sequence, Tuple

from pants.backend.python.goals.package_pex_binary import PexBinaryFieldSet
from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import PexLayout, PexLayoutField
from pants.backend.python.util_rules import pex_from_targets
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex_from_targets import InterpreterConstraintsRequest
from pants.core.goals.package import BuiltPackage, EnvironmentAwarePackageRequest
from pants.engine.addresses import Address
from pants.engine.fs import DigestSubset, PathGlobs, Snapshot
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import InvalidFieldException, Target, WrappedTarget, WrappedTargetRequest
from pants.util.strutil import softwrap

from pants_oci.core import wire


def is_pex_binary(target: Target) -> bool:
    return PexBinaryFieldSet.is_applicable(target)


@dataclass(frozen=True)
class PexLayersRequest:
    address: Address


@dataclass(frozen=True)
class PexLayers:
    """A packed PEX (a directory at `pex_path`), split by how often its parts change."""

    address: Address
    requirements: Snapshot
    sources: Snapshot
    pex_path: str
    python_versions: Tuple[str, ...]  # major.minor versions its constraints allow
    interpreter_constraints: Tuple[str, ...]


_REQUIREMENT_PARTS = (".bootstrap", ".deps/**")


@rule(desc="Build a PEX as OCI layers")
async def pex_layers(request: PexLayersRequest, python_setup: PythonSetup) -> PexLayers:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(request.address, description_of_origin="the `oci_image` rules"),
    )
    field_set = PexBinaryFieldSet.create(wrapped.target)
    packed = dataclasses.replace(
        field_set, layout=PexLayoutField(PexLayout.PACKED.value, request.address)
    )
    built, constraints = await MultiGet(
        Get(BuiltPackage, EnvironmentAwarePackageRequest(packed)),
        Get(InterpreterConstraints, InterpreterConstraintsRequest([request.address])),
    )
    pex_path = built.artifacts[0].relpath
    assert pex_path is not None
    requirement_globs = [f"{pex_path}/{part}" for part in _REQUIREMENT_PARTS]
    requirements, sources = await MultiGet(
        Get(Snapshot, DigestSubset(built.digest, PathGlobs(requirement_globs))),
        Get(
            Snapshot,
            DigestSubset(
                built.digest,
                PathGlobs([f"{pex_path}/**", *(f"!{glob}" for glob in requirement_globs)]),
            ),
        ),
    )
    return PexLayers(
        address=request.address,
        requirements=requirements,
        sources=sources,
        pex_path=pex_path,
        python_versions=constraints.partition_into_major_minor_versions(
            python_setup.interpreter_versions_universe
        ),
        interpreter_constraints=tuple(str(c) for c in constraints),
    )


@dataclass(frozen=True)
class PexEntrypointRequest:
    """The entrypoint that runs `pex` with one of `interpreters`, the base's Python
    interpreters (preferred first; none for scratch)."""

    image: Address
    base: str
    pex: PexLayers
    interpreters: Tuple[wire.PythonInterpreter, ...]


@dataclass(frozen=True)
class PexEntrypoint:
    argv: Tuple[str, ...]


def _describe(interpreters: Sequence[wire.PythonInterpreter]) -> str:
    if not interpreters:
        return "no Python interpreter"
    return ", ".join(f"Python {i.version} at {i.path}" for i in interpreters)


@rule(desc="Choose the base image's Python")
async def pex_entrypoint(request: PexEntrypointRequest) -> PexEntrypoint:
    interpreters = request.interpreters
    pex = request.pex
    for interpreter in interpreters:
        if interpreter.version in pex.python_versions:
            return PexEntrypoint((interpreter.path, "/" + pex.pex_path))
    raise InvalidFieldException(
        softwrap(
            f"""
            Target {request.image} runs the pex_binary {pex.address}, which needs Python
            {" or ".join(pex.python_versions) or "(no version)"} (interpreter constraints
            {" OR ".join(pex.interpreter_constraints)}), but its `base` {request.base!r} has
            {_describe(interpreters)}. Use a base with a matching Python (e.g.
            `python:{pex.python_versions[-1] if pex.python_versions else "3"}-slim`), change
            the interpreter constraints of {pex.address}, or set `entrypoint` yourself.
            """
        )
    )


def rules() -> Iterable[Rule]:
    # The InterpreterConstraintsRequest rule, also in repos without the Python backend.
    return [*collect_rules(), *pex_from_targets.rules()]  # type: ignore[no-untyped-call]
