"""Every run of the image tool, in one place: a command of `pants_oci.core.wire` in, the
`OciToolRequest` that runs it out (its argv, and the files and directories it writes, which the
process keeps), and the process's stdout back as the command's typed result.

As `DockerBinary` is for Pants' docker backend: no other backend module spells a `pants-oci`
command line or reads its output (tests/backend/test_tool_commands.py checks), so a change to
the tool's command line is a change to `wire` alone.
"""

from __future__ import annotations

from typing import Mapping, Optional, Tuple, TypeVar, Union

from pants.engine.fs import Digest
from pants.engine.process import FallibleProcessResult, ProcessCacheScope, ProcessResult
from pants.util.frozendict import FrozenDict

from pants_oci.core import wire
from pants_oci.util_rules.tool import BLOB_CACHE_DIR, PUSH_LEDGER_DIR, OciToolRequest

ResultT = TypeVar("ResultT", bound=wire.Result)


def _outputs(command: wire.Command) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """The files and the directories `command` writes."""
    if isinstance(command, wire.LayerBuild):
        return (command.output,), ()
    if isinstance(command, wire.ImageAssemble):
        archive = () if command.docker_archive is None else (command.docker_archive,)
        return archive, (command.output,)
    if isinstance(command, (wire.BasePull, wire.ImageIndex)):
        return (), (command.output,)
    return (), ()


def _uses_blob_cache(command: wire.Command) -> bool:
    if isinstance(command, wire.Push) and command.ledger is not None:
        if command.ledger != PUSH_LEDGER_DIR:
            raise ValueError(
                f"The host's push ledger is mounted at {PUSH_LEDGER_DIR!r} only, not at "
                f"{command.ledger!r}."
            )
        return True
    if not isinstance(command, wire.BasePull) or command.blob_cache is None:
        return False
    if command.blob_cache != BLOB_CACHE_DIR:
        raise ValueError(
            f"The host's blob cache is mounted at {BLOB_CACHE_DIR!r} only, not at "
            f"{command.blob_cache!r}."
        )
    return True


def tool_request(
    command: wire.Command,
    description: str,
    input_digest: Digest,
    *,
    uncached_env: Optional[Mapping[str, str]] = None,
    cache_scope: ProcessCacheScope = ProcessCacheScope.SUCCESSFUL,
) -> OciToolRequest:
    """The process that runs `command` in a sandbox holding `input_digest`, keeping what the
    command writes. `uncached_env` (the user's environment, for a process that reaches
    registries) only with a `cache_scope` that never caches."""
    output_files, output_directories = _outputs(command)
    return OciToolRequest(
        argv=command.argv(),
        description=description,
        input_digest=input_digest,
        output_files=output_files,
        output_directories=output_directories,
        uncached_env=FrozenDict(uncached_env or {}),
        cache_scope=cache_scope,
        blob_cache=_uses_blob_cache(command),
    )


def tool_output(
    command: wire.JsonCommand[ResultT], result: Union[ProcessResult, FallibleProcessResult]
) -> ResultT:
    """What `command` printed in the process `result` (which succeeded), as its result type."""
    return command.parse_output(result.stdout)
