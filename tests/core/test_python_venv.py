"""A Python venv as image layers (pants_oci.core.python_venv, and the `installed-wheel` and
`venv` entries of `pants-oci layer build`), from real installed-wheel archives: the
`.deps/*.whl` of packed PEXes that the test venv's pex builds offline from the wheels of
tests/harness/wheels.py. The venv made from them runs under the host's system CPython."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import traceback
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from pants_oci.core import cli
from pants_oci.core.errors import InvalidValueError, LayerError
from pants_oci.core.python_venv import (
    DEFAULT_VENV,
    interpreter_links,
    launcher_script,
    pyvenv_cfg,
    site_packages,
    unpack_installed_wheel,
    venv_directories,
)
from tests.harness.wheels import STANDARD_PINS, PackedPex, build_packed_pex, find_links_with

REPO_ROOT = Path(__file__).resolve().parents[2]
PANTS_OCI = (sys.executable, "-m", "pants_oci.core", "-q")
SYSTEM_PYTHON = "/usr/bin/python3.11"  # Debian's CPython: not a venv, its own site-packages
SITE = "opt/venv/lib/python3.11/site-packages"
ALPHA = "ocitest_alpha-1.0.0-py3-none-any.whl"


@dataclass(frozen=True)
class Pexes:
    """Two packed PEXes from two find-links directories that differ in one pin (ocitest-echo
    1.0.0, then 1.1.0). ``first``: alpha (with its console script; it requires bravo and
    charlie), delta, echo. ``second``: delta, echo 1.1.0, foxtrot."""

    first: PackedPex
    second: PackedPex

    def archive(self, project: str, which: str = "first") -> Path:
        pex: PackedPex = getattr(self, which)
        return pex.installed_wheels[project]


@pytest.fixture(scope="module")
def pexes(tmp_path_factory: pytest.TempPathFactory) -> Pexes:
    root = tmp_path_factory.mktemp("pexes")
    links = find_links_with(root / "wheels")
    bumped = find_links_with(root / "bumped", {**STANDARD_PINS, "ocitest-echo": "1.1.0"})
    first = build_packed_pex(
        links.directory,
        links.requirements("ocitest-alpha", "ocitest-delta", "ocitest-echo"),
        root / "first.pex",
        pex_root=root / "pex-root",
    )
    second = build_packed_pex(
        bumped.directory,
        bumped.requirements("ocitest-delta", "ocitest-echo", "ocitest-foxtrot"),
        root / "second.pex",
        pex_root=root / "pex-root",
    )
    return Pexes(first, second)


# --- Helpers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    digest: str
    members: dict[str, tarfile.TarInfo]
    data: dict[str, bytes]  # regular files' contents


def _work(tmp_path: Path, archives: Mapping[str, Path], name: str = "work") -> Path:
    """A working directory (standing for the Pants sandbox) holding ``archives`` under the
    given relative paths."""
    work = tmp_path / name
    work.mkdir()
    for relative, archive in archives.items():
        (work / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(archive, work / relative)
    return work


def _build_layer(work: Path, entries: list[dict[str, Any]], **spec: Any) -> Layer:
    """`pants-oci layer build` as the Pants backend runs it: a subprocess in ``work``, the
    layer written next to ``work``."""
    (work / "spec.json").write_text(json.dumps({"entries": entries, **spec}))
    output = work.parent / f"{work.name}.layer.tar.gz"
    output.unlink(missing_ok=True)
    result = subprocess.run(
        [*PANTS_OCI, "layer", "build", "--spec", "spec.json", "--output", str(output)],
        cwd=work,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO_ROOT / "src/python"),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    digest = json.loads(result.stdout)["digest"]
    with tarfile.open(output) as tar:
        members = {member.name: member for member in tar.getmembers()}
        data = {
            name: tar.extractfile(member).read()  # type: ignore[union-attr]
            for name, member in members.items()
            if member.isfile()
        }
    return Layer(digest, members, data)


def _refused(
    work: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], spec: Any
) -> str:
    """Run `layer build` in this process; it must exit 1 with one clear error and no layer."""
    (work / "spec.json").write_text(json.dumps(spec))
    monkeypatch.chdir(work)
    try:
        status = cli.main(["-q", "layer", "build", "--spec", "spec.json", "--output", "out.tar"])
    except BaseException:  # what the user would see as a Python traceback
        status, err = None, "Traceback\n" + traceback.format_exc()
    else:
        err = ""
    err = capsys.readouterr().err + err
    assert "Traceback" not in err, err
    assert status == 1, err
    assert err.startswith("pants-oci: error: layer spec spec.json: entries["), err
    assert len(err.splitlines()) == 1, err
    assert not (work / "out.tar").exists()
    return err


def _rewritten(
    archive: Path,
    output: Path,
    *,
    drop: tuple[str, ...] = (),
    add: Mapping[str, bytes] | None = None,
) -> Path:
    """A copy of the zip ``archive`` without the members ``drop`` and with ``add``."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(output, "w") as target:
        for name, data in (add or {}).items():
            target.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
        for info in source.infolist():
            if info.filename not in drop:
                target.writestr(info, source.read(info))
    return output


