"""``pants-oci image assemble``: an image of a base (scratch or a local OCI layout) and layer
blobs that ``layer build`` wrote, configured from a JSON image config, written as an OCI layout
and, with ``--docker-archive``, as a ``docker load``-able tar too. Every layer blob given is
checked against its metadata first; with ``--omit-layers`` the layout gets the documents only,
and a layer may be given by its metadata alone.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pants_oci.core import wire
from pants_oci.core._compat import zip_strict
from pants_oci.core._transport_options import TransportOptions
from pants_oci.core.base_spec import SCRATCH
from pants_oci.core.cli.inputs import (
    input_values,
    json_object,
    read_json,
    string_list,
    string_map,
    tag_arguments,
    typed,
)
from pants_oci.core.cli.output import emit
from pants_oci.core.errors import InputFileError, InvalidReferenceError

if TYPE_CHECKING:
    from pants_oci.core.image import Image, ImageData
    from pants_oci.core.layout import ImageLayout
    from pants_oci.core.models import Platform

__all__ = ["image_assemble_command"]

_CONFIG_KEYS = (
    "entrypoint",
    "cmd",
    "env",
    "workdir",
    "user",
    "labels",
    "annotations",
    "exposed_ports",
    "volumes",
    "stop_signal",
    "platform",
)
_META_KEYS = ("digest", "diff_id", "size", "media_type", "uncompressed_size", "distributions")


def image_assemble_command(args: argparse.Namespace, options: TransportOptions) -> None:
    # The image builder imports the registry stack only for a registry base (or missing base
    # layers): assembling on scratch or a complete local layout stays off the network code.
    from pants_oci.core.image import Image
    from pants_oci.core.reference import DEFAULT_TAG

    tags = tag_arguments(args.tag) or [DEFAULT_TAG]
    archive_names = _archive_names(args, tags)  # checked before anything is built
    where = f"image config {args.config}"
    config = json_object(read_json(args.config, "image config"), where, _CONFIG_KEYS)
    platform = _config_platform(config, where)
    facts = _read_facts(args.supply_chain) if args.supply_chain else None
    base: str | Path = SCRATCH if args.base == SCRATCH else Path(args.base)
    layers = [_checked_layer(spec, metadata_alone=args.omit_layers) for spec in args.layer]
    if args.docker_archive and any(blob is None for blob, _ in layers):
        raise InputFileError(
            "--docker-archive holds every layer: give each --layer as BLOB_PATH=META_JSON_PATH"
        )
    with Image(
        base,
        options=options,
        platform=platform,
        base_reference=args.base_reference,
        source_date_epoch=args.source_date_epoch,
    ) as image:
        for blob, meta in layers:
            image.add_layer(
                meta["digest"],
                meta["diff_id"],
                meta["size"],
                media_type=meta["media_type"],
                blob=blob,
            )
        _apply_config(image, config, where)
        licenses = _layer_distributions(meta for _, meta in layers)
        data = image.get_image_data()  # what the layout and the archive hold, once edited
        referrers = _write_outputs(
            image, data, args, tags, archive_names, facts=facts, licenses=licenses
        )
        emit(_summary(image, data, tags, referrers))


def _read_facts(path: str) -> wire.BuildFacts:
    """The `--supply-chain` file: what the build knows of the image (wire.BuildFacts)."""
    try:
        with open(path, "rb") as handle:
            return wire.BuildFacts.from_json(handle.read())
    except OSError as exc:
        raise InputFileError(f"--supply-chain {path}: cannot read it: {exc}") from None
    except wire.ToolOutputError as exc:
        raise InputFileError(f"--supply-chain {path}: not build facts: {exc.problem}") from None


def _layer_distributions(metas: Iterable[Mapping[str, Any]]) -> dict[str, wire.LayerDistribution]:
    """The Python distributions the layers unpacked (`layer build`'s `distributions`)."""
    found: dict[str, wire.LayerDistribution] = {}
    for meta in metas:
        for entry in meta.get("distributions") or ():
            distribution = wire.LayerDistribution.from_json(json.dumps(entry))
            found[distribution.name] = distribution
    return found


def _config_platform(config: Mapping[str, Any], where: str) -> Platform | None:
    from pants_oci.core.models import Platform

    platform_text = typed(config, "platform", str, where, None)
    try:
        return Platform.parse(platform_text) if platform_text else None
    except ValueError as exc:
        raise InputFileError(f"{where}: {exc}") from None


def _checked_layer(spec: str, *, metadata_alone: bool) -> tuple[str | None, dict[str, Any]]:
    """``--layer BLOB_PATH=META_JSON_PATH``: the blob's path and its metadata, checked against
    each other; or, when ``metadata_alone`` (``--omit-layers``), ``--layer META_JSON_PATH``."""
    blob, equals, meta_path = spec.partition("=")
    if metadata_alone and not equals and spec:
        return None, _read_layer_meta(spec)
    if not equals or not blob or not meta_path:
        alone = " (or META_JSON_PATH alone, with --omit-layers)" if not metadata_alone else ""
        raise InputFileError(f"--layer {spec!r}: expected BLOB_PATH=META_JSON_PATH{alone}")
    meta = _read_layer_meta(meta_path)
    _check_layer(blob, meta, meta_path)
    return blob, meta


def _read_layer_meta(path: str) -> dict[str, Any]:
    where = f"layer metadata {path}"
    meta = json_object(read_json(path, "layer metadata"), where, _META_KEYS)
    for key, kind in (("digest", str), ("diff_id", str), ("size", int), ("media_type", str)):
        if not isinstance(meta.get(key), kind):
            raise InputFileError(
                f"{where}: {key!r} must be a {kind.__name__} (it is `layer build`'s output)"
            )
    return meta


def _check_layer(blob: str, meta: Mapping[str, Any], meta_path: str) -> None:
    """Refuse a layer whose metadata disagrees with its blob: the image's manifest and config
    are made from the metadata, so a wrong digest, size, diff_id or media type would make an
    image that names blobs it does not have. One pass over the blob measures all of them."""
    import zlib

    import zstandard

    from pants_oci.core.compression import compression_of_media_type, inspect_layer_blob
    from pants_oci.core.digest import Digest
    from pants_oci.core.errors import InvalidDigestError

    where = f"--layer {blob}={meta_path}"
    expected = compression_of_media_type(meta["media_type"])
    if expected is None:
        raise InputFileError(
            f"{where}: media_type {meta['media_type']!r} is not a layer media type"
        )
    try:
        digest, diff_id = Digest.parse(meta["digest"]), Digest.parse(meta["diff_id"])
    except InvalidDigestError as exc:
        raise InputFileError(f"{where}: {exc}") from None
    try:
        facts = inspect_layer_blob(blob)
    except (OSError, EOFError, ValueError, zlib.error, zstandard.ZstdError) as exc:
        raise InputFileError(f"{where}: the layer blob cannot be read: {exc}") from None
    problems = []
    if facts.size != meta["size"]:
        problems.append(f"the blob is {facts.size} bytes, the metadata says size {meta['size']}")
    if facts.digest != digest:
        problems.append(f"the blob's digest is {facts.digest}, the metadata says {digest}")
    if facts.compression != expected:
        problems.append(
            f"the blob is {_COMPRESSED[facts.compression]}, the metadata says media_type "
            f"{meta['media_type']} ({_COMPRESSED[expected]})"
        )
    if facts.diff_id != diff_id:
        problems.append(
            f"the tar in the blob has diff_id {facts.diff_id}, the metadata says {diff_id}"
        )
    if problems:
        raise InputFileError(
            f"{where}: the layer metadata does not match the blob: " + "; ".join(problems)
        )


_COMPRESSED = {"gzip": "gzip-compressed", "zstd": "zstd-compressed", "none": "an uncompressed tar"}


def _apply_config(image: Image, config: Mapping[str, Any], where: str) -> None:
    with input_values(where):
        _apply_config_values(image, config, where)


def _apply_config_values(image: Image, config: Mapping[str, Any], where: str) -> None:
    # Entrypoint before cmd: a new entrypoint drops the inherited cmd, a cmd given here stays.
    entrypoint = string_list(config, "entrypoint", where)
    if entrypoint is not None:
        image.entrypoint = entrypoint
    cmd = string_list(config, "cmd", where)
    if cmd is not None:
        image.cmd = cmd
    for name, value in string_map(config, "env", where).items():
        image.set_env(name, value)
    workdir = typed(config, "workdir", str, where, None)
    if workdir is not None:
        image.workdir = workdir
    user = typed(config, "user", str, where, None)
    if user is not None:
        image.user = user
    image.labels.update(string_map(config, "labels", where))
    image.annotations.update(string_map(config, "annotations", where))
    image.expose(*(string_list(config, "exposed_ports", where) or ()))
    image.volumes = [*image.volumes, *(string_list(config, "volumes", where) or ())]
    stop_signal = typed(config, "stop_signal", str, where, None)
    if stop_signal is not None:
        image.stop_signal = stop_signal


def _archive_names(args: argparse.Namespace, tags: Sequence[str]) -> list[str]:
    """The RepoTags of `--docker-archive`: each `--archive-name` NAME:TAG, checked and written
    as given (podman reads `app:1` as `localhost/app:1`, `docker.io/library/app:1` as itself);
    without any, the `--tag`s that are full names (as `example.com/app:1.2`)."""
    from pants_oci.core.reference import parse_reference

    if not args.archive_name:
        return [tag for tag in tags if ":" in tag or "/" in tag]
    if not args.docker_archive:
        raise InputFileError(
            "--archive-name names the image in a docker-archive; give --docker-archive TAR_PATH"
        )
    names: list[str] = []
    for text in args.archive_name:
        try:
            reference = parse_reference(text)
        except InvalidReferenceError as exc:
            raise InvalidReferenceError(f"--archive-name {text!r}: {exc}") from None
        if reference.digest is not None or reference.tag is None:
            raise InvalidReferenceError(
                f"--archive-name {text!r}: expected NAME:TAG, such as "
                f"'{reference.familiar_name}:latest' (a docker-archive names images by tag, "
                "never by digest)"
            )
        if text not in names:
            names.append(text)
    return names


def _write_outputs(
    image: Image,
    data: ImageData,
    args: argparse.Namespace,
    tags: Sequence[str],
    archive_names: Sequence[str],
    *,
    facts: wire.BuildFacts | None,
    licenses: Mapping[str, wire.LayerDistribution],
) -> tuple[wire.AttachedReferrer, ...] | None:
    """The layout at ``--output`` (with the image's SBOMs and provenance attached, given
    ``facts``) and the ``--docker-archive``: both or neither."""
    from pants_oci.core.layout import ImageLayout, staged_directory

    # The layout is built beside --output, the archive (itself written to a temporary file and
    # renamed) next, and only then is the layout renamed into place (see
    # layout.staged_directory); should that fail, the archive is removed.
    archive_done = False
    try:
        with staged_directory(args.output) as staged:
            image.write_layout(
                staged, tags, include_base_layers=False, omit_layers=args.omit_layers
            )
            referrers = None
            if facts is not None:
                referrers = _attach_supply_chain(
                    image, data, ImageLayout.open(staged), facts, licenses
                )
            if args.docker_archive:
                image.write_docker_archive(
                    args.docker_archive,
                    archive_names,
                    fetch_missing=False,
                    repositories=bool(archive_names),
                )
                archive_done = True
    except BaseException:
        if archive_done:
            Path(args.docker_archive).unlink(missing_ok=True)
        raise
    return referrers


def _attach_supply_chain(
    image: Image,
    data: ImageData,
    layout: ImageLayout,
    facts: wire.BuildFacts,
    licenses: Mapping[str, wire.LayerDistribution],
) -> tuple[wire.AttachedReferrer, ...]:
    from pants_oci.core.supply_chain import SubjectImage, attach_supply_chain

    base_ref, base_digest = image.base_reference, image.base_manifest_digest
    subject = SubjectImage(
        name=facts.image,
        manifest_digest=str(data.manifest_digest),
        platform=str(image.image_platform),
        layers=tuple(str(layer.digest) for layer in data.manifest.layers),
        created=data.config.created or "1970-01-01T00:00:00Z",
        base_reference=str(base_ref) if base_ref else None,
        base_digest=str(base_digest) if base_digest else None,
    )
    return attach_supply_chain(layout, data.manifest.descriptor(), subject, facts, licenses)


def _summary(
    image: Image,
    data: ImageData,
    tags: Sequence[str],
    referrers: tuple[wire.AttachedReferrer, ...] | None,
) -> wire.ImageAssembleResult:
    """The command's JSON output: the image's digests, layers, tags and base."""
    from pants_oci.core import media_types

    base_ref = image.base_reference
    base_digest = image.base_manifest_digest
    return wire.ImageAssembleResult(
        manifest_digest=str(data.manifest_digest),
        config_digest=str(data.config_digest),
        media_type=media_types.OCI_MANIFEST,
        layers=tuple(
            wire.AssembledLayer(
                digest=str(layer.digest),
                diff_id=str(diff_id),
                size=layer.size,
                media_type=layer.media_type,
            )
            for layer, diff_id in zip_strict(data.manifest.layers, data.config.rootfs.diff_ids)
        ),
        tags=tuple(tags),
        base=wire.AssembledBase(
            reference=str(base_ref) if base_ref else None,
            manifest_digest=str(base_digest) if base_digest else None,
        ),
        referrers=referrers,
    )
