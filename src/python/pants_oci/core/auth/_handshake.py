"""The docker registry authentication handshake: :class:`RegistryAuth`, an ``httpx.Auth``
that answers a registry's 401 with the credential, or with a token from the token service its
challenge names, and caches tokens per registry and scope set (see :mod:`pants_oci.core.auth`).

Private: import RegistryAuth from :mod:`pants_oci.core.auth`.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass
from typing import Any

import httpx

from pants_oci.core.auth._credentials import (
    IDENTITY_TOKEN_USERNAME,
    Credential,
    CredentialKind,
    Keychain,
)
from pants_oci.core.auth._scopes import (
    SCOPES_EXTENSION,
    Scopes,
    covers,
    implied_scopes,
    merge_scopes,
    parse_scopes,
    render_scopes,
    repository_of,
)
from pants_oci.core.auth._token_service import (
    check_realm,
    parse_http_date,
    parse_token_response,
    token_refused,
)
from pants_oci.core.auth._www_authenticate import Challenge, parse_challenges

__all__ = ["RegistryAuth"]

# Stop reusing a token this long before it expires (at most; a tenth of short lifetimes).
_EXPIRY_MARGIN = 30.0
_MAX_TOKENS_PER_REGISTRY = 32
_CLIENT_ID = "pants-oci"
# Marks the flow's own token requests, whose answers the drivers below read before the flow
# sees them (registry responses stay unread: they may be large blob downloads).
_OWN_REQUEST = "pants_oci.auth_own_request"


@dataclass(frozen=True)
class _Token:
    """A token from a token service, the scopes it was asked for, and until when to reuse it."""

    value: str = ""
    scopes: Scopes | None = None
    reuse_until: float = 0.0

    def __repr__(self) -> str:
        return f"_Token(scopes={self.scopes!r}, reuse_until={self.reuse_until})"


class RegistryAuth(httpx.Auth):
    """The docker registry authentication handshake, for an ``httpx.Client``.

    ``keychain`` supplies credentials (None: anonymous only). ``clock`` (seconds since the
    epoch) decides token expiry; tests pass their own. One instance may serve many threads
    sharing a client: its caches are locked. It also works with ``httpx.AsyncClient``, but
    credential look-ups (helpers, Google refreshes) block the event loop while they run.

    Request bodies are not buffered: a body given as bytes is re-sent on the retry, but a
    streamed body cannot be. So a streamed request never goes out without credentials when
    they can be had: with no cached token for its scopes, one is fetched first from the token
    service the registry named in an earlier challenge (send a body-less request first, such
    as an upload's POST or :meth:`RegistryClient.ping`, so that there is one). A streamed
    request the registry still refuses (a revoked token) is not re-sent: its 401 is the
    answer, and the caller sends it again (the registry client starts that upload again),
    which fetches a fresh token first.

    A token service (``realm``) on plain HTTP gets credentials only where cleartext is
    already accepted: the registry's own host and port when the registry itself is reached
    over plain HTTP (a loopback registry, an ``insecure_registries`` entry), or this machine
    when the registry is on it too. Anywhere else it is refused before anything is sent
    (:class:`InsecureTokenServiceError`): a registry, or whoever answers in its place on
    plain HTTP, must not be able to send the credentials to another host in cleartext. For a
    registry reached over HTTPS such a realm is refused even without credentials (its token
    would be trusted, unauthenticated). An HTTPS token service on any host is fine.
    """

    def __init__(
        self,
        keychain: Keychain | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keychain = keychain
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, list[_Token]] = {}
        self._credentials: dict[tuple[str, str | None], Credential | None] = {}
        # Registries that take the credential itself on every request (Basic, registry token).
        self._credential_registries: set[str] = set()
        # The last Bearer challenge of each registry: where to get a token without a 401.
        self._challenges: dict[str, Challenge] = {}

    def __repr__(self) -> str:
        return f"RegistryAuth(keychain={self.keychain!r})"

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self.auth_flow(request)
        next_request = next(flow)
        while True:
            response = yield next_request
            if next_request.extensions.get(_OWN_REQUEST):
                response.read()
            try:
                next_request = flow.send(response)
            except StopIteration:
                return

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        flow = self.auth_flow(request)
        next_request = next(flow)
        while True:
            response = yield next_request
            if next_request.extensions.get(_OWN_REQUEST):
                await response.aread()
            try:
                next_request = flow.send(response)
            except StopIteration:
                return

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "Authorization" in request.headers:
            # The caller authenticated this request itself.
            yield request
            return
        registry = request.url.netloc.decode("ascii")
        needed = self._needed_scopes(request)
        repository = repository_of(request, needed)
        sent_token, sent_credential = yield from self._authorize(
            request, registry, repository, needed
        )

        response = yield request
        if response.status_code != 401:
            return

        if sent_token is not None:
            self._forget_token(registry, sent_token)
        if sent_credential:
            # Maybe stale (an expired access token): look it up afresh, once.
            self._forget_credential(registry, repository)
        answer = yield from self._answer_challenges(request, response, registry, repository, needed)
        if answer is None:
            return
        header, fresh_token = answer
        if header is None or header == request.headers.get("Authorization"):
            return  # the registry already refused exactly this
        if _is_streamed(request):
            # Its body is gone: the caller gets the 401 and sends it again, with the
            # credential this flow now knows to send at once.
            return
        request.headers["Authorization"] = header
        response = yield request
        if response.status_code == 401 and fresh_token is not None:
            # Refused even fresh (the service granted less than asked): do not reuse it.
            self._forget_token(registry, fresh_token)

    def _authorize(
        self, request: httpx.Request, registry: str, repository: str | None, needed: Scopes
    ) -> Generator[httpx.Request, httpx.Response, tuple[_Token | None, bool]]:
        """Give ``request`` what this flow knows to send before any 401: the credential, to a
        registry that takes it on every request; else a cached token for its scopes (fetched
        now for a streamed body, when the registry's token service is known). Returns the
        token sent, and whether the credential was."""
        if self._takes_credential(registry):
            header = self._credential_header(self._credential(registry, repository))
            if header is None:
                return None, False
            request.headers["Authorization"] = header
            return None, True
        sent_token = self._cached_token(registry, needed)
        known = self._known_challenge(registry)
        if sent_token is None and known is not None and _is_streamed(request):
            # A streamed body cannot be sent twice: get the token before, not after a 401.
            sent_token = yield from self._fetch_token(
                request,
                challenge=known,
                scopes=needed,
                credential=self._credential(registry, repository),
                registry=registry,
                repository=repository,
            )
        if sent_token is not None:
            request.headers["Authorization"] = f"Bearer {sent_token.value}"
        return sent_token, False

    def _answer_challenges(
        self,
        request: httpx.Request,
        response: httpx.Response,
        registry: str,
        repository: str | None,
        needed: Scopes,
    ) -> Generator[httpx.Request, httpx.Response, tuple[str | None, _Token | None] | None]:
        """The Authorization header to send ``request`` again with after the 401 ``response``,
        as its ``WWW-Authenticate`` challenges ask (and the token fetched for it, if one was);
        None when there is nothing to send it again with."""
        challenges = parse_challenges(response.headers.get_list("WWW-Authenticate"))
        bearer = _first(challenges, "bearer")
        basic = _first(challenges, "basic")
        credential = self._credential(registry, repository)

        if credential is not None and credential.kind is CredentialKind.REGISTRY_TOKEN:
            header = self._credential_header(credential)
            self._remember_takes_credential(registry)
            return header, None
        if bearer is not None and _usable_realm(bearer):
            check_realm(bearer, request, registry, repository, credential)
            self._remember_challenge(registry, bearer)
            if _is_streamed(request):
                # Its body is gone: the caller gets the 401 (the flow must not yield another
                # request first, or httpx would hand back that one's answer) and sends it
                # again, when a token is fetched before it goes out (see _authorize).
                return None
            scopes = merge_scopes(needed, parse_scopes([bearer.get("scope") or ""]))
            fresh_token = yield from self._fetch_token(
                request,
                challenge=bearer,
                scopes=scopes,
                credential=credential,
                registry=registry,
                repository=repository,
            )
            return f"Bearer {fresh_token.value}", fresh_token
        if basic is not None and credential is not None:
            header = self._credential_header(credential)
            self._remember_takes_credential(registry)
            return header, None
        return None

    # --- scopes --------------------------------------------------------------------------
    @staticmethod
    def _needed_scopes(request: httpx.Request) -> Scopes:
        declared = request.extensions.get(SCOPES_EXTENSION)
        if declared is None:
            return implied_scopes(request)
        if isinstance(declared, str):
            declared = (declared,)
        return parse_scopes(declared)

    # --- credentials ---------------------------------------------------------------------
    def _credential(self, registry: str, repository: str | None) -> Credential | None:
        if self.keychain is None:
            return None
        key = (registry, repository)
        with self._lock:
            found = key in self._credentials
            credential = self._credentials.get(key)
        if found and (credential is None or not self._expired(credential.expires_at)):
            return credential
        # Outside the lock: a helper may take a while, and other requests should not wait.
        credential = self.keychain.resolve(registry, repository)
        with self._lock:
            self._credentials[key] = credential
        return credential

    def _forget_credential(self, registry: str, repository: str | None) -> None:
        with self._lock:
            self._credentials.pop((registry, repository), None)

    def _takes_credential(self, registry: str) -> bool:
        with self._lock:
            return registry in self._credential_registries

    def _remember_takes_credential(self, registry: str) -> None:
        with self._lock:
            self._credential_registries.add(registry)

    def _remember_challenge(self, registry: str, challenge: Challenge) -> None:
        with self._lock:
            self._challenges[registry] = challenge

    def _known_challenge(self, registry: str) -> Challenge | None:
        with self._lock:
            return self._challenges.get(registry)

    @staticmethod
    def _credential_header(credential: Credential | None) -> str | None:
        if credential is None:
            return None
        if credential.kind is CredentialKind.REGISTRY_TOKEN:
            return f"Bearer {credential.secret}"
        if credential.kind is CredentialKind.BASIC:
            return _basic_header(credential.username or "", credential.secret)
        return None  # an identity token is only good for the token service

    def _expired(self, expires_at: float | None) -> bool:
        return expires_at is not None and self._clock() >= expires_at - _EXPIRY_MARGIN

    # --- tokens --------------------------------------------------------------------------
    def _cached_token(self, registry: str, needed: Scopes) -> _Token | None:
        now = self._clock()
        with self._lock:
            tokens = [t for t in self._tokens.get(registry, []) if t.reuse_until > now]
            self._tokens[registry] = tokens
            for token in reversed(tokens):  # newest first
                if token.scopes is not None and covers(token.scopes, needed):
                    return token
        return None

    def _forget_token(self, registry: str, token: _Token) -> None:
        with self._lock:
            tokens = self._tokens.get(registry, [])
            if token in tokens:
                tokens.remove(token)

    def _store_token(self, registry: str, token: _Token) -> None:
        with self._lock:
            tokens = self._tokens.setdefault(registry, [])
            tokens.append(token)
            del tokens[:-_MAX_TOKENS_PER_REGISTRY]

    def _fetch_token(
        self,
        request: httpx.Request,
        *,
        challenge: Challenge,
        scopes: Scopes,
        credential: Credential | None,
        registry: str,
        repository: str | None,
    ) -> Generator[httpx.Request, httpx.Response, _Token]:
        # Checked here too: a challenge remembered for one repository may serve another,
        # whose credential differs.
        check_realm(challenge, request, registry, repository, credential)
        realm = challenge.get("realm") or ""
        service = challenge.get("service")
        scope_list = render_scopes(scopes)
        # The token request inherits the original's timeouts and User-Agent.
        extensions: dict[str, Any] = {k: v for k, v in request.extensions.items() if k == "timeout"}
        extensions[_OWN_REQUEST] = True
        headers = {k: v for k, v in request.headers.items() if k.lower() == "user-agent"}

        def get(basic: tuple[str, str] | None) -> httpx.Request:
            params: dict[str, Any] = {"scope": scope_list}
            if service:
                params["service"] = service
            get_headers = dict(headers)
            if basic is not None:
                get_headers["Authorization"] = _basic_header(*basic)
            url = httpx.URL(realm).copy_merge_params(params)
            return httpx.Request("GET", url, headers=get_headers, extensions=extensions)

        if credential is not None and credential.kind is CredentialKind.IDENTITY_TOKEN:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credential.secret,
                "client_id": _CLIENT_ID,
                "scope": " ".join(scope_list),
            }
            if service:
                form["service"] = service
            response = yield httpx.Request(
                "POST", realm, data=form, headers=headers, extensions=extensions
            )
            if response.status_code in (404, 405):
                # Not every token service speaks OAuth2: fall back to Basic with the token.
                username = credential.username or IDENTITY_TOKEN_USERNAME
                response = yield get((username, credential.secret))
        elif credential is not None and credential.kind is CredentialKind.BASIC:
            response = yield get((credential.username or "", credential.secret))
        else:
            response = yield get(None)

        now = self._clock()
        if response.status_code != 200:
            raise token_refused(
                response,
                realm=realm,
                registry=registry,
                repository=repository,
                scopes=scope_list,
                credential=credential,
            )
        token, lifetime, issued_at = parse_token_response(response, realm, registry, repository)
        # The token may have been issued before this response (some services hand out a
        # cached one): its age is the server's Date minus issued_at, both on the server's
        # clock, so clock skew between us and the server does not matter.
        server_now = parse_http_date(response.headers.get("Date"))
        age = 0.0
        if issued_at is not None and server_now is not None:
            age = min(max(0.0, server_now - issued_at), lifetime)
        reuse_until = now + lifetime - age - min(_EXPIRY_MARGIN, lifetime / 10)
        cached = _Token(token, scopes, reuse_until)
        self._store_token(registry, cached)
        return cached


def _first(challenges: list[Challenge], scheme: str) -> Challenge | None:
    return next((c for c in challenges if c.scheme == scheme), None)


def _usable_realm(challenge: Challenge) -> bool:
    realm = challenge.get("realm") or ""
    return realm.startswith(("https://", "http://"))


def _is_streamed(request: httpx.Request) -> bool:
    """Whether the body is a one-shot stream (it cannot be sent again after a 401)."""
    return not isinstance(request.stream, httpx.ByteStream)


def _basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
