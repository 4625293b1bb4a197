"""`pants generate-oci-lockfile`: pin every base tag in the repo to digests.

Like `pants generate-lockfiles` for requirements: tags are looked up only here, and the result
is a reviewable file checked into the repo, which builds then read instead of the tags.
`--check` writes nothing and reports bases whose tags moved upstream (exit 1 if any did).
`pants generate-lockfiles --resolve=oci-bases` writes the same file through Pants' own goal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Set, Tuple, Union

from pants.core.goals.generate_lockfiles import (
    GenerateLockfile,
    GenerateLockfileResult,
    KnownUserResolveNames,
    KnownUserResolveNamesRequest,
    RequestedUserResolveNames,
    UserGenerateLockfiles,
)
from pants.engine.console import Console
from pants.engine.env_vars import EnvironmentVars
from pants.engine.fs import EMPTY_DIGEST, CreateDigest, Digest, FileContent, Workspace
from pants.engine.goal import Goal, GoalSubsystem
from pants.engine.process import FallibleProcessResult, ProcessCacheScope
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, goal_rule, rule
from pants.engine.target import AllTargets
from pants.engine.unions import UnionRule
from pants.option.option_types import BoolOption
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from pants_oci.core import wire
from pants_oci.core.reference import Reference, parse_reference
from pants_oci.subsystems.oci import OciSubsystem
from pants_oci.target_types import OciImageBaseField
from pants_oci.util_rules.base_images import ImageFactsRequest
from pants_oci.util_rules.image import image_platforms, is_sparse
from pants_oci.util_rules.lockfile import (
    GENERATE_COMMAND,
    BaseLockfile,
    BaseLockfileRequest,
    ImageFacts,
    LockedBase,
    choose_platform,
    lock_key,
    render_lockfile,
)
from pants_oci.util_rules.tool import RegistryEnvRequest
from pants_oci.util_rules.tool_commands import tool_output, tool_request


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


def _locked(inspected: wire.InspectResult) -> LockedBase:
    """A lockfile entry from `pants-oci inspect` of a tag: an index's platforms (attestations
    and other `unknown` entries left out), or a single manifest's own platform."""
    platforms: Dict[str, str] = {}
    if inspected.manifests is not None:
        for entry in inspected.manifests:
            platform = entry.platform
            if platform and not platform.startswith("unknown/"):
                platforms.setdefault(platform, entry.digest)
    else:
        platforms[str(inspected.platform)] = inspected.digest
    return LockedBase(
        digest=inspected.digest,
        media_type=inspected.media_type,
        platforms=FrozenDict(platforms),
    )


async def _image_facts(lookups: BaseLookups, lockfile: BaseLockfile) -> Dict[str, ImageFacts]:
    """The facts of each platform image that sparse layouts are built on, by manifest digest:
    kept from the lockfile when it has them (facts of a digest never change), else read from
    the image's layers, downloaded once here (through the blob cache) so that builds need
    not."""
    wanted: Dict[str, Tuple[str, str]] = {}  # manifest digest -> (reference, platform)
    for name in lookups.names:
        locked = lookups.upstream[name]
        for platform in lookups.sparse_platforms.get(name, ()):
            chosen = choose_platform(locked.platforms, platform)
            if chosen is not None:  # else builds say the base lacks the platform
                digest = locked.platforms[chosen]
                wanted[digest] = (f"{parse_reference(name).name}@{digest}", chosen)
    known = {} if lockfile.error else dict(lockfile.images)
    missing = sorted(digest for digest in wanted if digest not in known)
    read = await MultiGet(Get(ImageFacts, ImageFactsRequest(*wanted[digest])) for digest in missing)
    found = {**known, **dict(zip(missing, read))}
    return {digest: found[digest] for digest in wanted}


def _describe(name: str, entry: LockedBase) -> str:
    return f"{name} -> {entry.digest} ({', '.join(sorted(entry.platforms))})"


@dataclass(frozen=True)
class BaseLookupsRequest:
    pass


@dataclass(frozen=True)
class BaseLookups:
    """Every base written as a tag, looked up now: what it points at, who uses it."""

    names: Tuple[str, ...]
    users: FrozenDict[str, Tuple[str, ...]]
    # The platforms its users with a `sparse-oci-layout` build: the images whose facts the
    # lockfile records (other builds read the base's layers anyway).
    sparse_platforms: FrozenDict[str, Tuple[str, ...]]
    upstream: FrozenDict[str, LockedBase]
    failures: Tuple[Tuple[str, str], ...]  # (name, the tool's error)

    def failure_message(self) -> str:
        return "\n".join(
            f"Could not look up base image {name} (used by {', '.join(self.users[name])}):\n{error}"
            for name, error in self.failures
        )


