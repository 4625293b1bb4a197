"""OCI whiteouts: the entry names by which a layer deletes paths of the layers below it, and
what applying them leaves.

A whiteout is an empty file in a layer: ``DIR/.wh.NAME`` deletes ``DIR/NAME`` (with all that is
under it) of the layers below; the opaque whiteout ``DIR/.wh..wh..opq`` deletes everything the
layers below have in ``DIR``. Neither touches what its own layer adds. The layer builder writes
them (:meth:`~pants_oci.core.layer.LayerBuilder.add_whiteout`), the root filesystem reader
applies them to the paths it keeps (:func:`lower_entries_left`), and ``run`` applies them on
disk, where removal must go through its symlink-safe file descriptors
(:mod:`pants_oci.core.run.unpack`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional, TypeVar

__all__ = [
    "OPAQUE_WHITEOUT",
    "WHITEOUT_PREFIX",
    "Whiteout",
    "is_whiteout",
    "lower_entries_left",
    "parse_whiteout",
    "whited_out",
    "whiteout_for",
]

WHITEOUT_PREFIX = ".wh."
OPAQUE_WHITEOUT = ".wh..wh..opq"

_Entry = TypeVar("_Entry")


def is_whiteout(name: str) -> bool:
    """Whether an entry name is a whiteout (opaque or not): no layer may add such a name as
    a file of its own."""
    return name.startswith(WHITEOUT_PREFIX)


def whiteout_for(name: str) -> str:
    """The entry name that deletes ``name`` of the layers below, in the same directory."""
    return WHITEOUT_PREFIX + name


def whited_out(name: str) -> str | None:
    """The name the (non-opaque) whiteout ``name`` deletes; None for any other name."""
    if not is_whiteout(name) or name == OPAQUE_WHITEOUT:
        return None
    return name[len(WHITEOUT_PREFIX) :]


@dataclass(frozen=True)
class Whiteout:
    """What one whiteout entry deletes of the layers below its layer."""

    directory: tuple[str, ...]  # the directory the whiteout is in
    name: Optional[str]  # the entry it deletes; None for an opaque whiteout (all of them)

    @property
    def valid(self) -> bool:
        """False for a whiteout of nothing (``.wh.``) or of ``.``/``..``, which names no entry."""
        return self.name not in ("", ".", "..")

    @property
    def hidden(self) -> str:
        """The path (``/``-joined, relative) whose lower-layer content goes, with all below it:
        the whited-out entry, or for an opaque whiteout its directory."""
        parts = self.directory if self.name is None else (*self.directory, self.name)
        return "/".join(parts)


def parse_whiteout(parts: Sequence[str]) -> Whiteout | None:
    """The whiteout a layer member at ``parts`` (its path's components) is; None when the
    member is not one."""
    if not parts:
        return None
    directory, name = tuple(parts[:-1]), parts[-1]
    if name == OPAQUE_WHITEOUT:
        return Whiteout(directory, None)
    deleted = whited_out(name)
    return None if deleted is None else Whiteout(directory, deleted)


def _under(path: str, top: str) -> bool:
    return top in ("", path) or path.startswith(top + "/")


def lower_entries_left(
    entries: Mapping[str, _Entry], whiteouts: Iterable[Whiteout]
) -> dict[str, _Entry]:
    """The entries of the layers below (by relative path) that one layer's ``whiteouts``
    leave: each takes its :attr:`~Whiteout.hidden` path and everything under it. Apply a
    layer's whiteouts before adding its own entries, which they never hide."""
    hidden = [whiteout.hidden for whiteout in whiteouts]
    return {
        path: entry
        for path, entry in entries.items()
        if not any(_under(path, top) for top in hidden)
    }
