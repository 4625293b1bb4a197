"""Setup kwargs for the `pants-oci` distribution (the `src/python:dist` target).

`version` comes from `src/python/pants_oci/__init__.py` (`__version__`), the one place it is
written; `long_description` is README.md. Loaded only by this repo's pants.toml.
"""

from __future__ import annotations

import ast
from typing import Iterable, Union

from pants.backend.python.util_rules.package_dists import SetupKwargs, SetupKwargsRequest
from pants.engine.fs import DigestContents, GlobMatchErrorBehavior, PathGlobs
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.target import Target
from pants.engine.unions import UnionRule

VERSION_FILE = "src/python/pants_oci/__init__.py"
README = "README.md"


class PantsOciSetupKwargsRequest(SetupKwargsRequest):
    @classmethod
    def is_applicable(cls, target: Target) -> bool:
        return target.address.spec_path == "src/python" and target.address.target_name == "dist"


def parse_version(source: str) -> str:
    for node in ast.parse(source).body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise ValueError(f'{VERSION_FILE} has no `__version__ = "..."` line')


@rule
async def pants_oci_setup_kwargs(request: PantsOciSetupKwargsRequest) -> SetupKwargs:
    contents = await Get(
        DigestContents,
        PathGlobs(
            [VERSION_FILE, README],
            glob_match_error_behavior=GlobMatchErrorBehavior.error,
            description_of_origin="the pants_oci_release plugin",
        ),
    )
    files = {content.path: content.content.decode() for content in contents}
    kwargs = {
        **request.explicit_kwargs,
        "version": parse_version(files[VERSION_FILE]),
        "long_description": files[README],
        "long_description_content_type": "text/markdown",
    }
    return SetupKwargs(kwargs, address=request.target.address)


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [*collect_rules(), UnionRule(SetupKwargsRequest, PantsOciSetupKwargsRequest)]
