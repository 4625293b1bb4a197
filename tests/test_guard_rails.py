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
STDLIB_CORE_MODULES = frozenset(
    {
        "base_spec",
        "reference",
        "digest",
        "media_types",
        "errors",
        "platforms",
        "python_venv",
        "validation",
        "wire",
    }
)


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


# The core runs in the image tool on CPython 3.9 to 3.13 (`[oci].interpreter_constraints`). Ruff
# checks its syntax as 3.9 and mypy its stdlib use as 3.10 (mypy's oldest); these checks cover
# the 3.10 features neither sees. tests/backend/test_tool_interpreters.py runs the tool on each.
_TYPING_NEW_IN_310 = frozenset(
    {"TypeAlias", "ParamSpec", "ParamSpecArgs", "ParamSpecKwargs", "Concatenate", "TypeGuard"}
)
_BUILTIN_TYPES = frozenset(
    {"bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list"}
    | {"memoryview", "object", "set", "str", "tuple", "type"}
)


def _is_type_like(node: ast.expr) -> bool:
    """`None`, a builtin type, a CapWords name (`OCIIndex`, `os.PathLike`), a subscripted one
    (`dict[str, str]`) or a union of them; not a constant such as `os.O_RDONLY`."""
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, ast.Subscript):
        return _is_type_like(node.value)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _is_type_like(node.left) or _is_type_like(node.right)
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")
    return name in _BUILTIN_TYPES or (name[:1].isupper() and not name.isupper())


def _pydantic_model_classes(tree: ast.Module) -> list[ast.ClassDef]:
    models: list[ast.ClassDef] = []
    names = {"BaseModel", "RootModel"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            (b.id if isinstance(b, ast.Name) else getattr(b, "attr", "")) in names
            for b in node.bases
        ):
            models.append(node)
            names.add(node.name)
    return models


def _python310_features(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """What Python 3.9 cannot run in a module that parses as 3.9."""
    # Annotations are not evaluated (`from __future__ import annotations`), except pydantic's.
    unevaluated: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            unevaluated.update(id(sub) for sub in ast.walk(node.annotation))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            unevaluated.update(id(sub) for sub in ast.walk(node.returns))
    for model in _pydantic_model_classes(tree):
        for statement in model.body:
            if isinstance(statement, ast.AnnAssign):
                unevaluated.difference_update(id(sub) for sub in ast.walk(statement.annotation))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.BitOr)
            and id(node) not in unevaluated
            and _is_type_like(node.left)
            and _is_type_like(node.right)
        ):
            yield (
                node.lineno,
                (
                    f"`{ast.unparse(node)}` is evaluated at run time: use a tuple in isinstance, "
                    "Optional/Union elsewhere"
                ),
            )
        elif isinstance(node, ast.Call) and any(k.arg == "strict" for k in node.keywords):
            if isinstance(node.func, ast.Name) and node.func.id == "zip":
                yield node.lineno, "zip(strict=...): use pants_oci.core._compat.zip_strict"
        elif isinstance(node, ast.ImportFrom) and node.module == "typing":
            for alias in node.names:
                if alias.name in _TYPING_NEW_IN_310:
                    yield node.lineno, f"typing.{alias.name}: import it from typing_extensions"


def test_core_modules_run_on_python39() -> None:
    problems: list[str] = []
    for path in _modules(CORE):
        rel = path.relative_to(REPO)
        source = path.read_text()
        try:
            tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
        except SyntaxError as e:
            problems.append(f"{rel}:{e.lineno}: not valid Python 3.9 syntax: {e.msg}")
            continue
        problems += [f"{rel}:{line}: {what}" for line, what in _python310_features(tree)]
        if source.strip() and "from __future__ import annotations" not in source:
            problems.append(f"{rel}: add `from __future__ import annotations`")
    assert not problems, "\n".join(problems)


def test_the_python39_check_finds_what_python39_cannot_run() -> None:
    tree = ast.parse(
        "from typing import Optional, TypeAlias\n"
        "from pydantic import BaseModel\n"
        "A = int | None\n"
        "def f(x: int | None, flags: int = os.O_RDONLY | os.O_CLOEXEC) -> str | None:\n"
        "    y: dict[str, int] | None = None\n"
        "    return isinstance(x, OCIIndex | DockerManifestList) or zip(a, b, strict=True)\n"
        "class M(BaseModel):\n"
        "    ok: Optional[str] = None\n"
        "    bad: tuple[str, ...] | None = None\n"
        "class N(M):\n"
        "    worse: str | None = None\n"
    )
    assert sorted(line for line, _ in _python310_features(tree)) == [1, 3, 6, 6, 9, 11]


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


# A module holds one job; past this it is holding several (split it, as core/registry/ is).
MAX_MODULE_LINES = 700


def test_no_module_is_longer_than_the_limit() -> None:
    long = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in _modules(PACKAGE)
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}, f"modules over {MAX_MODULE_LINES} lines: {long}"


# Inside the core, dependencies point down: the command line sits on everything and nothing
# imports it; the registry, auth and document layers know nothing of images being built.
_CORE_TOP = ("cli",)
_CORE_BUILDING = ("image", "index", "remote", "_bases", "_transfer", "_clients", "run")
_CORE_FOUNDATION = (
    "registry",
    "auth",
    "transport",
    "models",
    "platforms",
    "validation",
    "reference",
    "digest",
    "errors",
    "media_types",
    "base_spec",
)


def _core_part(path: Path) -> str:
    return path.relative_to(CORE).parts[0].removesuffix(".py")


def test_core_dependencies_point_down() -> None:
    wrong = []
    for path in _modules(CORE):
        part = _core_part(path)
        if part == "__main__":  # `python -m pants_oci.core` is the command line
            continue
        forbidden = _CORE_TOP + (_CORE_BUILDING if part in _CORE_FOUNDATION else ())
        for line, module in _imports(ast.parse(path.read_text())):
            names = module.split(".")
            if names[:2] != ["pants_oci", "core"] or len(names) < 3:
                continue
            if names[2] in forbidden and names[2] != part:
                wrong.append(f"{path.relative_to(CORE)}:{line} imports {module}")
    assert wrong == []
