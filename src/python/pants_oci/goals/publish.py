"""`pants publish` for `oci_image`: push each of an image's names (every tag in every registry)
in a process of its own, so that each is reported published or failed.

Where the image goes is decided by the build (the package's `BuiltOciImage`, whose
`registries` `image-info.json` lists too: each registry's repository and tags,
`extra_image_tags` included, see util_rules/registries.py); publish pushes those names, except a
registry's with `skip_push`, which it lists as skipped.

Pants' publish goal knows of each process only its exit status, and reports all the names of a
process by it: a push of several names that failed after some moved could only say that all of
them failed. So each name gets a push of its own (as each tag gets a `docker push` in Pants'
docker backend), and the goal tries every one of them, whatever failed before. What that costs:
a process per name, and a `HEAD` per blob for each name after an image's first in a repository.
Blobs shared across repositories of one registry are still sent once: every push reads and
adds to the machine's push ledger (`push --ledger`, in the blob cache's named cache, so shared
by all the pushes of a publish and by later publishes), which says which repositories of the
registry received each blob, and a blob another repository has is mounted from there rather
than uploaded (base layers still come from the base's repository; a stale entry costs an
upload).

The push runs the image tool as an interactive (never cached) process, so it can see the
user's docker config, credential helpers and Google credentials; they are resolved inside that
process and never appear in argv or in any cache key.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, List, Sequence, Union

from pants.core.goals.package import OutputPathField
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.engine.env_vars import EnvironmentVars
from pants.engine.process import InteractiveProcess, Process
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.frozendict import FrozenDict

from pants_oci.core import wire
from pants_oci.package_types import BuiltOciImage
from pants_oci.target_types import OciImageRegistriesField, OciImageSkipPushField
from pants_oci.util_rules.registries import RegistryNames
from pants_oci.util_rules.tool import PUSH_LEDGER_DIR, RegistryEnvRequest
from pants_oci.util_rules.tool_commands import tool_request


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


def _registries_data(entries: Sequence[RegistryNames]) -> PublishOutputData:
    """`publish --output` data: the registries of an entry, as `image-info.json` has them."""
    return PublishOutputData(
        {
            "registries": tuple(
                FrozenDict(
                    {
                        key: tuple(value) if isinstance(value, list) else value
                        for key, value in entry.to_json().items()
                    }
                )
                for entry in entries
            )
        }
    )


def _names(entries: Sequence[RegistryNames]) -> List[str]:
    return [name for entry in entries for name in entry.references]


def _alias(entry: RegistryNames) -> object:
    """The registry's alias, as `image-info.json` has it (None for a bare address)."""
    return entry.to_json()["alias"]


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
    image = BuiltOciImage.of(package)
    entries = image.registries
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
            names=entry.references,
            description=f"(by `skip_push` of `[oci].registries` entry {_alias(entry)!r})",
            data=_registries_data([entry]),
        )
        for entry in entries
        if entry.skip_push
    ]
    pushed = [entry for entry in entries if not entry.skip_push]
    if not pushed:
        return PublishProcesses(skipped)
    # One push per name, as Pants' docker backend runs one `docker push` per tag: Pants can
    # then report each name published or failed on its own (a push that fails after some
    # tags moved could only report all of them failed), and goes on with the others.
    named = [dataclasses.replace(entry, tags=(tag,)) for entry in pushed for tag in entry.tags]
    env = await Get(EnvironmentVars, RegistryEnvRequest())
    processes = await MultiGet(
        Get(
            Process,
            tool_request(
                wire.Push(image.layout_dir, to=name.references, ledger=PUSH_LEDGER_DIR),
                f"Push {field_set.address} to {name.references[0]}",
                package.digest,
                uncached_env=env,
            ),
        )
        for name in named
    )
    digest = image.manifest_digest
    return PublishProcesses(
        [
            *(
                PublishPackages(
                    names=name.references,
                    process=InteractiveProcess.from_process(process),
                    # Recorded by `publish --output=FILE`: what the name points at once
                    # published, and where it is.
                    data=PublishOutputData(
                        {
                            "digest": digest,
                            "pinned": tuple(
                                f"{reference.rsplit(':', 1)[0]}@{digest}"
                                for reference in name.references
                            ),
                            **_registries_data([name]),
                        }
                    ),
                )
                for name, process in zip(named, processes)
            ),
            *skipped,
        ]
    )


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [*collect_rules(), *PublishOciImageFieldSet.rules()]
