"""The ``pants-oci`` commands over local OCI layouts: ``image index``, ``image pythons``,
``image dirs`` and ``run``.
"""

from __future__ import annotations

import argparse
import os

from pants_oci.core import wire
from pants_oci.core._transport_options import TransportOptions
from pants_oci.core.cli.inputs import tag_arguments
from pants_oci.core.cli.output import emit
from pants_oci.core.errors import InputFileError

__all__ = [
    "image_dirs_command",
    "image_index_command",
    "image_pythons_command",
    "run_command",
]


def image_index_command(args: argparse.Namespace, _options: TransportOptions) -> None:
    from pants_oci.core import media_types
    from pants_oci.core.index import index_layouts
    from pants_oci.core.layout import ImageLayout, staged_directory
    from pants_oci.core.reference import DEFAULT_TAG
    from pants_oci.core.referrers import layout_referrers

    tags = tag_arguments(args.tag) or [DEFAULT_TAG]
    with staged_directory(args.output) as staged:
        root, entries = index_layouts(args.image, staged, tags, include_layers=not args.omit_layers)
        written = ImageLayout.open(staged)
        referrers = tuple(
            wire.AttachedReferrer(
                digest=str(referrer.digest),
                artifact_type=referrer.artifact_type or "",
                subject=str(entry.digest),
            )
            for _, entry in entries
            for referrer in layout_referrers(written, entry.digest)
        )
    emit(
        wire.ImageIndexResult(
            manifest_digest=str(root.digest),
            media_type=media_types.OCI_INDEX,
            tags=tuple(tags),
            platforms=tuple(
                dict((str(platform), str(entry.digest)) for platform, entry in entries).items()
            ),
            referrers=referrers or None,
        )
    )


def image_dirs_command(args: argparse.Namespace, _options: TransportOptions) -> None:
    from pants_oci.core.rootfs import directory_paths

    emit(wire.ImageDirsResult(directories=tuple(directory_paths(args.base))))


def image_pythons_command(args: argparse.Namespace, _options: TransportOptions) -> None:
    from pants_oci.core.interpreters import find_python_interpreters

    found = find_python_interpreters(args.base)
    emit(
        wire.ImagePythonsResult(
            interpreters=tuple(
                wire.PythonInterpreter(path=i.path, version=i.version) for i in found
            )
        )
    )


def run_command(args: argparse.Namespace, options: TransportOptions) -> int:
    """No JSON: the container's output is the command's, and so is its exit status."""
    from pants_oci.core.run import Mount, RunSettings, run_layout

    env: dict[str, str] = {}
    for item in args.env:
        name, equals, value = item.partition("=")
        if not name:
            raise InputFileError(f"--env {item!r}: expected NAME=VALUE or NAME")
        if equals:
            env[name] = value
        else:  # as `docker run -e NAME`: this process's value, if set
            source = f"{args.pass_env_prefix or ''}{name}"
            if source in os.environ:
                env[name] = os.environ[source]
    settings = RunSettings(
        mounts=tuple(Mount.parse(text) for text in args.mount),
        workdir=args.workdir,
        user=args.user,
        max_unpacked_size=args.max_unpacked_size,
    )
    return run_layout(
        args.layout,
        ref=args.ref,
        args=args.container_args,
        env=env,
        runtime=args.runtime,
        options=options,
        settings=settings,
    )
