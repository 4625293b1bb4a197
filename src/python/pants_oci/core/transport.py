"""How pants_oci talks HTTP to registries: URLs, TLS, timeouts, retries and concurrency limits.

:class:`TransportOptions` holds every knob; :func:`registry_base_url` decides between HTTPS
and plain HTTP; :func:`make_http_client` builds the ``httpx.Client`` that
:class:`pants_oci.core.registry.RegistryClient` sends everything through.

Schemes. Registries are reached over HTTPS, with two exceptions that use plain HTTP:
loopback registries (``localhost``, ``127.0.0.0/8``, ``::1``), as Docker treats them, and
registries listed in ``insecure_registries``. A loopback registry that does serve HTTPS is
listed in ``https_registries``. ``docker.io`` (and its aliases) means
``https://registry-1.docker.io``.

TLS. Certificates are verified against the system's trust store and certifi's bundle, plus
``ca_bundle`` when set (a PEM file, e.g. a company CA).

Timeouts. ``connect_timeout`` bounds a TCP connection (and TLS handshake); ``read_timeout``
bounds every wait for the registry's next byte (and for it to take our next byte): a stall,
not a deadline for the request, so a large transfer that keeps moving is never cut. A
registry that stops answering fails a request after ``max_retries + 1`` attempts of
``read_timeout`` and the backoff between them (:attr:`TransportOptions.stall_limit`: 57.5 s
with the defaults), with a :class:`~pants_oci.core.errors.TransportError` that says so and
names the setting to raise.

Retries. Requests that are safe to repeat (GET, HEAD, DELETE, OPTIONS, and requests the
client marks as idempotent, such as a manifest PUT) are retried on connection errors,
timeouts, 408, 429 and 5xx answers, with exponential backoff and jitter; a ``Retry-After``
header (seconds or an HTTP date) is honoured, up to ``max_retry_wait`` (60 s by default: a
registry asking for longer gets 60 s, then the retry). Two connection errors are final at
once: a refused connection and a host name that does not resolve say that nothing listens
there, which asking again a second later does not change (see :func:`is_unreachable`); a
connection reset or a timeout is retried. Other requests (blob upload PATCH and PUT)
are never repeated blindly: the registry client resumes or restarts the upload instead,
honouring the registry's ``Retry-After`` the same way. A request may carry its own retry
count (``RETRIES_EXTENSION``): the registry client's own retries (a download resumed after
it broke off) spend the same count, rather than multiplying it. The sleep function is an
option so that tests do not really wait.

Encoding. Every request asks for ``Accept-Encoding: identity``: digests are over the bytes
as stored, so a body compressed on the way (a proxy or CDN that gzips what it may) would no
longer match its digest.

Redirects. httpx resolves the ``Location`` of every redirect it receives, even when it is
not to follow it, and raises ``httpx.InvalidURL`` on some (``javascript:...``); the clients
made here, and any the registry client is given, check each one first (a response hook): a
``Location`` that is no http(s) URL with a host is a RegistryError naming the registry, the
request and the value (see :func:`server_url`).

Logging. httpx logs every request's URL at INFO; the client installs a filter on the
``httpx`` logger that drops query strings from those records, since a storage backend's
presigned URL carries its signature there (``?X-Amz-Signature=...``).
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import re
import socket
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import certifi
import httpx

from pants_oci.core._settings import Setting, name_of
from pants_oci.core._transport_options import ProgressCallback, TransportOptions
from pants_oci.core.errors import InputFileError, RegistryError
from pants_oci.core.reference import DEFAULT_REGISTRY, DOCKER_HUB_API_HOST

__all__ = [
    "ATTEMPTS_EXTENSION",
    "IDEMPOTENT_EXTENSION",
    "IDENTITY_ENCODING",
    "REGISTRY_EXTENSION",
    "RETRIES_EXTENSION",
    "RETRY_STATUSES",
    "ProgressCallback",
    "RetryingTransport",
    "TransportOptions",
    "install_log_redaction",
    "install_redirect_check",
    "is_loopback_registry",
    "is_tls_failure",
    "is_unreachable",
    "make_http_client",
    "parse_retry_after",
    "proxy_for",
    "proxy_for_url",
    "registry_base_url",
    "server_url",
    "shown_url",
    "tls_context",
    "uses_plain_http",
]

_log = logging.getLogger(__name__)

# Request extension the registry client sets: True when the request is safe to resend as-is
# (False: never resend it, whatever its method).
IDEMPOTENT_EXTENSION = "pants_oci.idempotent"

# Request extension the registry client sets: (registry, repository) a request is for, so
# that an error about its answer names them.
REGISTRY_EXTENSION = "pants_oci.registry"
# Request extension: how many times this request may be retried (default: max_retries).
RETRIES_EXTENSION = "pants_oci.retries"
# Set by the transport on a request: how many attempts it took (for error messages).
ATTEMPTS_EXTENSION = "pants_oci.attempts"

# What every request accepts: bytes as stored, never re-encoded (digests are over them).
IDENTITY_ENCODING = "identity"

# Answers worth retrying: the server is overloaded, restarting or rate limiting us.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
_DOCKER_HUB_NAMES = frozenset({DEFAULT_REGISTRY, "index.docker.io", DOCKER_HUB_API_HOST})


def _hostname(registry: str) -> str:
    return urlsplit(f"//{registry}").hostname or registry


def is_loopback_registry(registry: str) -> bool:
    """Whether ``registry`` (``host[:port]``) is this machine: localhost, 127.0.0.0/8, ::1."""
    host = _hostname(registry)
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def uses_plain_http(registry: str, options: TransportOptions | None = None) -> bool:
    """Whether ``registry`` is reached over plain HTTP rather than HTTPS."""
    options = options or TransportOptions()
    names = {registry, _hostname(registry)}
    if names & options.insecure_registries:
        return True
    if names & options.https_registries:
        return False
    return is_loopback_registry(registry)


def registry_base_url(registry: str, options: TransportOptions | None = None) -> str:
    """``scheme://host[:port]`` of ``registry``'s API, e.g. ``https://registry-1.docker.io``."""
    host = DOCKER_HUB_API_HOST if registry in _DOCKER_HUB_NAMES else registry
    scheme = "http" if uses_plain_http(registry, options) else "https"
    return f"{scheme}://{host}"