def _with_damaged_member(archive: Path, output: Path, name: str) -> Path:
    """A copy of ``archive`` whose member ``name`` has deflate data that cannot be inflated
    (0xff: a final block of the reserved block type)."""
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as wheel:
        info = wheel.getinfo(name)
    assert info.compress_type == zipfile.ZIP_DEFLATED
    name_length = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    data[start : start + info.compress_size] = b"\xff" * info.compress_size
    output.write_bytes(bytes(data))
    return output


def _written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _expected_venv_files(archive: Path, venv: str, python_version: str) -> dict[str, bytes]:
    """Where each file of an installed-wheel archive belongs in the venv (paths without the
    leading /), read from the archive itself: .prefix/X at <venv>/X, the rest in
    site-packages, .layout.json nowhere."""
    files = {}
    with zipfile.ZipFile(archive) as wheel:
        for info in wheel.infolist():
            if info.is_dir() or info.filename == ".layout.json":
                continue
            if info.filename.startswith(".prefix/"):
                path = f"{venv}/{info.filename.removeprefix('.prefix/')}"
            else:
                path = f"{venv}/lib/python{python_version}/site-packages/{info.filename}"
            files[path.lstrip("/")] = wheel.read(info)
    return files


def _installed_wheel(source: str, **extra: Any) -> dict[str, Any]:
    entry = {"kind": "installed-wheel", "source": source, "target": "/opt/venv"}
    return {**entry, "python_version": "3.11", **extra}


def _venv(**extra: Any) -> dict[str, Any]:
    entry = {"kind": "venv", "target": "/opt/venv", "interpreter": SYSTEM_PYTHON}
    return {**entry, "python_version": "3.11", **extra}


# --- The layers `layer build` makes -------------------------------------------------------------


def test_the_archive_looks_as_this_module_expects(pexes: Pexes) -> None:
    """PEX 2.1.137's installed-wheel archive: what the other tests rely on."""
    archive = pexes.archive("ocitest-alpha")
    assert archive.name == ALPHA
    with zipfile.ZipFile(archive) as wheel:
        names = wheel.namelist()
        assert json.loads(wheel.read(".layout.json"))["stash_dir"] == ".prefix"
        assert wheel.read(".prefix/bin/ocitest-alpha").startswith(b"#!python\n")
        mode = wheel.getinfo(".prefix/bin/ocitest-alpha").external_attr >> 16
    assert names[0] == "../"  # a directory entry for the parent, skipped when unpacking
    assert mode & 0o111
    assert "ocitest_alpha/__init__.py" in names
    assert "ocitest_alpha-1.0.0.dist-info/RECORD" not in names  # PEX drops the RECORD


