"""``pants-oci`` (``python -m pants_oci.core``): the command line the Pants backend runs.

Every command prints one JSON object on stdout, and progress for long transfers on stderr
(``-q`` silences it). Credentials come only from the environment: docker's config
(``$DOCKER_CONFIG/config.json``, default ``~/.docker/config.json``) and its credential helpers,
and Google application default credentials; never from the command line. Exit status is 0
on success, 1 for an error (explained on stderr, one line per cause, with a hint), 2 for a
command line that does not parse. See docs/cli.md for the full contract.

``run`` is the exception: it runs an image in the foreground, and the container's output and
exit status are the command's (errors before the container starts are reported as above).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Optional

from pants_oci.core._compat import zip_strict
from pants_oci.core._settings import CLI, PANTS, Setting, how_to_set, name_of
from pants_oci.core._transport_options import ProgressCallback, TransportOptions
from pants_oci.core.errors import (
    CredentialError,
    DeniedError,
    DocumentError,
    ImageArchiveError,
    InputFileError,
    InsecureTokenServiceError,
    InvalidReferenceError,
    InvalidValueError,
    NotFoundError,
    OCIError,
    PlatformNotFoundError,
    TransportError,
    UnauthorizedError,
)
from pants_oci.core.validation import check_absolute_path, check_id, check_image_tag

# Every command imports what it needs when it runs (see the handlers): a process pays only for
# its own command, e.g. `layer build` imports neither pydantic nor httpx nor google-auth. Keep
# these imports out of module level; tests/core/test_cli_imports.py checks that they stay out.
if TYPE_CHECKING:
    from pants_oci.core.digest import Digest
    from pants_oci.core.image import Image
    from pants_oci.core.layer import Compression, LayerBuilder
    from pants_oci.core.models import DockerManifest, OCIManifest, Platform
    from pants_oci.core.reference import Reference

__all__ = ["main"]

PROGRAM = "pants-oci"
BASE_REF_NAME = "base"  # the ref name `base pull` gives the image in its layout
_MIB = 1024 * 1024
_PROGRESS_INTERVAL = 1.0  # seconds between progress lines
_DEFAULTS = TransportOptions()  # the flags' defaults are the library's

_log = logging.getLogger("pants_oci.core.cli")


# --- Output -------------------------------------------------------------------------------------


def _emit(document: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(document, indent=None, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class _Progress:
    """A ProgressCallback printing ``label: done/total MiB`` to stderr, at most once a second."""

    def __init__(self, label: str, stream: IO[str]) -> None:
        self._label = label
        self._stream = stream
        self._last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last < _PROGRESS_INTERVAL:
            return
        self._last = now
        of_total = f"/{total / _MIB:.1f}" if total is not None else ""
        self._stream.write(f"{PROGRAM}: {self._label}: {done / _MIB:.1f}{of_total} MiB\n")
        self._stream.flush()


# --- Reading inputs -----------------------------------------------------------------------------


def _read_json(path: str, what: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputFileError(f"{what} {path} is not valid JSON: {exc}") from None


def _object(value: Any, where: str, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputFileError(f"{where} must be a JSON object, got {type(value).__name__}")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise InputFileError(
            f"{where} has unknown keys {unknown}; allowed keys are {sorted(allowed)}"
        )
    return value


def _typed(
    data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str, default: Any
) -> Any:
    value = data.get(key, default)
    if value is None:
        return default
    # bool is an int in Python, but not in JSON: refuse true for a number.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InputFileError(f"{where}: {key!r} must be {names} or null, got {value!r}")
    return value


def _string_list(data: Mapping[str, Any], key: str, where: str) -> list[str] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InputFileError(f"{where}: {key!r} must be a list of strings or null, got {value!r}")
    return list(value)


def _string_map(data: Mapping[str, Any], key: str, where: str) -> dict[str, str]:
    value = data.get(key) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InputFileError(f"{where}: {key!r} must be an object of strings, got {value!r}")
    return dict(value)


def _mode(value: Any, where: str, key: str = "mode") -> int | None:
    if value is None:
        return None
    try:
        mode = int(value, 8) if isinstance(value, str) else None
    except ValueError:
        mode = None
    if mode is None or not 0 <= mode <= 0o7777:
        raise InputFileError(
            f"{where}: '{key}' must be an octal string like \"0755\", got {value!r}"
        )
    return mode


@contextlib.contextmanager
def _input_values(where: str) -> Iterator[None]:
    """A value that core/validation.py refuses, as an error naming the input it came from."""
    try:
        yield
    except InvalidValueError as exc:
        raise InputFileError(f"{where}: {exc}") from None


def _checked_id(data: Mapping[str, Any], key: str, where: str) -> int | None:
    value = _typed(data, key, int, where, None)
    if value is None:
        return None
    with _input_values(where):
        return check_id(value, repr(key))


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


# --- layer build --------------------------------------------------------------------------------

_SPEC_KEYS = (
    "entries",
    "compression",
    "level",
    "source_date_epoch",
    "ignore",
    "follow_symlinks",
    "uid",
    "gid",
    "directory_mode",
    "existing_directories",
)
_ENTRY_KEYS = ("source", "target", "mode", "uid", "gid")
# The compression levels the layer builder takes (gzip runs on isal: 0-3).
_LEVELS = {"gzip": (0, 3), "zstd": (1, 22)}


def _check_output_directory(path: str, flag: str = "--output") -> None:
    """Refuse an output path whose directory does not exist, naming the path given (the
    writer would otherwise fail on the temporary file it writes next to it)."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputFileError(
            f"{flag} {path}: the directory {directory} does not exist; create it first"
        )


