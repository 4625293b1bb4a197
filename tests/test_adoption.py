"""pants-oci as users adopt it: the distribution that `./pants package src/python:dist` builds,
installed into a fresh virtualenv, and as the plugin of a separate Pants repo whose pants.toml is
read from docs/adopting.md. That repo has no `pythonpath` into this one and no file from it; it
resolves the plugin and the image tool's requirements from a local wheel directory only (the
document's air-gapped block), builds two images (one on the other, with a pex_binary), runs one
with runc and publishes both to a registry that wants a token."""

from __future__ import annotations

import email.parser
import hashlib
import json
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from pants_oci import __version__
from pants_oci.register import untested_pants_warning
from pants_oci.subsystems.oci import OciSubsystem
from pants_oci.util_rules.tool import _TOOL_CONSTRAINTS
from tests.harness.busybox import PushedImage
from tests.harness.registry import Registry
from tests.harness.tools import runc_run, skopeo_inspect, umoci_unpack
from tests.pants_runs import REPO, run_pants

ADOPTING = REPO / "docs/adopting.md"
WHEEL = f"pants_oci-{__version__}-py3-none-any.whl"
SDIST = f"pants_oci-{__version__}.tar.gz"
# The placeholders of the document's air-gapped block, replaced by this test's real paths.
OFFLINE_WHEELS = "/opt/pants-offline/wheels/"
OFFLINE_PEX = "/opt/pants-offline/pex-v2.1.137.pex"
PEX_KNOWN_VERSION = "<sha256 of your pex-v2.1.137.pex>|<its size in bytes>"
EXAMPLE_REGISTRY = "registry.example.com/acme"


def adopting_block(name: str) -> str:
    """The fenced block after `<!-- tested: NAME -->` in docs/adopting.md."""
    match = re.search(
        rf"<!-- tested: {re.escape(name)} -->\n```toml\n(.*?)\n```", ADOPTING.read_text(), re.S
    )
    assert match, f"docs/adopting.md has no `<!-- tested: {name} -->` toml block"
    return match.group(1) + "\n"


def _option_default(name: str) -> list[str]:
    """An `[oci]` option's default, as `pants help-advanced oci` shows it."""
    return list(getattr(OciSubsystem, name).flag_options["default"])


def _tool_requirements(python_version: str) -> list[str]:
    """The tool's pins that apply on `python_version` (3.X.Y), without their markers: `pip
    download --python-version` checks wheels against it but evaluates markers for its own
    Python."""
    pins = [Requirement(r) for r in (*_option_default("requirements"), *_TOOL_CONSTRAINTS)]
    minor = ".".join(python_version.split(".")[:2])
    environment = {"python_version": minor, "python_full_version": python_version}
    return [
        f"{pin.name}{pin.specifier}"
        for pin in pins
        if pin.marker is None or pin.marker.evaluate(environment)
    ]


