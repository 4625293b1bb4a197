"""The wheels of tests/harness/wheels.py are deterministic, follow the wheel spec, and real
tools take them offline: pip installs them and picks a native one by platform, pex resolves
them into a packed PEX (for the host, or for linux aarch64)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pytest
from packaging.metadata import Metadata
from packaging.tags import Tag
from packaging.utils import parse_wheel_filename

from tests.harness.processes import HarnessError
from tests.harness.wheels import (
    ARCHES,
    NATIVE_PINS,
    STANDARD_PINS,
    FindLinks,
    build_packed_pex,
    find_links_with,
    native_wheel,
    payload_bytes,
    pure_wheel,
)

BIN = Path(sys.executable).parent
HOST_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())


def _pip_env(tmp_path: Path) -> dict[str, str]:
    """pip with no configuration, cache or index of the user's: only --find-links."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }


def _pip(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(BIN / "pip"), *args, "--no-index"],
        env=_pip_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result


def _record(wheel: zipfile.ZipFile, dist_info: str) -> dict[str, tuple[str, str]]:
    rows = csv.reader(io.StringIO(wheel.read(f"{dist_info}/RECORD").decode()))
    return {path: (digest, size) for path, digest, size in rows}


def _check_record(path: Path, dist_info: str) -> None:
    """RECORD lists every other member with its urlsafe-base64 sha256 and size, and itself
    without either; members are regular files of mode 0644 at the zip epoch."""
    with zipfile.ZipFile(path) as wheel:
        record = _record(wheel, dist_info)
        names = wheel.namelist()
        assert sorted(record) == sorted(names)
        assert names[-1] == f"{dist_info}/RECORD"
        assert record.pop(f"{dist_info}/RECORD") == ("", "")
        for name, (digest, size) in record.items():
            data = wheel.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == f"sha256={expected.decode()}", name
            assert int(size) == len(data), name
        for info in wheel.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)
            assert info.external_attr >> 16 == 0o100644
            assert info.compress_type == zipfile.ZIP_DEFLATED


def _module(wheel: zipfile.ZipFile, name: str) -> dict[str, object]:
    namespace: dict[str, object] = {}
    exec(wheel.read(name), namespace)  # noqa: S102 - the harness's own generated module
    return namespace


def test_pure_wheel_follows_the_wheel_spec(tmp_path: Path) -> None:
    path = pure_wheel(
        tmp_path,
        "OciTest.Some-Name",
        "2.0.1",
        payload_size=100_000,
        requires=("ocitest-bravo>=1", "ocitest-charlie"),
        console_script="some-tool",
    )
    assert path == tmp_path / "ocitest_some_name-2.0.1-py3-none-any.whl"
    name, version, build, tags = parse_wheel_filename(path.name)
    assert (name, str(version), build) == ("ocitest-some-name", "2.0.1", ())
    assert tags == frozenset({Tag("py3", "none", "any")})
    dist_info = "ocitest_some_name-2.0.1.dist-info"
    _check_record(path, dist_info)
    with zipfile.ZipFile(path) as wheel:
        assert wheel.namelist() == [
            "ocitest_some_name/__init__.py",
            "ocitest_some_name/payload.bin",
            f"{dist_info}/METADATA",
            f"{dist_info}/WHEEL",
            f"{dist_info}/entry_points.txt",
            f"{dist_info}/RECORD",
        ]
        metadata = Metadata.from_email(wheel.read(f"{dist_info}/METADATA"), validate=True)
        assert str(metadata.metadata_version) == "2.1"
        assert (metadata.name, str(metadata.version)) == ("OciTest.Some-Name", "2.0.1")
        assert [str(r) for r in metadata.requires_dist or []] == [
            "ocitest-bravo>=1",
            "ocitest-charlie",
        ]
        assert wheel.read(f"{dist_info}/WHEEL").decode().splitlines() == [
            "Wheel-Version: 1.0",
            "Generator: tests.harness.wheels",
            "Root-Is-Purelib: true",
            "Tag: py3-none-any",
        ]
        assert wheel.read(f"{dist_info}/entry_points.txt") == (
            b"[console_scripts]\nsome-tool = ocitest_some_name:main\n"
        )
        module = _module(wheel, "ocitest_some_name/__init__.py")
        assert (module["NAME"], module["VERSION"]) == ("OciTest.Some-Name", "2.0.1")
        assert "ARCH" not in module
        payload = wheel.read("ocitest_some_name/payload.bin")
    assert payload == payload_bytes("OciTest.Some-Name", "2.0.1", 100_000)
    assert len(zlib.compress(payload, 9)) > len(payload)  # incompressible
    # Without a console script or requirements: no entry_points.txt, no Requires-Dist.
    bare = pure_wheel(tmp_path / "bare", "ocitest-bare", "1", payload_size=0)
    with zipfile.ZipFile(bare) as wheel:
        assert "ocitest_bare-1.dist-info/entry_points.txt" not in wheel.namelist()
        assert b"Requires-Dist" not in wheel.read("ocitest_bare-1.dist-info/METADATA")
        assert wheel.read("ocitest_bare/payload.bin") == b""


