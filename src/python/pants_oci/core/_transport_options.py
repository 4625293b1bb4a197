"""TransportOptions and ProgressCallback: the standard library only, so that code which just
passes transport settings along (the command line, the image builder, keychains) does not
import httpx. Import both from :mod:`pants_oci.core.transport`, which re-exports them.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from pants_oci.core._settings import HINTS_FOR, LIBRARY

if TYPE_CHECKING:
    import httpx

__all__ = ["COMMIT_BYTES_PER_SECOND", "ProgressCallback", "TransportOptions"]

# How fast a registry is assumed to verify and store an uploaded blob (see commit_timeout).
COMMIT_BYTES_PER_SECOND = 32 * 1024 * 1024

# Called as a transfer goes: (bytes done so far, total bytes or None when unknown).
ProgressCallback = Callable[[int, Optional[int]], None]


@dataclass(frozen=True)
class TransportOptions:
    """Settings shared by every request to every registry."""

    # A PEM file of extra CAs to trust (in addition to the system and certifi roots).
    ca_bundle: Path | None = None
    # Registries ("host" or "host:port") reached over plain HTTP.
    insecure_registries: frozenset[str] = frozenset()
    # Loopback registries that serve HTTPS (loopback otherwise means plain HTTP).
    https_registries: frozenset[str] = frozenset()
    # Timeouts bound how long a registry may leave us waiting without a byte moving: a stall.
    # They are not deadlines for a whole transfer. Each read (and each write) of the socket
    # gets read_timeout, so any byte received (or sent) starts it again: a 2 GB layer on a
    # slow link takes as long as it takes, and a registry that stops answering fails
    # instead. Defaults: a request that gets no answer at all fails after max_retries + 1
    # attempts of 10 s and the backoff between them (<= 0.5 + 1 + 2 + 4 s): 57.5 s at most,
    # see `stall_limit`.
    # Seconds to wait for a TCP connection (and the TLS handshake).
    connect_timeout: float = 10.0
    # Seconds the registry may send nothing while we wait for (or read) an answer, or take
    # nothing of a request body we send. The answer to the request that completes a blob
    # upload gets more: see `commit_timeout`.
    read_timeout: float = 10.0
    # How many times a failed request (or upload) is tried again; 0 disables retries.
    max_retries: int = 4
    # Backoff before retry n (from 0) is about backoff_base * 2**n seconds, jittered.
    backoff_base: float = 0.5
    # No single wait (backoff or a registry's Retry-After) is longer than this.
    max_retry_wait: float = 60.0
    # Parallel blob transfers in RegistryClient's bulk helpers.
    max_concurrency: int = 4
    user_agent: str = "pants-oci"
    # An HTTP(S) proxy URL for every registry; None reads HTTPS_PROXY / HTTP_PROXY / ALL_PROXY
    # and NO_PROXY from the environment, as curl and docker do.
    proxy: str | None = None
    # Injectable so tests can record waits instead of sleeping.
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)
    # Whose words errors use for a setting to change ("library", "cli" or "pants"): see
    # pants_oci.core._settings. Changes no request.
    hints_for: str = field(default=LIBRARY, compare=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be more than 0 seconds, got {value}")
        if self.backoff_base < 0 or self.max_retry_wait < 0:
            raise ValueError("backoff_base and max_retry_wait must be >= 0")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.hints_for not in HINTS_FOR:
            raise ValueError(f"hints_for must be one of {HINTS_FOR}, got {self.hints_for!r}")
        # Accept any iterable of names for the two registry sets.
        object.__setattr__(self, "insecure_registries", frozenset(self.insecure_registries))
        object.__setattr__(self, "https_registries", frozenset(self.https_registries))

    @property
    def timeout(self) -> httpx.Timeout:
        """Per socket operation, not per request: see the timeouts' comments above."""
        import httpx  # only the code that talks HTTP pays for importing httpx

        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.read_timeout,
            # Waiting for a pooled connection: the pool is sized so that this library's own
            # transfers never exhaust it, so a long wait means connections that are stuck.
            pool=self.read_timeout,
        )

    def commit_timeout(self, size: int) -> httpx.Timeout:
        """The timeouts of the request that completes an upload of ``size`` bytes: the
        registry verifies and stores the blob before it answers (a storage backend's copy of
        a large object takes a while), so its answer may take read_timeout plus a second per
        ``COMMIT_BYTES_PER_SECOND`` (32 MiB) uploaded."""
        import httpx

        base = self.timeout
        return httpx.Timeout(
            connect=base.connect,
            read=self.read_timeout + size / COMMIT_BYTES_PER_SECOND,
            write=base.write,
            pool=base.pool,
        )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based): half fixed, half random."""
        ceiling = min(self.backoff_base * 2.0**attempt, self.max_retry_wait)
        jitter: float = random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto
        return ceiling / 2 + jitter

    def retry_wait(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt``: what the registry asked for in a
        ``Retry-After`` header when it sent one, else :meth:`backoff`; either way at most
        ``max_retry_wait`` (60 s by default)."""
        wait = self.backoff(attempt) if retry_after is None else max(0.0, retry_after)
        return min(wait, self.max_retry_wait)

    @property
    def stall_limit(self) -> float:
        """The longest a request to a registry that stops answering takes to fail, in seconds:
        every attempt waits its full timeout, and the backoff between them its longest. With
        the defaults, 5 attempts of 10 s and 7.5 s of backoff: 57.5 s."""
        per_attempt = max(self.connect_timeout, self.read_timeout)
        backoff = sum(
            min(self.backoff_base * 2.0**attempt, self.max_retry_wait)
            for attempt in range(self.max_retries)
        )
        return (self.max_retries + 1) * per_attempt + backoff
