"""The image tool: the pants_oci core library, run as a hermetic, cacheable process.

Its requirements (httpx, pydantic, isal, ...) are resolved by pex like any Pants tool; its
source is the core package shipped with this plugin, put into the PEX. Everything the tool
does (layers, base pulls, image assembly, pushes) goes through `OciToolRequest`, so argv holds
only sandbox-relative paths and options that change output bytes: nothing machine-specific,
no credentials.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import re
from dataclasses import dataclass
from importlib.abc import Traversable
from typing import Iterable, Tuple

from pants.backend.python.target_types import EntryPoint
from pants.backend.python.util_rules import pex
from pants.backend.python.util_rules.interpreter_constraints import InterpreterConstraints
from pants.backend.python.util_rules.pex import Pex, PexProcess, PexRequest
from pants.backend.python.util_rules.pex_environment import (
    CompletePexEnvironment,
    PexEnvironment,
    PythonExecutable,
)
from pants.backend.python.util_rules.pex_requirements import PexRequirements
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestContents,
    FileContent,
    GlobMatchErrorBehavior,
    MergeDigests,
    PathGlobs,
)
from pants.engine.process import (
    Process,
    ProcessCacheScope,
    ProcessExecutionFailure,
    ProcessResult,
)
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel
from pants.util.strutil import softwrap

from pants_oci.core import wire
from pants_oci.subsystems.oci import OciSubsystem

# The tool's whole dependency closure, pinned, so the same plugin version resolves the same
# tool on every machine with the same Python (the compression libraries decide layer bytes).
# Where a pin has dropped an older Python, that Python gets the last release supporting it,
# by marker; isal and zstandard, which make the layer bytes, are the same everywhere, and
# tests/backend/test_tool_interpreters.py checks that every supported Python builds the same
# image. exceptiongroup is needed (by anyio) below 3.11 only.
_TOOL_CONSTRAINTS = (
    'annotated-types==0.8.0; python_version >= "3.10"',
    'annotated-types==0.7.0; python_version < "3.10"',
    'anyio==4.16.0; python_version >= "3.10"',
    'anyio==4.12.1; python_version < "3.10"',
    "certifi==2026.10.19.post1",
    'cffi==2.1.1; python_version >= "3.10"',
    'cffi==2.0.0; python_version < "3.10"',
    "cryptography==50.0.2",
    "exceptiongroup==1.3.2",
    "h11==0.16.0",
    "httpcore==1.0.9",
    "idna==3.20",
    "pyasn1==0.6.5",
    "pyasn1-modules==0.4.2",
    'pycparser==3.12; python_version >= "3.11"',
    'pycparser==3.11; python_version == "3.10"',
    'pycparser==2.23; python_version < "3.10"',
    'pydantic-core==2.50.5; python_version >= "3.10"',
    'pydantic-core==2.46.5; python_version < "3.10"',
    "typing-extensions==4.16.0",
    'typing-inspection==0.4.5; python_version >= "3.10"',
    'typing-inspection==0.4.2; python_version < "3.10"',
)

# What a registry process may need from the user's environment to find credentials and
# proxies; passed only to processes that are never cached (publish, base pulls, tag look-ups),
# with `[oci].env_vars` (see `RegistryEnvRequest`).
CREDENTIAL_ENV = (
    "HOME",
    "PATH",
    "DOCKER_CONFIG",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_CONFIG",
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "NO_PROXY",
    "https_proxy",
    "http_proxy",
    "no_proxy",
)

_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(=.*)?$", re.DOTALL)


@dataclass(frozen=True)
class RegistryEnvRequest:
    """`Get(EnvironmentVars, RegistryEnvRequest())`: the environment of a process that talks
    to registries, `CREDENTIAL_ENV` and `[oci].env_vars`, for `OciToolRequest.uncached_env`
    only: never for a cached process."""


class OciEnvVarsError(ValueError):
    """A bad `[oci].env_vars` entry."""


@rule(desc="Read the environment of registry processes")
async def registry_env(_: RegistryEnvRequest, oci: OciSubsystem) -> EnvironmentVars:
    for spec in oci.env_vars:
        if not _ENV_VAR.match(spec):
            raise OciEnvVarsError(
                f"`[oci].env_vars` has {spec!r}, which is neither `NAME` (to pass the value "
                "from Pants' environment) nor `NAME=value`: names are letters, digits and `_`, "
                "not starting with a digit."
            )
    return await Get(EnvironmentVars, EnvironmentVarsRequest((*CREDENTIAL_ENV, *oci.env_vars)))


@dataclass(frozen=True)
class OciTool:
    pex: Pex
    # The PEX and its launcher (`_LAUNCHER`), linked into sandboxes at `_TOOL_DIR`.
    files: Digest
    # The tool's interpreter, and the venv the PEX installed for it, as sandbox-relative links
    # in a named cache (see `_link_interpreter`).
    python: str
    venv: str


@dataclass(frozen=True)
class OciToolRequest:
    """One run of `python -m pants_oci.core <argv>` in a sandbox holding `input_digest`."""

    argv: Tuple[str, ...]
    description: str
    input_digest: Digest
    output_files: Tuple[str, ...] = ()
    output_directories: Tuple[str, ...] = ()
    level: LogLevel = LogLevel.DEBUG
    # Only for processes that are never cached (publishing): e.g. where credentials live.
    uncached_env: FrozenDict[str, str] = FrozenDict()  # noqa: RUF009 (immutable)
    # Tag look-ups must not be cached: tags move.
    cache_scope: ProcessCacheScope = ProcessCacheScope.SUCCESSFUL
    # Mount the host's blob cache at BLOB_CACHE_DIR (for `--blob-cache BLOB_CACHE_DIR`).
    blob_cache: bool = False


def _core_package_files() -> Iterable[FileContent]:
    """The core library's modules, its subpackages' too, read from this plugin's own
    installation; and the package's `__init__.py`, which holds only the version (that the
    SBOMs and provenance name)."""
    package = importlib.resources.files("pants_oci")
    yield FileContent("pants_oci/__init__.py", package.joinpath("__init__.py").read_bytes())
    yield from _package_files(importlib.resources.files("pants_oci.core"), "pants_oci/core")


def _package_files(package: Traversable, path: str) -> Iterable[FileContent]:
    for entry in sorted(package.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".py"):
            yield FileContent(f"{path}/{entry.name}", entry.read_bytes())
        elif entry.is_dir() and entry.joinpath("__init__.py").is_file():
            yield from _package_files(entry, f"{path}/{entry.name}")


class OciToolInterpreterNotFound(Exception):
    """No interpreter on the machine matches `[oci].interpreter_constraints`."""


# Remote and local caches key a process by its argv and env, so the host's path to Python
# (Pants puts it in argv[0] and PEX_PYTHON) would keep machines with Python elsewhere from
# sharing cache entries. Tool processes run Python through a link in this named cache instead:
# Pants mounts the cache at a sandbox-relative path and keeps its contents out of cache keys.
# The link is named after the PEX (which pins the Python version its wheels are for), and
# written again whenever Pants looks the interpreter up (once per pantsd, or per run without
# it), so it always points at the interpreter this machine chose.
INTERPRETER_CACHE_NAME = "pants_oci_python"
INTERPRETER_CACHE_DIR = ".pants-oci-python"

# Where the tool PEX and its launcher are in each sandbox (an immutable input).
_TOOL_DIR = "__pants_oci_tool"

# Tool processes start here rather than in the PEX: straight in the venv that the PEX installed
# on this machine, when the named cache links it (`_LINK_SCRIPT`), skipping the PEX's own
# bootstrap (~0.15-0.25 s a process); through the PEX otherwise (a remote worker, a removed
# venv), which installs the venv where it belongs. Stdlib only, any Python 3.
_LAUNCHER = """\
import os, sys
venv, args = sys.argv[1], sys.argv[2:]
python = os.path.join(venv, "bin", "python")
if os.path.exists(os.path.join(venv, "pex")) and os.path.exists(python):
    os.execv(python, [python, "-sE", os.path.join(venv, "pex"), *args])