@rule(desc="Look up the tags of OCI base images")
async def look_up_bases(
    _: BaseLookupsRequest, all_targets: AllTargets, oci: OciSubsystem
) -> BaseLookups:
    bases: Dict[str, Reference] = {}
    users: Dict[str, List[str]] = {}
    platforms: Dict[str, Set[str]] = {}
    for target in all_targets:
        if not target.has_field(OciImageBaseField):
            continue
        spec = target[OciImageBaseField].image_base().spec
        reference = spec.unpinned_reference if spec else None
        if reference is not None:
            key = lock_key(reference)
            bases[key] = reference
            users.setdefault(key, []).append(str(target.address))
            if is_sparse(target):
                platforms.setdefault(key, set()).update(image_platforms(target, oci))
    names = sorted(bases)
    env = await Get(EnvironmentVars, RegistryEnvRequest())
    commands = [wire.Inspect(name) for name in names]
    lookups = await MultiGet(
        Get(
            FallibleProcessResult,
            tool_request(
                command,
                f"Look up base image {bases[command.reference].familiar}",
                EMPTY_DIGEST,
                uncached_env=env,
                # Tags move: look them up on every run.
                cache_scope=ProcessCacheScope.PER_SESSION,
            ),
        )
        for command in commands
    )
    failures = tuple(
        (name, result.stderr.decode(errors="replace").strip())
        for name, result in zip(names, lookups)
        if result.exit_code != 0
    )
    upstream = {
        command.reference: _locked(tool_output(command, result))
        for command, result in zip(commands, lookups)
        if result.exit_code == 0
    }
    return BaseLookups(
        names=tuple(names),
        users=FrozenDict({name: tuple(found) for name, found in users.items()}),
        sparse_platforms=FrozenDict(
            {name: tuple(sorted(found)) for name, found in platforms.items()}
        ),
        upstream=FrozenDict(upstream),
        failures=failures,
    )


@goal_rule
async def generate_oci_lockfile(
    subsystem: GenerateOciLockfileSubsystem,
    console: Console,
    workspace: Workspace,
    oci: OciSubsystem,
) -> GenerateOciLockfile:
    lockfile, lookups = await MultiGet(
        Get(BaseLockfile, BaseLockfileRequest()), Get(BaseLookups, BaseLookupsRequest())
    )
    if lookups.failures:
        console.print_stderr(lookups.failure_message())
        return GenerateOciLockfile(exit_code=1)
    names, users, upstream = lookups.names, lookups.users, lookups.upstream

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
            if name not in users
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

    images = await _image_facts(lookups, lockfile)
    content = render_lockfile(upstream, images)
    digest = await Get(Digest, CreateDigest([FileContent(oci.lockfile, content)]))
    workspace.write_digest(digest)
    for name in names:
        before = lockfile.bases.get(name)
        change = "" if before is None or before.digest == upstream[name].digest else " (updated)"
        console.print_stdout(_describe(name, upstream[name]) + change)
    console.print_stderr(f"Wrote {oci.lockfile} ({len(names)} base(s)).")
    return GenerateOciLockfile(exit_code=0)


# `pants generate-lockfiles --resolve=oci-bases` writes the same file, as Pants' other lockfiles.
OCI_RESOLVE = "oci-bases"


class KnownOciResolveNamesRequest(KnownUserResolveNamesRequest):
    pass


class RequestedOciResolveNames(RequestedUserResolveNames):
    pass


@dataclass(frozen=True)
class GenerateOciBasesLockfile(GenerateLockfile):
    pass


class BaseLookupError(Exception):
    """A base image tag that could not be looked up."""


@rule
def known_oci_resolve(_: KnownOciResolveNamesRequest) -> KnownUserResolveNames:
    return KnownUserResolveNames(
        names=(OCI_RESOLVE,),
        option_name="[oci].lockfile",
        requested_resolve_names_cls=RequestedOciResolveNames,
    )


@rule
def oci_lockfile_request(_: RequestedOciResolveNames, oci: OciSubsystem) -> UserGenerateLockfiles:
    return UserGenerateLockfiles(
        [GenerateOciBasesLockfile(resolve_name=OCI_RESOLVE, lockfile_dest=oci.lockfile, diff=False)]
    )


@rule(desc="Generate the OCI base-image lockfile")
async def generate_oci_bases_lockfile(request: GenerateOciBasesLockfile) -> GenerateLockfileResult:
    lockfile, lookups = await MultiGet(
        Get(BaseLockfile, BaseLockfileRequest()), Get(BaseLookups, BaseLookupsRequest())
    )
    if lookups.failures:
        raise BaseLookupError(lookups.failure_message())
    content = render_lockfile(lookups.upstream, await _image_facts(lookups, lockfile))
    digest = await Get(Digest, CreateDigest([FileContent(request.lockfile_dest, content)]))
    return GenerateLockfileResult(digest, request.resolve_name, request.lockfile_dest)


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [
        *collect_rules(),
        UnionRule(KnownUserResolveNamesRequest, KnownOciResolveNamesRequest),
        UnionRule(RequestedUserResolveNames, RequestedOciResolveNames),
        UnionRule(GenerateLockfile, GenerateOciBasesLockfile),
    ]
