"""The ``pants-oci`` commands of crane's everyday set: ``ls``, ``catalog``, ``digest``,
``manifest``, ``config``, ``pull``, ``blob``, ``tag`` and ``delete``, each a call or two of the
registry client (:class:`~pants_oci.core.registry.RegistryClient`), of
:mod:`pants_oci.core.remote` or of :mod:`pants_oci.core.pull`.

They print for people (a name per line, a digest, a document's exact bytes), as crane does;
``--json`` prints one JSON object instead, for scripts (not ``manifest`` and ``config``,
whose output is a JSON document already).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from pants_oci.core._transport_options import TransportOptions
from pants_oci.core.cli.inputs import (
    check_output_file,
    platform_argument,
    reference_argument,
    registry_argument,
)
from pants_oci.core.cli.output import print_result, write_exact
from pants_oci.core.errors import InputFileError, InvalidReferenceError

if TYPE_CHECKING:
    from pants_oci.core.models import AnyManifest
    from pants_oci.core.reference import Reference
    from pants_oci.core.registry import RegistryClient

__all__ = [
    "blob_command",
    "catalog_command",
    "config_command",
    "delete_command",
    "digest_command",
    "ls_command",
    "manifest_command",
    "pull_command",
    "tag_command",
]


def _client(reference: Reference, options: TransportOptions) -> RegistryClient:
    from pants_oci.core.registry import RegistryClient

    return RegistryClient.from_reference(reference, options=options)


def _read(
    args: argparse.Namespace, options: TransportOptions, *, config: bool = False
) -> tuple[Reference, AnyManifest, bytes | None]:
    """The document ``args.reference`` names (``--platform``'s image of an index), with its
    image config when ``config``."""
    from pants_oci.core.remote import read_document

    reference = reference_argument(args.reference)
    document, config_bytes = read_document(
        reference,
        platform=platform_argument(args.platform),
        image_only=config,
        read_config=config,
        options=options,
    )
    return reference, document, config_bytes


def ls_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The tags of a repository."""
    reference = reference_argument(args.repository)
    if reference.tag is not None or reference.digest is not None:
        raise InvalidReferenceError(
            f"invalid repository {args.repository!r}: ls lists a repository's tags; give the "
            f"repository without a tag or digest ({reference.name})"
        )
    with _client(reference, options) as client:
        tags = client.list_tags()
    print_result(args, tags, {"repository": reference.name, "tags": tags})


def catalog_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The repositories of a registry."""
    from pants_oci.core.registry import catalog

    registry = registry_argument(args.registry)
    repositories = catalog(registry, options=options)
    print_result(args, repositories, {"registry": registry, "repositories": repositories})


def digest_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The digest of the manifest (or index) a reference names, or of ``--platform``'s."""
    reference, document, _ = _read(args, options)
    digest = str(document.digest)
    print_result(args, [digest], {"reference": str(reference), "digest": digest})


def manifest_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The exact bytes of the manifest (or index) a reference names, or of ``--platform``'s."""
    _, document, _ = _read(args, options)
    write_exact(document.to_bytes())


def config_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The exact bytes of an image's config (``--platform``'s, or this machine's, of an index)."""
    _, _, config = _read(args, options, config=True)
    assert config is not None  # read_document returns one for an image manifest
    write_exact(config)


def pull_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """An image with its layers, written whole (or not at all): an OCI layout holding it as
    the registry has it (every platform of an index, or ``--platform``'s image), or a
    docker-archive tar of one image."""
    from pants_oci.core.pull import pull_docker_archive, pull_layout

    reference = reference_argument(args.reference)
    platform = platform_argument(args.platform)
    progress = args.progress(f"pulling {reference}")
    if args.format == "docker-archive":
        if os.path.isdir(args.output):
            raise InputFileError(
                f"OUTPUT {args.output} is a directory; --format docker-archive writes a tar "
                "file: give its path (or pull --format oci into a directory)"
            )
        check_output_file(args.output, "OUTPUT")
        pulled = pull_docker_archive(
            reference, args.output, platform=platform, options=options, progress=progress
        )
    else:
        if os.path.lexists(args.output) and not os.path.isdir(args.output):
            raise InputFileError(
                f"OUTPUT {args.output} is a file; --format oci writes an OCI layout directory: "
                "give a new directory's path (or pull --format docker-archive into a tar)"
            )
        pulled = pull_layout(
            reference, args.output, platform=platform, options=options, progress=progress
        )
    print_result(
        args,
        [str(pulled.digest)],
        {
            "reference": str(reference),
            "digest": str(pulled.digest),
            "format": args.format,
            "output": args.output,
            "platforms": [str(platform) for platform in pulled.platforms],
        },
    )


def blob_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """A blob, by digest: streamed to stdout, or written whole to ``-o FILE`` (or not at all),
    verified against its digest."""
    reference = reference_argument(args.reference)
    if reference.digest is None:
        raise InvalidReferenceError(
            f"invalid blob reference {args.reference!r}: name the blob by its digest "
            f"({reference.name}@sha256:...)"
        )
    if args.output:
        check_output_file(args.output, "-o")
    elif args.json:
        raise InputFileError("blob --json needs -o FILE: without it, stdout holds the blob")
    progress = args.progress(f"downloading {reference}")
    with _client(reference, options) as client:
        if not args.output:
            sys.stdout.flush()
            client.get_blob(reference.digest, sys.stdout.buffer, progress=progress)
            sys.stdout.buffer.flush()
            return
        size = client.get_blob(reference.digest, args.output, progress=progress)
    print_result(
        args,
        [],
        {
            "reference": str(reference),
            "digest": reference.digest,
            "size": size,
            "output": args.output,
        },
    )


def tag_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """The manifest a reference names, put under another tag of its repository (same bytes)."""
    from pants_oci.core.reference import Reference
    from pants_oci.core.remote import put_manifest_tags

    reference = reference_argument(args.reference)
    tagged = Reference(reference.registry, reference.repository).with_tag(args.tag)
    with _client(reference, options) as client:
        document = client.get_manifest(reference.identifier)
        media_type = document.media_type or type(document).default_media_type
        digest = put_manifest_tags(client, document.to_bytes(), media_type, [args.tag])
    print_result(
        args,
        [f"{tagged}@{digest}"],
        {"reference": str(reference), "tagged": str(tagged), "digest": str(digest)},
    )


def delete_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """Delete the manifest a reference names (a tag is resolved to its digest first), and so
    every tag of it."""
    reference = reference_argument(args.reference)
    with _client(reference, options) as client:
        digest = reference.parsed_digest or client.get_manifest(reference.identifier).digest
        client.delete_manifest(digest)
    deleted = f"{reference.name}@{digest}"
    print_result(
        args, [deleted], {"reference": str(reference), "deleted": deleted, "digest": str(digest)}
    )
