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

import base64
import datetime
import email.utils
import json
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from pants_oci.core._credential_helpers import DEFAULT_HELPER_TIMEOUT
from pants_oci.core._credentials import (
    IDENTITY_TOKEN_USERNAME,
    Credential,
    CredentialKind,
    Keychain,
    is_google_registry,
    normalize_registry,
)
from pants_oci.core._docker_config import DockerConfigKeychain
from pants_oci.core._keychains import ChainKeychain, StaticKeychain, default_keychain
from pants_oci.core._www_authenticate import Challenge, parse_challenges
from pants_oci.core.errors import (
    DeniedError,
    InsecureTokenServiceError,
    RegistryError,
    UnauthorizedError,
)
from pants_oci.core.transport import is_loopback_registry

if TYPE_CHECKING:
    from pants_oci.core._google import GoogleKeychain

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


def __getattr__(name: str) -> Any:
    # GoogleKeychain is imported on first use: google-auth (with cryptography) is slow to
    # import, and only Google registries need it (default_keychain() imports it lazily too).
    if name == "GoogleKeychain":
        from pants_oci.core._google import GoogleKeychain

        globals()[name] = GoogleKeychain
        return GoogleKeychain
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


SCOPES_EXTENSION = "pants_oci.scopes"
"""``request.extensions`` key: a tuple of scope strings the request needs."""

# The docker token spec's default when a token response has no expires_in.
DEFAULT_TOKEN_LIFETIME = 60.0
# Stop reusing a token this long before it expires (at most; a tenth of short lifetimes).
_EXPIRY_MARGIN = 30.0
_MAX_TOKENS_PER_REGISTRY = 32
_MAX_MESSAGE_CHARS = 300
_CLIENT_ID = "pants-oci"
# Marks the flow's own token requests, whose answers the drivers below read before the flow
# sees them (registry responses stay unread: they may be large blob downloads).
_OWN_REQUEST = "pants_oci.auth_own_request"

# /v2/<name>/<endpoint>: greedy name, so "a/blobs/b/manifests/x" is repository "a/blobs/b".
_API_PATH_RE = re.compile(
    r"/v2/(?P<name>.+)/(?:blobs/uploads/.*|blobs/[^/]+|manifests/[^/]+|tags/list|referrers/[^/]+)"
)


def repository_scope(repository: str, *actions: str) -> str:
    """``repository:<name>:<actions>``, e.g. ``repository_scope("team/app", "pull", "push")``."""
    if not actions:
        raise ValueError("repository_scope needs at least one action, e.g. 'pull'")
    return f"repository:{repository}:{','.join(actions)}"


# --- Scope sets: {(resource type, name): actions} ----------------------------------------
Scopes = dict[tuple[str, str], frozenset[str]]


def _parse_scopes(texts: Iterable[str]) -> Scopes:
    scopes: Scopes = {}
    for text in texts:
        for scope in text.split():
            resource_type, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if not resource_type or not name:
                # Not type:name:actions; keep it verbatim so it is still asked for.
                key, parsed = (scope, ""), frozenset[str]()
            else:
                key, parsed = (resource_type, name), frozenset(a for a in actions.split(",") if a)
            scopes[key] = scopes.get(key, frozenset()) | parsed
    return scopes


def _merge_scopes(a: Scopes, b: Scopes) -> Scopes:
    merged = dict(a)
    for key, actions in b.items():
        merged[key] = merged.get(key, frozenset()) | actions
    return merged


def _covers(granted: Scopes, needed: Scopes) -> bool:
    return all(key in granted and actions <= granted[key] for key, actions in needed.items())


def _render_scopes(scopes: Scopes) -> list[str]:
    return sorted(
        f"{kind}:{name}:{','.join(sorted(actions))}" if name else kind
        for (kind, name), actions in scopes.items()
    )


def _implied_scopes(request: httpx.Request) -> Scopes:
    path = request.url.path
    if path == "/v2/_catalog":
        return {("registry", "catalog"): frozenset({"*"})}
    match = _API_PATH_RE.fullmatch(path)
    if match is None:
        return {}
    if request.method in ("GET", "HEAD"):
        actions = {"pull"}
    elif request.method == "DELETE":
        actions = {"delete"}
    else:
        actions = {"pull", "push"}
    return {("repository", match.group("name")): frozenset(actions)}


