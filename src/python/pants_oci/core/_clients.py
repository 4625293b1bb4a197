"""The registry clients of one operation (an image's build, a push, a copy): a pool of them by
repository."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from pants_oci.core._transport_options import TransportOptions
from pants_oci.core.auth import Keychain, default_keychain
from pants_oci.core.reference import Reference, parse_reference

# The registry client, the auth flow and httpx are imported with the first client.
if TYPE_CHECKING:
    from pants_oci.core.auth import RegistryAuth
    from pants_oci.core.registry import RegistryClient

__all__ = ["Clients"]


class Clients:
    """Registry clients by repository, sharing one auth and one connection pool per registry
    (so that copies within a registry can be mounts)."""

    def __init__(self, keychain: Keychain | None, options: TransportOptions) -> None:
        self.options = options
        self._keychain = keychain if keychain is not None else default_keychain()
        self._auth: RegistryAuth | None = None  # made with the first client
        self._roots: dict[str, RegistryClient] = {}
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def get(self, reference: Reference | str) -> RegistryClient:
        ref = parse_reference(reference) if isinstance(reference, str) else reference
        with self._lock:
            client = self._clients.get(ref.name)
            if client is None:
                root = self._roots.get(ref.registry)
                if root is None:
                    from pants_oci.core.auth import RegistryAuth
                    from pants_oci.core.registry import RegistryClient

                    if self._auth is None:
                        self._auth = RegistryAuth(self._keychain)
                    client = RegistryClient.from_reference(
                        ref, auth=self._auth, options=self.options
                    )
                    self._roots[ref.registry] = client
                else:
                    client = root.for_repository(ref.repository)
                self._clients[ref.name] = client
            return client

    def close(self) -> None:
        for root in self._roots.values():
            root.close()
        self._roots.clear()
        self._clients.clear()
