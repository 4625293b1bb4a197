"""Bounded concurrency for bulk blob work: a thread pool that runs at most N transfers at a
time, and one progress callback adding up theirs.

Private: import map_bounded from :mod:`pants_oci.core.registry`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pants_oci.core.transport import ProgressCallback

__all__ = ["SharedProgress", "map_bounded"]

T = TypeVar("T")
R = TypeVar("R")


def map_bounded(function: Callable[[T], R], items: Iterable[T], max_concurrency: int) -> list[R]:
    """``[function(item) for item in items]``, at most ``max_concurrency`` at a time.

    Results are in the order of ``items``. The first failure (in that order) is raised once
    the calls already running have finished; calls not yet started are cancelled.
    """
    work = list(items)
    if max_concurrency <= 1 or len(work) <= 1:
        return [function(item) for item in work]
    with ThreadPoolExecutor(
        max_workers=min(max_concurrency, len(work)), thread_name_prefix="pants-oci-blob"
    ) as pool:
        futures = [pool.submit(function, item) for item in work]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


class SharedProgress:
    """Adds up the progress of parallel transfers into one callback."""

    def __init__(self, callback: ProgressCallback | None, total: int | None) -> None:
        self._callback = callback
        self._total = total
        self._done = 0
        self._lock = threading.Lock()

    def part(self) -> ProgressCallback | None:
        """The callback for one of the transfers (None when nobody is listening)."""
        if self._callback is None:
            return None
        last = 0

        def report(done: int, _total: int | None) -> None:
            nonlocal last
            with self._lock:
                self._done += done - last
                last = done
                current = self._done
            assert self._callback is not None
            self._callback(current, self._total)

        return report
