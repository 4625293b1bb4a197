"""The ``pants-oci`` commands that reach registries: ``base pull``, ``push`` (of an OCI layout,
or a docker-archive tar), ``copy`` and ``inspect``, each over a function of
:mod:`pants_oci.core.remote`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from pants_oci.core import wire
from pants_oci.core._transport_options import TransportOptions
from pants_oci.core.cli.inputs import platform_argument, reference_argument
from pants_oci.core.cli.output import emit, write_exact, write_raw
from pants_oci.core.errors import DocumentError, ImageArchiveError, InputFileError, PartialPushError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pants_oci.core.models import AnyManifest, Descriptor
    from pants_oci.core.reference import Reference

__all__ = ["base_pull_command", "copy_command", "inspect_command", "push_command"]


def base_pull_command(args: argparse.Namespace, options: TransportOptions) -> None:
    from pants_oci.core.remote import pull_image

    reference = reference_argument(args.reference)
    pulled = pull_image(
        reference,
        args.output,
        platform=platform_argument(args.platform),
        with_layers=args.with_layers,
        blob_cache=args.blob_cache,
        options=options,
        progress=args.progress(f"pulling {reference}"),
    )
    manifest = pulled.manifest
    emit(
        wire.BasePullResult(
            reference=str(reference),
            index_digest=str(pulled.index_digest) if pulled.index_digest else None,
            manifest_digest=str(manifest.digest),
            config_digest=str(manifest.config.digest),
            platform=str(pulled.config.platform),
            layers=_blobs(manifest.layers),
        )
    )


def _displayed(reference: Reference) -> str:
    """A pushed reference as the output names it: with its tag (``latest`` if none)."""
    from pants_oci.core.reference import DEFAULT_TAG

    if reference.tag is None and reference.digest is None:
        return str(reference.with_tag(DEFAULT_TAG))
    return str(reference)


@contextmanager
def _source_layout(source: str) -> Iterator[str]:
    """What ``push`` pushes: a layout directory as it is, or a docker-archive tar (a file)
    read into a layout of a temporary directory (its layers gzip-compressed, its config's
    bytes, and so the image ID, kept), removed after."""
    if not os.path.isfile(source):
        yield source
        return
    from pants_oci.core.layout import ImageLayout
    from pants_oci.core.tarball import list_docker_archive, read_docker_archive

    images = list_docker_archive(source)
    if len(images) != 1:
        names = ", ".join(name for image in images for name in image.repo_tags)
        raise ImageArchiveError(
            f"docker archive {source} holds {len(images)} images ({names or 'none named'}); "
            "push takes an archive of one image: save each image to its own archive "
            "(`docker save IMAGE -o FILE`, `pants-oci pull REF FILE --format docker-archive`)"
        )
    with tempfile.TemporaryDirectory(prefix="pants-oci-push-") as temporary:
        layout = ImageLayout.create(temporary)
        read_docker_archive(source, layout, tag="latest", compression="gzip")
        yield temporary


def push_command(args: argparse.Namespace, options: TransportOptions) -> None:
    from pants_oci.core.push_ledger import PushLedger
    from pants_oci.core.remote import push_layout

    references = [reference_argument(text, "--to") for text in args.to]
    if not os.path.exists(args.layout):
        raise InputFileError(
            f"{args.layout}: no such file or directory; push takes an OCI layout directory "
            "(the output of `image assemble`, `pull` or `base pull`) or a docker-archive tar"
        )
    doing = f"pushing {', '.join(map(_displayed, references))}"
    # An error names the push it ended (see report.py): under `pants publish` the output of
    # every push of every image comes one after the other.
    args.doing = doing
    try:
        with _source_layout(args.layout) as layout:
            pushed = push_layout(
                layout,
                references,
                base_reference=args.base_reference,
                options=options,
                progress=args.progress(doing),
                ledger=PushLedger(args.ledger) if args.ledger else None,
            )
    except PartialPushError as error:
        args.doing = None  # its message names every destination, moved or not
        # So that CI can act on it: which tags moved, which did not (the error says why).
        emit(
            wire.PushResult(
                pushed=(), updated=tuple(error.updated), not_updated=tuple(error.not_updated)
            )
        )
        raise
    emit(
        wire.PushResult(
            pushed=tuple(
                wire.PushedReference(reference=_displayed(reference), digest=str(digest))
                for reference, digest in pushed
            )
        )
    )


def copy_command(args: argparse.Namespace, options: TransportOptions) -> None:
    from pants_oci.core.remote import copy_image

    source, destination = reference_argument(args.source), reference_argument(args.destination)
    digest = copy_image(
        source,
        destination,
        options=options,
        progress=args.progress(f"copying {source} to {destination}"),
        platform=platform_argument(args.platform),
    )
    emit(
        {
            "source": str(source),
            "destination": _displayed(destination),
            "digest": str(digest),
        }
    )


def inspect_command(args: argparse.Namespace, options: TransportOptions) -> None:
    from pants_oci.core.remote import read_document

    reference = reference_argument(args.reference)
    document, config = read_document(
        reference,
        platform=platform_argument(args.platform),
        image_only=args.config,
        read_config=args.config or not args.raw,
        options=options,
    )
    if args.config:
        assert config is not None
        write_raw(config if args.raw else _pretty_config(config, f"{reference}: image config"))
    elif args.raw:
        write_raw(document.to_bytes())
    else:
        emit(_summary(reference, document, config))


def _summary(
    reference: Reference, document: AnyManifest, config: bytes | None
) -> wire.InspectResult:
    """What ``inspect`` prints of a manifest (with its config) or an index."""
    from pants_oci.core.models import DockerManifestList, ImageConfig, OCIIndex

    digest = str(document.digest)
    media_type = document.media_type or type(document).default_media_type
    if isinstance(document, (OCIIndex, DockerManifestList)):
        return wire.InspectResult(
            str(reference),
            digest,
            media_type,
            manifests=tuple(
                wire.IndexEntry(
                    digest=str(entry.digest),
                    media_type=entry.media_type,
                    size=entry.size,
                    platform=str(entry.platform) if entry.platform else None,
                )
                for entry in document.manifests
            ),
        )
    assert config is not None
    return wire.InspectResult(
        str(reference),
        digest,
        media_type,
        config_digest=str(document.config.digest),
        platform=str(ImageConfig.from_bytes(config).platform),
        layers=_blobs(document.layers),
    )


def _blobs(layers: Iterable[Descriptor]) -> tuple[wire.BlobDescriptor, ...]:
    return tuple(
        wire.BlobDescriptor(digest=str(layer.digest), size=layer.size, media_type=layer.media_type)
        for layer in layers
    )


def _pretty_config(raw: bytes, what: str) -> bytes:
    try:
        return json.dumps(json.loads(raw), separators=(",", ":")).encode()
    except ValueError as exc:
        raise DocumentError(
            f"{what} is not valid JSON ({exc}); `inspect --config --raw` prints its bytes"
        ) from None


def referrers_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The artifacts attached to an image, by the referrers API or the fallback tag."""
    from pants_oci.core.referrers import list_referrers

    reference = reference_argument(args.reference)
    found = list_referrers(
        reference,
        artifact_type=args.artifact_type,
        platform=platform_argument(args.platform),
        options=options,
    )
    emit(
        {
            "reference": str(reference),
            "referrers": [
                {
                    "subject": str(item.subject),
                    "digest": str(item.descriptor.digest),
                    "media_type": item.descriptor.media_type,
                    "artifact_type": item.descriptor.artifact_type,
                    "size": item.descriptor.size,
                    "annotations": dict(item.descriptor.annotations or {}),
                }
                for item in found
            ],
        }
    )


def sbom_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The SBOM attached to an image (its platform's), exactly as it was pushed."""
    from pants_oci.core.supply_chain import read_sbom

    document = read_sbom(
        reference_argument(args.reference),
        format=args.format,
        platform=platform_argument(args.platform),
        options=options,
    )
    write_exact(document)
