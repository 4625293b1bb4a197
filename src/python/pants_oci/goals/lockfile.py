"""`pants generate-oci-lockfile`: pin every base tag in the repo to digests.

Like `pants generate-lockfiles` for requirements: tags are looked up only here, and the result
is a reviewable file checked into the repo, which builds then read instead of the tags.
`--check` writes nothing and reports bases whose tags moved upstream (exit 1 if any did).
"""

from __future__ import annotations

import json
from typing import Dict, Iterable, List, Mapping, Tuple

from pants.engine.console import Console
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import EMPTY_DIGEST, CreateDigest, Digest, FileContent, Workspace
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.process import FallibleProcessResult, ProcessCacheScope
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, goal_rule
from pants.engine.target import AllTargets
from pants.option.option_types import BoolOption
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from pants_oci.core.reference import Reference
from pants_oci.subsystems.oci import OciSubsystem
from pants_oci.target_types import OciImageBaseField
from pants_oci.util_rules.lockfile import (
    GENERATE_COMMAND,
    BaseLockfile,
    BaseLockfileRequest,
    LockedBase,
    lock_key,
    render_lockfile,
)
from pants_oci.util_rules.tool import CREDENTIAL_ENV, OciToolRequest


class GenerateOciLockfileSubsystem(GoalSubsystem):
    name = "generate-oci-lockfile"
    help = softwrap(
        f"""
        Pin every `oci_image` base written as a tag (`python:3.11-slim`) to the digest it
        points at now, with each platform's manifest digest, in the base-image lockfile
        (`[oci].lockfile`). Check the file in: builds read it and never look tags up.
        Run `{GENERATE_COMMAND} --check` in CI to learn when bases moved upstream.
        """
    )

    check = BoolOption(
        default=False,
        help=softwrap(
            """
            Write nothing; report bases whose tags point at a newer digest upstream, bases the
            lockfile lacks and entries no BUILD file uses. Exits 1 if there is any.
            """
        ),
    )


class GenerateOciLockfile(Goal):
    subsystem_cls = GenerateOciLockfileSubsystem
    environment_behavior = Goal.EnvironmentBehavior.LOCAL_ONLY


def _locked(inspected: Mapping[str, object]) -> LockedBase:
    """A lockfile entry from `pants-oci inspect` of a tag: an index's platforms (attestations
    and other `unknown` entries left out), or a single manifest's own platform."""
    platforms: Dict[str, str] = {}
    manifests = inspected.get("manifests")
    if isinstance(manifests, list):
        for entry in manifests:
            platform = entry.get("platform")
            if platform and not platform.startswith("unknown/"):
                platforms.setdefault(platform, entry["digest"])
    else:
        platforms[str(inspected["platform"])] = str(inspected["digest"])
    return LockedBase(
        digest=str(inspected["digest"]),
        media_type=str(inspected["media_type"]),
        platforms=FrozenDict(platforms),
    )


def _describe(name: str, entry: LockedBase) -> str:
    return f"{name} -> {entry.digest} ({', '.join(sorted(entry.platforms))})"


@goal_rule
async def generate_oci_lockfile(
    subsystem: GenerateOciLockfileSubsystem,
    console: Console,
    workspace: Workspace,
    all_targets: AllTargets,
    oci: OciSubsystem,
) -> GenerateOciLockfile:
    bases: Dict[str, Reference] = {}
    users: Dict[str, List[str]] = {}
    for target in all_targets:
        if not target.has_field(OciImageBaseField):
            continue
        spec = target[OciImageBaseField].image_base().spec
        reference = spec.unpinned_reference if spec else None
        if reference is not None:
            key = lock_key(reference)
            bases[key] = reference
            users.setdefault(key, []).append(str(target.address))
    names = sorted(bases)
    lockfile = await Get(BaseLockfile, BaseLockfileRequest())
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(CREDENTIAL_ENV))
    lookups = await MultiGet(
        Get(
            FallibleProcessResult,
            OciToolRequest(
                argv=("inspect", name),
                description=f"Look up base image {bases[name].familiar}",
                input_digest=EMPTY_DIGEST,
                uncached_env=FrozenDict(env),
                # Tags move: look them up on every run.
                cache_scope=ProcessCacheScope.PER_SESSION,
            ),
        )
        for name in names
    )
    failures: List[Tuple[str, str]] = [
        (name, result.stderr.decode(errors="replace").strip())
        for name, result in zip(names, lookups)
        if result.exit_code != 0
    ]
    if failures:
        for name, error in failures:
            console.print_stderr(
                f"Could not look up base image {name} (used by {', '.join(users[name])}):\n{error}"
            )
        return GenerateOciLockfile(exit_code=1)
    upstream = {name: _locked(json.loads(result.stdout)) for name, result in zip(names, lookups)}

    if subsystem.check:
        lockfile.require_valid()
        problems: List[str] = []
        for name in names:
            locked = lockfile.bases.get(name)
            if locked is None:
                problems.append(f"missing: {name} (used by {', '.join(users[name])})")
            elif locked.digest != upstream[name].digest:
                problems.append(
                    f"newer upstream: {name}: locked {locked.digest}, now {upstream[name].digest}"
                )
        problems += [
            f"unused: {name} (no BUILD file uses it)"
            for name in sorted(lockfile.bases)
            if name not in bases
        ]
        if problems:
            console.print_stdout("\n".join(problems))
            console.print_stderr(
                f"The base-image lockfile {lockfile.path} is out of date. Run `{GENERATE_COMMAND}`"
                " to update it."
            )
            return GenerateOciLockfile(exit_code=1)
        console.print_stdout(f"{lockfile.path}: {len(names)} base(s), all up to date.")
        return GenerateOciLockfile(exit_code=0)

    digest = await Get(Digest, CreateDigest([FileContent(oci.lockfile, render_lockfile(upstream))]))
    workspace.write_digest(digest)
    for name in names:
        before = lockfile.bases.get(name)
        change = "" if before is None or before.digest == upstream[name].digest else " (updated)"
        console.print_stdout(_describe(name, upstream[name]) + change)
    console.print_stderr(f"Wrote {oci.lockfile} ({len(names)} base(s)).")
    return GenerateOciLockfile(exit_code=0)


def rules() -> Iterable[Rule]:
    return collect_rules()