def _layer_build(args: argparse.Namespace, _options: TransportOptions) -> None:
    from pants_oci.core.layer import LayerBuilder, resolve_source_date_epoch

    where = f"layer spec {args.spec}"
    spec = _object(_read_json(args.spec, "layer spec"), where, _SPEC_KEYS)
    compression: Compression = spec.get("compression") or "gzip"
    if compression not in ("gzip", "zstd", "none"):
        raise InputFileError(
            f'{where}: \'compression\' must be "gzip", "zstd" or "none", got {compression!r}'
        )
    level = _typed(spec, "level", int, where, None)
    levels = _LEVELS.get(compression)
    if level is not None and levels is not None and not levels[0] <= level <= levels[1]:
        raise InputFileError(
            f"{where}: 'level' {level} is out of range for {compression}: "
            f"{compression} levels are {levels[0]}-{levels[1]}"
        )
    epoch = resolve_source_date_epoch(_typed(spec, "source_date_epoch", int, where, None))
    ignore = _string_list(spec, "ignore", where) or []
    follow = _typed(spec, "follow_symlinks", bool, where, False)
    entries = spec.get("entries")
    if not isinstance(entries, list):
        raise InputFileError(f"{where}: 'entries' must be a list of {{source, target, ...}}")

    # Sources are read only from inside the working directory (the Pants sandbox): whatever a
    # layer holds must be an input of the process, and so part of its cache key.
    root = os.path.realpath(os.getcwd())

    # Directories the layer creates get the layer's owner and `directory_mode`; those the
    # layers below have (`existing_directories`) get no entry, so theirs stay as they are.
    builder = LayerBuilder(
        mtime=epoch,
        follow_symlinks=follow,
        uid=_or(_checked_id(spec, "uid", where), 0),
        gid=_or(_checked_id(spec, "gid", where), 0),
        directory_mode=_or(_mode(spec.get("directory_mode"), where, "directory_mode"), 0o755),
        existing_directories=_string_list(spec, "existing_directories", where) or (),
    )
    for number, raw_entry in enumerate(entries):
        entry_where = f"{where}: entries[{number}]"
        entry = _object(raw_entry, entry_where, _ENTRY_KEYS)
        source = _typed(entry, "source", str, entry_where, None)
        target = _typed(entry, "target", str, entry_where, None)
        if not source or not target:
            raise InputFileError(
                f"{entry_where}: needs a 'source' path and an absolute 'target' path in the "
                f"image, got source={source!r} target={target!r}"
            )
        mode = _mode(entry.get("mode"), entry_where)
        with _input_values(entry_where):
            check_absolute_path(target, "'target'")
        uid = _checked_id(entry, "uid", entry_where)
        gid = _checked_id(entry, "gid", entry_where)
        _check_source_inside(source, root, follow, entry_where)
        builder.add_files({target: source}, ignore=ignore)
        _set_overrides(
            builder,
            source=source,
            target=target,
            mode=mode,
            uid=uid,
            gid=gid,
            follow_symlinks=follow,
        )

    _check_output_directory(args.output)
    blob = builder.write_file(args.output, compression=compression, level=level)
    _emit(
        {
            "digest": str(blob.digest),
            "diff_id": str(blob.diff_id),
            "size": blob.size,
            "media_type": blob.media_type,
            "uncompressed_size": blob.uncompressed_size,
        }
    )


def _check_source_inside(source: str, root: str, follow_symlinks: bool, where: str) -> None:
    """Refuse a layer spec source whose bytes would be read from outside ``root``.

    The source is resolved as it will be read: through every symlink, except that a source
    which is itself a symlink, archived as one (``follow_symlinks`` false), is only a link
    and is judged by the directory it is in. With ``follow_symlinks``, every symlink under
    a directory source is followed when the layer is built, so each must resolve inside too.
    Symlinks under a directory source that stay symlinks in the layer read nothing.
    """
    if not follow_symlinks and os.path.islink(source):
        head, name = os.path.split(source)
        location = os.path.join(os.path.realpath(head or os.curdir), name)
    else:
        location = os.path.realpath(source)
    if not _is_inside(location, root):
        raise _outside(where, source, location, root)
    if not (follow_symlinks and os.path.isdir(location)):
        return
    # Each real directory once (a symlink loop is the layer builder's error to report).
    pending, seen = [location], {location}
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue  # the layer builder reports what it cannot list
        for entry in entries:
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if not _is_inside(target, root):
                    via = os.path.join(source, os.path.relpath(entry.path, location))
                    raise _outside(where, source, target, root, via=via)
            else:
                target = entry.path
            if target not in seen and entry.is_dir(follow_symlinks=True):
                seen.add(target)
                pending.append(target)