# --- The handshake -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Token:
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
        repository = _repository_of(request, needed)

        sent_token: _Token | None = None
        sent_credential = False
        if self._takes_credential(registry):
            header = self._credential_header(self._credential(registry, repository))
            if header is not None:
                request.headers["Authorization"] = header
                sent_credential = True
        else:
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

        response = yield request
        if response.status_code != 401:
            return

        if sent_token is not None:
            self._forget_token(registry, sent_token)
        if sent_credential:
            # Maybe stale (an expired access token): look it up afresh, once.
            self._forget_credential(registry, repository)
        challenges = parse_challenges(response.headers.get_list("WWW-Authenticate"))
        bearer = _first(challenges, "bearer")
        basic = _first(challenges, "basic")
        credential = self._credential(registry, repository)

        fresh_token: _Token | None = None
        if credential is not None and credential.kind is CredentialKind.REGISTRY_TOKEN:
            header = self._credential_header(credential)
            self._remember_takes_credential(registry)
        elif bearer is not None and _usable_realm(bearer):
            _check_realm(bearer, request, registry, repository, credential)
            self._remember_challenge(registry, bearer)
            if _is_streamed(request):
                # Its body is gone: the caller gets the 401 (the flow must not yield another
                # request first, or httpx would hand back that one's answer) and sends it
                # again, when a token is fetched before it goes out (see above).
                return
            scopes = _merge_scopes(needed, _parse_scopes([bearer.get("scope") or ""]))
            fresh_token = yield from self._fetch_token(
                request,
                challenge=bearer,
                scopes=scopes,
                credential=credential,
                registry=registry,
                repository=repository,
            )
            header = f"Bearer {fresh_token.value}"
        elif basic is not None and credential is not None:
            header = self._credential_header(credential)
            self._remember_takes_credential(registry)
        else:
            return
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

    # --- scopes --------------------------------------------------------------------------
    @staticmethod
    def _needed_scopes(request: httpx.Request) -> Scopes:
        declared = request.extensions.get(SCOPES_EXTENSION)
        if declared is None:
            return _implied_scopes(request)
        if isinstance(declared, str):
            declared = (declared,)
        return _parse_scopes(declared)

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
                if token.scopes is not None and _covers(token.scopes, needed):
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
        _check_realm(challenge, request, registry, repository, credential)
        realm = challenge.get("realm") or ""
        service = challenge.get("service")
        scope_list = _render_scopes(scopes)
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
            raise _token_refused(
                response,
                realm=realm,
                registry=registry,
                repository=repository,
                scopes=scope_list,
                credential=credential,
            )
        token, lifetime, issued_at = _parse_token_response(response, realm, registry, repository)
        # The token may have been issued before this response (some services hand out a
        # cached one): its age is the server's Date minus issued_at, both on the server's
        # clock, so clock skew between us and the server does not matter.
        server_now = _parse_http_date(response.headers.get("Date"))
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


def _check_realm(
    challenge: Challenge,
    request: httpx.Request,
    registry: str,
    repository: str | None,
    credential: Credential | None,
) -> None:
    """Refuse a token service that ``credential`` would reach in cleartext somewhere the user
    did not accept cleartext (see :class:`RegistryAuth`). Raises before anything is sent."""
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


def _is_streamed(request: httpx.Request) -> bool:
    """Whether the body is a one-shot stream (it cannot be sent again after a 401)."""
    return not isinstance(request.stream, httpx.ByteStream)


def _repository_of(request: httpx.Request, needed: Scopes) -> str | None:
    match = _API_PATH_RE.fullmatch(request.url.path)
    if match is not None:
        return match.group("name")
    return next((name for (kind, name) in needed if kind == "repository"), None)


def _basic_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _parse_token_response(
    response: httpx.Response, realm: str, registry: str, repository: str | None
) -> tuple[str, float, float | None]:
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


def _parse_http_date(value: str | None) -> float | None:
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


def _token_refused(
    response: httpx.Response,
    *,
    realm: str,
    registry: str,
    repository: str | None,
    scopes: list[str],
    credential: Credential | None,
) -> RegistryError:
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
