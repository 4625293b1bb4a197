"""The ``pants-oci`` commands of crane's everyday set that make new images: ``append``,
``mutate``, ``flatten``, ``export`` and ``rebase``, each a call or two of the image builder
(:class:`~pants_oci.core.image.Image`) or of :mod:`pants_oci.core.image_edits`.

They print for people (the new image's digest), as crane does; ``--json`` prints one JSON
object instead, for scripts. ``export`` writes a tar, and prints nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from pants_oci.core._transport_options import TransportOptions
from pants_oci.core.cli.inputs import (
    base_argument,
    check_output_file,
    platform_argument,
    reference_argument,
)
from pants_oci.core.cli.output import print_result
from pants_oci.core.errors import InputFileError

if TYPE_CHECKING:
    from pants_oci.core.digest import Digest
    from pants_oci.core.image import Image
    from pants_oci.core.layer import LayerBlob
    from pants_oci.core.reference import Reference

__all__ = [
    "append_command",
    "export_command",
    "flatten_command",
    "mutate_command",
    "rebase_command",
]

_log = logging.getLogger(__name__)


def _warn_if_index(
    args: argparse.Namespace, options: TransportOptions, reference: Reference
) -> None:
    """An edit of an index without ``--platform`` edits one platform's image, and the new
    reference gets that image alone: say so, as it may drop the others from a tag."""
    from pants_oci.core import media_types
    from pants_oci.core.models import Platform
    from pants_oci.core.registry import RegistryClient

    if args.platform is not None:
        return
    with RegistryClient.from_reference(reference, options=options) as client:
        found = client.head_manifest(reference.identifier)
    if found is not None and media_types.is_index(found.media_type):
        _log.warning(
            "%s is an index: only the image for %s (this machine's) is edited, and the new "
            "image is that one alone, without the index's other platforms; pass --platform to "
            "choose the image",
            reference,
            Platform.host_linux(),
        )


def _pushed(args: argparse.Namespace, reference: Reference, digest: Digest) -> None:
    """What a command that pushed an image prints: its digest (``--json``: and where)."""
    print_result(args, [str(digest)], {"reference": str(reference), "digest": str(digest)})


def _image(
    args: argparse.Namespace,
    options: TransportOptions,
    base: str | os.PathLike[str],
    target: Reference,
) -> Image:
    """The builder on ``base`` (a reference, or an OCI layout), pushing to ``target``."""
    from pants_oci.core.image import Image

    return Image(base, target, options=options, platform=platform_argument(args.platform))


@contextmanager
def _pulled(args: argparse.Namespace, options: TransportOptions) -> Iterator[Path]:
    """``args.reference``'s image (``--platform``'s, of an index), with its layers, in an OCI
    layout of a temporary directory."""
    from pants_oci.core.remote import pull_image

    reference = reference_argument(args.reference)
    with tempfile.TemporaryDirectory(prefix="pants-oci-") as temporary:
        layout = Path(temporary) / "image"
        pull_image(
            reference,
            layout,
            platform=platform_argument(args.platform),
            with_layers=True,
            options=options,
            progress=args.progress(f"downloading {reference}"),
        )
        yield layout


def _add_blob(image: Image, layer: LayerBlob, path: str | Path, how: str) -> None:
    """The layer blob at ``path`` on top of the image, its history entry saying ``how``."""
    image.add_layer(
        layer.digest,
        layer.diff_id,
        layer.size,
        media_type=layer.media_type,
        blob=path,
        created_by=f"pants-oci {how}",
    )


def append_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The base with one layer per tar file (as it is) or directory on top, pushed."""
    from pants_oci.core.image_edits import layer_tarball

    target = reference_argument(args.target)
    with _image(args, options, base_argument(args.reference), target) as image:
        for source in args.new_layer:
            if os.path.isdir(source):
                image.add_files({"/": source})
                continue
            if not os.path.isfile(source):
                raise InputFileError(
                    f"--new-layer {source}: no such file or directory; give a tar file or a "
                    "directory"
                )
            _add_blob(image, layer_tarball(source), source, f"append {os.path.basename(source)}")
        digest = image.save(progress=args.progress(f"pushing {target}"))
    _pushed(args, target, digest)


