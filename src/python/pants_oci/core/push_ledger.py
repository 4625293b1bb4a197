"""Where this machine pushed each blob: a push ledger (docker's "blob sources"), so that a later
push of a blob to another repository of the same registry mounts it from one that has it
instead of uploading it again.

The ledger is a directory of small JSON files, one per registry (its scheme, host and port),
each mapping a blob digest to the repositories that recently received it (or already had
it), most recent first. It holds registry addresses, repository names and digests only:
never a credential or a token. It is bounded (:data:`MAX_SOURCES` repositories per digest,
:data:`MAX_DIGESTS` digests per registry), and written atomically (a temporary file renamed
into place) after merging with what is on disk then, so that concurrent pushes on one
machine lose at most a record (which costs an upload, never a failure). A ledger that cannot
be read or makes no sense is ignored (logged at debug level); one that cannot be written is
not an error either. A source it names may be stale (the repository was deleted): the push
then uploads the blob as it would have without the ledger.

Stdlib only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Dict, List

__all__ = ["MAX_DIGESTS", "MAX_SOURCES", "PushLedger"]

_log = logging.getLogger(__name__)

MAX_SOURCES = 3  # repositories kept per digest, most recent first
MAX_DIGESTS = 5000  # digests kept per registry, the most recently recorded
_VERSION = 1
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_REPOSITORY_RE = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)

_Sources = Dict[str, List[str]]  # digest -> repositories, most recent first


def _registry_key(registry: str) -> str:
    return registry.rstrip("/")


class PushLedger:
    """The push ledger in ``directory`` (created when first saved)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_sources: int = MAX_SOURCES,
        max_digests: int = MAX_DIGESTS,
    ) -> None:
        self.directory = Path(directory)
        self._max_sources = max_sources
        self._max_digests = max_digests
        self._loaded: dict[str, _Sources] = {}
        self._pending: list[tuple[str, str, tuple[str, ...]]] = []

    def __repr__(self) -> str:
        return f"PushLedger({str(self.directory)!r})"

    def _path(self, registry: str) -> Path:
        name = hashlib.sha256(registry.encode("utf-8")).hexdigest()[:32]
        return self.directory / f"{name}.json"

    def _read(self, registry: str) -> _Sources:
        """What the ledger file of ``registry`` holds now (nothing if it is absent or bad)."""
        path = self._path(registry)
        try:
            document = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            _log.debug("ignoring the push ledger %s: %s", path, e)
            return {}
        blobs = document.get("blobs") if isinstance(document, dict) else None
        if (
            not isinstance(blobs, dict)
            or document.get("version") != _VERSION
            or document.get("registry") != registry
        ):
            _log.debug("ignoring the push ledger %s: not a ledger of %s", path, registry)
            return {}
        sources: _Sources = {}
        for digest, repositories in blobs.items():
            if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
                continue
            if not isinstance(repositories, list):
                continue
            kept = [r for r in repositories if isinstance(r, str) and _REPOSITORY_RE.fullmatch(r)]
            if kept:
                sources[digest] = kept[: self._max_sources]
        return sources

    def _sources_of(self, registry: str) -> _Sources:
        key = _registry_key(registry)
        if key not in self._loaded:
            self._loaded[key] = self._read(key)
        return self._loaded[key]

    def sources(self, registry: str, digest: str) -> list[str]:
        """The repositories of ``registry`` (a base URL such as ``https://host:port``) that
        received or had blob ``digest``, most recent first (at most :data:`MAX_SOURCES`)."""
        return list(self._sources_of(registry).get(str(digest), ()))

    def record(self, registry: str, repository: str, digests: Iterable[str]) -> None:
        """Repository ``repository`` of ``registry`` has each of ``digests`` now (kept in
        memory until :meth:`save`)."""
        if not _REPOSITORY_RE.fullmatch(repository):
            return
        items = tuple(d for d in map(str, digests) if _DIGEST_RE.fullmatch(d))
        entry = (_registry_key(registry), repository, items)
        self._pending.append(entry)
        self._apply(self._sources_of(entry[0]), entry)

    def _apply(self, sources: _Sources, entry: tuple[str, str, tuple[str, ...]]) -> None:
        _registry, repository, digests = entry
        for digest in digests:
            previous = sources.pop(digest, [])
            kept = [repository, *(r for r in previous if r != repository)]
            sources[digest] = kept[: self._max_sources]  # re-inserted: now the most recent
        while len(sources) > self._max_digests:
            del sources[next(iter(sources))]

    def save(self) -> None:
        """Merge what was recorded into the ledger files as they are now, atomically; a
        failure is logged, not raised (the ledger only saves uploads)."""
        pending, self._pending = self._pending, []
        for registry in dict.fromkeys(entry[0] for entry in pending):
            sources = self._read(registry)
            for entry in pending:
                if entry[0] == registry:
                    self._apply(sources, entry)
            self._loaded[registry] = sources
            try:
                self._write(registry, sources)
            except OSError as e:
                _log.debug("could not save the push ledger in %s: %s", self.directory, e)

    def _write(self, registry: str, sources: _Sources) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(registry)
        document = {"version": _VERSION, "registry": registry, "blobs": sources}
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(document, file, separators=(",", ":"))
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
