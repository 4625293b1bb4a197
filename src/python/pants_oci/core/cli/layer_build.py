"""``pants-oci layer build --spec SPEC.json --output BLOB_PATH``: a layer blob from a JSON spec
(see docs/cli.md), and its digests, size and media type as JSON. It imports neither pydantic nor
httpx nor google-auth: the Pants backend starts one such process per layer.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pants_oci.core import wire
from pants_oci.core._transport_options import TransportOptions
from pants_oci.core.cli.inputs import (
    check_output_file,
    checked_id,
    input_values,
    json_object,
    octal_mode,
    or_default,
    read_json,
    string_list,
    typed,
)
from pants_oci.core.cli.output import emit
from pants_oci.core.errors import InputFileError, LayerError
from pants_oci.core.validation import check_absolute_path

if TYPE_CHECKING:
    from pants_oci.core.compression import Compression
    from pants_oci.core.layer import LayerBuilder

__all__ = ["layer_build_command"]

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
_ENTRY_KEYS = ("source", "target", "mode", "uid", "gid", "kind", "python_version", "interpreter")
# The keys each kind of entry uses (besides `kind`): another key with a value is an error, not
# silently ignored (the files of a venv get the spec's uid/gid and their own modes).
_KIND_KEYS = {
    "path": ("source", "target", "mode", "uid", "gid"),
    "installed-wheel": ("source", "target", "python_version"),
    "venv": ("target", "interpreter", "python_version"),
}
_KINDS = tuple(_KIND_KEYS)
# The compression levels the layer builder takes (gzip runs on isal: 0-3).
_LEVELS = {"gzip": (0, 3), "zstd": (1, 22)}


def layer_build_command(args: argparse.Namespace, _options: TransportOptions) -> None:
    from pants_oci.core.layer import resolve_source_date_epoch

    where = f"layer spec {args.spec}"
    spec = json_object(read_json(args.spec, "layer spec"), where, _SPEC_KEYS)
    compression, level = _compression(spec, where)
    epoch = resolve_source_date_epoch(typed(spec, "source_date_epoch", int, where, None))
    ignore = string_list(spec, "ignore", where) or []
    follow = typed(spec, "follow_symlinks", bool, where, False)
    entries = spec.get("entries")
    if not isinstance(entries, list):
        raise InputFileError(f"{where}: 'entries' must be a list of {{source, target, ...}}")

    # Sources are read only from inside the working directory (the Pants sandbox): whatever a
    # layer holds must be an input of the process, and so part of its cache key.
    root = os.path.realpath(os.getcwd())
    builder = _layer_builder(spec, where, epoch=epoch, follow_symlinks=follow)
    with _Venvs() as venvs:
        for number, raw_entry in enumerate(entries):
            entry_where = f"{where}: entries[{number}]"
            _add_entry(builder, venvs, raw_entry, entry_where, root=root, ignore=ignore)
        venvs.add_to(builder)
        check_output_file(args.output)
        blob = builder.write_file(args.output, compression=compression, level=level)
        distributions = venvs.distributions()
    emit(
        wire.LayerBuildResult(
            digest=str(blob.digest),
            diff_id=str(blob.diff_id),
            size=blob.size,
            media_type=blob.media_type,
            uncompressed_size=blob.uncompressed_size,
            distributions=distributions,
        )
    )


def _compression(spec: Mapping[str, Any], where: str) -> tuple[Compression, int | None]:
    """The spec's compression, and its level (checked against the compression's range)."""
    compression: Compression = spec.get("compression") or "gzip"
    if compression not in ("gzip", "zstd", "none"):
        raise InputFileError(
            f'{where}: \'compression\' must be "gzip", "zstd" or "none", got {compression!r}'
        )
    level = typed(spec, "level", int, where, None)
    levels = _LEVELS.get(compression)
    if level is not None and levels is not None and not levels[0] <= level <= levels[1]:
        raise InputFileError(
            f"{where}: 'level' {level} is out of range for {compression}: "
            f"{compression} levels are {levels[0]}-{levels[1]}"
        )
    return compression, level


def _layer_builder(
    spec: Mapping[str, Any], where: str, *, epoch: int, follow_symlinks: bool
) -> LayerBuilder:
    from pants_oci.core.layer import LayerBuilder

    # Directories the layer creates get the layer's owner and `directory_mode`; those the
    # layers below have (`existing_directories`) get no entry, so theirs stay as they are.
    return LayerBuilder(
        mtime=epoch,
        follow_symlinks=follow_symlinks,
        uid=or_default(checked_id(spec, "uid", where), 0),
        gid=or_default(checked_id(spec, "gid", where), 0),
        directory_mode=or_default(
            octal_mode(spec.get("directory_mode"), where, "directory_mode"), 0o755
        ),
        existing_directories=string_list(spec, "existing_directories", where) or (),
    )


class _Venvs:
    """The Python venvs a layer spec's `installed-wheel` entries unpack into: one staging
    directory per venv path, added to the layer once all are unpacked.

    The staging directories live in a temporary directory made on the first such entry, in
    the system's temporary directory: never in the working directory, where a source such as
    ``.`` would read them into the layer (under a random name), and which may be read-only."""

    def __init__(self) -> None:
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self._staging: dict[str, str] = {}
        self._unpacked: list[wire.LayerDistribution] = []

    def __enter__(self) -> _Venvs:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()

    def unpack(self, archive: str, venv: str, python_version: str) -> None:
        from pants_oci.core.python_venv import distribution_metadata, unpack_installed_wheel

        if self._temporary is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="pants-oci-venv-")
        if venv not in self._staging:
            self._staging[venv] = os.path.join(self._temporary.name, str(len(self._staging)))
            os.mkdir(self._staging[venv])
        unpack_installed_wheel(archive, self._staging[venv], venv, python_version)
        self._unpacked.append(distribution_metadata(archive))

    def distributions(self) -> tuple[wire.LayerDistribution, ...] | None:
        """The distributions unpacked, by name (None when no entry unpacked one)."""
        if not self._unpacked:
            return None
        return tuple(sorted(self._unpacked, key=lambda d: (d.name.lower(), d.version)))

    def add_to(self, builder: LayerBuilder) -> None:
        builder.add_files(dict(self._staging))


def _add_entry(
    builder: LayerBuilder,
    venvs: _Venvs,
    raw_entry: Any,
    where: str,
    *,
    root: str,
    ignore: Sequence[str],
) -> None:
    """One entry of the spec: its source at its target, with its mode and ownership; or a
    distribution unpacked into a venv (`installed-wheel`); or a venv's own files (`venv`)."""
    entry = json_object(raw_entry, where, _ENTRY_KEYS)
    kind = typed(entry, "kind", str, where, None) or "path"
    if kind not in _KINDS:
        raise InputFileError(f"{where}: 'kind' must be one of {', '.join(_KINDS)}, got {kind!r}")
    keys = _KIND_KEYS[kind]
    unused = sorted(k for k, v in entry.items() if v is not None and k not in ("kind", *keys))
    if unused:
        owners = "" if kind == "path" else " (its files get the spec's uid and gid)"
        raise InputFileError(
            f"{where}: a {kind!r} entry takes no {unused}; its keys are {sorted(keys)}{owners}"
        )
    source = typed(entry, "source", str, where, None)
    target = typed(entry, "target", str, where, None)
    if (not source and "source" in keys) or not target:
        needs = "a 'source' path and " if "source" in keys else ""
        raise InputFileError(
            f"{where}: needs {needs}an absolute 'target' path in the "
            f"image, got source={source!r} target={target!r}"
        )
    mode = octal_mode(entry.get("mode"), where)
    with input_values(where):
        check_absolute_path(target, "'target'")
    uid = checked_id(entry, "uid", where)
    gid = checked_id(entry, "gid", where)
    if kind == "installed-wheel":
        # The archive is opened through any symlinks: judged by the file it reads.
        location = os.path.realpath(source)
        if not _is_inside(location, root):
            raise _outside(where, source, location, root)
    if kind != "path":
        _add_venv_entry(builder, venvs, entry, kind, where)
        return
    _check_source_inside(source, root, builder.follow_symlinks, where)
    builder.add_files({target: source}, ignore=ignore)
    builder.set_source_overrides(target, source, mode=mode, uid=uid, gid=gid)


