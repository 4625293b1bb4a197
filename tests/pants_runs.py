"""Run the repo's real `./pants` the way users do, for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_pants(
    *args: str, cwd: Path = REPO, check: bool = True, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `./pants` without pantsd, so no daemon outlives the test run."""
    result = subprocess.run(
        [str(REPO / "pants"), "--no-pantsd", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        check=False,
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"./pants {' '.join(args)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def make_pants_repo(root: Path, files: Mapping[str, str], *, extra_toml: str = "") -> Path:
    """A throwaway Pants repo using this checkout's backend, Pants and pex tool."""
    root.mkdir(parents=True, exist_ok=True)
    config = tomllib.loads((REPO / "pants.toml").read_text())
    pex_cli = config["pex-cli"]
    url = pex_cli["url_template"].replace("%(buildroot)s", str(REPO))
    known = ", ".join(f'"{v}"' for v in pex_cli["known_versions"])
    (root / "pants.toml").write_text(
        f"""[GLOBAL]
pants_version = "{config["GLOBAL"]["pants_version"]}"
pythonpath = ["{REPO / "src/python"}"]
backend_packages = ["pants.backend.python", "pants_oci"]

[python]
interpreter_constraints = ["CPython==3.11.*"]

[pex-cli]
version = "{pex_cli["version"]}"
url_template = "{url}"
known_versions = [{known}]
{extra_toml}"""
    )
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return root
