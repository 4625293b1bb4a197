"""StaticKeychain, ChainKeychain and default_keychain().

Private: import these names from :mod:`pants_oci.core.auth`.

google-auth (and, through it, cryptography and httpx) is imported only once a Google registry
is involved: when StaticKeychain is given Google options, or when default_keychain()'s chain is
asked about a Google registry. Other registries, and code that merely builds a keychain, do
not pay for importing it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pants_oci.core.auth._credentials import (
    Credential,
    Keychain,
    is_google_registry,
    normalize_registry,
)
from pants_oci.core.auth._docker_config import DockerConfigKeychain
from pants_oci.core.errors import CredentialError

if TYPE_CHECKING:
    from pants_oci.core._transport_options import TransportOptions
    from pants_oci.core.auth._google import GoogleKeychain, GoogleTokenSource, HttpxGoogleRequest

StaticOptions = Mapping[str, Any]


@dataclass(frozen=True)
class _Entry:
    registry: str
    path: str  # "" for the whole registry, else a repository namespace like "team/app"
    credential: Credential | None
    google: GoogleTokenSource | None

    def matches(self, registry: str, repository: str | None) -> bool:
        if registry != self.registry:
            return False
        if not self.path:
            return True
        # At a path-component boundary: "team" matches "team/app", not "teamwork/app".
        return repository is not None and (
            repository == self.path or repository.startswith(self.path + "/")
        )


class StaticKeychain:
    """Explicit credentials, per registry or per repository namespace.

    Keys are ``registry`` or ``registry/namespace[/...]``; the longest key matching
    ``registry/repository`` at ``/`` boundaries wins, so ``ghcr.io/team`` beats ``ghcr.io``
    for ``ghcr.io/team/app`` but not for ``ghcr.io/teamwork``. Docker Hub's names
    (docker.io, index.docker.io, registry-1.docker.io) all match each other.

    Values are ``{"username": ..., "password": ...}``, ``{"token": ...}`` (a bearer token
    sent to the registry as is), ``{"identitytoken": ...}``, or a :class:`Credential`. For a
    Google registry, the options of :mod:`pants_oci.core.auth._google` apply instead:
    ``{"service_account_info": {...}}``, ``{"service_account_file": PATH}`` or
    ``{"token": ACCESS_TOKEN}``, the last sent as user ``oauth2accesstoken``. Anything else
    raises CredentialError naming the key (never the values). Google token requests honour
    ``options`` (CA bundle, proxy, timeouts) and the proxy variables of ``env``.
    """

    def __init__(
        self,
        mapping: Mapping[str, StaticOptions | Credential],
        *,
        options: TransportOptions | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        requests: list[HttpxGoogleRequest] = []

        def request() -> HttpxGoogleRequest:
            # One for every Google entry, made (and google-auth imported) by the first of them.
            if not requests:
                from pants_oci.core.auth._google import HttpxGoogleRequest

                requests.append(HttpxGoogleRequest(options, env))
            return requests[0]

        self._entries = [_parse_entry(key, value, request) for key, value in mapping.items()]
        # Longest path first, so the first match is the most specific.
        self._entries.sort(key=lambda entry: len(entry.path), reverse=True)

    def __repr__(self) -> str:
        keys = [f"{e.registry}/{e.path}" if e.path else e.registry for e in self._entries]
        return f"StaticKeychain(keys={keys!r})"

    def resolve(self, registry: str, repository: str | None = None) -> Credential | None:
        wanted = normalize_registry(registry)
        for entry in self._entries:
            if entry.matches(wanted, repository):
                if entry.google is not None:
                    return entry.google.credential(registry)
                return entry.credential
        return None


def _parse_entry(
    key: str, value: StaticOptions | Credential, request: Callable[[], HttpxGoogleRequest]
) -> _Entry:
    registry_part, _, path = key.strip().strip("/").partition("/")
    registry = normalize_registry(registry_part)
    where = f"credentials for {key!r}"
    if isinstance(value, Credential):
        return _Entry(registry, path, value, None)
    if not isinstance(value, Mapping):
        raise CredentialError(f"{where}: expected a dict of options or a Credential")
    source = f"explicit credentials for {key}"
    if is_google_registry(registry) and set(value) != {"username", "password"}:
        from pants_oci.core.auth._google import GOOGLE_USERNAME, token_source_from_options

        google = token_source_from_options(value, where, request())
        if isinstance(google, str):
            return _Entry(
                registry, path, Credential.basic(GOOGLE_USERNAME, google, source=source), None
            )
        return _Entry(registry, path, None, google)

    keys = set(value)
    if keys == {"username", "password"}:
        username, password = value["username"], value["password"]
        if not isinstance(username, str) or not isinstance(password, str):
            raise CredentialError(f"{where}: username and password must be strings")
        return _Entry(registry, path, Credential.basic(username, password, source=source), None)
    if keys == {"token"} and isinstance(value["token"], str):
        return _Entry(
            registry, path, Credential.registry_token(value["token"], source=source), None
        )
    if keys in ({"identitytoken"}, {"identitytoken", "username"}) and isinstance(
        value["identitytoken"], str
    ):
        credential = Credential.identity_token(
            value["identitytoken"], username=value.get("username"), source=source
        )
        return _Entry(registry, path, credential, None)
    raise CredentialError(
        f"{where}: expected {{'username', 'password'}}, {{'token'}} or {{'identitytoken'}} "
        f"(got keys {sorted(keys)})"
    )


class _LazyGoogleKeychain:
    """default_keychain()'s GoogleKeychain, made (importing google-auth) the first time it is
    asked about a Google registry; it answers None for every other registry, as GoogleKeychain
    does, without making it. The environment is read when this is made, as GoogleKeychain
    reads it when it is made."""

    def __init__(self, env: Mapping[str, str] | None, options: TransportOptions | None) -> None:
        self._env = env
        self._options = options
        self._snapshot: dict[str, str] = dict(os.environ if env is None else env)
        self._lock = threading.Lock()
        self._keychain: GoogleKeychain | None = None

    def __repr__(self) -> str:
        return "GoogleKeychain()"

    def resolve(self, registry: str, repository: str | None = None) -> Credential | None:
        if not is_google_registry(registry):
            return None
        return self._google().resolve(registry, repository)

    def _google(self) -> GoogleKeychain:
        with self._lock:
            if self._keychain is None:
                from pants_oci.core.auth._google import GoogleKeychain

                keychain = GoogleKeychain(self._env, options=self._options)
                keychain._env = self._snapshot  # what the environment held when this was made
                self._keychain = keychain
            return self._keychain


class ChainKeychain:
    """Asks each keychain in turn; the first credential found wins."""

    def __init__(self, *keychains: Keychain) -> None:
        self.keychains = keychains

    def __repr__(self) -> str:
        return f"ChainKeychain{self.keychains!r}"

    def resolve(self, registry: str, repository: str | None = None) -> Credential | None:
        for keychain in self.keychains:
            credential = keychain.resolve(registry, repository)
            if credential is not None:
                return credential
        return None


def default_keychain(
    explicit: Mapping[str, StaticOptions | Credential] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    options: TransportOptions | None = None,
) -> ChainKeychain:
    """Explicit credentials first, then Google's application default credentials (for Google
    registries only), then docker's config.json and credential helpers.

    ``env`` (default: the process environment) is what every keychain reads; ``options``
    are the transport settings Google token requests honour."""
    keychains: list[Keychain] = []
    if explicit:
        keychains.append(StaticKeychain(explicit, options=options, env=env))
    keychains += [_LazyGoogleKeychain(env, options), DockerConfigKeychain(env)]
    return ChainKeychain(*keychains)
