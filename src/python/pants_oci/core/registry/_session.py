"""One repository of one registry, and the plumbing every request to it goes through.

:class:`RepositorySession` holds who and where (registry, repository, base URL, transport
options, auth, the ``httpx.Client``) and sends requests: declaring their token scopes, giving
credentials only to the registry's own origin, following redirects only to http(s) URLs with a
host, and turning error answers and transport failures into the errors of
:mod:`pants_oci.core.errors` (naming the registry, the repository and the setting to change).
:class:`~pants_oci.core.registry.RegistryClient` builds the distribution API on it.

Private: used by the modules of :mod:`pants_oci.core.registry`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from pants_oci.core._settings import Setting, how_to_set, name_of
from pants_oci.core.auth import SCOPES_EXTENSION, RegistryAuth, default_keychain, repository_scope
from pants_oci.core.digest import Digest
from pants_oci.core.errors import (
    DeniedError,
    DocumentError,
    NotFoundError,
    RangeError,
    RegistryError,
    RegistryErrorEntry,
    SizeMismatchError,
    TooManyRequestsError,
    TransportError,
    UnauthorizedError,
)
from pants_oci.core.reference import Reference
from pants_oci.core.registry._http import is_stream
from pants_oci.core.transport import (
    ATTEMPTS_EXTENSION,
    IDEMPOTENT_EXTENSION,
    IDENTITY_ENCODING,
    REGISTRY_EXTENSION,
    RETRIES_EXTENSION,
    TransportOptions,
    install_redirect_check,
    is_tls_failure,
    make_http_client,
    parse_retry_after,
    registry_base_url,
    server_url,
    shown_url,
)
from pants_oci.core.validation import check_arguments

_MAX_REDIRECTS = 10
LISTING_REPOSITORIES = "listing repositories"  # the catalog: of a registry, no repository
# What Go's net/http (and so most registries) answers plain HTTP sent to its TLS port.
_HTTPS_ONLY = b"Client sent an HTTP request to an HTTPS server"

_ERROR_CLASSES: dict[int, type[RegistryError]] = {
    401: UnauthorizedError,
    403: DeniedError,
    404: NotFoundError,
    416: RangeError,
    429: TooManyRequestsError,
}


# How much of a registry's error JSON a message names: the first so many entries (of distinct
# code and message) and details (of one entry), each detail cut to so many characters.
_MOST_NAMED = 10
_DETAIL_CHARS = 200


def error_entries(body: bytes) -> tuple[RegistryErrorEntry, ...]:
    """Every entry of a registry's error JSON (``{"errors": [{"code", "message", "detail"}]}``)
    that has a string code or message; none for a body that is not that JSON."""
    try:
        errors = json.loads(body).get("errors")
    except (ValueError, AttributeError, RecursionError):
        return ()
    if not isinstance(errors, list):
        return ()
    entries = []
    for item in errors:
        if not isinstance(item, dict):
            continue
        code, message = item.get("code"), item.get("message")
        code = code if isinstance(code, str) and code else None
        message = message if isinstance(message, str) and message else None
        if code or message:
            entries.append(RegistryErrorEntry(code, message, item.get("detail")))
    return tuple(entries)


def _clipped(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 3] + "..."


def _bounded(items: list[str]) -> str:
    shown = ", ".join(items[:_MOST_NAMED])
    rest = len(items) - _MOST_NAMED
    return shown if rest <= 0 else f"{shown} and {rest} more"


def describe_entries(entries: tuple[RegistryErrorEntry, ...]) -> str:
    """The entries of an error JSON as one phrase: each code and message once, with the
    string details of its entries (e.g. every missing blob of a manifest), bounded."""
    details: dict[tuple[str | None, str | None], list[str]] = {}
    for entry in entries:
        named = details.setdefault((entry.code, entry.message), [])
        detail = entry.detail
        if isinstance(detail, str) and detail.strip() and _clipped(detail) not in named:
            named.append(_clipped(detail))
    phrases = []
    for (code, message), named in details.items():
        phrase = ": ".join(_clipped(part) for part in (code, message) if part)
        if named:
            phrase += f" ({_bounded(named)})"
        phrases.append(phrase)
    if len(phrases) <= _MOST_NAMED:
        return "; ".join(phrases)
    return "; ".join(phrases[:_MOST_NAMED]) + f"; and {len(phrases) - _MOST_NAMED} more errors"


class StreamedBodyRefused(UnauthorizedError):
    """A 401 to a request whose streamed body cannot be sent again (an upload restarts)."""


def _default_auth() -> httpx.Auth:
    """The docker-style handshake with the user's credentials (explicit, Google, docker config)."""
    return RegistryAuth(default_keychain())