def _is_inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _outside(
    where: str, source: str, location: str, root: str, via: str | None = None
) -> InputFileError:
    if via:
        what = f"{source!r} (through the symlink {via}) reads {location}"
    else:
        what = f"{source!r} resolves to {location}"
    return InputFileError(
        f"{where}: source {what}, outside the working directory {root}. A layer spec's "
        "sources must be files inside the directory `layer build` runs in (the Pants "
        "sandbox), so that everything a layer holds is an input of the process and part of "
        "its cache key: put the file among the build's inputs (e.g. a `files` target) and "
        "name it by its path there"
    )


def _set_overrides(
    builder: LayerBuilder,
    *,
    source: str,
    target: str,
    mode: int | None,
    uid: int | None,
    gid: int | None,
    follow_symlinks: bool,
) -> None:
    """An entry's mode and ownership. For a directory source, uid/gid apply to everything
    under it and mode to every regular file under it (directories keep 0755)."""
    from pants_oci.core.layer import Override

    if mode is None and uid is None and gid is None:
        return
    if not os.path.isdir(source):
        builder.set_override(target, Override(mode=mode, uid=uid, gid=gid))
        return
    if uid is not None or gid is not None:
        builder.set_override(target, Override(uid=uid, gid=gid, recursive=True))
    if mode is None:
        return
    for root, _dirs, files in os.walk(source, followlinks=follow_symlinks):
        for name in files:
            path = os.path.join(root, name)
            if os.path.isfile(path) and (follow_symlinks or not os.path.islink(path)):
                relative = os.path.relpath(path, source).replace(os.sep, "/")
                builder.set_override(
                    f"{target.rstrip('/')}/{relative}", Override(mode=mode, uid=uid, gid=gid)
                )


# --- base pull ----------------------------------------------------------------------------------


def _base_pull(args: argparse.Namespace, options: TransportOptions) -> None:
    from pants_oci.core.blob_cache import CachedRegistrySource
    from pants_oci.core.image import BLOB_SOURCE_ANNOTATION
    from pants_oci.core.layout import ImageLayout, staged_directory
    from pants_oci.core.models import (
        MAX_INDEX_DEPTH,
        DockerManifest,
        ImageConfig,
        OCIManifest,
        Platform,
        require_platform,
    )
    from pants_oci.core.registry import map_bounded, resolve_platform

    reference = _reference(args.reference)
    platform = _platform(args.platform) or Platform.host_linux()
    with CachedRegistrySource(reference, options, args.blob_cache) as source:
        document = source.manifest(reference.identifier)
        index_digest: Digest | None = None
        for _depth in range(MAX_INDEX_DEPTH):
            if isinstance(document, (OCIManifest, DockerManifest)):
                break
            index_digest = index_digest or document.digest
            entry = resolve_platform(document, platform)
            document = source.manifest(entry.digest, size=entry.size)
        else:
            raise DocumentError(f"{reference}: indexes nested more than {MAX_INDEX_DEPTH} deep")
        manifest: OCIManifest | DockerManifest = document
        config_bytes = source.blob(manifest.config.digest, size=manifest.config.size)
        config = ImageConfig.from_bytes(config_bytes)
        require_platform(config, platform, str(reference))
        # Built beside --output and renamed into place only when complete (see layout.py).
        with staged_directory(args.output) as staged:
            layout = ImageLayout.create(staged)
            layout.write_blob(config_bytes)
            layout.write_blob(manifest.to_bytes())
            if args.with_layers:
                layers = [
                    layer
                    for layer in manifest.layers
                    if not layer.urls and not layout.has_blob(layer.digest)
                ]
                progress = args.progress(f"pulling {reference}")
                total = sum(layer.size for layer in layers)
                done = [0]

                def advance(count: int) -> None:
                    done[0] += count
                    if progress is not None:
                        progress(done[0], total)

                map_bounded(
                    lambda layer: source.copy_blob(layer.digest, layout, advance, size=layer.size),
                    layers,
                    options.max_concurrency,
                )
            descriptor = manifest.descriptor(
                platform=config.platform,
                annotations={BLOB_SOURCE_ANNOTATION: f"{reference.name}@{manifest.digest}"},
            )
            layout.tag(BASE_REF_NAME, descriptor)
    _emit(
        {
            "reference": str(reference),
            "index_digest": str(index_digest) if index_digest else None,
            "manifest_digest": str(manifest.digest),
            "config_digest": str(manifest.config.digest),
            "platform": str(config.platform),
            "layers": [
                {"digest": str(layer.digest), "size": layer.size, "media_type": layer.media_type}
                for layer in manifest.layers
            ],
        }
    )


# --- image assemble -----------------------------------------------------------------------------

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
_META_KEYS = ("digest", "diff_id", "size", "media_type", "uncompressed_size")


