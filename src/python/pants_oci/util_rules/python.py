"""A `pex_binary` that an `oci_image` depends on directly, built for the image.

The PEX is built with Pants' `packed` layout whatever its own `layout` field says: a directory
whose `.bootstrap` (the PEX runtime) and `.deps/*.whl` (one installed-wheel archive per
distribution) change only with the requirements, and whose sources are loose files.

It is resolved for each image platform without emulation: for the platform's architecture and
the base's Python version (an abbreviated platform such as `linux_aarch64-cp-311-cp311`, with
`--resolve-local-platforms` so that a matching local interpreter may build sdists), or for
those of the pex_binary's `complete_platforms` whose machine is the platform's.

The image runs it with the base's own Python, found by name in the base's layers (or its
facts in the lockfile) and checked against the PEX's interpreter constraints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Tuple

from pants.backend.python.goals.package_pex_binary import PexBinaryFieldSet
from pants.backend.python.subsystems.setup import PythonSetup
from pants.backend.python.target_types import (
    PexBinaryDefaults,
    PexCompletePlatformsField,
    PexLayout,
    PythonResolveField,
    ResolvedPexEntryPoint,
    ResolvePexEntryPointRequest,
)
from pants.backend.python.target_types_rules import resolve_pex_entry_point
from pants.backend.python.util_rules import pex_from_targets
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import CompletePlatforms, Pex, PexPlatforms
from pants.backend.python.util_rules.pex_from_targets import (
    InterpreterConstraintsRequest,
    PexFromTargetsRequest,
)
from pants.engine.addresses import Address
from pants.engine.fs import (
    Digest,
    DigestContents,
    DigestEntries,
    DigestSubset,
    FileEntry,
    PathGlobs,
    Snapshot,
)
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import InvalidFieldException, Target, WrappedTarget, WrappedTargetRequest
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from pants_oci.core import wire
from pants_oci.core.platforms import check_platform
from pants_oci.util_rules.python_layers import Distribution


def is_pex_binary(target: Target) -> bool:
    return PexBinaryFieldSet.is_applicable(target)


@dataclass(frozen=True)
class PexPythonRequest:
    address: Address


@dataclass(frozen=True)
class PexPython:
    """The Python versions a pex_binary's interpreter constraints allow."""

    address: Address
    versions: Tuple[str, ...]  # major.minor
    interpreter_constraints: Tuple[str, ...]


@rule(desc="Read a pex_binary's interpreter constraints")
async def pex_python(request: PexPythonRequest, python_setup: PythonSetup) -> PexPython:
    constraints = await Get(
        InterpreterConstraints, InterpreterConstraintsRequest([request.address])
    )
    return PexPython(
        request.address,
        constraints.partition_into_major_minor_versions(python_setup.interpreter_versions_universe),
        tuple(str(c) for c in constraints),
    )


def _describe(interpreters: Sequence[wire.PythonInterpreter]) -> str:
    if not interpreters:
        return "no Python interpreter"
    return ", ".join(f"Python {i.version} at {i.path}" for i in interpreters)


def choose_interpreter(
    image: Address,
    base: str,
    pex: PexPython,
    interpreters: Sequence[wire.PythonInterpreter],
    *,
    venv: bool,
) -> wire.PythonInterpreter:
    """The first of the base's `interpreters` whose version the PEX allows; a `venv` needs
    one, a PEX only for the default entrypoint."""
    for interpreter in interpreters:
        if interpreter.version in pex.versions:
            return interpreter
    fix = (
        'set `python_layout="pex"` and an `entrypoint` that runs the PEX'
        if venv
        else "set `entrypoint` yourself"
    )
    raise InvalidFieldException(
        softwrap(
            f"""
            Target {image} runs the pex_binary {pex.address}, which needs Python
            {" or ".join(pex.versions) or "(no version)"} (interpreter constraints
            {" OR ".join(pex.interpreter_constraints)}), but its `base` {base!r} has
            {_describe(interpreters)}. Use a base with a matching Python (e.g.
            `python:{pex.versions[-1] if pex.versions else "3"}-slim`), change the
            interpreter constraints of {pex.address}, or {fix}.
            """
        )
    )


