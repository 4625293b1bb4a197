"""RuleRunner set-up shared by backend tests: the real rules, the repo's pex tool and Python."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from pants.testutil.rule_runner import RuleRunner

REPO = Path(__file__).resolve().parent.parent.parent


def pants_toml_pex_cli_args() -> list[str]:
    """The `[pex-cli]` options of the repo's pants.toml, for RuleRunner (which reads no config)."""
    pex_cli = tomllib.loads((REPO / "pants.toml").read_text())["pex-cli"]
    url = pex_cli["url_template"].replace("%(buildroot)s", str(REPO))
    return [
        f"--pex-cli-version={pex_cli['version']}",
        f"--pex-cli-url-template={url}",
        f"--pex-cli-known-versions={pex_cli['known_versions']!r}",
    ]


def configure(
    rule_runner: RuleRunner, *extra_args: str, env: dict[str, str] | None = None
) -> RuleRunner:
    rule_runner.set_options(
        [
            *pants_toml_pex_cli_args(),
            "--python-interpreter-constraints=['CPython==3.11.*']",
            f"--python-bootstrap-search-path=['{Path(sys.executable).resolve().parent}']",
            *extra_args,
        ],
        env=env,
        env_inherit={"PATH", "HOME"},
    )
    return rule_runner
