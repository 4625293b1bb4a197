"""The image tool runs on every CPython that `[oci].interpreter_constraints` allows (3.9 to 3.13),
and builds the same bytes on each.

For every supported minor version found on this machine (pyenv's versions and `python3.X` on
PATH: where Pants' default `[python-bootstrap].search_path` looks), Pants builds the tool PEX for
that interpreter alone (`--oci-interpreter-constraints=['CPython==3.X.*']`) and packages a small
image, with gzip (isal) and with zstd layers; Pants' debug log shows the interpreter each tool
process ran on (the link its Python runs through). A version that is not installed is skipped,
saying so.

Every build must give the layer, config and manifest digests of the build with the default
constraints, for which Pants picks the lowest interpreter that matches: which Python runs the
tool depends on the machine (and changes the tool's PEX, so its process cache keys), the bytes
must not.

Pants 2.17.1's own pex (v2.1.137, pinned in pants.toml) cannot run Python 3.12 or later: it
reports them as broken interpreters (its importer of vendored code fails on them). 3.12 and 3.13
are built with `[pex-cli]` v2.1.148, built here from PyPI, as docs/adopting.md tells users to.

Time: one pantsd serves every run of the module (the runs change only non-bootstrap options).
Each session's files carry a fresh nonce, and each run its own `[oci].concurrency` (in the
tool's argv, but no output byte), so the tool's processes really run rather than coming from
the cache. Measured here (2 cores): about 75 s for the module, 9-11 s per version (two builds
each) and 20 s for pantsd's start and the reference builds; about 115 s with empty caches (every
interpreter's PEX resolved from the index first). With `--no-pantsd`, each of the 12 Pants runs
would cost some 15 s of start-up more.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from pants_oci.subsystems.oci import OciSubsystem
from tests.harness.tools import skopeo_inspect
from tests.pants_runs import REPO, make_pants_repo, stop_pantsd_in

pytestmark = pytest.mark.slow

# A pex that runs Python 3.12 and 3.13 under Pants 2.17.1 (whose own v2.1.137 cannot).
NEWER_PEX = "2.1.148"


def _supported_minors() -> list[int]:
    constraints = OciSubsystem.interpreter_constraints.flag_options["default"]
    specifiers = [SpecifierSet(c.removeprefix("CPython")) for c in constraints]
    return [
        minor
        for minor in range(6, 20)
        if any(f"3.{minor}.{patch}" in spec for spec in specifiers for patch in range(100))
    ]


SUPPORTED = _supported_minors()


def test_supported_range_is_what_the_docs_say() -> None:
    assert SUPPORTED == [9, 10, 11, 12, 13]
    help_text = OciSubsystem.interpreter_constraints.flag_options["help"]
    assert "CPython 3.9 to 3.13" in help_text
    adopting = (REPO / "docs/adopting.md").read_text()
    assert "CPython 3.9 to 3.13" in adopting
    assert f"v{NEWER_PEX}" in adopting


def _python_minor(python: str) -> int | None:
    """The 3.x minor version of a working CPython at `python` (a pyenv shim of a version that
    is not active fails: Pants' search skips it too)."""
    try:
        result = subprocess.run(
            [
                python,
                "-c",
                "import platform, sys; print(platform.python_implementation(), "
                "sys.version_info[0], sys.version_info[1])",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    fields = result.stdout.split()
    if result.returncode or fields[:2] != ["CPython", "3"]:
        return None
    return int(fields[2])


def _find_python(minor: int) -> str | None:
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    candidates = [
        str(p) for p in sorted(pyenv_root.glob(f"versions/3.{minor}.*/bin/python3.{minor}"))
    ]
    candidates.append(shutil.which(f"python3.{minor}") or "")
    for candidate in filter(None, candidates):
        if _python_minor(candidate) == minor:
            return candidate
    return None


@dataclass(frozen=True)
class Build:
    pythons: frozenset[str]  # the interpreter of every tool process
    manifest_digest: str
    config_digest: str
    layers: tuple[tuple[str, str, int], ...]  # (digest, diff_id, size)


class PantsRepo:
    """A throwaway repo and the one pantsd that serves its runs, stopped by pid at the end."""

    def __init__(self, root: Path) -> None:
        nonce = uuid.uuid4().hex
        self.root = make_pants_repo(
            root,
            {
                "app/BUILD": """
files(name="files", sources=["files/*"])
files(name="data_files", sources=["data/*"])
oci_layer(name="data", dependencies=[":data_files"], destination="/srv", mode="0640", uid=1000)
oci_image(
    name="img",
    dependencies=[":data", ":files"],
    entrypoint=["/bin/true"],
    env={"A": "1"},
    labels={"python": "any"},
    image_tags=["latest"],
)
""",
                "app/files/nonce.txt": f"{nonce}\n",
                "app/files/text.txt": "".join(f"line {i} {nonce}\n" for i in range(20000)),
                "app/data/blob.bin": hashlib.sha256(nonce.encode()).hexdigest() * 4000,
            },
        )
        self.newer_pex: Path | None = None
        self.runs = 0
        self.links: dict[str, str] = {}  # interpreter link -> the Python it points at

    def package(self, *options: str) -> Build:
        # A concurrency of its own (it changes no output byte) gives each run's tool processes
        # cache keys of their own: they run even where another run had the same interpreter.
        self.runs += 1
        concurrency = f"--oci-concurrency={4 + self.runs}"
        result = subprocess.run(
            [
                str(REPO / "pants"),
                "--pantsd",
                "-ldebug",
                concurrency,
                *options,
                "package",
                "app:img",
            ],
            cwd=self.root,
            capture_output=True,
            text=True,
            env={**os.environ, "NO_COLOR": "1"},
            check=False,
            timeout=600,
        )
        if result.returncode:
            raise AssertionError(
                f"./pants {' '.join(options)} package exited {result.returncode}:\n"
                + result.stderr[-6000:]
            )
        # Tool processes run Python through a link (so argv holds no host path); the process
        # that writes the link names the interpreter it points at.
        # (Once per pantsd: a later run with the same tool PEX reuses the link made before.)
        self.links.update(
            (link, python)
            for python, link in re.findall(
                r'"([^"]+)", "(\.pants-oci-python/python-[0-9a-f]+)", ', result.stderr
            )
        )
        used = re.findall(
            r'argv: \["(\.pants-oci-python/python-[0-9a-f]+)", "__pants_oci_tool/launch\.py"',
            result.stderr,
        )
        pythons = frozenset(self.links[link] for link in used)
        assert pythons, "no tool process ran: were they all cached?\n" + result.stderr[-3000:]
        layout = self.root / "dist/app/img"
        info = json.loads((layout / "image-info.json").read_text())
        assert skopeo_inspect(f"oci:{layout}:latest")["Digest"] == info["manifest_digest"]
        return Build(
            pythons=pythons,
            manifest_digest=info["manifest_digest"],
            config_digest=info["config_digest"],
            layers=tuple((x["digest"], x["diff_id"], x["size"]) for x in info["layers"]),
        )

    def newer_pex_options(self) -> tuple[str, ...]:
        """`[pex-cli]` options for pex NEWER_PEX, built from PyPI as bootstrap.sh builds the
        pinned one."""
        if self.newer_pex is None:
            out = self.root.parent / f"pex-v{NEWER_PEX}.pex"
            argv = [
                str(Path(sys.executable).parent / "pex"),
                f"pex=={NEWER_PEX}",
                *("-c", "pex", "--python-shebang", "/usr/bin/env python3", "-o", str(out)),
            ]
            for attempt in (1, 2):  # from the package index: once more on a network hiccup
                built = subprocess.run(
                    argv, capture_output=True, text=True, timeout=300, check=False
                )
                if built.returncode == 0:
                    break
                if attempt == 2:
                    raise AssertionError(f"building pex {NEWER_PEX} failed:\n{built.stderr}")
            self.newer_pex = out
        content = self.newer_pex.read_bytes()
        machine = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
        known = f"v{NEWER_PEX}|linux_{machine}|{hashlib.sha256(content).hexdigest()}|{len(content)}"
        return (
            f"--pex-cli-version=v{NEWER_PEX}",
            f"--pex-cli-url-template=file://{self.newer_pex}",
            f"--pex-cli-known-versions=['{known}']",
        )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PantsRepo]:
    pants_repo = PantsRepo(tmp_path_factory.mktemp("tool-interpreters") / "repo")
    try:
        yield pants_repo
    finally:
        stop_pantsd_in(pants_repo.root)


COMPRESSIONS = ("gzip", "zstd")


@pytest.fixture(scope="module")
def reference(repo: PantsRepo) -> dict[str, Build]:
    """Builds with the default `[oci].interpreter_constraints` (and Pants' pinned pex)."""
    return {c: repo.package(f"--oci-compression={c}") for c in COMPRESSIONS}


def test_default_constraints_run_the_tool_on_the_lowest_supported_python(
    reference: dict[str, Build],
) -> None:
    # Pants' pinned pex (v2.1.137) passes over 3.12 and later: it cannot run them.
    found = [minor for minor in SUPPORTED if minor < 12 and _find_python(minor)]
    if not found:
        pytest.skip("no CPython 3.9 to 3.11 here for Pants' pinned pex")
    lowest = min(found)
    for build in reference.values():
        assert {_python_minor(python) for python in build.pythons} == {lowest}


def test_tool_processes_start_in_a_venv_of_the_pex_root(reference: dict[str, Build]) -> None:
    """The tool PEX is a venv PEX: its processes run in a venv that its first run installed
    into the PEX_ROOT named cache, for the interpreter they ran on, with this checkout's core
    library in it; not through the PEX bootstrap, which costs ~0.7 s per process."""
    pex_root = Path.home() / ".cache/pants/named_caches/pex_root"
    wire_source = (REPO / "src/python/pants_oci/core/wire.py").read_bytes()
    for build in reference.values():
        for python in build.pythons:
            venvs = [
                venv
                for info in pex_root.glob("venvs/*/*/PEX-INFO")
                if json.loads(info.read_text()).get("entry_point") == "pants_oci.core.cli:main"
                for venv in [info.parent]
                if Path(os.path.realpath(venv / "bin/python")) == Path(os.path.realpath(python))
                and any(
                    wire.read_bytes() == wire_source
                    for wire in venv.glob("lib/python3.*/site-packages/pants_oci/core/wire.py")
                )
            ]
            assert venvs, f"no venv of the tool for {python} in {pex_root}/venvs"


@pytest.mark.parametrize("minor", SUPPORTED, ids=[f"py3{m}" for m in SUPPORTED])
def test_tool_runs_on_each_supported_python_and_builds_the_same_bytes(
    minor: int, repo: PantsRepo, reference: dict[str, Build]
) -> None:
    python = _find_python(minor)
    if python is None:
        pytest.skip(f"CPython 3.{minor} is not installed here (pyenv's versions, or on PATH)")
    started = time.monotonic()
    pex_options = repo.newer_pex_options() if minor >= 12 else ()
    for compression in COMPRESSIONS:
        build = repo.package(
            *pex_options,
            f"--oci-interpreter-constraints=['CPython==3.{minor}.*']",
            f"--oci-compression={compression}",
        )
        assert {_python_minor(p) for p in build.pythons} == {minor}
        expected = reference[compression]
        assert build.layers == expected.layers, f"{compression} layers differ on 3.{minor}"
        assert (build.config_digest, build.manifest_digest) == (
            expected.config_digest,
            expected.manifest_digest,
        )
    print(f"3.{minor}: {time.monotonic() - started:.1f}s for {len(COMPRESSIONS)} builds")