class RepositorySession:
    """Requests to one repository of one registry: the base of
    :class:`~pants_oci.core.registry.RegistryClient`, which documents the arguments."""

    def __init__(
        self,
        registry: str,
        repository: str,
        *,
        auth: httpx.Auth | None = None,
        options: TransportOptions | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        check_arguments(
            "RegistryClient",
            ("registry", registry, str, "a registry host str such as 'ghcr.io'"),
            ("repository", repository, str, "a repository str such as 'acme/app'"),
            ("auth", auth, (httpx.Auth, type(None)), "an httpx.Auth or None"),
            ("options", options, (TransportOptions, type(None)), "TransportOptions or None"),
            ("http_client", http_client, (httpx.Client, type(None)), "an httpx.Client or None"),
        )
        normalized = Reference(registry, repository)  # validates, and applies docker.io rules
        self.registry = normalized.registry
        self.repository = normalized.repository
        self.options = options or TransportOptions()
        self.base_url = httpx.URL(registry_base_url(self.registry, self.options))
        self.auth = auth if auth is not None else _default_auth()
        self._owns_http = http_client is None
        self._http = http_client or make_http_client(self.options, self.registry)
        # A client given to us too: httpx itself resolves every Location it sees, and a
        # `javascript:` one would be an httpx.InvalidURL there rather than our error.
        install_redirect_check(self._http)

    def close(self) -> None:
        """Close the connection pool, when this client created it."""
        if self._owns_http:
            self._http.close()

    # --- Requests --------------------------------------------------------------------------

    def _url(self, path: str, repository: str | None = None) -> httpx.URL:
        return self.base_url.join(f"/v2/{repository or self.repository}/{path}")

    def _scopes(self, *actions: str) -> tuple[str, ...]:
        return (repository_scope(self.repository, *actions),)

    def _is_registry_origin(self, url: httpx.URL) -> bool:
        """Whether credentials may go to ``url``: same host and port, and no HTTPS downgrade."""
        base = self.base_url
        if url.host != base.host or url.port != base.port:
            return False
        return not (base.scheme == "https" and url.scheme != "https")

    def _request(
        self,
        method: str,
        url: httpx.URL,
        *,
        scopes: tuple[str, ...],
        headers: Mapping[str, str] | None = None,
        content: bytes | Iterator[bytes] | None = None,
        idempotent: bool | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
        retries: int | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """Send one API request; the response is read unless ``stream``, and never checked.

        ``retries`` (default ``options.max_retries``) is how often the transport may repeat
        it; ``timeout`` replaces the client's timeouts for it."""
        extensions: dict[str, Any] = {
            SCOPES_EXTENSION: scopes,
            REGISTRY_EXTENSION: (self.registry, self.repository),
        }
        if idempotent is not None:
            extensions[IDEMPOTENT_EXTENSION] = idempotent
        if retries is not None:
            extensions[RETRIES_EXTENSION] = max(0, retries)
        # Digests are over the bytes as stored: never let anyone compress them on the way
        # (a shared http_client may not have make_http_client's default for this).
        all_headers = {"Accept-Encoding": IDENTITY_ENCODING, **(headers or {})}
        request = self._http.build_request(
            method,
            url,
            headers=all_headers,
            content=content,
            extensions=extensions,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        location = ""
        for _hop in range(_MAX_REDIRECTS + 1):
            # Credentials only for the registry itself: never for a storage backend that a
            # redirect or an upload Location points at.
            auth = self.auth if self._is_registry_origin(request.url) else None
            try:
                response = self._http.send(request, auth=auth, stream=True)
            except httpx.TransportError as exc:
                raise self._transport_error(exc, request.url) from exc
            except httpx.StreamError:
                # The auth flow wanted to re-send a streamed body after a 401 (a token that
                # expired or was revoked mid-upload): a stream cannot be sent twice.
                raise self._streamed_body_refused(method, url) from None
            if response.status_code == 401 and auth is not None and is_stream(content):
                # The auth flow does not re-send a streamed body after a 401 (it cannot), but
                # it has fresh credentials by now: the caller sends it all again.
                self._read(response)
                raise self._streamed_body_refused(method, url)
            if follow_redirects and response.has_redirect_location:
                location = response.headers["Location"]
                response.close()
                target = self._server_url(response, location, "a redirect to")
                request = self._redirected(request, target)
                continue
            if not stream:
                self._read(response)
            return response
        raise RegistryError(
            f"{self.registry}: more than {_MAX_REDIRECTS} redirects for {method} {url.path} "
            f"(a redirect loop?); the last pointed at {shown_url(location)}. The registry, or "
            "a proxy in front of it, is misconfigured",
            registry=self.registry,
            repository=self.repository,
            status=response.status_code,
        )

    def _streamed_body_refused(self, method: str, url: httpx.URL) -> StreamedBodyRefused:
        return StreamedBodyRefused(
            f"{self.registry} refused the credentials sent with a streamed "
            f"{method} {url.path} (HTTP 401: the token expired or was revoked while "
            "it was being sent), and a streamed body cannot be sent again",
            registry=self.registry,
            repository=self.repository,
            status=401,
        )

    def _server_url(self, response: httpx.Response, value: str, what: str) -> httpx.URL:
        """A URL the registry answered with (a redirect's Location, an upload session's, a
        Link), resolved; a RegistryError naming all three when it cannot be followed."""
        return server_url(response, value, what)

    def _redirected(self, request: httpx.Request, target: httpx.URL) -> httpx.Request:
        headers = httpx.Headers(request.headers)
        # Authorization was added by the auth flow to the old request: it must not leak to
        # another host (the new request gets fresh auth only if it is the registry again).
        for name in ("Authorization", "Cookie", "Host", "Content-Length", "Transfer-Encoding"):
            headers.pop(name, None)
        return self._http.build_request(
            request.method, target, headers=headers, extensions=dict(request.extensions)
        )

    def _read(self, response: httpx.Response) -> bytes:
        try:
            return response.read()
        except httpx.TransportError as exc:
            raise self._transport_error(exc, response.request.url) from exc
        finally:
            response.close()

    def _transport_error(
        self, exc: httpx.TransportError, url: httpx.URL, attempts: int | None = None
    ) -> TransportError:
        where = f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}"
        reason = str(exc) or type(exc).__name__
        tls = is_tls_failure(exc)
        timeout = isinstance(exc, httpx.TimeoutException)
        # Reset or closed after connecting (ReadError, WriteError, RemoteProtocolError): the
        # registry, or something between, cut an exchange that had started.
        dropped = not (tls or timeout) and isinstance(
            exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
        )
        if tls:
            hints_for = self.options.hints_for
            message = (
                f"TLS failure talking to registry {self.registry} at {where}: {reason}. If the "
                f"registry uses a private CA, {how_to_set(Setting.CA_BUNDLE, hints_for)}; if "
                "it only speaks plain HTTP, "
                f"{how_to_set(Setting.INSECURE_REGISTRY, hints_for, self.registry)}"
            )
        elif timeout:
            message = self._timeout_message(exc, where, attempts)
        elif dropped:
            message = f"registry {self.registry} at {where} dropped the connection: {reason}"
        else:
            message = f"cannot reach registry {self.registry} at {where}: {reason}"
        return TransportError(
            message, registry=self.registry, tls=tls, timeout=timeout, dropped=dropped
        )

    def _timeout_message(self, exc: httpx.TransportError, where: str, attempts: int | None) -> str:
        """What timed out, how long it waited, and the setting that waits longer."""
        options = self.options
        if attempts is None:
            try:
                attempts = int(exc.request.extensions.get(ATTEMPTS_EXTENSION, 1))
            except RuntimeError:  # an exception without its request
                attempts = 1
        if isinstance(exc, httpx.ConnectTimeout):
            setting, seconds, what = Setting.CONNECT_TIMEOUT, options.connect_timeout, "connect"
        elif isinstance(exc, httpx.WriteTimeout):
            setting, seconds, what = Setting.READ_TIMEOUT, options.read_timeout, "take our data"
        else:  # a read timeout, or no pooled connection free (all stuck on a stalled registry)
            setting, seconds, what = Setting.READ_TIMEOUT, options.read_timeout, "answer"
        tries = f", {attempts} attempts" if attempts > 1 else ""
        return (
            f"timed out talking to registry {self.registry} at {where}: it did not {what} "
            f"within {seconds:g} s ({type(exc).__name__}{tries}); if it is only slow, "
            f"{how_to_set(setting, options.hints_for, f'{seconds * 3:g}')} to wait longer"
        )

    def _error(self, response: httpx.Response, action: str) -> RegistryError:
        """An exception for an error answer, built from the answer only (never our headers)."""
        if not response.is_closed:
            self._read(response)
        entries = error_entries(response.content)
        first = entries[0] if entries else RegistryErrorEntry(None, None)
        status = response.status_code
        if status == 400 and response.url.scheme == "http" and _HTTPS_ONLY in response.content:
            return self._speaks_tls(response)
        where = (
            self.registry
            if action == LISTING_REPOSITORIES
            else f"{self.registry}/{self.repository}"
        )
        text = f"{action} in {where} failed: HTTP {status}"
        if entries:
            text += f" {describe_entries(entries)}"
        if status == 401:
            text += f" (missing or wrong credentials for {self.registry})"
        elif status == 403:
            text += f" (the credentials for {self.registry} do not allow this)"
        error_class = _ERROR_CLASSES.get(status, RegistryError)
        return error_class(
            text,
            registry=self.registry,
            repository=self.repository,
            status=status,
            code=first.code,
            detail=first.detail,
            registry_message=first.message,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
            errors=entries,
        )

    def _speaks_tls(self, response: httpx.Response) -> RegistryError:
        """Plain HTTP sent to a registry that serves HTTPS only: say so, and the fix."""
        hints_for = self.options.hints_for
        insecure = name_of(Setting.INSECURE_REGISTRY, hints_for)
        if self.registry in self.options.insecure_registries:
            fix = f"drop {self.registry} from {insecure}"
        else:  # a loopback registry: plain HTTP unless it is listed as serving HTTPS
            fix = (
                f"reach it over HTTPS (--https-registry {self.registry}), and do not list it in "
                f"{insecure}"
            )
        return RegistryError(
            f"registry {self.registry} speaks TLS (HTTPS), but was sent plain HTTP: it answered "
            f'HTTP 400 "Client sent an HTTP request to an HTTPS server"; {fix}',
            registry=self.registry,
            repository=self.repository,
            status=400,
        )

    def _check(self, response: httpx.Response, action: str, *ok: int) -> httpx.Response:
        if response.status_code in ok or (not ok and response.is_success):
            return response
        raise self._error(response, action)

    def _size_error(
        self, what: str, identifier: Digest | str, expected: int, actual: int | None
    ) -> SizeMismatchError:
        """A blob (or manifest) whose size is not its descriptor's; ``actual`` None: longer,
        and the rest was not read."""
        sent = f"more than {expected} bytes" if actual is None else f"{actual} bytes"
        return SizeMismatchError(
            f"registry {self.registry} sent {sent} for {what} {self.repository}@{identifier}, "
            f"whose descriptor says {expected} bytes",
            registry=self.registry,
            digest=str(identifier),
            expected=expected,
            actual=actual,
        )

    def _too_large(
        self, what: str, identifier: Digest | str, size: int | None, limit: int
    ) -> DocumentError:
        """A document over its limit (``size`` None: the registry did not say how large, and
        sent more than the limit)."""
        most = f"{limit} bytes ({limit / (1024 * 1024):g} MiB)"
        if what == "manifest":
            allowed = f"the most a manifest (or index) may be: {most}"
        else:
            allowed = f"the most read into memory, for an image config: {most}"
        is_size = f"is {size} bytes" if size is not None else f"is larger than {limit} bytes"
        return DocumentError(
            f"{what} {self.registry}/{self.repository}@{identifier} {is_size}, over {allowed}; "
            "it was not read"
        )