@pytest.mark.parametrize("arch", ARCHES)
def test_native_wheel_follows_the_wheel_spec(tmp_path: Path, arch: str) -> None:
    path = native_wheel(tmp_path, "ocitest-native", "3.1", arch=arch)
    assert path.name == (
        f"ocitest_native-3.1-cp311-cp311-manylinux_2_17_{arch}.manylinux2014_{arch}.whl"
    )
    name, version, _build, tags = parse_wheel_filename(path.name)
    assert (name, str(version)) == ("ocitest-native", "3.1")
    assert tags == {
        Tag("cp311", "cp311", f"manylinux_2_17_{arch}"),
        Tag("cp311", "cp311", f"manylinux2014_{arch}"),
    }
    dist_info = "ocitest_native-3.1.dist-info"
    _check_record(path, dist_info)
    extension = f"ocitest_native/_native.cpython-311-{arch}-linux-gnu.so"
    with zipfile.ZipFile(path) as wheel:
        assert wheel.namelist() == [
            "ocitest_native/__init__.py",
            extension,
            f"{dist_info}/METADATA",
            f"{dist_info}/WHEEL",
            f"{dist_info}/RECORD",
        ]
        assert wheel.read(f"{dist_info}/WHEEL").decode().splitlines() == [
            "Wheel-Version: 1.0",
            "Generator: tests.harness.wheels",
            "Root-Is-Purelib: false",
            f"Tag: cp311-cp311-manylinux_2_17_{arch}",
            f"Tag: cp311-cp311-manylinux2014_{arch}",
        ]
        module = _module(wheel, "ocitest_native/__init__.py")
        assert (module["NAME"], module["VERSION"], module["ARCH"]) == (
            "ocitest-native",
            "3.1",
            arch,
        )
        assert arch.encode() in wheel.read(extension)
    with pytest.raises(ValueError, match="arch 'armv7l'"):
        native_wheel(tmp_path, "ocitest-native", "3.1", arch="armv7l")
    with pytest.raises(ValueError, match="python_tag 'py3'"):
        native_wheel(tmp_path, "ocitest-native", "3.1", python_tag="py3")


def test_find_links_are_deterministic_and_a_bump_changes_one_wheel(tmp_path: Path) -> None:
    links = find_links_with(tmp_path / "a")
    again = find_links_with(tmp_path / "b")
    assert len(STANDARD_PINS) >= 10
    assert links.pins == {**STANDARD_PINS, **NATIVE_PINS}
    assert sorted(p.name for p in links.directory.iterdir()) == sorted(p.name for p in links.wheels)
    assert len(links.wheels) == len(STANDARD_PINS) + len(ARCHES)
    assert [p.read_bytes() for p in links.wheels] == [p.read_bytes() for p in again.wheels]
    assert links.requirements("ocitest-native", "ocitest-alpha") == [
        "ocitest-alpha==1.0.0",
        "ocitest-native==1.0.0",
    ]
    assert len(links.requirements()) == len(links.pins)
    with zipfile.ZipFile(links.directory / "ocitest_alpha-1.0.0-py3-none-any.whl") as alpha:
        assert "ocitest_alpha-1.0.0.dist-info/entry_points.txt" in alpha.namelist()

    bumped = find_links_with(tmp_path / "c", {**STANDARD_PINS, "ocitest-echo": "1.1.0"})
    assert bumped.requirements("ocitest-echo") == ["ocitest-echo==1.1.0"]
    before = {p.name: p.read_bytes() for p in links.wheels}
    after = {p.name: p.read_bytes() for p in bumped.wheels}
    assert before.keys() - after.keys() == {"ocitest_echo-1.0.0-py3-none-any.whl"}
    assert after.keys() - before.keys() == {"ocitest_echo-1.1.0-py3-none-any.whl"}
    assert all(after[name] == data for name, data in before.items() if name in after)

    with pytest.raises(ValueError, match="both pure and native"):
        find_links_with(tmp_path / "d", {"ocitest-x": "1"}, native={"ocitest-x": "1"})


@pytest.fixture(scope="module")
def find_links(tmp_path_factory: pytest.TempPathFactory) -> FindLinks:
    return find_links_with(tmp_path_factory.mktemp("find-links"))


@pytest.fixture(scope="module")
def pex_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pex root for the module's PEX builds: pex sets up its pip there once."""
    return tmp_path_factory.mktemp("pex-root")