def _read_layer_meta(path: str) -> dict[str, Any]:
    where = f"layer metadata {path}"
    meta = _object(_read_json(path, "layer metadata"), where, _META_KEYS)
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

    from pants_oci.core.digest import Digest
    from pants_oci.core.errors import InvalidDigestError
    from pants_oci.core.layer import compression_of_media_type, inspect_layer_blob

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
    with _input_values(where):
        _apply_config_values(image, config, where)


def _apply_config_values(image: Image, config: Mapping[str, Any], where: str) -> None:
    # Entrypoint before cmd: a new entrypoint drops the inherited cmd, a cmd given here stays.
    entrypoint = _string_list(config, "entrypoint", where)
    if entrypoint is not None:
        image.entrypoint = entrypoint
    cmd = _string_list(config, "cmd", where)
    if cmd is not None:
        image.cmd = cmd
    for name, value in _string_map(config, "env", where).items():
        image.set_env(name, value)
    workdir = _typed(config, "workdir", str, where, None)
    if workdir is not None:
        image.workdir = workdir
    user = _typed(config, "user", str, where, None)
    if user is not None:
        image.user = user
    image.labels.update(_string_map(config, "labels", where))
    image.annotations.update(_string_map(config, "annotations", where))
    image.expose(*(_string_list(config, "exposed_ports", where) or ()))
    image.volumes = [*image.volumes, *(_string_list(config, "volumes", where) or ())]
    stop_signal = _typed(config, "stop_signal", str, where, None)
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


