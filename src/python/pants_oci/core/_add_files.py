"""What :meth:`Image.add_files <pants_oci.core.image.Image.add_files>` is given, checked and
made into one :class:`~pants_oci.core.layer.LayerBuilder`.

Its call forms are the seed library's three: ``add_files({"/target": "local"})`` (the general
one: several sources, :class:`~pants_oci.core.layer.CustomFile` among them),
``add_files("local", "/target")`` and ``add_files("local")`` (a local directory's contents at
``/``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from pants_oci.core.layer import CustomFile, FileFilter, LayerBuilder, Source
from pants_oci.core.validation import check_absolute_path, check_arguments, check_list

__all__ = ["layer_builder"]

_SOURCES = (str, os.PathLike, CustomFile)


def _sources(files: Mapping[str, Source] | Source, target_dir: str | None) -> Mapping[str, Source]:
    """``{target: source}`` from any of the call forms."""
    if isinstance(files, _SOURCES):
        check_arguments("add_files", ("target_dir", target_dir, (str, type(None)), "a str or None"))
        return {"/" if target_dir is None else target_dir: files}
    if target_dir is not None:
        raise TypeError(
            "add_files() argument 'target_dir' goes with a local path as the first argument; "
            "a mapping names its own targets"
        )
    check_arguments(
        "add_files",
        ("files", files, Mapping, "a mapping of target path to local path or CustomFile"),
    )
    return files


def layer_builder(
    files: Mapping[str, Source] | Source,
    target_dir: str | None,
    *,
    ignore: Sequence[str],
    ignore_files: Sequence[str | os.PathLike[str]],
    ignore_file_names: Sequence[str],
    filter: FileFilter | None,
    follow_symlinks: bool,
    mtime: int,
) -> tuple[LayerBuilder, list[str]]:
    """The builder holding ``files`` (checked), and the layer's target paths, sorted."""
    sources = _sources(files, target_dir)
    check_list(ignore, "add_files() argument 'ignore'")
    check_list(ignore_files, "add_files() argument 'ignore_files'")
    check_list(ignore_file_names, "add_files() argument 'ignore_file_names'")
    check_arguments("add_files", ("follow_symlinks", follow_symlinks, bool, "a bool"))
    for target in sources:
        check_absolute_path(target, "add_files target")
    builder = LayerBuilder(mtime=mtime, follow_symlinks=follow_symlinks)
    builder.add_files(
        sources,
        ignore=ignore,
        ignore_files=ignore_files,
        ignore_file_names=ignore_file_names,
        filter=filter,
    )
    return builder, sorted(sources)