# OCI architectures (GOARCH, with a variant) as Python's platform tags name them.
_MACHINES = {
    ("amd64", None): "x86_64",
    ("arm64", "v8"): "aarch64",
    ("arm64", None): "aarch64",
    ("arm", "v7"): "armv7l",
    ("386", None): "i686",
    ("ppc64le", None): "ppc64le",
    ("s390x", None): "s390x",
    ("riscv64", None): "riscv64",
}


def python_machine(platform: str) -> Optional[str]:
    """The `platform_machine` of a Linux image platform (`linux/arm64` -> `aarch64`)."""
    os_name, architecture, variant = check_platform(platform)
    if os_name != "linux":
        return None
    return _MACHINES.get((architecture, variant))


def abbreviated_platform(machine: str, python_version: str) -> str:
    """PEX's abbreviated platform for CPython `python_version` on Linux `machine`."""
    digits = python_version.replace(".", "")
    return f"linux_{machine}-cp-{digits}-cp{digits}"


@dataclass(frozen=True)
class PackedPexRequest:
    """The pex_binary at `address`, packed; resolved for the image `platform` and the base's
    `python_version` when both are given, else as its own fields say."""

    address: Address
    image: Address
    platform: Optional[str] = None
    python_version: Optional[str] = None


@dataclass(frozen=True)
class PexEntry:
    """What the PEX runs: `module` (and `function` in it), or a console `script`; none of
    them for an interpreter."""

    module: Optional[str] = None
    function: Optional[str] = None
    script: Optional[str] = None


@dataclass(frozen=True)
class PackedPex:
    """A packed PEX (a directory at `pex_path`), split by how often its parts change."""

    address: Address
    pex_path: str
    requirements: Snapshot  # `.bootstrap` and `.deps`
    sources: Snapshot  # the rest
    distributions: Tuple[Distribution, ...]  # its `.deps/*.whl`
    entry: PexEntry
    args: Tuple[str, ...]
    env: FrozenDict[str, str]
    resolve: Optional[str] = None  # with `[python].enable_resolves`
    lockfile: Optional[str] = None  # the resolve's, relative to the build root


_REQUIREMENT_PARTS = (".bootstrap", ".deps/**")


async def _complete_platforms(
    request: PackedPexRequest, field: PexCompletePlatformsField, machine: str
) -> CompletePlatforms:
    """Those of the pex_binary's `complete_platforms` for `machine` and the base's Python."""
    given = await Get(CompletePlatforms, PexCompletePlatformsField, field)
    contents = await Get(DigestContents, Digest, given.digest)
    chosen = []
    for content in contents:
        try:
            markers = json.loads(content.content)["marker_environment"]
        except (ValueError, KeyError, TypeError):
            continue  # PEX itself reports a malformed complete platform
        version = markers.get("python_version")
        if markers.get("platform_machine") == machine and version in (
            None,
            request.python_version,
        ):
            chosen.append(content.path)
    if not chosen:
        raise InvalidFieldException(
            softwrap(
                f"""
                Target {request.image} builds the pex_binary {request.address} for
                {request.platform} with Python {request.python_version}, but none of its
                `{PexCompletePlatformsField.alias}` ({", ".join(given) or "none"}) is for the
                machine {machine} and that Python. Add one (`pex3 interpreter inspect
                --markers --tags` on such a machine writes it), or remove the field to resolve
                for the abbreviated platform
                {abbreviated_platform(machine, request.python_version or "3")}.
                """
            )
        )
    subset = await Get(Digest, DigestSubset(given.digest, PathGlobs(chosen)))
    return CompletePlatforms(chosen, digest=subset)


