"""What ``run`` is told: the runtime to use, and what it changes of the image config (as
``docker run`` flags do)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pants_oci.core.errors import RunError

__all__ = ["Mount", "RunSettings", "Runtime"]

Runtime = Literal["auto", "runc", "podman"]


@dataclass(frozen=True)
class Mount:
    """A host file or directory, bind-mounted read-only into the container."""

    source: Path
    destination: str

    @classmethod
    def parse(cls, text: str) -> Mount:
        """``SOURCE:DESTINATION`` (SOURCE relative to the working directory, or absolute)."""
        source, colon, destination = text.rpartition(":")
        if not colon or not source or not destination.startswith("/"):
            raise RunError(
                f"mount {text!r}: expected SOURCE:DESTINATION, an absolute path in the "
                "container, e.g. `config:/etc/app` (mounted read-only)"
            )
        if ".." in destination.split("/"):
            raise RunError(f"mount {text!r}: the destination must not go up with `..`")
        path = Path(source).absolute()
        if not path.exists():
            raise RunError(f"mount {text!r}: {path} does not exist")
        return cls(path, destination)


@dataclass(frozen=True)
class RunSettings:
    """What ``run`` changes of the image config, as ``docker run`` flags do."""

    mounts: tuple[Mount, ...] = ()  # --volume SOURCE:DESTINATION:ro
    workdir: str | None = None  # --workdir
    user: str | None = None  # --user USER[:GROUP]
    # The most bytes of files the image may unpack to (runc); None: the free space of the
    # temporary directory's file system, less a margin (a small layer can expand to gigabytes).
    max_unpacked_size: int | None = None