def _image_assemble(args: argparse.Namespace, options: TransportOptions) -> None:
    # The image builder imports the registry stack only for a registry base (or missing base
    # layers): assembling on scratch or a complete local layout stays off the network code.
    from pants_oci.core import media_types
    from pants_oci.core.base_spec import SCRATCH
    from pants_oci.core.image import DEFAULT_TAG, Image
    from pants_oci.core.layout import staged_directory
    from pants_oci.core.models import Platform

    tags = _tags(args.tag) or [DEFAULT_TAG]
    archive_names = _archive_names(args, tags)  # checked before anything is built
    where = f"image config {args.config}"
    config = _object(_read_json(args.config, "image config"), where, _CONFIG_KEYS)
    platform_text = _typed(config, "platform", str, where, None)
    try:
        platform = Platform.parse(platform_text) if platform_text else None
    except ValueError as exc:
        raise InputFileError(f"{where}: {exc}") from None
    base: str | Path = SCRATCH if args.base == SCRATCH else Path(args.base)
    layers = []
    for spec in args.layer:
        blob, equals, meta_path = spec.partition("=")
        if not equals or not blob or not meta_path:
            raise InputFileError(f"--layer {spec!r}: expected BLOB_PATH=META_JSON_PATH")
        meta = _read_layer_meta(meta_path)
        _check_layer(blob, meta, meta_path)
        layers.append((blob, meta))
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
        # Both outputs or neither: the layout is built beside --output, the archive (itself
        # written to a temporary file and renamed) next, and only then is the layout renamed
        # into place (see layout.staged_directory); should that fail, the archive is removed.
        archive_done = False
        try:
            with staged_directory(args.output) as staged:
                image.write_layout(
                    staged, tags, include_base_layers=False, omit_base_layers=args.omit_base_layers
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
        data = image.get_image_data()
        base_ref = image.base_reference
        base_digest = image.base_manifest_digest
        _emit(
            {
                "manifest_digest": str(data.manifest_digest),
                "config_digest": str(data.config_digest),
                "media_type": media_types.OCI_MANIFEST,
                "layers": [
                    {
                        "digest": str(layer.digest),
                        "diff_id": str(diff_id),
                        "size": layer.size,
                        "media_type": layer.media_type,
                    }
                    for layer, diff_id in zip_strict(
                        data.manifest.layers, data.config.rootfs.diff_ids
                    )
                ],
                "tags": list(tags),
                "base": {
                    "reference": str(base_ref) if base_ref else None,
                    "manifest_digest": str(base_digest) if base_digest else None,
                },
            }
        )


def _image_index(args: argparse.Namespace, _options: TransportOptions) -> None:
    from pants_oci.core import media_types
    from pants_oci.core.image import DEFAULT_TAG, index_layouts
    from pants_oci.core.layout import staged_directory

    tags = _tags(args.tag) or [DEFAULT_TAG]
    with staged_directory(args.output) as staged:
        root, entries = index_layouts(args.image, staged, tags, include_layers=not args.omit_layers)
    _emit(
        {
            "manifest_digest": str(root.digest),
            "media_type": media_types.OCI_INDEX,
            "tags": list(tags),
            "platforms": {str(platform): str(entry.digest) for platform, entry in entries},
        }
    )


def _image_dirs(args: argparse.Namespace, _options: TransportOptions) -> None:
    from pants_oci.core.rootfs import directory_paths

    _emit({"directories": directory_paths(args.base)})


def _image_pythons(args: argparse.Namespace, _options: TransportOptions) -> None:
    from pants_oci.core.interpreters import find_python_interpreters

    found = find_python_interpreters(args.base)
    _emit({"interpreters": [{"path": i.path, "version": i.version} for i in found]})


# --- Command-line values -----------------------------------------------------------------------

_SUPPORTED_DIGEST_ALGORITHMS = ("sha256", "sha384", "sha512")  # what can verify content


def _reference(text: str, what: str = "") -> Reference:
    """An image reference from the command line, refused here (before any request) when it
    could never be pulled or pushed: a URL, a port out of range, a digest we cannot verify."""
    from pants_oci.core.reference import parse_reference

    prefix = f"{what} " if what else ""

    def invalid(reason: str) -> InvalidReferenceError:
        return InvalidReferenceError(f"{prefix}invalid image reference {text!r}: {reason}")

    scheme, separator, rest = text.partition("://")
    if separator and scheme and "/" not in scheme:
        return_to = rest.rstrip("/") or "host/repo"
        raise invalid(f"no URL scheme in image references: write {return_to}")
    reference = parse_reference(text)
    host, colon, port = reference.registry.rpartition(":")
    if colon and not host.endswith(":") and port.isdigit() and not 0 < int(port) <= 65535:
        raise invalid(f"port {port} is not a valid port (1-65535)")
    if reference.digest is not None:
        algorithm = reference.digest.partition(":")[0]
        if algorithm not in _SUPPORTED_DIGEST_ALGORITHMS:
            raise invalid(
                f"digest algorithm {algorithm!r} is not supported; supported algorithms are "
                f"{', '.join(_SUPPORTED_DIGEST_ALGORITHMS)}"
            )
    return reference


def _platform(text: str | None) -> Platform | None:
    """``--platform OS/ARCH[/VARIANT]``, or None when not given."""
    from pants_oci.core.models import Platform

    if not text:
        return None
    try:
        return Platform.parse(text)
    except ValueError as exc:
        raise InputFileError(f"--platform: {exc}") from None


def _tags(tags: Sequence[str]) -> list[str]:
    """``--tag`` values: ref names in the layout's index.json (tags, or names with a tag)."""
    for tag in tags:
        try:
            check_image_tag(tag)
        except InvalidValueError as exc:
            raise InputFileError(f"--tag {tag!r} {exc.problem}") from None
    return list(tags)


# --- push, copy, inspect ------------------------------------------------------------------------


def _displayed(reference: Reference) -> str:
    """A pushed reference as the output names it: with its tag (``latest`` if none)."""
    from pants_oci.core.image import DEFAULT_TAG

    if reference.tag is None and reference.digest is None:
        return str(reference.with_tag(DEFAULT_TAG))
    return str(reference)


def _push(args: argparse.Namespace, options: TransportOptions) -> None:
    from pants_oci.core.errors import PartialPushError
    from pants_oci.core.image import push_layout

    references = [_reference(text, "--to") for text in args.to]
    try:
        pushed = push_layout(
            args.layout,
            references,
            base_reference=args.base_reference,
            options=options,
            progress=args.progress(f"pushing {', '.join(map(_displayed, references))}"),
        )
    except PartialPushError as error:
        # So that CI can act on it: which tags moved, which did not (the error says why).
        _emit(
            {"pushed": [], "updated": list(error.updated), "not_updated": list(error.not_updated)}
        )
        raise
    _emit(
        {
            "pushed": [
                {"reference": _displayed(reference), "digest": str(digest)}
                for reference, digest in pushed
            ]
        }
    )


def _copy(args: argparse.Namespace, options: TransportOptions) -> None:
    from pants_oci.core.image import copy_image

    source, destination = _reference(args.source), _reference(args.destination)
    digest = copy_image(
        source,
        destination,
        options=options,
        progress=args.progress(f"copying {source} to {destination}"),
    )
    _emit(
        {
            "source": str(source),
            "destination": _displayed(destination),
            "digest": str(digest),
        }
    )


def _inspect(args: argparse.Namespace, options: TransportOptions) -> None:
    from pants_oci.core.models import (
        DockerManifest,
        DockerManifestList,
        ImageConfig,
        OCIIndex,
        OCIManifest,
        require_platform,
    )
    from pants_oci.core.registry import RegistryClient

    reference = _reference(args.reference)
    platform = _platform(args.platform)
    with RegistryClient.from_reference(reference, options=options) as client:
        document = client.get_manifest(reference.identifier)
        is_index = isinstance(document, (OCIIndex, DockerManifestList))
        if is_index and (platform is not None or args.config):
            document = client.get_image_manifest(reference.identifier, platform)
        config_bytes: bytes | None = None
        if isinstance(document, (OCIManifest, DockerManifest)) and platform is not None:
            # An image manifest, not an index: it is that image, or it is not (exit non-zero).
            config_bytes = client.read_blob(document.config.digest, size=document.config.size)
            require_platform(ImageConfig.from_bytes(config_bytes), platform, str(reference))
        if args.config:
            assert isinstance(document, (OCIManifest, DockerManifest))
            if config_bytes is None:
                config_bytes = client.read_blob(document.config.digest, size=document.config.size)
            if args.raw:
                _write_raw(config_bytes)
            else:
                _write_raw(_pretty_config(config_bytes, f"{reference}: image config"))
            return
        if args.raw:
            _write_raw(document.to_bytes())
            return
        summary: dict[str, Any] = {
            "reference": str(reference),
            "digest": str(document.digest),
            "media_type": document.media_type or type(document).default_media_type,
        }
        if isinstance(document, (OCIIndex, DockerManifestList)):
            summary["manifests"] = [
                {
                    "digest": str(entry.digest),
                    "media_type": entry.media_type,
                    "size": entry.size,
                    "platform": str(entry.platform) if entry.platform else None,
                }
                for entry in document.manifests
            ]
        else:
            config = ImageConfig.from_bytes(
                client.read_blob(document.config.digest, size=document.config.size)
            )
            summary["config_digest"] = str(document.config.digest)
            summary["platform"] = str(config.platform)
            summary["layers"] = [
                {"digest": str(layer.digest), "size": layer.size, "media_type": layer.media_type}
                for layer in document.layers
            ]
        _emit(summary)


def _pretty_config(raw: bytes, what: str) -> bytes:
    try:
        return json.dumps(json.loads(raw), separators=(",", ":")).encode()
    except ValueError as exc:
        raise DocumentError(
            f"{what} is not valid JSON ({exc}); `inspect --config --raw` prints its bytes"
        ) from None


def _write_raw(data: bytes) -> None:
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.flush()


# --- run ----------------------------------------------------------------------------------------

RUN_COMMAND = "run"
# The top-level command names (see build_parser), to tell `run`'s `--` from another command's.
_COMMANDS = ("layer", "base", "image", "push", "copy", "inspect", RUN_COMMAND)


def _run(args: argparse.Namespace, options: TransportOptions) -> int:
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


def _split_container_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``run ... -- ARGS``: everything after the first ``--`` is the container's, untouched.
    (argparse cannot take a ``--`` list after options that follow a positional argument.)"""
    if "--" in argv:
        cut = argv.index("--")
        commands = [word for word in argv[:cut] if word in _COMMANDS]
        if commands and commands[0] == RUN_COMMAND:
            return argv[:cut], argv[cut + 1 :]
    return argv, []


# --- Errors -------------------------------------------------------------------------------------

_CREDENTIAL_SOURCES = (
    "pants-oci reads credentials only from $DOCKER_CONFIG/config.json (default "
    "~/.docker/config.json), its credential helpers, and Google application default credentials"
)


def _hint(error: BaseException, args: argparse.Namespace | None) -> str | None:
    hints_for = getattr(args, "hints_for", CLI)
    if isinstance(error, InsecureTokenServiceError):
        return None  # its message names the fix: logging in again would not help
    if isinstance(error, UnauthorizedError):
        return f"log in to {error.registry} (e.g. `docker login {error.registry}`); " + (
            _CREDENTIAL_SOURCES
        )
    if isinstance(error, DeniedError):
        where = f"{error.registry}/{error.repository}" if error.repository else error.registry
        return f"the credentials used for {where} lack permission for this; {_CREDENTIAL_SOURCES}"
    if isinstance(error, NotFoundError):
        where = f"{error.registry}/{error.repository}" if error.repository else error.registry
        return f"check the reference: does {where} exist, with that tag or digest?"
    if isinstance(error, TransportError):
        if error.tls:  # its message says how to trust the CA, or to use plain HTTP
            return None
        if error.timeout:  # its message names the setting that waits longer
            return f"check that {error.registry} is up and answering requests"
        return (
            f"check that {error.registry} is up and reachable; for a registry that only speaks "
            f"plain HTTP {how_to_set(Setting.INSECURE_REGISTRY, hints_for, error.registry)}, "
            f"for a private CA {how_to_set(Setting.CA_BUNDLE, hints_for)}"
        )
    if isinstance(error, PlatformNotFoundError):
        return f"choose one of the available platforms with {name_of(Setting.PLATFORM, hints_for)}"
    if isinstance(error, CredentialError):
        return _CREDENTIAL_SOURCES
    if isinstance(error, ImageArchiveError) and args is not None and args.command == "push":
        return "push takes the output directory of `image assemble`"
    return None


def _report(error: BaseException, args: argparse.Namespace | None, stream: IO[str]) -> None:
    lines = [f"{PROGRAM}: error: {error}"]
    said = [" ".join(str(error).split())]
    cause = error.__cause__
    while cause is not None:
        # A cause says something new, or nothing: httpx wraps httpcore's error, which wraps
        # the OSError, all three "[Errno 111] Connection refused", already in the message.
        text = " ".join(str(cause).split())
        if text and not any(text in earlier for earlier in said):
            lines.append(f"{PROGRAM}: caused by: {text}")
            said.append(text)
        cause = cause.__cause__
    hint = _hint(error, args)
    if hint:
        lines.append(f"{PROGRAM}: hint: {hint}")
    stream.write("\n".join(" ".join(line.split()) for line in lines) + "\n")
    stream.flush()


# --- The parser ---------------------------------------------------------------------------------

# A handler returns None for success, or (`run`) the exit status to end with.
Handler = Callable[[argparse.Namespace, TransportOptions], Optional[int]]


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options every command takes, before or after its name."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--insecure-registry",
        action="append",
        metavar="HOST",
        default=default([]),
        help="reach this registry (host or host:port) over plain HTTP; repeatable",
    )
    parser.add_argument(
        "--https-registry",
        action="append",
        metavar="HOST",
        default=default([]),
        help="reach this loopback registry over HTTPS (loopback defaults to HTTP); repeatable",
    )
    parser.add_argument(
        "--ca-bundle",
        metavar="PATH",
        default=default(None),
        help="PEM file of extra certificate authorities to trust",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        default=default(4),
        help="blobs transferred in parallel (default 4)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        metavar="SECONDS",
        default=default(_DEFAULTS.connect_timeout),
        help=f"how long to wait for a connection to a registry (default "
        f"{_DEFAULTS.connect_timeout:g})",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        metavar="SECONDS",
        default=default(_DEFAULTS.read_timeout),
        help=f"how long a registry may send (or take) nothing before the attempt fails "
        f"(default {_DEFAULTS.read_timeout:g}); any byte starts it again, so a large "
        "transfer that keeps moving is never cut",
    )
    parser.add_argument(
        "--retries",
        type=int,
        metavar="N",
        default=default(_DEFAULTS.max_retries),
        help=f"how many times a failed request is tried again: resets, timeouts, 408, 429 "
        f"and 5xx answers (default {_DEFAULTS.max_retries})",
    )
    parser.add_argument(
        "--hints-for",
        choices=(CLI, PANTS),
        default=default(CLI),
        help="name settings in errors and hints as this front end spells them: the command "
        "line's flags (default), or the Pants options (e.g. [oci].ca_bundle) when Pants runs "
        "this",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="no progress on stderr (errors are still reported)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Build, pull, push and inspect OCI images without a container daemon.",
    )
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)

    def command(
        parent: Any, name: str, handler: Handler, help_text: str
    ) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = parent.add_parser(
            name, parents=[common], help=help_text, description=help_text
        )
        sub.set_defaults(handler=handler)
        return sub

    layer = commands.add_parser("layer", help="build layers")
    layer_commands = layer.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = command(layer_commands, "build", _layer_build, "build a layer blob from a JSON spec")
    build.add_argument("--spec", required=True, metavar="SPEC.json")
    build.add_argument("--output", required=True, metavar="BLOB_PATH")

    base = commands.add_parser("base", help="fetch base images")
    base_commands = base.add_subparsers(dest="action", required=True, metavar="ACTION")
    pull = command(
        base_commands, "pull", _base_pull, "write one platform of a registry image to a layout"
    )
    pull.add_argument("reference", metavar="REFERENCE")
    pull.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    pull.add_argument("--output", required=True, metavar="LAYOUT_DIR")
    pull.add_argument("--with-layers", action="store_true", help="also download the layers")
    pull.add_argument(
        "--blob-cache",
        metavar="DIR",
        help="keep blobs named by digest in DIR (verified on every read) and download only what "
        "it lacks: a base whose blobs are there needs no network",
    )

    image = commands.add_parser("image", help="assemble images")
    image_commands = image.add_subparsers(dest="action", required=True, metavar="ACTION")
    assemble = command(
        image_commands, "assemble", _image_assemble, "assemble an image into an OCI layout"
    )
    assemble.add_argument("--base", required=True, metavar="scratch|LAYOUT_DIR")
    assemble.add_argument(
        "--layer", action="append", default=[], metavar="BLOB_PATH=META_JSON_PATH"
    )
    assemble.add_argument("--config", required=True, metavar="CONFIG.json")
    assemble.add_argument("--output", required=True, metavar="LAYOUT_DIR")
    assemble.add_argument("--tag", action="append", default=[], metavar="TAG")
    assemble.add_argument("--docker-archive", metavar="TAR_PATH")
    assemble.add_argument(
        "--archive-name",
        action="append",
        default=[],
        metavar="NAME:TAG",
        help="a name the docker-archive gives the image (its RepoTags); repeatable",
    )
    assemble.add_argument("--source-date-epoch", type=int, metavar="N")
    assemble.add_argument("--base-reference", metavar="REF")
    assemble.add_argument(
        "--omit-base-layers",
        action="store_true",
        help="write no base layer into the layout, even those the base layout has",
    )
    index = command(
        image_commands, "index", _image_index, "combine per-platform layouts into an index"
    )
    index.add_argument("--image", action="append", required=True, metavar="LAYOUT_DIR")
    index.add_argument("--output", required=True, metavar="LAYOUT_DIR")
    index.add_argument("--tag", action="append", default=[], metavar="TAG")
    index.add_argument(
        "--omit-layers", action="store_true", help="write the documents only, no layer blobs"
    )
    pythons = command(
        image_commands, "pythons", _image_pythons, "list the Python interpreters of an image"
    )
    pythons.add_argument("--base", required=True, metavar="LAYOUT_DIR")
    dirs = command(
        image_commands,
        "dirs",
        _image_dirs,
        "list the directories (and symlinks) an image's layers leave, whiteouts applied",
    )
    dirs.add_argument("--base", required=True, metavar="LAYOUT_DIR")

    push = command(commands, "push", _push, "push the image of an OCI layout to registries")
    push.add_argument("layout", metavar="LAYOUT_DIR")
    push.add_argument("--to", action="append", required=True, metavar="REF")
    push.add_argument("--base-reference", metavar="REF")

    copy = command(commands, "copy", _copy, "copy an image (every platform) between registries")
    copy.add_argument("source", metavar="SRC_REF")
    copy.add_argument("destination", metavar="DST_REF")

    inspect = command(commands, "inspect", _inspect, "print an image's manifest or config")
    inspect.add_argument("reference", metavar="REF")
    inspect.add_argument("--raw", action="store_true", help="the exact bytes of the document")
    inspect.add_argument("--config", action="store_true", help="the image config")
    inspect.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")

    run = command(
        commands, RUN_COMMAND, _run, "run an OCI layout's image in the foreground (runc or podman)"
    )
    run.usage = (
        f"{PROGRAM} {RUN_COMMAND} LAYOUT_DIR [--ref NAME] [--env NAME=VALUE]... "
        "[--mount SOURCE:DEST]... [--workdir DIR] [--user USER[:GROUP]] "
        "[--runtime auto|runc|podman] [-- ARGS...]"
    )
    run.add_argument("layout", metavar="LAYOUT_DIR")
    run.add_argument("--ref", metavar="NAME", help="the image's ref name or digest in the layout")
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="set (NAME alone: pass this process's value through, if set); repeatable",
    )
    run.add_argument(
        "--pass-env-prefix",
        metavar="PREFIX",
        help="read the value of `--env NAME` from PREFIX+NAME in this process's environment, so "
        "that what is meant for the container (PYTHONPATH, say) never changes this process",
    )
    run.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="SOURCE:DEST",
        help="bind-mount a host file or directory read-only at DEST; repeatable",
    )
    run.add_argument("--workdir", metavar="DIR", help="the working directory, over the image's")
    run.add_argument("--user", metavar="USER[:GROUP]", help="the user, over the image's")
    run.add_argument(
        "--max-unpacked-size",
        type=int,
        metavar="BYTES",
        help="refuse an image whose files unpack to more (default: the free space of the "
        "temporary directory's file system, less 1 GiB)",
    )
    run.add_argument(
        "--runtime",
        choices=("auto", "runc", "podman"),
        default="auto",
        help="auto: runc when on PATH and root, else podman",
    )
    run.set_defaults(container_args=[])  # ARGS after `--`: see _split_container_args
    return parser


def _transport_options(args: argparse.Namespace) -> TransportOptions:
    def invalid(setting: Setting, rule: str, value: object) -> InputFileError:
        return InputFileError(f"{name_of(setting, args.hints_for)} must be {rule}, got {value}")

    if args.concurrency < 1:
        raise invalid(Setting.CONCURRENCY, "at least 1", args.concurrency)
    for setting, seconds in (
        (Setting.CONNECT_TIMEOUT, args.connect_timeout),
        (Setting.READ_TIMEOUT, args.read_timeout),
    ):
        if not 0 < seconds < math.inf:
            raise invalid(setting, "a number of seconds above 0", f"{seconds:g}")
    if args.retries < 0:
        raise invalid(Setting.RETRIES, "at least 0", args.retries)
    return TransportOptions(
        ca_bundle=Path(args.ca_bundle) if args.ca_bundle else None,
        insecure_registries=frozenset(args.insecure_registry),
        https_registries=frozenset(args.https_registry),
        max_concurrency=args.concurrency,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        max_retries=args.retries,
        hints_for=args.hints_for,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the process exit status."""
    words, container_args = _split_container_args(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(words)  # exits 2 on a bad command line
    if container_args:
        args.container_args = container_args
    stderr = sys.stderr
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter(f"{PROGRAM}: %(message)s"))
    package_log = logging.getLogger("pants_oci")
    package_log.addHandler(handler)
    package_log.setLevel(logging.WARNING if args.quiet else logging.INFO)

    def progress(label: str) -> ProgressCallback | None:
        return None if args.quiet else _Progress(label, stderr)

    args.progress = progress
    try:
        status = args.handler(args, _transport_options(args))
    except OCIError as error:
        _report(error, args, stderr)
        return 1
    except OSError as error:  # an input or output path that cannot be used
        _report(error, args, stderr)
        return 1
    except KeyboardInterrupt:
        stderr.write(f"{PROGRAM}: interrupted\n")
        return 130
    finally:
        package_log.removeHandler(handler)
    return 0 if status is None else status
