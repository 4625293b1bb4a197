"""`pants publish` for `oci_image`: push every tag to every registry in one process per image.

The push runs the image tool as an interactive (never cached) process, so it can see the
user's docker config, credential helpers and Google credentials; they are resolved inside that
process and never appear in argv or in any cache key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Tuple, Union

from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import DigestContents, DigestSubset, PathGlobs
from pants.engine.process import InteractiveProcess, Process
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.frozendict import FrozenDict

from pants_oci.goals.package import IMAGE_INFO, OciImageFieldSet
from pants_oci.subsystems.oci import OciSubsystem
from pants_oci.target_types import (
    OciImageRegistriesField,
    OciImageRepositoryField,
    OciImageSkipPushField,
    OciImageTagsField,
)
from pants_oci.util_rules.image import image_references
from pants_oci.util_rules.tool import CREDENTIAL_ENV, OciToolRequest


class PublishOciImageRequest(PublishRequest):  # type: ignore[type-arg]
    pass


@dataclass(frozen=True)
class PublishOciImageFieldSet(PublishFieldSet):  # type: ignore[type-arg]
    publish_request_type = PublishOciImageRequest
    required_fields = (OciImageRegistriesField,)

    registries: OciImageRegistriesField
    repository: OciImageRepositoryField
    tags: OciImageTagsField
    skip_push: OciImageSkipPushField

    def references(
        self, built_tags: Tuple[str, ...], default_registries: Tuple[str, ...] = ()
    ) -> Tuple[str, ...]:
        """Every `registry/repository:tag`; tags as the build resolved them (`{hash}`).
        None without registries: the image is not published."""
        registries = self.registries.value or default_registries
        if not registries:
            return ()
        return image_references(self.address, self.repository.value, registries, built_tags)

    def get_output_data(self) -> PublishOutputData:
        return PublishOutputData(
            {
                "publisher": "oci",
                "registries": self.registries.value or (),
                **super().get_output_data(),
            }
        )


@rule(desc="Push OCI image")
async def publish_oci_image(request: PublishOciImageRequest, oci: OciSubsystem) -> PublishProcesses:
    field_set = request.field_set
    assert isinstance(field_set, PublishOciImageFieldSet)
    [package] = request.packages
    info = await Get(
        DigestContents,
        DigestSubset(
            package.digest,
            PathGlobs([f"{OciImageFieldSet.create_output_dir(field_set.address)}/{IMAGE_INFO}"]),
        ),
    )
    image_info = json.loads(info[0].content)
    built_tags = tuple(image_info["tags"])
    references = field_set.references(built_tags, tuple(oci.default_registries))
    if field_set.skip_push.value:
        return PublishProcesses(
            [
                PublishPackages(
                    names=references,
                    description=f"(by `{field_set.skip_push.alias}` on {field_set.address})",
                )
            ]
        )
    if not references:
        return PublishProcesses(
            [
                PublishPackages(
                    names=(str(field_set.address),),
                    description=(
                        f"(it has no `{field_set.registries.alias}` and `[oci].default_registries` "
                        "is empty: set either to publish it, or `skip_push=True` to say it is "
                        "not meant to be published)"
                    ),
                )
            ]
        )
    layout_dir = OciImageFieldSet.create_output_dir(field_set.address)
    env = await Get(EnvironmentVars, EnvironmentVarsRequest(CREDENTIAL_ENV))
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
    return PublishProcesses(
        [
            PublishPackages(
                names=references,
                process=InteractiveProcess.from_process(process),
                # Recorded by `publish --output=FILE`: what each name points at.
                data=PublishOutputData(
                    {
                        "digest": image_info["manifest_digest"],
                        "pinned": tuple(
                            f"{reference.rsplit(':', 1)[0]}@{image_info['manifest_digest']}"
                            for reference in references
                        ),
                    }
                ),
            )
        ]
    )


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [*collect_rules(), *PublishOciImageFieldSet.rules()]