def test_an_installed_wheel_entry_unpacks_into_the_venv(pexes: Pexes, tmp_path: Path) -> None:
    archive = pexes.archive("ocitest-alpha")
    work = _work(tmp_path, {"deps/alpha.whl": archive})
    layer = _build_layer(work, [_installed_wheel("deps/alpha.whl")])

    expected = _expected_venv_files(archive, "/opt/venv", "3.11")
    files = {name for name, member in layer.members.items() if not member.isdir()}
    assert files == set(expected)
    # The package and its metadata in site-packages, the script in the venv's bin.
    for name in (
        f"{SITE}/ocitest_alpha/__init__.py",
        f"{SITE}/ocitest_alpha/payload.bin",
        f"{SITE}/ocitest_alpha-1.0.0.dist-info/METADATA",
        f"{SITE}/ocitest_alpha-1.0.0.dist-info/entry_points.txt",
        "opt/venv/bin/ocitest-alpha",
    ):
        assert layer.members[name].isfile(), name
    assert len(layer.data[f"{SITE}/ocitest_alpha/payload.bin"]) == 64 * 1024
    # Nothing of PEX's own layout: no layout file, no stash directory, no `..`.
    for name in layer.members:
        parts = PurePosixPath(name).parts
        assert ".." not in parts and ".prefix" not in parts and ".layout.json" not in parts
        assert name == "opt" or name.startswith("opt/")
    # The script runs with the venv's Python; the rest of it is the archive's.
    script = layer.data["opt/venv/bin/ocitest-alpha"]
    original = expected["opt/venv/bin/ocitest-alpha"]
    assert original.startswith(b"#!python\n")
    assert script == b"#!/opt/venv/bin/python\n" + original.removeprefix(b"#!python\n")
    # Every other file is the archive's, byte for byte.
    for name, data in expected.items():
        if name != "opt/venv/bin/ocitest-alpha":
            assert layer.data[name] == data, name
    # Modes: the script 0755, other files 0644, directories 0755; owned by root, mtime 0.
    for name, member in layer.members.items():
        wanted = 0o755 if member.isdir() or name == "opt/venv/bin/ocitest-alpha" else 0o644
        assert (member.mode, member.uid, member.gid, member.mtime) == (wanted, 0, 0, 0), name
    # Every parent directory has an entry.
    directories = {name for name, member in layer.members.items() if member.isdir()}
    parents = {str(p) for name in files for p in PurePosixPath(name).parents if str(p) != "."}
    assert directories == parents


def test_a_venv_entry_writes_pyvenv_cfg_and_the_interpreter_links(
    pexes: Pexes, tmp_path: Path
) -> None:
    work = _work(tmp_path, {"bravo.whl": pexes.archive("ocitest-bravo")})
    layer = _build_layer(work, [_venv()])
    assert {name: (m.type, m.linkname) for name, m in layer.members.items()} == {
        "opt": (tarfile.DIRTYPE, ""),
        "opt/venv": (tarfile.DIRTYPE, ""),
        "opt/venv/bin": (tarfile.DIRTYPE, ""),
        "opt/venv/bin/python": (tarfile.SYMTYPE, SYSTEM_PYTHON),
        "opt/venv/bin/python3": (tarfile.SYMTYPE, "python"),
        "opt/venv/bin/python3.11": (tarfile.SYMTYPE, "python"),
        "opt/venv/lib": (tarfile.DIRTYPE, ""),
        "opt/venv/lib/python3.11": (tarfile.DIRTYPE, ""),
        SITE: (tarfile.DIRTYPE, ""),
        "opt/venv/pyvenv.cfg": (tarfile.REGTYPE, ""),
    }
    assert layer.data["opt/venv/pyvenv.cfg"] == (
        b"home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11\n"
    )
    assert layer.members["opt/venv/pyvenv.cfg"].mode == 0o644
    # The directories it makes are those venv_directories names (for the layers above it).
    directories = sorted(name for name, m in layer.members.items() if m.isdir())
    assert directories == list(venv_directories(DEFAULT_VENV, "3.11"))

    # With a distribution in the same layer, and the spec's ownership on everything.
    both = _build_layer(work, [_venv(), _installed_wheel("bravo.whl")], uid=1000, gid=1001)
    assert set(layer.members) < set(both.members)
    assert f"{SITE}/ocitest_bravo/__init__.py" in both.data
    assert all((m.uid, m.gid) == (1000, 1001) for m in both.members.values())


