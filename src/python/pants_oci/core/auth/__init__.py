"""Registry authentication: where credentials come from, and the handshake that uses them.

Credentials
    A :class:`Credential` is a username and password (``Credential.basic``), an identity token
    (``Credential.identity_token``: docker config's ``identitytoken``, an OAuth2 refresh token)
    or a registry token (``Credential.registry_token``: a bearer token sent as is). Neither its
    ``repr`` nor its ``str`` shows the secret.

Keychains
    A keychain answers ``resolve(registry, repository)`` with a Credential or None:

    - :class:`StaticKeychain` — explicit credentials per registry or repository namespace;
    - :class:`DockerConfigKeychain` — docker's config.json and ``docker-credential-*`` helpers;
    - :class:`GoogleKeychain` — Google application default credentials, for gcr.io and pkg.dev;
    - :class:`ChainKeychain` — the first answer of several keychains;
    - :func:`default_keychain` — explicit, then Google, then docker config.

The handshake
    :class:`RegistryAuth` is an ``httpx.Auth``: give it to an ``httpx.Client`` and every request
    authenticates the way docker does. A request is sent with a cached token that covers its
    scopes, if there is one. On a 401 the ``WWW-Authenticate`` challenge decides: for
    ``Basic``, the request is re-sent with the credential; for ``Bearer``, a token is fetched
    from the challenge's realm — ``GET`` with Basic credentials (or none, for anonymous
    access), or a ``POST`` refresh-token grant for an identity token — and the request is
    re-sent with it. The token request goes through the same client (same TLS settings and
    timeouts). Tokens are cached per registry and scope set until shortly before they expire.

    What a request needs is declared in ``request.extensions[SCOPES_EXTENSION]``, a tuple of
    scope strings (build them with :func:`repository_scope`). The token is requested for the
    union of those and the challenge's scope, so a cross-repository mount that declares
    ``repository_scope(target, "pull", "push")`` and ``repository_scope(source, "pull")``
    gets one token for both. Requests that declare nothing get the scope their ``/v2/`` path
    and method imply (pull for reads, pull+push for writes, delete for DELETE).

    Errors: when the token service refuses, the flow raises UnauthorizedError (401, 400) or
    DeniedError (403) naming the registry, repository and the service's message. When the
    registry still answers 401 after the one retry, that response is returned for the caller
    to turn into an error. No credential is ever logged or put in a message.

Example::

    import httpx
    from pants_oci.core.auth import (
        SCOPES_EXTENSION, RegistryAuth, default_keychain, repository_scope,
    )

    with httpx.Client(auth=RegistryAuth(default_keychain())) as client:
        client.get(
            "https://ghcr.io/v2/team/app/manifests/latest",
            extensions={SCOPES_EXTENSION: (repository_scope("team/app", "pull"),)},
        )
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pants_oci.core.auth._credential_helpers import DEFAULT_HELPER_TIMEOUT
from pants_oci.core.auth._credentials import (
    Credential,
    CredentialKind,
    Keychain,
    is_google_registry,
    normalize_registry,
)
from pants_oci.core.auth._docker_config import DockerConfigKeychain
from pants_oci.core.auth._keychains import ChainKeychain, StaticKeychain, default_keychain
from pants_oci.core.auth._scopes import SCOPES_EXTENSION, repository_scope

if TYPE_CHECKING:
    from pants_oci.core.auth._google import GoogleKeychain
    from pants_oci.core.auth._handshake import RegistryAuth

__all__ = [
    "DEFAULT_HELPER_TIMEOUT",
    "SCOPES_EXTENSION",
    "ChainKeychain",
    "Credential",
    "CredentialKind",
    "DockerConfigKeychain",
    "GoogleKeychain",
    "Keychain",
    "RegistryAuth",
    "StaticKeychain",
    "default_keychain",
    "is_google_registry",
    "normalize_registry",
    "repository_scope",
]

# Imported on first use: the handshake needs httpx, and GoogleKeychain google-auth (with
# cryptography), both slow to import. Code that only builds keychains (the image builder on a
# local base) or asks a registry that is not Google's does not pay for them.
_LAZY: dict[str, str] = {
    "GoogleKeychain": "pants_oci.core.auth._google",
    "RegistryAuth": "pants_oci.core.auth._handshake",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later look-ups skip this function
    return value
