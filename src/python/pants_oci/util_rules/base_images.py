"""A base image as builds use it: a registry base pulled whole or shallow (its manifest and
config only), the facts of its filesystem (from the lockfile, or read from its layers), and
its directories.

The pull runs with the user's credentials through the host's blob cache, never cached by
Pants and never downloading a blob twice on one machine; what follows is keyed by its
content.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import FrozenSet, Iterable, Optional, Tuple

from pants.engine.env_vars import EnvironmentVars
from pants.engine.fs import CreateDigest, Digest
from pants.engine.process import ProcessCacheScope, ProcessResult
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule

from pants_oci.core import wire
from pants_oci.core.reference import parse_reference
from pants_oci.util_rules.lockfile import ImageFacts
from pants_oci.util_rules.tool import BLOB_CACHE_DIR, RegistryEnvRequest
from pants_oci.util_rules.tool_commands import tool_output, tool_request

BASE_DIR = "base"


@dataclass(frozen=True)
class ResolvedBase:
    """The base as assembly needs it: files in `digest`, and the path of the layout directory
    or docker-archive among them (none for scratch)."""

    digest: Optional[Digest]
    path: Optional[str]
    reference: Optional[str]
    is_docker_archive: bool = False
    # Where the base's layer blobs are in `digest`, when known (a registry base, another
    # image): assembly reads only the base's documents, so its sandbox gets none of them.
    layer_blobs: Tuple[str, ...] = ()
    # A registry base's facts from the lockfile: with them, its layers need not be read.
    facts: Optional[ImageFacts] = None
    # False for a registry base pulled without its layer blobs (its documents only).
    has_layers: bool = True
    # The base-image lockfile that pinned a registry base's tag (None when pinned in BUILD).
    locked_by: Optional[str] = None

    @property
    def is_layout(self) -> bool:
        return self.path is not None and not self.is_docker_archive


@dataclass(frozen=True)
class RegistryBaseRequest:
    """A registry image pinned by digest (`reference`), resolved to `platform`: its documents,
    and its layers too `with_layers`; `purpose` says what for (errors name it)."""

    reference: str
    platform: str
    with_layers: bool
    purpose: str


@rule(desc="Fetch an OCI base image")
async def pull_registry_base(request: RegistryBaseRequest) -> ResolvedBase:
    empty = await Get(Digest, CreateDigest([]))
    # A base may be private: the pull runs with the user's credentials (docker config, helpers,
    # Google), so it is never cached, and reads the host's blob cache, so it downloads only
    # what this machine has never seen. Its output is content pinned by digest: every process
    # after it is keyed by that content, the same for any credentials on any machine.
    credentials = await Get(EnvironmentVars, RegistryEnvRequest())
    pull = wire.BasePull(
        request.reference,
        output=BASE_DIR,
        platform=request.platform,
        blob_cache=BLOB_CACHE_DIR,
        with_layers=request.with_layers,
    )
    familiar = parse_reference(request.reference).familiar
    result = await Get(
        ProcessResult,
        tool_request(
            pull,
            f"Fetch base image {familiar} ({request.platform}"
            f"{'' if request.with_layers else ': manifest and config only'}) {request.purpose}",
            empty,
            uncached_env=credentials,
            # Content pinned by digest: once it succeeded, pantsd needs it no more than once.
            cache_scope=ProcessCacheScope.PER_RESTART_SUCCESSFUL,
        ),
    )
    return ResolvedBase(
        result.output_digest,
        BASE_DIR,
        request.reference,
        layer_blobs=blob_paths(
            BASE_DIR, (layer.digest for layer in tool_output(pull, result).layers)
        ),
        has_layers=request.with_layers,
    )


def blob_paths(layout: str, digests: Iterable[str]) -> Tuple[str, ...]:
    """The paths of blobs `digests` in the layout directory `layout` ("" for the root)."""
    return tuple(os.path.join(layout, "blobs", *d.split(":", 1)) for d in digests)


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
    if base.facts is not None:
        return BaseDirectories(frozenset(base.facts.directories))
    if base.digest is None or base.path is None or base.is_docker_archive:
        # scratch has none; a docker-archive base is not read (its layers keep their own).
        return BaseDirectories(frozenset())
    command = wire.ImageDirs(base.path)
    result = await Get(
        ProcessResult,
        tool_request(
            command,
            f"List the directories of base image {base.reference or base.path}",
            base.digest,
        ),
    )
    return BaseDirectories(frozenset(tool_output(command, result).directories))


@dataclass(frozen=True)
class BaseInterpretersRequest:
    base: ResolvedBase


@dataclass(frozen=True)
class BaseInterpreters:
    """The Python interpreters of a base image, preferred first."""

    interpreters: Tuple[wire.PythonInterpreter, ...]


@rule(desc="Find the Python interpreters of an OCI base image")
async def base_interpreters(request: BaseInterpretersRequest) -> BaseInterpreters:
    base = request.base
    if base.facts is not None:
        return BaseInterpreters(base.facts.pythons)
    if base.digest is None or base.path is None or base.is_docker_archive:
        return BaseInterpreters(())  # scratch; a docker-archive's layers are not read
    command = wire.ImagePythons(base.path)
    result = await Get(
        ProcessResult,
        tool_request(
            command,
            f"Find the Python interpreters of base image {base.reference or base.path}",
            base.digest,
        ),
    )
    return BaseInterpreters(tool_output(command, result).interpreters)


@dataclass(frozen=True)
class ImageFactsRequest:
    """The facts of a registry image pinned by digest, read from its layers (what
    `generate-oci-lockfile` records)."""

    reference: str
    platform: str


@rule(desc="Read the facts of an OCI base image")
async def image_facts(request: ImageFactsRequest) -> ImageFacts:
    base = await Get(
        ResolvedBase,
        RegistryBaseRequest(
            request.reference,
            request.platform,
            with_layers=True,
            purpose="to record its facts in the lockfile",
        ),
    )
    directories, interpreters = await MultiGet(
        Get(BaseDirectories, BaseDirectoriesRequest(base)),
        Get(BaseInterpreters, BaseInterpretersRequest(base)),
    )
    return ImageFacts(tuple(sorted(directories.paths)), interpreters.interpreters)


def rules() -> Iterable[Rule]:
    return collect_rules()
