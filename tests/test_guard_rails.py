"""Guard rails: lint, types, and the import rules that keep the backend loadable by real Pants.

Real Pants 2.17 users run plugins on Python 3.9 with Pants' own pinned dependencies, so the
backend may use only Python 3.9 syntax and import only the stdlib, Pants, and the stdlib-only
core modules. The core library must never import Pants.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "src/python/pants_oci"
CORE = PACKAGE / "core"
BIN = Path(sys.executable).parent

# Core modules that need nothing beyond the stdlib and run on Python 3.9: the only part of the
# core the backend may import.
STDLIB_CORE_MODULES = frozenset({"reference", "digest", "media_types", "errors"})


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _backend_modules() -> list[Path]:
    return [p for p in _modules(PACKAGE) if CORE not in p.parents]


def _stdlib_core_modules() -> list[Path]:
    return [CORE / "__init__.py", *(CORE / f"{name}.py" for name in sorted(STDLIB_CORE_MODULES))]


def _imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Yield (line, absolute dotted module) for every import in a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"line {node.lineno}: use absolute imports")
            assert node.module is not None
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _top_level_only_imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Imports that run when the module is imported (not inside functions)."""
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield from _imports(node)


def _is_stdlib(module: str) -> bool:
    return module.partition(".")[0] in sys.stdlib_module_names


def _is_stdlib_core(module: str) -> bool:
    """`pants_oci.core` alone, or `pants_oci.core.<stdlib-only module>[.name]`."""
    parts = module.split(".")
    return parts[:2] == ["pants_oci", "core"] and (
        len(parts) == 2 or parts[2] in STDLIB_CORE_MODULES
    )


def _is_allowed_backend_import(module: str) -> bool:
    top = module.partition(".")[0]
    if _is_stdlib(module) or top == "pants":
        return True
    if module.startswith("pants_oci.core"):
        return _is_stdlib_core(module)
    return top == "pants_oci"


def _annotation_unions(tree: ast.AST) -> Iterator[int]:
    """`X | Y` inside annotations: fine for 3.9's parser, but Pants evaluates rule annotations."""
    annotations: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            annotations.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            annotations.append(node.returns)
    for annotation in annotations:
        for sub in ast.walk(annotation):
            if isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.BitOr):
                yield sub.lineno


def _check_python39_module(path: Path, allowed: Callable[[str], bool]) -> list[str]:
    source = path.read_text()
    rel = path.relative_to(REPO)
    try:
        tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
    except SyntaxError as e:
        return [f"{rel}:{e.lineno}: not valid Python 3.9 syntax: {e.msg}"]
    problems = [
        f"{rel}:{line}: imports {module}, which Pants-on-3.9 users may not have"
        for line, module in _imports(tree)
        if not allowed(module)
    ]
    problems += [
        f"{rel}:{line}: `X | Y` annotation fails on Python 3.9; use Optional/Union"
        for line in _annotation_unions(tree)
    ]
    if source.strip() and "from __future__ import annotations" not in source:
        problems.append(f"{rel}: add `from __future__ import annotations`")
    return problems


def test_backend_modules_are_python39_and_import_only_stdlib_pants_and_pants_oci() -> None:
    modules = _backend_modules()
    assert PACKAGE / "register.py" in modules and PACKAGE / "target_types.py" in modules
    problems = [
        p for path in modules for p in _check_python39_module(path, _is_allowed_backend_import)
    ]
    assert not problems, "\n".join(problems)


def test_stdlib_core_modules_are_python39_and_stdlib_only() -> None:
    def allowed(module: str) -> bool:
        return _is_stdlib(module) or _is_stdlib_core(module)

    problems = [p for path in _stdlib_core_modules() for p in _check_python39_module(path, allowed)]
    assert not problems, "\n".join(problems)


def test_core_package_import_pulls_in_no_third_party_module() -> None:
    # Pants imports pants_oci.core.reference on 3.9 without pydantic/httpx: `pants_oci.core`'s
    # __init__ must not import them eagerly.
    tree = ast.parse((CORE / "__init__.py").read_text())
    eager = [
        m
        for _, m in _top_level_only_imports(tree)
        if m.split(".")[0] not in sys.stdlib_module_names
    ]
    assert not eager, f"pants_oci/core/__init__.py imports {eager} at import time"


def test_core_never_imports_pants() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {module}"
        for path in _modules(CORE)
        for line, module in _imports(ast.parse(path.read_text()))
        if module.split(".")[0] == "pants"
    ]
    assert _modules(CORE), "core/ has no modules"
    assert not offenders, "the core library must not import Pants:\n" + "\n".join(offenders)


def _run_tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)


def test_ruff_lint() -> None:
    result = _run_tool(str(BIN / "ruff"), "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = _run_tool(str(BIN / "ruff"), "format", "--check", "--no-cache", ".")
    assert result.returncode == 0, "run `ruff format`:\n" + result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_strict_on_core_and_clean_on_backend() -> None:
    # Strictness for core/ comes from pyproject.toml's [[tool.mypy.overrides]].
    result = _run_tool(
        sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir", "/dev/null", "src/python"
    )
    assert result.returncode == 0, result.stdout + result.stderr