def test_a_layer_depends_only_on_its_distribution(pexes: Pexes, tmp_path: Path) -> None:
    """Same archive, same layer: whatever its file name, the directory it is built in, or
    which PEX (with which other distributions) it came from."""
    alpha = pexes.archive("ocitest-alpha")
    first = _build_layer(_work(tmp_path, {"a.whl": alpha}, "a"), [_installed_wheel("a.whl")])
    again = _build_layer(
        _work(tmp_path, {f"x/y/{ALPHA}": alpha}, "b"), [_installed_wheel(f"x/y/{ALPHA}")]
    )
    assert again.digest == first.digest

    def layer_of(project: str, which: str) -> Layer:
        work = _work(tmp_path, {"d.whl": pexes.archive(project, which)}, f"{project}-{which}")
        return _build_layer(work, [_installed_wheel("d.whl")])

    # ocitest-delta 1.0.0 in two PEXes with different other distributions and pins.
    assert pexes.first.installed_wheels.keys() != pexes.second.installed_wheels.keys()
    assert layer_of("ocitest-delta", "first").digest == layer_of("ocitest-delta", "second").digest
    # The bumped pin is the one layer that changes.
    echo_first, echo_second = layer_of("ocitest-echo", "first"), layer_of("ocitest-echo", "second")
    assert echo_first.digest != echo_second.digest
    assert f"{SITE}/ocitest_echo-1.1.0.dist-info/METADATA" in echo_second.members


def test_unpacking_leaves_nothing_in_the_working_directory(pexes: Pexes, tmp_path: Path) -> None:
    """The venv is staged outside the working directory: a source "." (the whole sandbox)
    holds only the sandbox's own files, and the layer is the same each time."""
    work = _work(tmp_path, {"alpha.whl": pexes.archive("ocitest-alpha")})
    (work / "f.txt").write_text("f\n")
    entries = [_installed_wheel("alpha.whl"), {"source": ".", "target": "/srv"}]
    layer = _build_layer(work, entries)
    srv = sorted(name for name in layer.members if name.startswith("srv"))
    assert srv == ["srv", "srv/alpha.whl", "srv/f.txt", "srv/spec.json"]
    assert f"{SITE}/ocitest_alpha/__init__.py" in layer.members
    assert _build_layer(work, entries).digest == layer.digest
    assert sorted(p.name for p in work.iterdir()) == ["alpha.whl", "f.txt", "spec.json"]
    # A spec of plain paths alone stages nothing either.
    plain = _build_layer(work, [{"source": ".", "target": "/srv"}])
    assert sorted(plain.members) == srv


# --- What `layer build` refuses -----------------------------------------------------------------


def _archive_cases() -> dict[str, tuple[Callable[[Path, Path], Path], str]]:
    """Broken archives, each made from alpha's: (make it at a path, what the error says)."""
    return {
        "no layout file": (
            lambda alpha, out: _rewritten(alpha, out, drop=(".layout.json",)),
            "not an installed-wheel archive of PEX (no readable .layout.json with a `stash_dir`)",
        ),
        "layout without stash_dir": (
            lambda alpha, out: _rewritten(
                alpha, out, drop=(".layout.json",), add={".layout.json": b'{"record": 1}'}
            ),
            "not an installed-wheel archive of PEX",
        ),
        "member going up": (
            lambda alpha, out: _rewritten(
                alpha, out, add={"ocitest_alpha/../../../../../../escape.py": b"x"}
            ),
            "the archive member 'ocitest_alpha/../../../../../../escape.py' is not a relative "
            "path inside it",
        ),
        "stashed member going up": (
            lambda alpha, out: _rewritten(alpha, out, add={".prefix/../../../escape.py": b"x"}),
            "the archive member '.prefix/../../../escape.py' is not a relative path",
        ),
        "absolute member": (
            lambda alpha, out: _rewritten(alpha, out, add={"/tmp/escape.py": b"x"}),
            "the archive member '/tmp/escape.py' is not a relative path",
        ),
        "not a zip": (
            lambda _alpha, out: _written(out, b"not a zip at all"),
            "not a readable installed-wheel zip",
        ),
        "damaged member data": (
            lambda alpha, out: _with_damaged_member(alpha, out, "ocitest_alpha/__init__.py"),
            "not a readable installed-wheel zip",
        ),
    }