def _requirement_name(requirement: str) -> str:
    return re.split(r"[=<>!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


@pytest.fixture(scope="module")
def distribution(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and sdist, built by this repo's `./pants package` like a release."""
    distdir = f"dist/test-{uuid.uuid4().hex}"
    out = tmp_path_factory.mktemp("distribution")
    try:
        run_pants(f"--pants-distdir={distdir}", "package", "src/python:dist")
        for name in (WHEEL, SDIST):
            shutil.copy(REPO / distdir / name, out / name)
    finally:
        shutil.rmtree(REPO / distdir, ignore_errors=True)
    return out


def _pip(python: Path, *args: str) -> None:
    argv = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"{' '.join(argv)}:\n{result.stderr[-3000:]}"


@pytest.mark.slow
def test_wheel_and_sdist_hold_the_plugin_and_need_nothing_beyond_pants(distribution: Path) -> None:
    package = REPO / "src/python/pants_oci"
    modules = {
        str(path.relative_to(package.parent))
        for path in package.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(distribution / WHEEL) as wheel:
        names = set(wheel.namelist())
        info = f"pants_oci-{__version__}.dist-info"
        metadata = email.parser.Parser().parsestr(wheel.read(f"{info}/METADATA").decode())
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
    assert modules <= names, sorted(modules - names)
    assert "pants_oci/py.typed" in names
    assert metadata["Name"] == "pants-oci" and metadata["Version"] == __version__
    assert metadata["Requires-Python"] == ">=3.9"
    assert metadata["License"] == "Apache-2.0"
    # Installing the plugin into Pants pulls in nothing: every requirement is the `core` extra's.
    requires = metadata.get_all("Requires-Dist") or []
    assert requires and all(r.endswith('extra == "core"') for r in requires), requires
    # ... and that extra covers what the image tool itself is built from.
    extra = {_requirement_name(r) for r in requires}
    assert extra == {_requirement_name(r) for r in _option_default("requirements")}
    assert "pants-oci = pants_oci.core.cli:main" in entry_points
    assert "[pantsbuild.plugin]" in entry_points
    assert "rules = pants_oci.register:rules" in entry_points

    listing = subprocess.run(
        ["tar", "-tzf", str(distribution / SDIST)], capture_output=True, text=True, check=True
    ).stdout.split()
    root = f"pants_oci-{__version__}/"
    assert {root + m for m in modules} <= set(listing)
    assert root + "PKG-INFO" in listing


@pytest.mark.slow
def test_wheel_with_core_extra_gives_the_cli_and_the_image_api(
    distribution: Path, tmp_path: Path, registry_anonymous: Registry, unique_repo: str
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin/python"
    _pip(python, "install", f"{distribution / WHEEL}[core]")

    helped = subprocess.run(
        [str(venv / "bin/pants-oci"), "--help"], capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0, helped.stderr
    assert "usage: pants-oci" in helped.stdout

    content = tmp_path / "site"
    content.mkdir()
    (content / "index.html").write_text("<h1>hi</h1>\n")
    target = registry_anonymous.ref(unique_repo, "v1")
    script = f"""
import pants_oci.core
from pants_oci.core import Image
assert pants_oci.core.__file__.startswith({str(venv)!r}), pants_oci.core.__file__
with Image("scratch", {target!r}) as image:
    image.add_files({{"/srv": {str(content)!r}}})
    image.cmd = ["/srv/index.html"]
    print(image.save())
"""
    built = subprocess.run(
        [str(python), "-c", script], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert built.returncode == 0, built.stderr
    inspected = skopeo_inspect(target, registry=registry_anonymous)
    assert inspected["Digest"] == built.stdout.strip()


# --- a separate user repo -------------------------------------------------------------------


@dataclass(frozen=True)
class UserRepo:
    root: Path
    registry: Registry
    docker_config: Path

    def pants(
        self, *args: str, check: bool = True, pantsd: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run_pants(
            *args,
            cwd=self.root,
            check=check,
            env={"DOCKER_CONFIG": str(self.docker_config)},
            pantsd=pantsd,
        )

    def info(self, target: str) -> dict[str, object]:
        path, name = target.split(":")
        layout = self.root / "dist" / path.replace("/", ".") / name  # Pants' default output_path
        return dict(json.loads((layout / "image-info.json").read_text()))


def _tool_python_versions() -> list[str]:
    """The oldest allowed release (3.X.Y) of each CPython minor version that
    `[oci].interpreter_constraints` allows."""
    specifiers = [
        SpecifierSet(constraint.removeprefix("CPython"))
        for constraint in _option_default("interpreter_constraints")
    ]
    versions = []
    for minor in range(6, 20):
        releases = (f"3.{minor}.{patch}" for patch in range(100))
        oldest = next((v for v in releases if any(v in spec for spec in specifiers)), None)
        if oldest:
            versions.append(oldest)
    return versions


def _offline_dir(root: Path, distribution: Path) -> tuple[Path, Path]:
    """What the air-gapped recipe has the admin prepare: the pex tool and a wheel directory with
    the plugin and the image tool's requirements, for every Python the tool may run on."""
    wheels = root / "wheels"
    wheels.mkdir(parents=True)
    shutil.copy(distribution / WHEEL, wheels)
    for version in _tool_python_versions():
        requirements = root / f"tool-requirements-{version}.txt"
        requirements.write_text("\n".join(_tool_requirements(version)) + "\n")
        _pip(
            Path(sys.executable),
            "download",
            "--only-binary=:all:",
            "--python-version",
            version,
            "-d",
            str(wheels),
            "-r",
            str(requirements),
        )
    pex = root / Path(OFFLINE_PEX).name
    shutil.copy(REPO / ".pants-bootstrap" / pex.name, pex)
    return wheels, pex


def _user_pants_toml(wheels: Path, pex: Path, registry: Registry) -> str:
    main = adopting_block("pants.toml")
    offline = adopting_block("air-gapped")
    pin = f'plugins = ["pants-oci=={__version__}"]'
    assert pin in main, "docs/adopting.md's plugin pin"
    assert pin in (REPO / "README.md").read_text(), "README's plugin pin"
    pex_bytes = pex.read_bytes()
    known = f"{hashlib.sha256(pex_bytes).hexdigest()}|{len(pex_bytes)}"
    for placeholder in (OFFLINE_WHEELS, OFFLINE_PEX, PEX_KNOWN_VERSION):
        assert placeholder in offline, f"docs/adopting.md's air-gapped block lost {placeholder}"
    offline = offline.replace(OFFLINE_WHEELS, f"{wheels}/").replace(OFFLINE_PEX, str(pex))
    offline = offline.replace(PEX_KNOWN_VERSION, known)
    assert EXAMPLE_REGISTRY in main
    return main.replace(EXAMPLE_REGISTRY, f"{registry.host}/acme") + "\n" + offline


@pytest.fixture(scope="module")
def user_repo(
    distribution: Path,
    tmp_path_factory: pytest.TempPathFactory,
    python_base_image: PushedImage,
    registry_token: Registry,
) -> Iterator[UserRepo]:
    work = tmp_path_factory.mktemp("user")
    wheels, pex = _offline_dir(work / "pants-offline", distribution)
    root = work / "repo"
    files = {
        "pants.toml": _user_pants_toml(wheels, pex, registry_token),
        "static/BUILD": 'files(name="static", sources=["*.txt"])\n',
        "static/greeting.txt": "Hello from the user's repo\n",
        "app/BUILD": 'python_sources(name="src")\npex_binary(name="app", entry_point="main.py")\n',
        "app/__init__.py": "",
        "app/main.py": (
            "import os, sys\n\n"
            "with open(os.environ['GREETING_FILE']) as f:\n"
            "    print(f.read().strip(), *sys.argv[1:])\n"
            "print(f'uid={os.getuid()} gid={os.getgid()}', file=sys.stderr)\n"
        ),
        "images/BUILD": f"""
oci_image(
    name="runtime",
    base="{python_base_image.ref}",
    dependencies=["static"],
    env={{"GREETING_FILE": "/static/greeting.txt"}},
    image_tags=["1.0"],
)
oci_image(
    name="app",
    base=":runtime",
    dependencies=["app"],
    repository="acme/app",
    registries=["{registry_token.host}"],
    user="1000:1000",
    image_tags=["latest", "1.0"],
)
""",
    }
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    docker_config = work / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(json.dumps(registry_token.auth_json()))
    repo = UserRepo(root, registry_token, docker_config)
    repo.pants("package", "::")
    yield repo


@pytest.mark.slow
def test_user_repo_takes_nothing_from_this_checkout(user_repo: UserRepo) -> None:
    toml = (user_repo.root / "pants.toml").read_text()
    assert "pythonpath" not in toml and str(REPO) not in toml
    assert "indexes = []" in toml  # only the wheel directory: nothing from outside
    # The backend Pants loaded is the installed wheel's, not this checkout's source.
    listed = user_repo.pants("--backend-packages=['pants.backend.python']", "help", "oci_image")
    assert "oci_image" in listed.stdout and "built without a Docker daemon" in listed.stdout


@pytest.mark.slow
def test_user_repo_packages_images_that_umoci_and_runc_run(
    user_repo: UserRepo, python_base_image: PushedImage, tmp_path: Path
) -> None:
    runtime, app = user_repo.info("images:runtime"), user_repo.info("images:app")
    app_layers = [layer["digest"] for layer in app["layers"]]  # type: ignore[attr-defined]
    runtime_layers = [layer["digest"] for layer in runtime["layers"]]  # type: ignore[attr-defined]
    # Built on the other image: its layers first, then the PEX's.
    assert runtime_layers[0] == python_base_image.layer_digest
    assert app_layers[: len(runtime_layers)] == runtime_layers
    assert len(app_layers) > len(runtime_layers)
    layout = user_repo.root / "dist/images/app"
    inspected = skopeo_inspect(f"oci:{layout}:latest")
    assert inspected["Digest"] == app["manifest_digest"]
    bundle = umoci_unpack(layout, "latest", tmp_path / "bundle")
    ran = runc_run(bundle, None)
    assert ran.stdout == "Hello from the user's repo\n"
    assert "uid=1000 gid=1000" in ran.stderr  # as users run it: not root

    run = user_repo.pants("run", "images:app", "--", "and", "its", "args")
    assert run.stdout == "Hello from the user's repo and its args\n"
    assert "uid=1000 gid=1000" in run.stderr


@pytest.mark.slow
def test_user_repo_publishes_the_packaged_digests_with_a_token(
    user_repo: UserRepo, tmp_path: Path
) -> None:
    record = tmp_path / "published.json"
    result = user_repo.pants(f"--publish-output={record}", "publish", "::")
    registry = user_repo.registry
    assert registry.password and registry.password not in result.stdout + result.stderr
    published = {r["target"]: r for r in json.loads(record.read_text())}
    app, runtime = user_repo.info("images:app"), user_repo.info("images:runtime")
    assert published["images:app"]["digest"] == app["manifest_digest"]
    # The image without `registries` went to `[oci].default_registries` from docs/adopting.md.
    assert published["images:runtime"]["digest"] == runtime["manifest_digest"]
    # Without any registry, publish says per image why it skipped it and what to set.
    nowhere = user_repo.pants("--oci-default-registries=[]", "publish", "images:runtime")
    assert (
        "images:runtime skipped (it has no `registries` and `[oci].default_registries` is empty"
        in " ".join(nowhere.stderr.split())
    ), nowhere.stderr
    # Its SBOMs and provenance went along, listed under the fallback tag (distribution 2.8
    # has no referrers API), made by the installed wheel's image tool.
    fallback = f"{registry.host}/acme/app:sha256-{str(app['manifest_digest'])[7:]}"
    listed = json.loads(skopeo_inspect(fallback, raw=True, registry=registry))
    assert [entry["artifactType"] for entry in listed["manifests"]] == [
        "application/spdx+json",
        "application/vnd.cyclonedx+json",
        "application/vnd.in-toto+json",
    ]
    assert [r["digest"] for r in app["referrers"]] == [  # type: ignore[attr-defined]
        entry["digest"] for entry in listed["manifests"]
    ]
    for ref, digest in (
        (f"{registry.host}/acme/app:1.0", app["manifest_digest"]),
        (f"{registry.host}/acme/app:latest", app["manifest_digest"]),
        (f"{registry.host}/acme/runtime:1.0", runtime["manifest_digest"]),
    ):
        assert skopeo_inspect(ref, registry=registry)["Digest"] == digest, ref


# The usual adoption mistakes, as flags over the user repo's pants.toml, and what Pants then
# says. docs/adopting.md's "When something is wrong" table quotes each message with its fix.
ADOPTION_MISTAKES = {
    "plugin not loaded": (
        ("--plugins=[]", "--backend-packages=['pants.backend.python']", "list", "::"),
        "Invalid section [oci]",
    ),
    "plugin not loaded, no [oci] section": (
        (
            "--plugins=[]",
            "--backend-packages=['pants.backend.python']",
            "--no-verify-config",
            "list",
            "::",
        ),
        "Name 'oci_image' is not defined",
    ),
    "backend listed, plugin not installed": (
        ("--plugins=[]", "list", "::"),
        "Failed to load the pants_oci.register backend: ModuleNotFoundError",
    ),
    "wrong plugin version": (
        ("--plugins=['pants-oci==9.9.9']", "list", "::"),
        "No matching distribution found for pants-oci==9.9.9",
    ),
    "no interpreter for the image tool": (
        ("--oci-interpreter-constraints=['CPython==3.5.*']", "package", "images:runtime"),
        "needs a Python interpreter matching `[oci].interpreter_constraints` (CPython==3.5.*)",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("mistake", sorted(ADOPTION_MISTAKES))
def test_user_repo_adoption_mistakes_are_explained_with_their_fix(
    user_repo: UserRepo, mistake: str
) -> None:
    args, message = ADOPTION_MISTAKES[mistake]
    # A fresh Pants, as a user meets these: a running pantsd keeps the plugin it imported.
    failed = user_repo.pants(*args, check=False, pantsd=False)
    assert failed.returncode != 0
    assert message in " ".join(failed.stderr.split()), failed.stderr[-3000:]
    troubleshooting = ADOPTING.read_text().split("## When something is wrong", 1)[1]
    quoted = re.sub(r"9\.9\.9|CPython==3\.5\.\*", "…", message).split(" (")[0]
    assert quoted in troubleshooting, f"docs/adopting.md does not explain {quoted!r}"


def test_untested_pants_release_gets_a_warning_naming_the_tested_one() -> None:
    assert untested_pants_warning((2, 17, "2.17.1")) is None
    warning = untested_pants_warning((2, 21, "2.21.0"))
    assert warning is not None
    assert "2.21.0" in warning and "2.17" in warning and "pants_version" in warning