def tls_context(ca_bundle: Path | None = None) -> ssl.SSLContext:
    """The system's and certifi's roots, plus ``ca_bundle`` (a PEM file) when given."""
    context = ssl.create_default_context()  # the system's roots
    context.load_verify_locations(cafile=certifi.where())
    if ca_bundle is not None:
        context.load_verify_locations(cafile=str(ca_bundle))
    return context


def _tls_context_for(options: TransportOptions) -> ssl.SSLContext:
    """``tls_context``, with a CA bundle that cannot be used named, with its setting."""
    try:
        return tls_context(options.ca_bundle)
    except OSError as exc:  # ssl.SSLError is an OSError too
        if options.ca_bundle is None:
            raise
        setting = name_of(Setting.CA_BUNDLE, options.hints_for)
        if isinstance(exc, ssl.SSLError):
            problem = f"is not a PEM file of CA certificates ({exc.reason or exc})"
        else:
            problem = f"cannot be read: {exc.strerror or exc}"
        raise InputFileError(
            f"{setting} {options.ca_bundle} {problem}; {setting} takes a PEM file holding the "
            "certificates of the certificate authorities to trust"
        ) from None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks us to wait: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = datetime.now(timezone.utc).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


def _is_idempotent(request: httpx.Request) -> bool:
    marked = request.extensions.get(IDEMPOTENT_EXTENSION)
    if marked is not None:
        return bool(marked)
    return request.method in _IDEMPOTENT_METHODS


