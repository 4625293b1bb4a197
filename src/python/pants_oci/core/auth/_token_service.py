"""The token service a registry's ``Bearer`` challenge names: whether credentials may be sent
to it, what its answers mean (a token and how long it lasts, or a refusal), and errors that
name the registry, repository and scopes without ever showing a credential.

Private: used by :class:`pants_oci.core.auth.RegistryAuth`.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import re
from collections.abc import Mapping
from typing import Any

import httpx

from pants_oci.core.auth._credentials import Credential
from pants_oci.core.auth._www_authenticate import Challenge
from pants_oci.core.errors import (
    DeniedError,
    InsecureTokenServiceError,
    RegistryError,
    UnauthorizedError,
)
from pants_oci.core.transport import is_loopback_registry

# The docker token spec's default when a token response has no expires_in.
DEFAULT_TOKEN_LIFETIME = 60.0
_MAX_MESSAGE_CHARS = 300


def check_realm(
    challenge: Challenge,
    request: httpx.Request,
    registry: str,
    repository: str | None,
    credential: Credential | None,
) -> None:
    """Refuse a token service that ``credential`` would reach in cleartext somewhere the user
    did not accept cleartext (see :class:`~pants_oci.core.auth.RegistryAuth`). Raises before
    anything is sent."""
    realm = httpx.URL(challenge.get("realm") or "")
    if realm.scheme == "https":
        return
    origin = request.url
    realm_host = realm.netloc.decode("ascii", "replace")
    if is_loopback_registry(realm_host) and is_loopback_registry(registry):
        return  # cleartext that never leaves this machine
    shown = _without_query(str(realm))
    if origin.scheme == "https":
        raise InsecureTokenServiceError(
            f"registry {registry} is reached over HTTPS, but its token service {shown} is "
            "plain HTTP: refusing to send credentials or trust a token in cleartext. The "
            "token service must be served over HTTPS",
            registry=registry,
            repository=repository,
            status=401,
        )
    if realm.host == origin.host and (realm.port or 80) == (origin.port or 80):
        return  # the registry's own host and port, which the user chose to reach in clear
    if credential is None:
        return  # nothing secret goes there, and this registry's tokens travel in clear anyway
    raise InsecureTokenServiceError(
        f"registry {registry} is reached over plain HTTP and named the token service {shown}, "
        f"on another host ({realm_host}) over plain HTTP too: refusing to send the "
        f"credentials ({credential.describe()}) there in cleartext. Credentials go over "
        f"plain HTTP only to the registry's own host and port ({registry}); serve the token "
        f"service over HTTPS, or from {registry} itself",
        registry=registry,
        repository=repository,
        status=401,
    )


def parse_token_response(
    response: httpx.Response, realm: str, registry: str, repository: str | None
) -> tuple[str, float, float | None]:
    """(token, lifetime in seconds, when it was issued if the service says) from a 200."""
    try:
        body = response.json()
    except ValueError:
        body = None
    token = None
    if isinstance(body, dict):
        token = body.get("token") or body.get("access_token")
    if not isinstance(body, dict) or not isinstance(token, str) or not token:
        raise RegistryError(
            f"token service {_without_query(realm)} for {registry} answered 200 without a token",
            registry=registry,
            repository=repository,
            status=response.status_code,
        )
    expires_in = body.get("expires_in")
    lifetime = (
        float(expires_in)
        if isinstance(expires_in, (int, float)) and expires_in > 0
        else DEFAULT_TOKEN_LIFETIME
    )
    return token, lifetime, _parse_timestamp(body.get("issued_at"))


def parse_http_date(value: str | None) -> float | None:
    """An HTTP ``Date`` header in epoch seconds, or None."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _parse_timestamp(value: Any) -> float | None:
    """RFC 3339 (as Go writes it: ``Z`` suffix, up to nanoseconds) to epoch seconds."""
    if not isinstance(value, str):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.strip()).replace("Z", "+00:00")
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.timestamp()


def token_refused(
    response: httpx.Response,
    *,
    realm: str,
    registry: str,
    repository: str | None,
    scopes: list[str],
    credential: Credential | None,
) -> RegistryError:
    """The error for a token service's refusal, naming who was refused for what (never the
    credential: its secret is cut out of the service's message too)."""
    status = response.status_code
    code, message = _error_of(response)
    if credential is not None and credential.secret:
        message = message.replace(credential.secret, "<redacted>")
    who = credential.describe() if credential is not None else "anonymous access"
    where = f"{registry}/{repository}" if repository else registry
    text = (
        f"token service {_without_query(realm)} refused {who} for {where} "
        f"(scopes: {' '.join(scopes) or 'none'}): HTTP {status}"
        + (f": {message}" if message else "")
    )
    kind = {401: UnauthorizedError, 400: UnauthorizedError, 403: DeniedError}.get(
        status, RegistryError
    )
    return kind(
        text,
        registry=registry,
        repository=repository,
        status=status,
        code=code,
        registry_message=message or None,
    )


def _error_of(response: httpx.Response) -> tuple[str | None, str]:
    """(code, message) from a token service's error answer: docker or OAuth2 style."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text.strip()[:_MAX_MESSAGE_CHARS]
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
            first = errors[0]
            return _str_or_none(first.get("code")), str(first.get("message") or "")[
                :_MAX_MESSAGE_CHARS
            ]
        if "error" in body:
            description = body.get("error_description") or body.get("details") or ""
            error = str(body["error"])
            return error, (f"{error}: {description}" if description else error)[:_MAX_MESSAGE_CHARS]
    return None, json.dumps(body)[:_MAX_MESSAGE_CHARS]


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _without_query(url: str) -> str:
    return url.split("?", 1)[0]