@pytest.mark.slow
def test_pip_installs_them_offline(find_links: FindLinks, tmp_path: Path) -> None:
    target = tmp_path / "target"
    _pip(
        tmp_path,
        "install",
        "--find-links",
        str(find_links.directory),
        "--target",
        str(target),
        "ocitest-alpha==1.0.0",
        "ocitest-native==1.0.0",
    )
    installed = sorted(p.name for p in target.glob("*.dist-info"))
    assert installed == [
        "ocitest_alpha-1.0.0.dist-info",
        "ocitest_bravo-1.0.0.dist-info",  # alpha's requirements
        "ocitest_charlie-1.0.0.dist-info",
        "ocitest_native-1.0.0.dist-info",
    ]
    # pip picked the host's native wheel, and wrote the console script.
    assert (target / f"ocitest_native/_native.cpython-311-{HOST_ARCH}-linux-gnu.so").is_file()
    probe = (
        "import ocitest_alpha, ocitest_native; print(ocitest_alpha.VERSION, ocitest_native.ARCH)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["1.0.0", HOST_ARCH]
    script = subprocess.run(
        [sys.executable, str(target / "bin/ocitest-alpha"), "x"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(script.stdout)
    assert (report["name"], report["version"]) == ("ocitest-alpha", "1.0.0")
    assert report["file"] == str(target / "ocitest_alpha/__init__.py")


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHES)
def test_pip_download_picks_the_native_wheel_of_the_platform(
    find_links: FindLinks, tmp_path: Path, arch: str
) -> None:
    downloads = tmp_path / "downloads"
    _pip(
        tmp_path,
        "download",
        "--find-links",
        str(find_links.directory),
        "--only-binary=:all:",
        "--platform",
        f"manylinux2014_{arch}",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "-d",
        str(downloads),
        "ocitest-native",
    )
    [wheel] = downloads.iterdir()
    assert wheel.name.endswith(f".manylinux2014_{arch}.whl")
    assert wheel.read_bytes() == (find_links.directory / wheel.name).read_bytes()


@pytest.mark.slow
def test_pex_builds_a_packed_pex_of_them_for_the_host(
    find_links: FindLinks, pex_root: Path, tmp_path: Path
) -> None:
    pex = build_packed_pex(
        find_links.directory,
        find_links.requirements("ocitest-alpha", "ocitest-golf"),
        tmp_path / "app.pex",
        console_script="ocitest-alpha",
        pex_root=pex_root,
    )
    assert sorted(pex.installed_wheels) == [
        "ocitest-alpha",
        "ocitest-bravo",
        "ocitest-charlie",
        "ocitest-golf",
    ]
    assert pex.pex_info["requirements"] == ["ocitest-alpha==1.0.0", "ocitest-golf==1.0.0"]
    assert sorted(pex.pex_info["distributions"]) == sorted(  # type: ignore[call-overload]
        p.name for p in pex.installed_wheels.values()
    )
    # The installed-wheel archive: PEX's layout file, the package at the root, the console
    # script stashed in .prefix/bin with a `#!python` shebang.
    with zipfile.ZipFile(pex.installed_wheels["ocitest-alpha"]) as archive:
        names = archive.namelist()
        layout = json.loads(archive.read(".layout.json"))
        script = archive.read(".prefix/bin/ocitest-alpha")
    assert layout["stash_dir"] == ".prefix"
    assert "ocitest_alpha/payload.bin" in names
    assert script.startswith(b"#!python\n")
    # The PEX runs the console script with its distributions.
    result = subprocess.run(
        [sys.executable, str(pex.path), "arg"],
        env={"PATH": "/usr/bin:/bin", "PEX_ROOT": str(tmp_path / "pex-root")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["name"], report["version"], report["argv"][1:]) == (
        "ocitest-alpha",
        "1.0.0",
        ["arg"],
    )


@pytest.mark.slow
def test_pex_builds_a_packed_pex_for_linux_aarch64(
    find_links: FindLinks, pex_root: Path, tmp_path: Path
) -> None:
    pex = build_packed_pex(
        find_links.directory,
        find_links.requirements("ocitest-native", "ocitest-hotel"),
        tmp_path / "arm.pex",
        platform="linux_aarch64-cp-311-cp311",
        pex_root=pex_root,
    )
    assert sorted(p.name for p in pex.installed_wheels.values()) == [
        "ocitest_hotel-1.0.0-py3-none-any.whl",
        "ocitest_native-1.0.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
    ]
    with zipfile.ZipFile(pex.installed_wheels["ocitest-native"]) as archive:
        so = archive.read("ocitest_native/_native.cpython-311-aarch64-linux-gnu.so")
    assert b"aarch64" in so


@pytest.mark.slow
def test_pex_failing_is_a_harness_error(
    find_links: FindLinks, pex_root: Path, tmp_path: Path
) -> None:
    with pytest.raises(HarnessError, match="ocitest-alpha==9"):
        build_packed_pex(
            find_links.directory, ["ocitest-alpha==9"], tmp_path / "x.pex", pex_root=pex_root
        )