def _add_venv_entry(
    builder: LayerBuilder, venvs: _Venvs, entry: Mapping[str, Any], kind: str, where: str
) -> None:
    from pants_oci.core import python_venv
    from pants_oci.core.layer import CustomFile

    target = entry["target"]
    version = typed(entry, "python_version", str, where, None)
    if not version:
        raise InputFileError(f"{where}: a {kind!r} entry needs 'python_version' (e.g. \"3.11\")")
    with input_values(where):
        if kind == "installed-wheel":
            try:
                venvs.unpack(entry["source"], target, version)
            except LayerError as exc:  # it names the archive; say which entry gave it
                raise LayerError(f"{where}: {exc}") from None
            return
        interpreter = typed(entry, "interpreter", str, where, None)
        if not interpreter:
            raise InputFileError(f"{where}: a 'venv' entry needs the base's 'interpreter' path")
        files: dict[str, Any] = {
            f"{target.rstrip('/')}/pyvenv.cfg": CustomFile(
                data=python_venv.pyvenv_cfg(interpreter, version)
            ),
            python_venv.site_packages(target, version): CustomFile(kind="directory"),
        }
        for link, points_to in python_venv.interpreter_links(target, interpreter, version).items():
            files[link] = CustomFile(kind="symlink", link_target=points_to)
        builder.add_files(files)


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
