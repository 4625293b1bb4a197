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

__all__ = ["ProgressCallback", "TransportOptions"]

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
    connect_timeout: float = 30.0
    # Generous: a registry may take a while to verify and commit a large blob.
    read_timeout: float = 300.0
    write_timeout: float = 300.0
    # How many times a failed request (or upload) is tried again; 0 disables retries.
    max_retries: int = 4
    # Backoff before retry n (from 0) is about backoff_base * 2**n seconds, jittered.
    backoff_base: float = 0.5
    # No single wait (backoff or Retry-After) is longer than this.
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
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.hints_for not in HINTS_FOR:
            raise ValueError(f"hints_for must be one of {HINTS_FOR}, got {self.hints_for!r}")
        # Accept any iterable of names for the two registry sets.
        object.__setattr__(self, "insecure_registries", frozenset(self.insecure_registries))
        object.__setattr__(self, "https_registries", frozenset(self.https_registries))

    @property
    def timeout(self) -> httpx.Timeout:
        import httpx  # only the code that talks HTTP pays for importing httpx

        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.write_timeout,
            pool=self.read_timeout,
        )

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based): half fixed, half random."""
        ceiling = min(self.backoff_base * 2.0**attempt, self.max_retry_wait)
        jitter: float = random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto
        return ceiling / 2 + jitter
