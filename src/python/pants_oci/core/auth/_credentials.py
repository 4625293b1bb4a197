"""Credential, the Keychain protocol, and the registry-name normalisation keychains share.

Private: import these names from :mod:`pants_oci.core.auth`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from pants_oci.core.errors import InvalidReferenceError
from pants_oci.core.reference import DEFAULT_REGISTRY, Reference

# The key docker writes Docker Hub's credentials under, and the server URL it gives helpers.
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
# The username a credential helper (or docker config) uses to say "the secret is an identity
# token", per docker-credential-helpers.
IDENTITY_TOKEN_USERNAME = "<token>"  # noqa: S105 - a marker, not a secret


class CredentialKind(enum.Enum):
    """How a credential is presented to a registry."""

    BASIC = "basic"
    """Username and password: HTTP Basic, or Basic to the token service."""
    IDENTITY_TOKEN = "identity token"  # noqa: S105
    """An OAuth2 refresh token (docker config's ``identitytoken``), exchanged at the token
    service with a ``grant_type=refresh_token`` POST."""
    REGISTRY_TOKEN = "registry token"  # noqa: S105
    """A bearer token sent to the registry as is, with no token-service exchange."""


@dataclass(frozen=True, repr=False)
class Credential:
    """One registry credential. Build with :meth:`basic`, :meth:`identity_token` or
    :meth:`registry_token`.

    ``source`` says where it came from (e.g. ``docker config /home/me/.docker/config.json``)
    for error messages; ``expires_at`` (seconds since the epoch) is set when the secret is a
    short-lived access token, so holders know to resolve a fresh one. Neither ``repr`` nor
    ``str`` ever shows the secret.
    """

    kind: CredentialKind
    secret: str
    username: str | None = None
    source: str = field(default="", compare=False)
    expires_at: float | None = field(default=None, compare=False)

    @classmethod
    def basic(
        cls, username: str, password: str, *, source: str = "", expires_at: float | None = None
    ) -> Credential:
        return cls(CredentialKind.BASIC, password, username, source, expires_at)

    @classmethod
    def identity_token(
        cls, token: str, *, username: str | None = None, source: str = ""
    ) -> Credential:
        return cls(CredentialKind.IDENTITY_TOKEN, token, username, source)

    @classmethod
    def registry_token(cls, token: str, *, source: str = "") -> Credential:
        return cls(CredentialKind.REGISTRY_TOKEN, token, None, source)

    @property
    def password(self) -> str:
        """The password of a basic credential (the secret, under its usual name)."""
        return self.secret

    def describe(self) -> str:
        """A secret-free description for messages: kind, username and source."""
        text = self.kind.value
        if self.username is not None and self.username != IDENTITY_TOKEN_USERNAME:
            text += f" for user {self.username!r}"
        if self.source:
            text += f" from {self.source}"
        return text

    def __repr__(self) -> str:
        user = f", username={self.username!r}" if self.username is not None else ""
        source = f", source={self.source!r}" if self.source else ""
        return f"Credential(kind={self.kind.name}{user}, secret=<redacted>{source})"

    __str__ = __repr__


class Keychain(Protocol):
    """A source of credentials. ``resolve`` answers None when it has none for the registry."""

    def resolve(self, registry: str, repository: str | None = None) -> Credential | None: ...


def normalize_registry(text: str) -> str:
    """The registry identity of a host, URL or config key, to compare registries by.

    ``https://index.docker.io/v1/``, ``registry-1.docker.io`` and ``docker.io`` all give
    ``docker.io``; ``http://localhost:5000/`` gives ``localhost:5000``. Host names are
    case-insensitive, so the result is lowercase.
    """
    host = text.strip()
    scheme, sep, rest = host.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        host = rest
    host = host.split("/", 1)[0].lower()
    try:
        # Reference applies Docker Hub's aliases; its repository part is a placeholder.
        return Reference(host, "x/x").registry
    except InvalidReferenceError:
        return host


def is_google_registry(registry: str) -> bool:
    """gcr.io, *.gcr.io (eu.gcr.io, ...) and *.pkg.dev (europe-docker.pkg.dev, ...)."""
    host = normalize_registry(registry).rsplit(":", 1)[0]
    return host == "gcr.io" or host.endswith((".gcr.io", ".pkg.dev"))


def is_docker_hub(registry: str) -> bool:
    return normalize_registry(registry) == DEFAULT_REGISTRY


def helper_server_url(registry: str) -> str:
    """What to ask a credential helper for: Docker Hub's legacy key, else the host."""
    return DOCKER_HUB_CONFIG_KEY if is_docker_hub(registry) else normalize_registry(registry)