def is_tls_failure(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by TLS (a certificate or handshake failure)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by a refused connection or a host name that does not
    resolve: nothing listens at that address, now or a second later (unlike a connection
    reset or a timeout, which may pass)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (ConnectionRefusedError, socket.gaierror)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class RetryingTransport(httpx.BaseTransport):
    """Wraps a transport; repeats idempotent requests that fail in a retryable way."""

    def __init__(self, inner: httpx.BaseTransport, options: TransportOptions) -> None:
        self._inner = inner
        self._options = options

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        options = self._options
        limit = request.extensions.get(RETRIES_EXTENSION, options.max_retries)
        attempt = 0
        while True:
            request.extensions[ATTEMPTS_EXTENSION] = attempt + 1
            retryable = _is_idempotent(request) and attempt < limit
            try:
                response = self._inner.handle_request(request)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                # A certificate will not become valid by asking again, nor a port start
                # listening or a name resolve.
                if not retryable or is_tls_failure(exc) or is_unreachable(exc):
                    raise
                delay = options.retry_wait(attempt)
                reason = f"{type(exc).__name__}: {exc}"
            else:
                if not retryable or response.status_code not in RETRY_STATUSES:
                    return response
                asked = parse_retry_after(response.headers.get("Retry-After"))
                delay = options.retry_wait(attempt, asked)
                reason = f"HTTP {response.status_code}"
                response.close()
            _log.info(
                "retrying %s %s in %.2fs (attempt %d of %d) after %s",
                request.method,
                request.url.copy_with(query=None),
                delay,
                attempt + 2,
                limit + 1,
                reason,
            )
            options.sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._inner.close()


def proxy_for(
    registry: str,
    options: TransportOptions | None = None,
    env: Mapping[str, str] | None = None,
) -> str | None:
    """The proxy URL requests to ``registry`` go through, or None to connect directly.

    ``options.proxy`` wins when set ("" for none); otherwise HTTPS_PROXY / HTTP_PROXY /
    ALL_PROXY and NO_PROXY (either case) come from ``env``, by default the process
    environment (where urllib also consults the platform's proxy settings, e.g. macOS's).
    """
    options = options or TransportOptions()
    scheme = "http" if uses_plain_http(registry, options) else "https"
    return _proxy(registry, scheme, options, env)


def proxy_for_url(
    url: str, options: TransportOptions | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """:func:`proxy_for` a URL that is not a registry's (e.g. a token endpoint)."""
    parts = urlsplit(url)
    return _proxy(parts.netloc, parts.scheme or "https", options or TransportOptions(), env)


def _proxy(
    netloc: str, scheme: str, options: TransportOptions, env: Mapping[str, str] | None
) -> str | None:
    if options.proxy is not None:
        return options.proxy or None
    if is_loopback_registry(netloc):
        return None
    host = _hostname(netloc)
    if env is None:
        if urllib.request.proxy_bypass(host):
            return None
        proxies = urllib.request.getproxies()  # lowercase scheme keys
    else:
        proxies = _proxies_from(env)
        if _no_proxy_matches(proxies.get("no", ""), netloc):
            return None
    return proxies.get(scheme) or proxies.get("all")


def _proxies_from(env: Mapping[str, str]) -> dict[str, str]:
    """{scheme: proxy URL, "no": NO_PROXY} from ``env``; lowercase names win, as in urllib."""
    proxies: dict[str, str] = {}
    for name, value in env.items():
        lowered = name.lower()
        if value and lowered.endswith("_proxy") and name.isupper():
            proxies[lowered[: -len("_proxy")]] = value
    for name, value in env.items():
        if value and name.endswith("_proxy") and name.islower():
            proxies[name[: -len("_proxy")]] = value
    return proxies


def _no_proxy_matches(no_proxy: str, netloc: str) -> bool:
    """Whether NO_PROXY (``*``, or comma-separated hosts, domains, ``host:port``) covers it."""
    host = _hostname(netloc).lower()
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry == "*":
            return True
        if not entry:
            continue
        if entry == netloc.lower():
            return True
        name = _hostname(entry).lstrip(".")  # ".example.com" and "example.com" alike
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


class _RedactQueries(logging.Filter):
    """Drops the query string of every URL in a log record (presigned URLs carry secrets)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_without_query(arg) for arg in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {key: _without_query(value) for key, value in record.args.items()}
        if isinstance(record.msg, str) and "?" in record.msg and "://" in record.msg:
            record.msg = _QUERY_RE.sub("", record.msg)
        return True


# "?query" right after a URL's path, up to whitespace, a quote or a fragment.
_QUERY_RE = re.compile(r"(?<=[^\s?])\?[^\s\"'#]+")
_REDACTION = _RedactQueries()
_REDACTION_LOCK = threading.Lock()
_REDACTED_LOGGERS = ("httpx",)


def _without_query(value: object) -> object:
    if isinstance(value, httpx.URL):
        return value.copy_with(query=None, fragment=None) if value.query else value
    if isinstance(value, str) and "?" in value and "://" in value:
        return _QUERY_RE.sub("", value)
    return value


def install_log_redaction() -> None:
    """Make the ``httpx`` logger drop query strings (idempotent; make_http_client calls it)."""
    with _REDACTION_LOCK:
        for name in _REDACTED_LOGGERS:
            logger = logging.getLogger(name)
            if _REDACTION not in logger.filters:
                logger.addFilter(_REDACTION)


# --- URLs a registry answers with -------------------------------------------------------------

_MAX_SHOWN_URL_CHARS = 200


def shown_url(value: str) -> str:
    """A URL for a message: quoted, without its query (a signed URL's signature), bounded."""
    text = value.split("?", 1)[0] + ("?..." if "?" in value else "")
    if len(text) > _MAX_SHOWN_URL_CHARS:
        text = text[: _MAX_SHOWN_URL_CHARS - 3] + "..."
    return repr(text)


def _url_problem(value: str) -> str | None:
    """Why ``value`` (from a Location or Link header) is no http(s) URL reference, if it is not.

    Judged on the text itself: httpx resolves ``http://`` (no host) to the request's own
    host, and ``javascript:...`` not at all (an InvalidURL)."""
    text = value.strip()
    if not text:
        return "it is empty"
    try:
        parts = urlsplit(text)
        _ = parts.port  # a port that is no number raises
    except ValueError as exc:
        return f"it is not a valid URL ({exc})"
    if parts.scheme and parts.scheme.lower() not in ("http", "https"):
        return f"its scheme is {parts.scheme}:, not http: or https:"
    if (parts.scheme or text.startswith("//")) and not parts.hostname:
        return "it names no host"
    return None


def server_url(response: httpx.Response, value: str, what: str) -> httpx.URL:
    """``value``, a URL a registry answered ``response``'s request with (a redirect's
    Location, an upload session's, a ``Link``), resolved against the request's URL.

    Raises RegistryError naming the registry, the request and ``value`` (``what`` says which
    it is: "a redirect to") unless it is an http(s) URL with a host."""
    request = response.request
    problem = _url_problem(value)
    target: httpx.URL | None = None
    if problem is None:
        try:
            target = request.url.join(value.strip())
        except httpx.InvalidURL as exc:
            problem = f"it is not a valid URL ({exc})"
    if target is not None and problem is None:
        if target.scheme not in ("http", "https"):
            problem = f"it resolves to a URL of scheme {target.scheme}:"
        elif not target.host:
            problem = "it names no host"
    if target is None or problem is not None:
        registry, repository = request.extensions.get(REGISTRY_EXTENSION) or (
            request.url.netloc.decode("ascii", "replace"),
            None,
        )
        raise RegistryError(
            f"registry {registry} answered {request.method} {shown_url(str(request.url))} "
            f"(HTTP {response.status_code}) with {what} {shown_url(value)}, which cannot be "
            f"followed: {problem}. Only http(s) URLs with a host are followed; the registry, "
            "or a proxy in front of it, is misconfigured",
            registry=registry,
            repository=repository,
            status=response.status_code,
        )
    return target


def _check_redirect(response: httpx.Response) -> None:
    """An httpx response hook: a redirect whose Location cannot be followed is a
    RegistryError (see :func:`server_url`). httpx resolves every redirect's Location as it
    receives it, even when it is not to follow it, and raises InvalidURL on some."""
    if response.has_redirect_location:
        server_url(response, response.headers["Location"], "a redirect to")


def install_redirect_check(client: httpx.Client) -> None:
    """Make ``client`` report redirects it cannot follow as RegistryErrors (idempotent)."""
    hooks = client.event_hooks
    if _check_redirect not in hooks["response"]:
        hooks["response"].append(_check_redirect)
        client.event_hooks = hooks


def make_http_client(
    options: TransportOptions | None = None,
    registry: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` trusting ``options.ca_bundle``, with timeouts, pool size and retries.

    ``registry`` picks the proxy (see :func:`proxy_for`, which reads ``env``). The client
    follows no redirects and has no auth: the registry client decides both per request
    (credentials must not follow a redirect to another host); a redirect it could not
    follow anyway is a RegistryError at once (see :func:`server_url`). It asks for uncompressed
    bodies (``Accept-Encoding: identity``), and query strings are kept out of httpx's logs.
    """
    options = options or TransportOptions()
    install_log_redaction()
    pool = options.max_concurrency * 2 + 4  # uploads + downloads + auth, in parallel
    inner = httpx.HTTPTransport(
        verify=_tls_context_for(options),
        limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
        proxy=proxy_for(registry, options, env) if registry is not None else options.proxy or None,
    )
    return httpx.Client(
        transport=RetryingTransport(inner, options),
        timeout=options.timeout,
        headers={"User-Agent": options.user_agent, "Accept-Encoding": IDENTITY_ENCODING},
        follow_redirects=False,
        trust_env=False,  # proxies are decided above, and must go through the retries
        event_hooks={"response": [_check_redirect]},
    )
