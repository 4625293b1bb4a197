"""What ``pants-oci`` writes: one JSON object per command on stdout (or, for crane's commands,
lines for people), raw document bytes for ``inspect --raw``, ``manifest``, ``config`` and
``sbom``, and progress lines on stderr."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from pants_oci.core.wire import PROGRAM, Result

__all__ = ["PROGRAM", "Progress", "emit", "print_result", "write_exact", "write_raw"]

_MIB = 1024 * 1024
_PROGRESS_INTERVAL = 1.0  # seconds between progress lines


def emit(document: Result | Mapping[str, Any]) -> None:
    """Print a command's JSON output: a result of core/wire.py (what the backend reads), or
    a plain object (``copy``, which the backend never runs)."""
    data = document.to_json() if isinstance(document, Result) else document
    sys.stdout.write(json.dumps(data, indent=None, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Progress:
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


def print_result(
    args: argparse.Namespace, lines: Sequence[str], document: Mapping[str, Any]
) -> None:
    """crane's commands: ``document`` as one JSON object with ``--json``, else ``lines``, one
    a line."""
    if args.json:
        emit(document)
    else:
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        sys.stdout.flush()


def write_raw(data: bytes) -> None:
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.flush()


def write_exact(data: bytes) -> None:
    """``data`` as it is, with no newline added (a document to hash, or to pipe on)."""
    sys.stdout.buffer.write(data)
    sys.stdout.flush()