@rule(desc="Build a PEX for an OCI image")
async def packed_pex(
    request: PackedPexRequest, defaults: PexBinaryDefaults, python_setup: PythonSetup
) -> PackedPex:
    wrapped = await Get(
        WrappedTarget,
        WrappedTargetRequest(request.address, description_of_origin="the `oci_image` rules"),
    )
    field_set = PexBinaryFieldSet.create(wrapped.target)
    entry_point = await Get(
        ResolvedPexEntryPoint, ResolvePexEntryPointRequest(field_set.entry_point)
    )
    platforms = PexPlatforms.create_from_platforms_field(field_set.platforms)
    complete = await Get(CompletePlatforms, PexCompletePlatformsField, field_set.complete_platforms)
    additional_args = list(field_set.generate_additional_args(defaults))
    machine = python_machine(request.platform) if request.platform else None
    if machine and request.python_version:
        if field_set.complete_platforms.value:
            platforms = PexPlatforms()
            complete = await _complete_platforms(request, field_set.complete_platforms, machine)
        else:
            platforms = PexPlatforms([abbreviated_platform(machine, request.python_version)])
            complete = CompletePlatforms()
            if "--resolve-local-platforms" not in additional_args:
                additional_args.append("--resolve-local-platforms")
    output_filename = field_set.output_path.value_or_default(file_ending="pex")
    pex = await Get(
        Pex,
        PexFromTargetsRequest(
            addresses=[request.address],
            internal_only=False,
            main=entry_point.val or field_set.script.value,
            inject_args=field_set.args.value or (),
            inject_env=field_set.env.value or FrozenDict(),
            platforms=platforms,
            complete_platforms=complete,
            output_filename=output_filename,
            layout=PexLayout.PACKED,
            additional_args=tuple(additional_args),
            include_requirements=field_set.include_requirements.value,
            include_source_files=field_set.include_sources.value,
            include_local_dists=True,
            warn_for_transitive_files_targets=True,
        ),
    )
    requirement_globs = [f"{output_filename}/{part}" for part in _REQUIREMENT_PARTS]
    requirements, sources, entries = await MultiGet(
        Get(Snapshot, DigestSubset(pex.digest, PathGlobs(requirement_globs))),
        Get(
            Snapshot,
            DigestSubset(
                pex.digest,
                PathGlobs([f"{output_filename}/**", *(f"!{glob}" for glob in requirement_globs)]),
            ),
        ),
        Get(DigestEntries, Digest, pex.digest),
    )
    deps = f"{output_filename}/.deps/"
    distributions = tuple(
        Distribution.from_archive(entry.path, entry.file_digest.serialized_bytes_length)
        for entry in entries
        if isinstance(entry, FileEntry)
        and entry.path.startswith(deps)
        and entry.path.endswith(".whl")
    )
    resolved = entry_point.val
    resolve = None
    if python_setup.enable_resolves and wrapped.target.has_field(PythonResolveField):
        resolve = wrapped.target[PythonResolveField].normalized_value(python_setup)
    return PackedPex(
        address=request.address,
        pex_path=output_filename,
        requirements=requirements,
        sources=sources,
        distributions=distributions,
        entry=PexEntry(
            module=resolved.module if resolved else None,
            function=resolved.function if resolved else None,
            script=None if resolved or not field_set.script.value else field_set.script.value.name,
        ),
        args=tuple(field_set.args.value or ()),
        env=FrozenDict(field_set.env.value or {}),
        resolve=resolve,
        lockfile=python_setup.resolves.get(resolve) if resolve else None,
    )


def rules() -> Iterable[Rule]:
    # What building a PEX needs, also in repos without the Python backend.
    return [
        *collect_rules(),
        *pex_from_targets.rules(),  # type: ignore[no-untyped-call]
        *collect_rules({"resolve_pex_entry_point": resolve_pex_entry_point}),
        *PexBinaryDefaults.rules(),
    ]
