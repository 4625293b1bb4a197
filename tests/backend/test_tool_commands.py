"""util_rules/tool_commands.py is the one place of the backend that makes a process of the
image tool and reads its output; what it makes of each command of `pants_oci.core.wire`."""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from pants.engine.fs import EMPTY_DIGEST
from pants.engine.process import ProcessCacheScope

from pants_oci.core import cli, wire
from pants_oci.util_rules.tool import BLOB_CACHE_DIR, PUSH_LEDGER_DIR
from pants_oci.util_rules.tool_commands import tool_request

PACKAGE = Path(__file__).resolve().parents[2] / "src/python/pants_oci"
TOOL_COMMANDS = PACKAGE / "util_rules/tool_commands.py"
# `[oci].run_args` is written in `docker run`'s spelling, which is the tool's: goals/run.py
# reads these flags from the option (and hands their values to `wire.Run`), building nothing.
ALLOWED = {(PACKAGE / "goals/run.py", flag) for flag in ("--mount", "--workdir", "--user", "--env")}


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from _subcommands(sub)


def _tool_words() -> tuple[set[str], set[str]]:
    """The tool's command names, and its commands' own flags (not the global options, which
    util_rules/tool.py passes to every process)."""
    parser = cli.build_parser()
    global_flags = {flag for action in parser._actions for flag in action.option_strings}
    top_level = {
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    }
    flags = {
        flag
        for _, sub in _subcommands(parser)
        for action in sub._actions
        for flag in action.option_strings
    }
    return top_level, flags - global_flags - {"-h", "--help"}


def _docstrings(tree: ast.AST) -> set[int]:
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, nodes)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def tool_process_problems(source: str, path: Path) -> list[str]:
    """Where a module builds a command line of the tool, makes its process, or reads a
    process's stdout, none of which any backend module but tool_commands.py may do."""
    commands, flags = _tool_words()
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    problems = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "OciToolRequest":
            problems.append(f"{line}: makes an OciToolRequest")
        elif isinstance(node, ast.Attribute) and node.attr == "stdout":
            problems.append(f"{line}: reads a process's stdout")
        elif isinstance(node, ast.Tuple | ast.List) and node.elts:
            first = node.elts[0]
            if isinstance(first, ast.Constant) and first.value in commands:
                problems.append(f"{line}: a command line of `{first.value}`")
        elif (
            isinstance(node, ast.Constant)
            and node.value in flags
            and id(node) not in docstrings
            and (path, node.value) not in ALLOWED
        ):
            problems.append(f"{line}: the flag {node.value}")
    return [f"{path.relative_to(PACKAGE)}:{problem}" for problem in problems]


def test_only_tool_commands_builds_tool_processes_and_reads_their_output() -> None:
    modules = [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if "core" not in path.relative_to(PACKAGE).parts and path != TOOL_COMMANDS
    ]
    assert PACKAGE / "util_rules/image.py" in modules
    problems = [p for path in modules for p in tool_process_problems(path.read_text(), path)]
    assert not problems, (
        "Build the tool's command lines with `pants_oci.core.wire` and run them through "
        "util_rules/tool_commands.py:\n" + "\n".join(problems)
    )


def test_the_check_finds_what_it_looks_for() -> None:
    source = (
        "async def f(result, base):\n"
        "    request = OciToolRequest(argv=argv, description='d', input_digest=d)\n"
        "    argv = ['image', 'dirs']\n"
        "    argv += ['--base', base]\n"
        "    return json.loads(result.stdout)\n"
    )
    problems = tool_process_problems(source, PACKAGE / "util_rules/example.py")
    assert [problem.split(":")[1] for problem in problems] == ["2", "3", "4", "5"]


def test_tool_requests_keep_what_each_command_writes() -> None:
    def outputs(command: wire.Command) -> tuple[tuple[str, ...], tuple[str, ...], bool]:
        request = tool_request(command, "d", EMPTY_DIGEST)
        assert request.argv == command.argv()
        return request.output_files, request.output_directories, request.blob_cache

    assert outputs(wire.LayerBuild("s", "out.blob")) == (("out.blob",), (), False)
    assert outputs(wire.ImageAssemble("scratch", "c", "image")) == ((), ("image",), False)
    with_archive = wire.ImageAssemble("scratch", "c", "image", docker_archive="a.tar")
    assert outputs(with_archive) == (("a.tar",), ("image",), False)
    assert outputs(wire.ImageIndex(("p/0",), "image")) == ((), ("image",), False)
    assert outputs(wire.BasePull("r/a@sha256:x", "base")) == ((), ("base",), False)
    pull = wire.BasePull("r/a@sha256:x", "base", blob_cache=BLOB_CACHE_DIR)
    assert outputs(pull) == ((), ("base",), True)
    for command in (wire.ImageDirs("b"), wire.Inspect("r/a:1"), wire.Push("l", ("r/a:1",))):
        assert outputs(command) == ((), (), False)
    assert outputs(wire.Push("l", ("r/a:1",), ledger=PUSH_LEDGER_DIR)) == ((), (), True)
    with pytest.raises(ValueError, match="push ledger is mounted at"):
        tool_request(wire.Push("l", ("r/a:1",), ledger="/elsewhere"), "d", EMPTY_DIGEST)
    with pytest.raises(ValueError, match="blob cache is mounted at"):
        tool_request(wire.BasePull("r", "base", blob_cache="/elsewhere"), "d", EMPTY_DIGEST)


def test_registry_processes_get_the_users_environment_and_a_cache_scope() -> None:
    request = tool_request(
        wire.Inspect("r/a:1"),
        "d",
        EMPTY_DIGEST,
        uncached_env={"HOME": "/home/me"},
        cache_scope=ProcessCacheScope.PER_SESSION,
    )
    assert dict(request.uncached_env) == {"HOME": "/home/me"}
    assert request.cache_scope == ProcessCacheScope.PER_SESSION
    assert not tool_request(wire.ImageDirs("b"), "d", EMPTY_DIGEST).uncached_env