def _list_argument(text: str, flag: str) -> list[str]:
    """``--entrypoint``/``--cmd``: a JSON array of strings, or comma-separated words."""
    if not text.lstrip().startswith("["):
        return text.split(",") if text else []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{flag} {text!r}: not a JSON array ({exc.msg})") from None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputFileError(f"{flag} {text!r}: give a JSON array of strings, or a,b,c")
    return value


def _pairs(items: Sequence[str], flag: str) -> dict[str, str]:
    """``NAME=VALUE`` arguments, in order (a later one wins)."""
    pairs = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not name or not equals:
            raise InputFileError(f"{flag} {item!r}: give NAME=VALUE")
        pairs[name] = value
    return pairs


def mutate_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The image with its config (and manifest annotations) edited, pushed to ``-t`` (default:
    where it is)."""
    reference = reference_argument(args.reference)
    target = reference_argument(args.target) if args.target else reference
    env = _pairs(args.env, "--env")
    labels = _pairs(args.label, "--label")
    annotations = _pairs(args.annotation, "--annotation")
    _warn_if_index(args, options, reference)
    with _image(args, options, str(reference), target) as image:
        image.keep_base_metadata()
        if args.entrypoint is not None:
            cmd = None if image.cmd is None else list(image.cmd)  # a copy: image.cmd is live
            image.entrypoint = _list_argument(args.entrypoint, "--entrypoint")
            if args.cmd is None and cmd is not None:  # crane keeps the cmd
                image.cmd = cmd
        if args.cmd is not None:
            image.cmd = _list_argument(args.cmd, "--cmd")
        for name, value in env.items():
            image.set_env(name, value)
        image.labels.update(labels)
        image.annotations.update(annotations)
        if args.user is not None:
            image.user = args.user
        if args.workdir is not None:
            image.workdir = args.workdir
        digest = image.save(progress=args.progress(f"pushing {target}"))
    _pushed(args, target, digest)


def flatten_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The image with its layers squashed into one, whiteouts applied, pushed."""
    from pants_oci.core.image_edits import squashed_layer

    target = reference_argument(args.target)
    _warn_if_index(args, options, reference_argument(args.reference))
    with _pulled(args, options) as layout:
        blob = layout.parent / "flat.tar.gz"
        layer = squashed_layer(layout, blob)
        with _image(args, options, layout, target) as image:
            image.keep_base_metadata()
            for descriptor in image.layers:
                image.remove_layer(descriptor.digest)
            _add_blob(image, layer, blob, f"flatten {args.reference}")
            digest = image.save(progress=args.progress(f"pushing {target}"))
    _pushed(args, target, digest)


def export_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The image's filesystem as one tar, written whole to a file (or streamed to stdout)."""
    from pants_oci.core.image_edits import write_filesystem_tar
    from pants_oci.core.outputs import replacing

    if args.output != "-":
        check_output_file(args.output, "OUTPUT")
    with _pulled(args, options) as layout:
        if args.output == "-":
            sys.stdout.flush()
            write_filesystem_tar(layout, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        with replacing(args.output) as output:
            write_filesystem_tar(layout, output)


def rebase_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The image's own layers moved from ``--old-base`` onto ``--new-base``, pushed."""
    from pants_oci.core.image_edits import rebase_image

    target = reference_argument(args.target)
    digest = rebase_image(
        reference_argument(args.reference),
        reference_argument(args.old_base),
        reference_argument(args.new_base),
        target,
        platform=platform_argument(args.platform),
        options=options,
        progress=args.progress(f"pushing {target}"),
    )
    _pushed(args, target, digest)