pex = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pants-oci-tool.pex")
os.execv(sys.executable, [sys.executable, pex, *args])
"""
_LAUNCHER_PATH = f"{_TOOL_DIR}/launch.py"

# Link the interpreter, then the venv the PEX installs for it (creating it if need be), each
# replaced atomically: concurrent Pants runs on the machine may write them too. The venv is
# named by its real path: the sandbox's way to the named cache is gone when the sandbox is.
_LINK_SCRIPT = """\
import os, subprocess, sys
target, path, pex, venv_link = sys.argv[1:]
def link(target, path):
    if not (os.path.islink(path) and os.readlink(path) == target):
        temporary = f"{path}.{os.getpid()}"
        os.symlink(target, temporary)
        os.replace(temporary, path)
link(target, path)
prefix = subprocess.run(
    [target, pex, "-c", "import sys; print(sys.prefix)"],
    env={**os.environ, "PEX_INTERPRETER": "1"},
    stdout=subprocess.PIPE,
    check=True,
).stdout.decode().strip()
link(os.path.realpath(prefix), venv_link)
"""


async def _link_interpreter(
    tool: Pex, files: Digest, pex_environment: CompletePexEnvironment
) -> Tuple[str, str]:
    """Links, in the named cache `INTERPRETER_CACHE_NAME`, to the tool's Python and to the
    venv its PEX installs there."""
    assert tool.python is not None, "the tool PEX is built for a chosen interpreter"
    name = tool.digest.fingerprint[:24]
    link = f"{INTERPRETER_CACHE_DIR}/python-{name}"
    venv = f"{INTERPRETER_CACHE_DIR}/venv-{name}"
    pex_root = str(pex_environment.pex_root)
    await Get(
        ProcessResult,
        Process(
            argv=(
                tool.python.path,
                "-c",
                _LINK_SCRIPT,
                tool.python.path,
                link,
                f"{_TOOL_DIR}/{tool.name}",
                venv,
            ),
            description="Link the image tool's Python and venv into their named cache",
            level=LogLevel.DEBUG,
            immutable_input_digests=FrozenDict({_TOOL_DIR: files}),
            env={"PEX_ROOT": pex_root, "PEX_IGNORE_RCFILES": "true", "PATH": "/usr/bin:/bin"},
            append_only_caches=FrozenDict(
                {
                    **pex_environment.append_only_caches,
                    INTERPRETER_CACHE_NAME: INTERPRETER_CACHE_DIR,
                }
            ),
            # Never from a cache: the links live on this machine, and point at its Python.
            # Run as often as Pants' own interpreter look-up: not again in every pantsd run.
            cache_scope=ProcessCacheScope.PER_RESTART_SUCCESSFUL,
        ),
    )
    return link, venv


@rule(desc="Build the pants_oci image tool", level=LogLevel.DEBUG)
async def build_oci_tool(oci: OciSubsystem, pex_environment: PexEnvironment) -> OciTool:
    interpreter_constraints = InterpreterConstraints(oci.interpreter_constraints)
    try:
        # The PEX below asks for the same interpreter: this look-up is shared, not repeated.
        await Get(PythonExecutable, InterpreterConstraints, interpreter_constraints)
    except ProcessExecutionFailure as failure:
        wanted = " or ".join(str(c) for c in interpreter_constraints)
        raise OciToolInterpreterNotFound(
            softwrap(
                f"""
                The image tool (the pants_oci core library, which builds layers and talks to
                registries) needs a Python interpreter matching `[oci].interpreter_constraints`
                ({wanted}), and Pants found none on `[python-bootstrap].search_path`. Install
                CPython 3.9 to 3.13 (e.g. `apt install python3`), add the directory that holds
                it to `[python-bootstrap].search_path`, or widen
                `[oci].interpreter_constraints`. Python 3.12 and later also need a newer
                `[pex-cli].version`, such as v2.1.148: Pants 2.17's own pex (v2.1.137) reports
                them as broken. Pants' own search said:
                """
            )
            + f"\n\n{failure.stderr.decode(errors='replace').strip()[-2000:]}"
        ) from None
    sources = await Get(Digest, CreateDigest(_core_package_files()))
    tool = await Get(
        Pex,
        PexRequest(
            output_filename="pants-oci-tool.pex",
            internal_only=True,
            requirements=PexRequirements(
                oci.requirements,
                constraints_strings=_TOOL_CONSTRAINTS,
                description_of_origin="the `[oci].requirements` option",
            ),
            interpreter_constraints=interpreter_constraints,
            sources=sources,
            main=EntryPoint("pants_oci.core.cli", "main"),
            # A venv PEX: its first run on a machine installs a venv into the PEX_ROOT named
            # cache, and every later run starts straight in it, skipping the PEX bootstrap's
            # ~0.7 s of zip and wheel activation per process. Its argv and input stay
            # portable: the venv is in the named cache, outside every cache key.
            additional_args=("--venv",),
        ),
    )
    launcher = await Get(Digest, CreateDigest([FileContent("launch.py", _LAUNCHER.encode())]))
    files = await Get(Digest, MergeDigests([tool.digest, launcher]))
    python, venv = await _link_interpreter(
        tool, files, pex_environment.in_sandbox(working_directory=None)
    )
    return OciTool(tool, files, python, venv)


# The host's cache of registry blobs by digest (a Pants named cache, so it outlives sessions and
# sandboxes): a base image is downloaded once per machine. Blobs are verified on every read.
BLOB_CACHE_NAME = "pants_oci_blobs"
BLOB_CACHE_DIR = ".pants-oci-blob-cache"
# In the same named cache: the push ledger of the machine (where it pushed which blob), that
# every push of a publish, and of later publishes, mounts blobs by (`push --ledger`).
PUSH_LEDGER_DIR = f"{BLOB_CACHE_DIR}/pushed"

_CACHED_ENV = FrozenDict({"PATH": "/usr/bin:/bin"})
_CACHED_ENV_KEYS = frozenset({"PATH", "PEX_ROOT", "PEX_IGNORE_RCFILES"})

# Where `[oci].ca_bundle` is put in each sandbox: a fixed name, so argv holds no host path.
_CA_BUNDLE = "__oci_ca_bundle.pem"


def global_tool_args(oci: OciSubsystem, *, reaches_registries: bool) -> Tuple[str, ...]:
    """Options a tool invocation gets from `[oci]`; and that its errors and hints name the
    `[oci]` options (`[oci].ca_bundle`), not the tool's flags (`--ca-bundle`). How to reach
    registries (TLS, timeouts, retries) goes only to the processes that do, which are never
    cached: changing it never invalidates a cached layer or assembly."""
    if not reaches_registries:
        return wire.GlobalOptions(hints_for="pants", concurrency=oci.concurrency).argv()
    return wire.GlobalOptions(
        hints_for="pants",
        concurrency=oci.concurrency,
        connect_timeout=oci.connect_timeout,
        read_timeout=oci.read_timeout,
        retries=oci.retries,
        insecure_registries=tuple(oci.insecure_registries),
        ca_bundle=_CA_BUNDLE if oci.ca_bundle else None,
    ).argv()


@rule
async def oci_tool_process(request: OciToolRequest, tool: OciTool, oci: OciSubsystem) -> Process:
    input_digest = request.input_digest
    # The processes that reach registries are those that see the user's environment.
    reaches_registries = bool(request.uncached_env)
    if oci.ca_bundle and reaches_registries:
        # Its content, not its path, goes into the process: that is what the cache keys on.
        ca = await Get(
            DigestContents,
            PathGlobs(
                [oci.ca_bundle],
                glob_match_error_behavior=GlobMatchErrorBehavior.error,
                description_of_origin="the `[oci].ca_bundle` option",
            ),
        )
        ca_digest = await Get(Digest, CreateDigest([FileContent(_CA_BUNDLE, ca[0].content)]))
        input_digest = await Get(Digest, MergeDigests([input_digest, ca_digest]))
    process = await Get(
        Process,
        PexProcess(
            tool.pex,
            argv=(*global_tool_args(oci, reaches_registries=reaches_registries), *request.argv),
            description=request.description,
            level=request.level,
            input_digest=input_digest,
            output_files=request.output_files or None,
            output_directories=request.output_directories or None,
            # Cached processes get a fixed PATH (the tool needs none), not the host's: their
            # cache keys must be the same on every machine.
            extra_env=request.uncached_env or _CACHED_ENV,
            cache_scope=request.cache_scope,
        ),
    )
    caches = {**process.append_only_caches, INTERPRETER_CACHE_NAME: INTERPRETER_CACHE_DIR}
    if request.blob_cache:
        caches[BLOB_CACHE_NAME] = BLOB_CACHE_DIR
    assert process.argv[1] == tool.pex.name, process.argv
    # Run the launcher with the linked interpreter itself: no host path, no PEX_PYTHON
    # re-exec. The PEX (16 MB) is an immutable input: linked into each sandbox, not copied.
    process = dataclasses.replace(
        process,
        argv=(tool.python, _LAUNCHER_PATH, tool.venv, *process.argv[2:]),
        input_digest=input_digest,
        immutable_input_digests=FrozenDict({_TOOL_DIR: tool.files}),
        append_only_caches=FrozenDict(caches),
    )
    if request.uncached_env:
        env = {key: value for key, value in process.env.items() if key != "PEX_PYTHON"}
    else:
        # Pants adds the host's LANG, LC_*, SSL_CERT_* (`[subprocess-environment]`) to every
        # process: a cache key must not depend on them. Keep what running the PEX needs.
        env = {key: value for key, value in process.env.items() if key in _CACHED_ENV_KEYS}
    return dataclasses.replace(process, env=FrozenDict(env))


def rules() -> Iterable[Rule]:
    return [*collect_rules(), *pex.rules()]  # type: ignore[no-untyped-call]