ARCHIVE_CASES = _archive_cases()


@pytest.mark.parametrize("case", sorted(ARCHIVE_CASES))
def test_a_broken_archive_is_an_error_naming_it(
    pexes: Pexes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    make, says = ARCHIVE_CASES[case]
    work = tmp_path / "work"
    work.mkdir()
    broken = make(pexes.archive("ocitest-alpha"), work / "broken.whl")

    # The library: a LayerError naming the archive; nothing written outside the staging.
    staging = tmp_path / "a" / "b" / "staging"
    staging.mkdir(parents=True)
    with pytest.raises(LayerError) as raised:
        unpack_installed_wheel(str(broken), str(staging), DEFAULT_VENV, "3.11")
    assert str(raised.value).startswith(f"installed wheel {broken}: ")
    assert says in str(raised.value)
    assert not list(tmp_path.rglob("escape.py"))

    # The command line: the entry, then the archive.
    err = _refused(work, monkeypatch, capsys, {"entries": [_installed_wheel("broken.whl")]})
    assert "layer spec spec.json: entries[0]: installed wheel broken.whl: " in err
    assert says in err
    assert not list(tmp_path.rglob("escape.py"))


ENTRY_CASES: dict[str, tuple[list[dict[str, Any]], str]] = {
    "python_version not major.minor": (
        [_installed_wheel("alpha.whl", python_version="3")],
        "entries[0]: the Python version '3' is not major.minor, such as 3.11",
    ),
    "python_version with a patch": (
        [_installed_wheel("alpha.whl"), _venv(python_version="3.11.2")],
        "entries[1]: the Python version '3.11.2' is not major.minor",
    ),
    "python_version missing": (
        [_venv(python_version=None)],
        "entries[0]: a 'venv' entry needs 'python_version'",
    ),
    "python_version not a string": (
        [_installed_wheel("alpha.whl", python_version=3.11)],
        "entries[0]: 'python_version' must be str or null, got 3.11",
    ),
    "relative interpreter": (
        [_venv(), _venv(interpreter="python3.11")],
        "entries[1]: the venv's interpreter 'python3.11' is not an absolute path",
    ),
    "interpreter with a line break": (
        [_venv(interpreter="/usr/bin/python3\ninclude-system-site-packages = true")],
        "entries[0]: the venv's interpreter '/usr/bin/python3\\ninclude-system-site-packages "
        "= true' holds a line break",
    ),
    "interpreter missing": (
        [_venv(interpreter=None)],
        "entries[0]: a 'venv' entry needs the base's 'interpreter' path",
    ),
    "unknown kind": (
        [{"kind": "wheel", "source": "alpha.whl", "target": "/opt/venv"}],
        "entries[0]: 'kind' must be one of path, installed-wheel, venv, got 'wheel'",
    ),
    "relative venv": (
        [_installed_wheel("alpha.whl", target="opt/venv")],
        "entries[0]: 'target' 'opt/venv' is not an absolute path",
    ),
    "installed wheel without source": (
        [_installed_wheel("")],
        "entries[0]: needs a 'source' path and an absolute 'target' path",
    ),
    "mode of an installed wheel": (
        [_installed_wheel("alpha.whl", mode="0755")],
        "entries[0]: a 'installed-wheel' entry takes no ['mode']",
    ),
    "uid of a venv": (
        [_venv(uid=1000)],
        "entries[0]: a 'venv' entry takes no ['uid']; its keys are ['interpreter', "
        "'python_version', 'target'] (its files get the spec's uid and gid)",
    ),
    "source of a venv": (
        [_venv(source="alpha.whl")],
        "entries[0]: a 'venv' entry takes no ['source']",
    ),
    "python_version of a path": (
        [{"source": "alpha.whl", "target": "/a.whl", "python_version": "3.11"}],
        "entries[0]: a 'path' entry takes no ['python_version']",
    ),
    "archive outside the working directory": (
        [_installed_wheel("../outside.whl")],
        "entries[0]: source '../outside.whl' resolves to {outside}, outside the working directory",
    ),
    "archive through a symlink to outside": (
        [_installed_wheel("link.whl")],
        "entries[0]: source 'link.whl' resolves to {outside}, outside the working directory",
    ),
    "missing archive": (
        [_installed_wheel("missing.whl")],
        "entries[0]: installed wheel missing.whl: cannot read it: No such file or directory",
    ),
}


@pytest.mark.parametrize("case", sorted(ENTRY_CASES))
def test_a_bad_entry_is_an_error_naming_it(
    pexes: Pexes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    entries, says = ENTRY_CASES[case]
    work = _work(tmp_path, {"alpha.whl": pexes.archive("ocitest-alpha")})
    outside = tmp_path / "outside.whl"
    shutil.copyfile(pexes.archive("ocitest-alpha"), outside)
    (work / "link.whl").symlink_to(outside)
    err = _refused(work, monkeypatch, capsys, {"entries": entries})
    says = says.format(outside=outside.resolve())
    assert err.startswith(f"pants-oci: error: layer spec spec.json: {says}"), err


# --- The library, and a venv run by the real interpreter ----------------------------------------


def test_venv_paths_and_files() -> None:
    assert site_packages("/opt/venv/", "3.12") == "/opt/venv/lib/python3.12/site-packages"
    assert venv_directories("/app/venv", "3.9") == (
        "app",
        "app/venv",
        "app/venv/bin",
        "app/venv/lib",
        "app/venv/lib/python3.9",
        "app/venv/lib/python3.9/site-packages",
    )
    assert pyvenv_cfg("/usr/local/bin/python3.12", "3.12") == (
        b"home = /usr/local/bin\ninclude-system-site-packages = false\nversion = 3.12\n"
    )
    assert interpreter_links("/opt/venv/", "/usr/local/bin/python3.12", "3.12") == {
        "/opt/venv/bin/python": "/usr/local/bin/python3.12",
        "/opt/venv/bin/python3": "python",
        "/opt/venv/bin/python3.12": "python",
    }
    for version in ("3", "3.11.2", "3.x", "", " 3.11", "3.11\n"):
        with pytest.raises(InvalidValueError, match=r"is not major\.minor"):
            site_packages("/opt/venv", version)
        with pytest.raises(InvalidValueError, match=r"is not major\.minor"):
            pyvenv_cfg(SYSTEM_PYTHON, version)
    for bad in ("python3", "usr/bin/python3"):
        with pytest.raises(InvalidValueError, match="is not an absolute path"):
            pyvenv_cfg(bad, "3.11")
        with pytest.raises(InvalidValueError, match="is not an absolute path"):
            interpreter_links("/opt/venv", bad, "3.11")
    with pytest.raises(InvalidValueError, match="the entry point's module 'a-b'"):
        launcher_script("/opt/venv", "a-b", "main")
    for function in ("main()", "main\n", "a..b"):
        with pytest.raises(InvalidValueError, match="the entry point's function"):
            launcher_script("/opt/venv", "app", function)


def _make_venv(venv: Path, archives: list[Path]) -> int:
    """A venv at ``venv`` (a real path, standing for /opt/venv) run by the system CPython:
    the distributions unpacked in place, its pyvenv.cfg and interpreter links."""
    venv.mkdir()
    written = sum(unpack_installed_wheel(str(a), str(venv), str(venv), "3.11") for a in archives)
    (venv / "pyvenv.cfg").write_bytes(pyvenv_cfg(SYSTEM_PYTHON, "3.11"))
    for link, target in interpreter_links(str(venv), SYSTEM_PYTHON, "3.11").items():
        Path(link).symlink_to(target)
    return written


def _run(argv: list[str]) -> dict[str, Any]:
    """Run a venv program with nothing of this test process's environment (no PYTHONPATH);
    its stdout is JSON."""
    result = subprocess.run(
        argv,
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


_PROBE = """
import importlib.metadata, json, sys
import ocitest_alpha, ocitest_bravo
print(json.dumps({
    "alpha": [ocitest_alpha.NAME, ocitest_alpha.VERSION, ocitest_alpha.__file__],
    "bravo": ocitest_bravo.VERSION,
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "path": sys.path,
    "distributions": sorted(d.metadata["Name"] for d in importlib.metadata.distributions()),
    "alpha_metadata": importlib.metadata.version("ocitest-alpha"),
    "scripts": [e.name for e in importlib.metadata.entry_points(group="console_scripts")],
}))
"""


def test_the_venv_runs_under_the_system_python(pexes: Pexes, tmp_path: Path) -> None:
    assert Path(SYSTEM_PYTHON).is_file()
    venv = tmp_path / "venv"
    archives = [pexes.archive(p) for p in ("ocitest-alpha", "ocitest-bravo", "ocitest-charlie")]
    written = _make_venv(venv, archives)
    site = venv / "lib/python3.11/site-packages"
    files = [p for p in venv.rglob("*") if p.is_file() and not p.is_symlink()]
    assert written == len(files) - 1  # all but pyvenv.cfg
    assert not (venv / ".layout.json").exists() and not (site / ".layout.json").exists()
    script = venv / "bin/ocitest-alpha"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    unpacked = [p for p in files if p not in (script, venv / "pyvenv.cfg")]
    assert unpacked and all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in unpacked)
    assert script.read_bytes().startswith(f"#!{venv}/bin/python\n".encode())

    # The venv's Python: its own site-packages, not the system's, nor the user's.
    report = _run([str(venv / "bin/python"), "-c", _PROBE])
    assert report["alpha"] == ["ocitest-alpha", "1.0.0", str(site / "ocitest_alpha/__init__.py")]
    assert report["bravo"] == "1.0.0"
    assert report["prefix"] == str(venv)
    assert report["base_prefix"] == "/usr"
    assert str(site) in report["path"]
    assert not [p for p in report["path"] if "-packages" in p and p != str(site)]
    assert report["distributions"] == ["ocitest-alpha", "ocitest-bravo", "ocitest-charlie"]
    assert report["alpha_metadata"] == "1.0.0"
    assert report["scripts"] == ["ocitest-alpha"]

    # The console script, run directly: the kernel reads its shebang.
    ran = _run([str(script), "hello"])
    assert ran["file"] == str(site / "ocitest_alpha/__init__.py")
    assert (ran["prefix"], ran["base_prefix"]) == (str(venv), "/usr")
    assert ran["executable"] == str(venv / "bin/python")
    assert ran["argv"] == [str(script), "hello"]
    assert ran["user_site_enabled"] is False
    assert not [p for p in ran["path"] if "-packages" in p and p != str(site)]

    # A launcher script for an entry point, as python_venv writes one.
    launcher = venv / "bin/launch"
    launcher.write_bytes(launcher_script(str(venv), "ocitest_alpha", "main"))
    launcher.chmod(0o755)
    launched = _run([str(launcher)])
    assert (launched["name"], launched["prefix"]) == ("ocitest-alpha", str(venv))
