"""`pants publish` for `oci_image`: push every tag to every registry in one process per image.

Where the image goes is decided by the build (`image-info.json` "registries": each registry's
repository and tags, `extra_image_tags` included, see util_rules/registries.py); publish pushes
those names, except a registry's with `skip_push`, which it lists as skipped.

The push runs the image tool as an interactive (never cached) process, so it can see the
user's docker config, credential helpers and Google credentials; they are resolved inside that
process and never appear in argv or in any cache key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Sequence, Union

from pants.core.goals.package import OutputPathField
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.engine.env_vars import EnvironmentVars
from pants.engine.fs import DigestContents, DigestSubset, PathGlobs
from pants.engine.process import InteractiveProcess, Process
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.frozendict import FrozenDict

from pants_oci.goals.package import IMAGE_INFO
from pants_oci.target_types import (
    OciImageRegistriesField,
    OciImageSkipPushField,
    image_output_path,
)
from pants_oci.util_rules.tool import OciToolRequest, RegistryEnvRequest


class PublishOciImageRequest(PublishRequest):  # type: ignore[type-arg]
    pass


@dataclass(frozen=True)
class PublishOciImageFieldSet(PublishFieldSet):  # type: ignore[type-arg]
    publish_request_type = PublishOciImageRequest
    required_fields = (OciImageRegistriesField,)

    registries: OciImageRegistriesField
    skip_push: OciImageSkipPushField
    output_path: OutputPathField

    def get_output_data(self) -> PublishOutputData:
        # Not the `registries` field as written: each entry of the output says which
        # registries (resolved: aliases, defaults, repositories) its names are in.
        return PublishOutputData({"publisher": "oci", **super().get_output_data()})


def _registries_data(entries: Sequence[Dict[str, Any]]) -> PublishOutputData:
    """`publish --output` data: the registries of an entry, as `image-info.json` has them."""
    return PublishOutputData(
        {
            "registries": tuple(
                FrozenDict(
                    {
                        key: tuple(value) if isinstance(value, list) else value
                        for key, value in entry.items()
                    }
                )
                for entry in entries
            )
        }
    )


def _names(entries: Sequence[Dict[str, Any]]) -> List[str]:
    return [name for entry in entries for name in entry["references"]]


def _no_registry(field_set: PublishOciImageFieldSet) -> str:
    """Why the image has no registry, and what to set."""
    registries = field_set.registries.alias
    if field_set.registries.value is not None:
        return (
            f"(its `{registries}` field is empty: name a registry, or an `@alias` of "
            "`[oci].registries`, there to publish it)"
        )
    return (
        f"(it has no `{registries}` and `[oci].default_registries` is empty, nor has any "
        "`[oci].registries` entry `default = true`: set one of them to publish it, or "
        f"`{field_set.skip_push.alias}=True` to say it is not meant to be published)"
    )


@rule(desc="Push OCI image")
async def publish_oci_image(request: PublishOciImageRequest) -> PublishProcesses:
    field_set = request.field_set
    assert isinstance(field_set, PublishOciImageFieldSet)
    [package] = request.packages
    info = await Get(
        DigestContents,
        DigestSubset(
            package.digest,
            PathGlobs([f"{image_output_path(field_set.output_path)}/{IMAGE_INFO}"]),
        ),
    )
    image_info = json.loads(info[0].content)
    entries: List[Dict[str, Any]] = image_info["registries"]
    if field_set.skip_push.value:
        return PublishProcesses(
            [
                PublishPackages(
                    names=tuple(_names(entries)) or (str(field_set.address),),
                    description=f"(by `{field_set.skip_push.alias}` on {field_set.address})",
                    data=_registries_data(entries),
                )
            ]
        )
    if not entries:
        return PublishProcesses(
            [
                PublishPackages(
                    names=(str(field_set.address),),
                    description=_no_registry(field_set),
                    data=_registries_data(()),
                )
            ]
        )
    # A registry with `skip_push` in `[oci].registries`: its names are listed, not pushed.
    skipped = [
        PublishPackages(
            names=tuple(entry["references"]),
            description=f"(by `skip_push` of `[oci].registries` entry {entry['alias']!r})",
            data=_registries_data([entry]),
        )
        for entry in entries
        if entry["skip_push"]
    ]
    pushed = [entry for entry in entries if not entry["skip_push"]]
    if not pushed:
        return PublishProcesses(skipped)
    references = _names(pushed)
    layout_dir = image_output_path(field_set.output_path)
    env = await Get(EnvironmentVars, RegistryEnvRequest())
    argv = ["push", layout_dir]
    for reference in references:
        argv += ["--to", reference]
    process = await Get(
        Process,
        OciToolRequest(
            argv=tuple(argv),
            description=f"Push {field_set.address}",
            input_digest=package.digest,
            uncached_env=FrozenDict(env),
        ),
    )
    digest = image_info["manifest_digest"]
    return PublishProcesses(
        [
            PublishPackages(
                names=tuple(references),
                process=InteractiveProcess.from_process(process),
                # Recorded by `publish --output=FILE`: what each name points at, and where.
                data=PublishOutputData(
                    {
                        "digest": digest,
                        "pinned": tuple(
                            dict.fromkeys(
                                f"{reference.rsplit(':', 1)[0]}@{digest}"
                                for reference in references
                            )
                        ),
                        **_registries_data(pushed),
                    }
                ),
            ),
            *skipped,
        ]
    )


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [*collect_rules(), *PublishOciImageFieldSet.rules()]
