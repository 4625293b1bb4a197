"""`pants run` for `oci_image`: build the image, unpack it and run it with runc or podman.

No Docker daemon: the image tool (`pants-oci run`) unpacks the OCI layout into a bundle and
starts it. Arguments after `--` replace the image's cmd; `[oci].run_env_vars` sets variables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple, Union

from pants.base.build_root import BuildRoot
from pants.core.goals.package import BuiltPackage, PackageFieldSet
from pants.core.goals.run import RunFieldSet, RunInSandboxBehavior, RunRequest
from pants.engine.addresses import Address
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import AddPrefix, Digest, DigestSubset, PathGlobs, RemovePrefix, Snapshot
from pants.engine.process import Process
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.target import WrappedTarget, WrappedTargetRequest
from pants.engine.unions import UnionRule

from pants_oci.core import wire
from pants_oci.goals.package import IMAGE_INFO, OciImageFieldSet
from pants_oci.package_types import BuiltOciImage
from pants_oci.subsystems.oci import OciSubsystem
from pants_oci.target_types import OciImageBaseField
from pants_oci.util_rules.image import BuildImageRequest, BuiltImage
from pants_oci.util_rules.tool_commands import tool_request

_LAYOUT_DIR = "image"
# Where `pants run` hands the tool the values of `[oci].run_env_vars` meant for the container.
CONTAINER_ENV_PREFIX = "PANTS_OCI_RUN_ENV_"


@dataclass(frozen=True)
class OciImageRunFieldSet(RunFieldSet):
    required_fields = (OciImageBaseField,)
    # The runtime needs the host (root, namespaces); there is nothing to run in a sandbox.
    run_in_sandbox_behavior = RunInSandboxBehavior.NOT_SUPPORTED

    base: OciImageBaseField


def _in_chroot(process: Process, top_level: Iterable[str]) -> RunRequest:
    """The tool process as a RunRequest: `run` starts it from the build root, so the paths
    that are relative to the process's sandbox (its files, its caches, such as the link to
    the tool's Python, the tool itself, an immutable input) become `{chroot}/...`."""
    caches = set(process.append_only_caches.values())
    names = {*top_level, *caches, *process.immutable_input_digests}

    def absolute(value: str) -> str:
        return f"{{chroot}}/{value}" if value.split("/", 1)[0] in names else value

    return RunRequest(
        digest=process.input_digest,
        args=[absolute(arg) for arg in process.argv],
        extra_env={
            key: f"{{chroot}}/{value}" if value in caches else value
            for key, value in process.env.items()
        },
        immutable_input_digests=process.immutable_input_digests,
        append_only_caches=process.append_only_caches,
    )


_RUN_FLAGS = ("--mount", "--workdir", "--user", "--env")


class OciRunArgsError(ValueError):
    """An `[oci].run_args` entry that `pants run` cannot honour."""


@dataclass(frozen=True)
class _RunArgs:
    """`[oci].run_args`, read: `docker run`'s spellings, which are the tool's too."""

    mounts: Tuple[str, ...] = ()  # SOURCE:DEST, SOURCE absolute
    workdir: Optional[str] = None
    user: Optional[str] = None
    env: Tuple[str, ...] = ()


def _run_args(args: Iterable[str], build_root: BuildRoot) -> _RunArgs:
    """`[oci].run_args`; mount sources made absolute (from the build root), since the tool
    runs elsewhere. A flag given twice: each `--mount` and `--env` counts, the last
    `--workdir` and `--user` win (as in `docker run`)."""
    values: Dict[str, List[str]] = {flag: [] for flag in _RUN_FLAGS}
    words = list(args)
    while words:
        word = words.pop(0)
        flag, equals, value = word.partition("=")
        if flag not in _RUN_FLAGS:
            raise OciRunArgsError(
                f"`[oci].run_args` has {word!r}, which `pants run` cannot honour: it takes "
                f"{', '.join(f'{f}=...' for f in _RUN_FLAGS)} (as `docker run` spells them)."
            )
        if not equals:
            if not words:
                raise OciRunArgsError(f"`[oci].run_args` has {flag} without a value.")
            value = words.pop(0)
        if flag == "--mount":
            source, colon, destination = value.rpartition(":")
            if colon and source and not source.startswith("/"):
                value = f"{build_root.path}/{source}:{destination}"
        values[flag].append(value)
    mounts, workdirs, users, env = (tuple(values[flag]) for flag in _RUN_FLAGS)
    return _RunArgs(mounts, workdirs[-1] if workdirs else None, users[-1] if users else None, env)


async def _image_layout(address: Address) -> Tuple[BuiltOciImage, Digest]:
    """The image `package` builds, and its layout (without `image-info.json`) at `_LAYOUT_DIR`."""
    wrapped = await Get(
        WrappedTarget, WrappedTargetRequest(address, description_of_origin="`pants run`")
    )
    package = await Get(BuiltPackage, PackageFieldSet, OciImageFieldSet.create(wrapped.target))
    image = BuiltOciImage.of(package)
    layout = await Get(
        Digest,
        DigestSubset(
            package.digest,
            PathGlobs([f"{image.layout_dir}/**", f"!{image.layout_dir}/{IMAGE_INFO}"]),
        ),
    )
    layout = await Get(Digest, RemovePrefix(layout, image.layout_dir))
    if image.sparse:
        # Its base's layers are in a registry, not in the package: the run needs them all.
        whole = await Get(BuiltImage, BuildImageRequest(address, complete=True))
        layout = whole.layout
    return image, await Get(Digest, AddPrefix(layout, _LAYOUT_DIR))


@rule(desc="Prepare to run an OCI image")
async def run_oci_image(
    field_set: OciImageRunFieldSet, oci: OciSubsystem, build_root: BuildRoot
) -> RunRequest:
    image, layout = await _image_layout(field_set.address)
    run_args = _run_args(oci.run_args, build_root)
    env_specs = (*oci.run_env_vars, *run_args.env)
    passed_through = [spec for spec in env_specs if "=" not in spec]
    values = await Get(EnvironmentVars, EnvironmentVarsRequest([*passed_through, "PATH"]))
    # Values meant for the container reach the tool under a prefix only: a PYTHONPATH or
    # PEX_* passed through to the container must not change the tool that starts it.
    container_values = {
        f"{CONTAINER_ENV_PREFIX}{name}": values[name] for name in passed_through if name in values
    }
    command = wire.Run(
        _LAYOUT_DIR,
        ref=image.manifest_digest,
        runtime=oci.runtime.value,
        pass_env_prefix=CONTAINER_ENV_PREFIX,
        mounts=run_args.mounts,
        workdir=run_args.workdir,
        user=run_args.user,
        max_unpacked_size=oci.run_max_unpacked_size,
        env=env_specs,
        container_args=(),  # `pants run ... -- ARGS` appends the container's arguments
    )
    process = await Get(
        Process,
        tool_request(
            command,
            f"Run {field_set.address}",
            layout,
            # Never cached: the runtime (runc, podman) is found on the user's PATH.
            uncached_env={"PATH": values.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
        ),
    )
    snapshot = await Get(Snapshot, Digest, process.input_digest)
    top_level = {path.split("/", 1)[0] for path in (*snapshot.files, *snapshot.dirs)}
    request = _in_chroot(process, top_level)
    env: Dict[str, str] = {**request.extra_env, **container_values}
    return RunRequest(
        digest=request.digest,
        args=request.args,
        extra_env=env,
        immutable_input_digests=request.immutable_input_digests,
        append_only_caches=request.append_only_caches,
    )


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [*collect_rules(), *OciImageRunFieldSet.rules()]
