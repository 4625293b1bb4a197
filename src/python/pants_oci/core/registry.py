"""A client for one repository of an OCI distribution registry (Docker Hub, GHCR, ECR, ...).

::

    from pants_oci.core.registry import RegistryClient

    with RegistryClient("ghcr.io", "acme/app") as client:
        index = client.get_manifest("1.2")               # tag or digest
        image = client.get_image_manifest("1.2")         # follows an index to this platform
        client.get_blob(image.config.digest, "config.json")
        digest, size = client.upload_blob(Path("layer.tar.gz"))
        client.put_manifest(new_manifest, tag="1.3")

Everything the registry sends is checked against its digest: manifests before they are
parsed, blobs while they stream (a blob that fails verification never reaches its
destination path; an empty body is checked too). Every request asks for
``Accept-Encoding: identity``, so nothing on the way may re-encode the bytes that are
hashed. A blob download whose connection breaks midway continues where it broke (a
``Range: bytes=N-`` request, hashing on), up to ``options.max_retries`` times.

Sizes. A blob read with its descriptor's size (``size=``; every caller that has a descriptor
gives it) is read no further than that, and fails with :class:`SizeMismatchError` (naming
the registry, the digest and both sizes) when the registry sends more or less. Documents
have limits: manifests and indexes ``MAX_MANIFEST_SIZE`` (4 MiB), configs read into memory
(:meth:`RegistryClient.read_blob`) ``MAX_CONFIG_SIZE`` (64 MiB), refused before they are
read when their descriptor or the registry's ``Content-Length`` says more.
:meth:`RegistryClient.ping` (``GET /v2/``) checks that a registry is there and takes our
credentials. Errors are the classes of :mod:`pants_oci.core.errors`: a
:class:`RegistryError` subclass for an error answer (carrying the registry, repository,
status and the registry's error code), :class:`TransportError` when the registry cannot be
reached, :class:`DigestMismatchError` for content that is not what it claims.

Authentication is an ``httpx.Auth`` (normally :class:`pants_oci.core.auth.RegistryAuth`);
every request declares the token scopes it needs in
``request.extensions["pants_oci.scopes"]``. Credentials are only ever sent to the registry's
own origin: a redirect to a storage backend on another host is followed without them.
Only http(s) URLs with a host are followed (redirects, upload Locations, ``Link`` pages);
anything else (``javascript:``, ``file:``, ``http://`` with no host) is a RegistryError
naming the registry, the request and the URL, and so is a redirect loop.

Uploads pick the cheapest protocol that fits what is known: one ``PUT`` when the digest
and size are known, a streamed ``PATCH`` hashed on the fly when the digest is not, and
``PATCH`` chunks (at least ``OCI-Chunk-Min-Length`` bytes) when ``chunk_size`` is given.
When a connection breaks mid-upload the client asks the registry how much it has (the
``Range`` of the upload session) and continues from there; when the registry has dropped
the session, as CNCF distribution does after a partial ``PATCH``, the upload starts again
(for sources that can be read again: bytes, files, seekable streams). So does an upload
whose streamed body the registry refused with a 401 (a token revoked or expired midway):
a stream cannot be sent twice, so it is sent again from the start with a fresh token; for
a source that cannot be re-read that is an :class:`UnauthorizedError` saying so.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar, Union

import httpx

from pants_oci.core import media_types
from pants_oci.core._settings import Setting, how_to_set, name_of
from pants_oci.core.auth import SCOPES_EXTENSION, RegistryAuth, default_keychain, repository_scope
from pants_oci.core.digest import Digest, new_hasher, sha256_of_bytes, verify_bytes
from pants_oci.core.errors import (
    DeniedError,
    DigestMismatchError,
    DocumentError,
    NotFoundError,
    OCIError,
    PlatformNotFoundError,
    RangeError,
    RegistryError,
    SizeMismatchError,
    TooManyRequestsError,
    TransportError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from pants_oci.core.models import (
    MAX_CONFIG_SIZE,
    MAX_INDEX_DEPTH,
    MAX_MANIFEST_SIZE,
    AnyManifest,
    Descriptor,
    DockerManifest,
    DockerManifestList,
    OCIIndex,
    OCIManifest,
    Platform,
    parse_manifest,
)
from pants_oci.core.reference import Reference, validate_tag
from pants_oci.core.transport import (
    ATTEMPTS_EXTENSION,
    IDEMPOTENT_EXTENSION,
    IDENTITY_ENCODING,
    REGISTRY_EXTENSION,
    RETRIES_EXTENSION,
    RETRY_STATUSES,
    ProgressCallback,
    TransportOptions,
    install_redirect_check,
    is_tls_failure,
    make_http_client,
    parse_retry_after,
    registry_base_url,
    server_url,
    shown_url,
)

__all__ = [
    "BlobSource",
    "ImageManifest",
    "Index",
    "RegistryClient",
    "map_bounded",
    "next_link",
    "resolve_platform",
]

# Bytes in memory, a file path, or a binary stream (seekable streams can be re-read).
BlobSource = Union[bytes, bytearray, memoryview, str, os.PathLike[str], BinaryIO]
ImageManifest = Union[OCIManifest, DockerManifest]
Index = Union[OCIIndex, DockerManifestList]

CATALOG_SCOPE = "registry:catalog:*"
_READ_SIZE = 1024 * 1024  # file reads while uploading
_MAX_REDIRECTS = 10
_OCTET_STREAM = "application/octet-stream"
_RANGE_RE = re.compile(r"^\s*(?:bytes=)?(\d+)-(\d+)\s*$")
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")
_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")
_SESSION_GONE_CODES = frozenset({"BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"})
# What Go's net/http (and so most registries) answers plain HTTP sent to its TLS port.
_HTTPS_ONLY = b"Client sent an HTTP request to an HTTPS server"

_ERROR_CLASSES: dict[int, type[RegistryError]] = {
    401: UnauthorizedError,
    403: DeniedError,
    404: NotFoundError,
    416: RangeError,
    429: TooManyRequestsError,
}

_log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def _default_auth() -> httpx.Auth:
    """The docker-style handshake with the user's credentials (explicit, Google, docker config)."""
    return RegistryAuth(default_keychain())


# --- Platform selection ---------------------------------------------------------------------


def resolve_platform(index: Index, platform: Platform | None = None) -> Descriptor:
    """The entry of ``index`` for ``platform`` (default: Linux on this machine's CPU).

    Raises :class:`PlatformNotFoundError` listing the platforms the index does have.
    """
    wanted = platform or Platform.host_linux()
    matches = index.manifests_for(wanted)
    if matches:
        return matches[0]
    available = [str(entry.platform) for entry in index.manifests if entry.platform is not None]
    # Attestations (buildx) are "unknown/unknown": not images anyone can ask for.
    available = [name for name in dict.fromkeys(available) if name != "unknown/unknown"]
    listed = ", ".join(available) if available else "none (its entries declare no platform)"
    raise PlatformNotFoundError(
        f"no image for platform {wanted} in index {index.digest}; available platforms: {listed}",
        wanted=str(wanted),
        available=available,
    )


# --- Bounded concurrency ---------------------------------------------------------------------


def map_bounded(function: Callable[[T], R], items: Iterable[T], max_concurrency: int) -> list[R]:
    """``[function(item) for item in items]``, at most ``max_concurrency`` at a time.

    Results are in the order of ``items``. The first failure (in that order) is raised once
    the calls already running have finished; calls not yet started are cancelled.
    """
    work = list(items)
    if max_concurrency <= 1 or len(work) <= 1:
        return [function(item) for item in work]
    with ThreadPoolExecutor(
        max_workers=min(max_concurrency, len(work)), thread_name_prefix="pants-oci-blob"
    ) as pool:
        futures = [pool.submit(function, item) for item in work]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


class _SharedProgress:
    """Adds up the progress of parallel transfers into one callback."""

    def __init__(self, callback: ProgressCallback | None, total: int | None) -> None:
        self._callback = callback
        self._total = total
        self._done = 0
        self._lock = threading.Lock()

    def part(self) -> ProgressCallback | None:
        if self._callback is None:
            return None
        last = 0

        def report(done: int, _total: int | None) -> None:
            nonlocal last
            with self._lock:
                self._done += done - last
                last = done
                current = self._done
            assert self._callback is not None
            self._callback(current, self._total)

        return report


# --- Upload sources ---------------------------------------------------------------------------


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Hasher(Protocol):
    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


class _Source:
    """Blob bytes to upload, and whether (and how) they can be read again from an offset."""

    def __init__(self, source: BlobSource, size: int | None) -> None:
        self.data: bytes | None = None
        self.path: Path | None = None
        self.stream: BinaryIO | None = None
        self._stream_start = 0
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.data = bytes(source)
            self.size: int | None = len(self.data)
        elif isinstance(source, (str, os.PathLike)):
            self.path = Path(source)
            self.size = self.path.stat().st_size
        elif hasattr(source, "read"):
            self.stream = source
            self.size = size
            if self._seekable(source):
                self._stream_start = source.tell()
        else:
            raise TypeError(
                f"cannot upload from {type(source).__name__}: give bytes, a path or a stream"
            )
        if size is not None and self.size is not None and size != self.size:
            raise ValueError(f"size {size} given, but the source has {self.size} bytes")

    @staticmethod
    def _seekable(stream: BinaryIO) -> bool:
        try:
            return bool(stream.seekable())
        except (AttributeError, OSError, ValueError):
            return False

    @property
    def replayable(self) -> bool:
        """Whether the bytes can be read again, so a lost upload can start over."""
        return self.stream is None or self._seekable(self.stream)

    @contextmanager
    def open_at(self, offset: int) -> Iterator[_Reader]:
        if self.data is not None:
            yield io.BytesIO(memoryview(self.data)[offset:])
        elif self.path is not None:
            with open(self.path, "rb") as handle:
                handle.seek(offset)
                yield handle
        else:
            assert self.stream is not None
            if self.replayable:
                self.stream.seek(self._stream_start + offset)
            elif offset:
                raise ValueError("cannot re-read a stream that is not seekable")
            yield self.stream


def _read_full(reader: _Reader, size: int) -> bytes:
    """Read ``size`` bytes, or fewer only at end of stream (pipes return short reads)."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        block = reader.read(remaining)
        if not block:
            break
        parts.append(block)
        remaining -= len(block)
    return b"".join(parts)


class _StreamedBodyRefused(UnauthorizedError):
    """A 401 to a request whose streamed body cannot be sent again (an upload restarts)."""


class _SessionLost(Exception):
    """The registry no longer has our upload session: the upload must start over."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


# --- Small HTTP helpers -----------------------------------------------------------------------


def _parse_range_end(value: str | None) -> int | None:
    """The offset after an upload ``Range: 0-<last>`` header, or None when absent."""
    match = _RANGE_RE.match(value or "")
    if match is None:
        return None
    # "0-0" is what distribution says of an empty session (it cannot say "no bytes").
    last = int(match.group(2))
    return 0 if last == 0 else last + 1


def next_link(header: str | None) -> str | None:
    """The target of ``rel="next"`` in an RFC 8288 ``Link`` header (as registries paginate)."""
    for match in _LINK_RE.finditer(header or ""):
        target, params = match.groups()
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "rel" and "next" in value.strip().strip('"').split():
                return target
    return None


def _is_stream(content: bytes | Iterator[bytes] | None) -> bool:
    return content is not None and not isinstance(content, (bytes, bytearray, memoryview))


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


class RegistryClient:
    """Talks the OCI distribution API to one repository of one registry.

    ``registry`` is a reference's registry part (``docker.io``, ``ghcr.io``,
    ``localhost:5000``); ``repository`` its path (``library/busybox``). ``auth`` defaults to
    :class:`~pants_oci.core.auth.RegistryAuth` over the user's
    :func:`~pants_oci.core.auth.default_keychain`; pass ``RegistryAuth(None)`` for anonymous
    access.
    ``http_client`` lets several clients share one connection pool (see
    :meth:`for_repository`); a client closes only an ``httpx.Client`` it created.
    """

    def __init__(
        self,
        registry: str,
        repository: str,
        *,
        auth: httpx.Auth | None = None,
        options: TransportOptions | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
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

    @classmethod
    def from_reference(
        cls,
        reference: Reference | str,
        *,
        auth: httpx.Auth | None = None,
        options: TransportOptions | None = None,
        http_client: httpx.Client | None = None,
    ) -> RegistryClient:
        """A client for the repository of ``reference`` (its tag or digest is not used)."""
        ref = Reference.parse(reference) if isinstance(reference, str) else reference
        return cls(
            ref.registry, ref.repository, auth=auth, options=options, http_client=http_client
        )

    def for_repository(self, repository: str) -> RegistryClient:
        """A client for another repository of the same registry, sharing connections and auth."""
        return RegistryClient(
            self.registry,
            repository,
            auth=self.auth,
            options=self.options,
            http_client=self._http,
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RegistryClient({self.registry!r}, {self.repository!r})"

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
                raise _StreamedBodyRefused(
                    f"{self.registry} refused the credentials sent with a streamed "
                    f"{method} {url.path} (HTTP 401: the token expired or was revoked while "
                    "it was being sent), and a streamed body cannot be sent again",
                    registry=self.registry,
                    repository=self.repository,
                    status=401,
                ) from None
            if response.status_code == 401 and auth is not None and _is_stream(content):
                # The auth flow does not re-send a streamed body after a 401 (it cannot), but
                # it has fresh credentials by now: the caller sends it all again.
                self._read(response)
                raise _StreamedBodyRefused(
                    f"{self.registry} refused the credentials sent with a streamed "
                    f"{method} {url.path} (HTTP 401: the token expired or was revoked while "
                    "it was being sent), and a streamed body cannot be sent again",
                    registry=self.registry,
                    repository=self.repository,
                    status=401,
                )
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
        else:
            message = f"cannot reach registry {self.registry} at {where}: {reason}"
        return TransportError(message, registry=self.registry, tls=tls, timeout=timeout)

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
        code = message = None
        detail: Any = None
        try:
            errors = json.loads(response.content).get("errors")
            first = errors[0] if isinstance(errors, list) and errors else None
        except (ValueError, AttributeError):
            first = None
        if isinstance(first, dict):
            code = first.get("code") if isinstance(first.get("code"), str) else None
            message = first.get("message") if isinstance(first.get("message"), str) else None
            detail = first.get("detail")
        status = response.status_code
        if status == 400 and response.url.scheme == "http" and _HTTPS_ONLY in response.content:
            return self._speaks_tls(response)
        text = f"{action} in {self.registry}/{self.repository} failed: HTTP {status}"
        if code or message:
            text += f" {code or ''}{': ' if code and message else ''}{message or ''}"
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
            code=code,
            detail=detail,
            registry_message=message,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
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

    def ping(self) -> None:
        """``GET /v2/``: check that the registry speaks the distribution API, with our credentials.

        It also teaches the auth flow the registry's challenge (Basic, or which token service
        to ask), so that a later streamed upload goes out with credentials at once. Raises
        :class:`UnauthorizedError` when the registry refuses the credentials (or wants some
        and there are none), :class:`TransportError` when it cannot be reached, and a
        :class:`RegistryError` for any other answer (e.g. 404: not a registry).
        """
        response = self._request("GET", self.base_url.join("/v2/"), scopes=())
        if response.status_code == 200:
            return
        if response.status_code == 404:
            raise RegistryError(
                f"{self.registry} is not an OCI distribution registry: GET /v2/ answered 404",
                registry=self.registry,
                repository=self.repository,
                status=404,
            )
        raise self._error(response, "checking the registry API (GET /v2/)")

    # --- Manifests -------------------------------------------------------------------------

    @staticmethod
    def _identifier(reference: str | Digest) -> tuple[str, Digest | None]:
        """What to put in /manifests/<here>, and the digest it names when it is one."""
        if isinstance(reference, Digest):
            return str(reference), reference
        if ":" in reference:  # tags cannot contain ':'
            digest = Digest.parse(reference)
            return str(digest), digest
        return validate_tag(reference), None

    def get_manifest(
        self,
        reference: str | Digest = "latest",
        *,
        accept: Sequence[str] = media_types.MANIFEST_ACCEPT,
        size: int | None = None,
    ) -> AnyManifest:
        """The manifest or index a tag or digest names, verified and keeping its exact bytes.

        The bytes received must hash to the digest asked for, and to the registry's
        ``Docker-Content-Digest`` when it sends one (else :class:`DigestMismatchError`).
        Docker schema 1 raises :class:`UnsupportedMediaTypeError`. A manifest larger than
        ``MAX_MANIFEST_SIZE`` (4 MiB) is refused (:class:`DocumentError`) without reading
        the rest; with ``size`` (its descriptor's, e.g. an index entry's) it must be exactly
        that long (else :class:`SizeMismatchError`).
        """
        identifier, expected = self._identifier(reference)
        if size is not None and size > MAX_MANIFEST_SIZE:
            raise self._too_large("manifest", identifier, size, MAX_MANIFEST_SIZE)
        response = self._request(
            "GET",
            self._url(f"manifests/{identifier}"),
            scopes=self._scopes("pull"),
            headers={"Accept": ", ".join(accept)},
            stream=True,
            follow_redirects=True,
        )
        if response.status_code != 200:
            raise self._error(response, f"getting manifest {identifier}")
        body = self._read_manifest_body(response, identifier, size)
        content_type = response.headers.get("Content-Type")
        subject = f"manifest {self.registry}/{self.repository}@{identifier}"
        if media_types.is_schema1(content_type):
            # parse_manifest explains schema 1 and how to get rid of it.
            parse_manifest(body, content_type)
            raise UnsupportedMediaTypeError(f"{subject} is Docker schema 1 ({content_type})")
        if expected is not None:
            verify_bytes(body, expected, subject=subject)
        announced = response.headers.get("Docker-Content-Digest")
        if announced:
            verify_bytes(body, announced, subject=f"{subject} (Docker-Content-Digest)")
        return parse_manifest(body, content_type)

    def _read_manifest_body(
        self, response: httpx.Response, identifier: str, size: int | None
    ) -> bytes:
        """The body, read no further than ``size`` (else ``MAX_MANIFEST_SIZE``) bytes."""
        parts: list[bytes] = []
        received = 0
        try:
            announced = _content_length(response)
            if size is not None and announced is not None and announced != size:
                raise self._size_error("manifest", identifier, size, announced)
            if announced is not None and announced > MAX_MANIFEST_SIZE:
                raise self._too_large("manifest", identifier, announced, MAX_MANIFEST_SIZE)
            for chunk in response.iter_raw():
                received += len(chunk)
                if size is not None and received > size:
                    raise self._size_error("manifest", identifier, size, None)
                if received > MAX_MANIFEST_SIZE:
                    raise self._too_large("manifest", identifier, None, MAX_MANIFEST_SIZE)
                parts.append(chunk)
        except httpx.TransportError as exc:
            raise self._transport_error(exc, response.request.url) from exc
        finally:
            response.close()
        if size is not None and received != size:
            raise self._size_error("manifest", identifier, size, received)
        return b"".join(parts)

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

    def head_manifest(self, reference: str | Digest = "latest") -> Descriptor | None:
        """The digest, media type and size a tag or digest names, or None if it does not exist.

        Cheap (a HEAD), so it is how to check whether a push is needed. When the registry
        sends no ``Docker-Content-Digest``, the manifest is fetched and hashed instead.
        """
        identifier, expected = self._identifier(reference)
        response = self._request(
            "HEAD",
            self._url(f"manifests/{identifier}"),
            scopes=self._scopes("pull"),
            headers={"Accept": media_types.MANIFEST_ACCEPT_HEADER},
            follow_redirects=True,
        )
        if response.status_code == 404:
            return None
        self._check(response, f"checking manifest {identifier}", 200)
        content_type = media_types.base_media_type(response.headers.get("Content-Type"))
        if media_types.is_schema1(content_type):
            raise UnsupportedMediaTypeError(
                f"manifest {self.registry}/{self.repository}@{identifier} is Docker schema 1 "
                f"({content_type}), which is not supported"
            )
        announced = response.headers.get("Docker-Content-Digest")
        size = _content_length(response)
        if not announced or size is None:
            return self.get_manifest(reference).descriptor()
        digest = Digest.parse(announced)
        if expected is not None and digest != expected:
            raise DigestMismatchError(
                f"registry {self.registry} answered HEAD {self.repository}@{expected} with "
                f"Docker-Content-Digest {digest}",
                expected=str(expected),
                actual=str(digest),
            )
        return Descriptor(media_type=content_type, digest=digest, size=size)

    def put_manifest(
        self,
        manifest: AnyManifest | bytes,
        media_type: str | None = None,
        *,
        tag: str | None = None,
    ) -> Digest:
        """Store a manifest or index, under ``tag`` if given (else only by digest).

        Returns the sha256 digest of the bytes sent, after checking that the registry's
        ``Docker-Content-Digest`` (when sent) agrees.
        """
        if isinstance(manifest, (bytes, bytearray, memoryview)):
            raw = bytes(manifest)
            document = parse_manifest(raw, media_type) if media_type is None else None
        else:
            raw = manifest.to_bytes()
            document = manifest
        if media_type is None:
            assert document is not None
            media_type = document.media_type or document.default_media_type
        digest = sha256_of_bytes(raw)
        target = validate_tag(tag) if tag is not None else str(digest)
        response = self._request(
            "PUT",
            self._url(f"manifests/{target}"),
            scopes=self._scopes("pull", "push"),
            headers={"Content-Type": media_type},
            content=raw,
            idempotent=True,  # the same bytes to the same name: repeating changes nothing
        )
        self._check(response, f"putting manifest {target}")
        announced = response.headers.get("Docker-Content-Digest")
        if announced and announced != str(digest):
            raise DigestMismatchError(
                f"registry {self.registry} stored the manifest PUT as {self.repository}:{target} "
                f"under {announced} (the registry's Docker-Content-Digest), but the bytes sent "
                f"hash to {digest} (ours); the registry changed the manifest, or is not "
                "content-addressed as the distribution spec requires",
                expected=str(digest),
                actual=announced,
            )
        return digest

    def delete_manifest(self, digest: Digest | str) -> None:
        """Delete the manifest ``digest`` (and so every tag pointing at it)."""
        identifier = str(Digest.coerce(digest))
        response = self._request(
            "DELETE", self._url(f"manifests/{identifier}"), scopes=self._scopes("delete")
        )
        self._check(response, f"deleting manifest {identifier}")

    def get_image_manifest(
        self, reference: str | Digest = "latest", platform: Platform | None = None
    ) -> ImageManifest:
        """The image manifest for ``platform`` (default: this machine's Linux).

        A tag or digest naming an index or manifest list is followed to the entry for
        ``platform`` (:class:`PlatformNotFoundError` lists the platforms there are); one
        naming an image manifest returns it as it is.
        """
        document = self.get_manifest(reference)
        for _depth in range(MAX_INDEX_DEPTH):
            if isinstance(document, (OCIManifest, DockerManifest)):
                return document
            entry = resolve_platform(document, platform)
            document = self.get_manifest(entry.digest, size=entry.size)
        raise DocumentError(
            f"{self.registry}/{self.repository}@{reference}: indexes nested more than "
            f"{MAX_INDEX_DEPTH} deep"
        )

    # --- Blob downloads --------------------------------------------------------------------

    def blob_exists(self, digest: Digest | str) -> int | None:
        """The size of blob ``digest`` in this repository, or None if it is not there."""
        identifier = str(Digest.coerce(digest))
        response = self._request(
            "HEAD",
            self._url(f"blobs/{identifier}"),
            scopes=self._scopes("pull"),
            follow_redirects=True,
        )
        if response.status_code == 404:
            return None
        self._check(response, f"checking blob {identifier}", 200)
        size = _content_length(response)
        return size if size is not None else 0

    @contextmanager
    def _open_blob(
        self,
        digest: Digest,
        progress: ProgressCallback | None = None,
        *,
        size: int | None = None,
        limit: int | None = None,
    ) -> Iterator[_BlobDownload]:
        """A started download of blob ``digest`` (its headers read; errors raised now)."""
        download = _BlobDownload(self, digest, progress, size=size, limit=limit)
        try:
            yield download
        finally:
            download.close()

    def iter_blob(
        self,
        digest: Digest | str,
        *,
        size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> Iterator[bytes]:
        """Stream blob ``digest`` as chunks, verifying them as they come.

        :class:`DigestMismatchError` is raised before the last chunk is yielded (or at the
        end, when the registry sent no length): treat the data as unverified until the
        iterator is exhausted. Close the iterator if you stop early. A connection that
        breaks midway is resumed where it broke (a ``Range`` request), up to
        ``options.max_retries`` times.

        ``size`` is the blob's size as its descriptor gives it: reading stops there, and a
        blob of any other length is a :class:`SizeMismatchError` (at once when the registry
        announces another length). Give it whenever a descriptor is at hand.
        """
        expected = Digest.coerce(digest)
        with self._open_blob(expected, progress, size=size) as download:
            yield from download.chunks()

    def read_blob(
        self, digest: Digest | str, *, size: int | None = None, limit: int = MAX_CONFIG_SIZE
    ) -> bytes:
        """A small blob (an image config) in memory, verified: as :meth:`iter_blob`, and
        refused (:class:`DocumentError`) when larger than ``limit`` bytes (``MAX_CONFIG_SIZE``,
        64 MiB): before any byte is read when its descriptor or the registry says so, else
        as soon as the bytes pass it."""
        expected = Digest.coerce(digest)
        if size is not None and size > limit:
            raise self._too_large("blob", expected, size, limit)
        with self._open_blob(expected, size=size, limit=limit) as download:
            return b"".join(download.chunks())

    def get_blob(
        self,
        digest: Digest | str,
        destination: str | os.PathLike[str] | BinaryIO,
        *,
        size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Download blob ``digest`` into a file path or a writable binary stream.

        Returns its size. The bytes are verified while they stream; a path is written via a
        temporary file beside it and renamed into place only once verified, so a failed
        download leaves nothing behind (a stream may hold partial data on failure). A
        connection that breaks midway is resumed where it broke, and ``size`` is enforced,
        as in :meth:`iter_blob`.
        """
        expected = Digest.coerce(digest)
        if not isinstance(destination, (str, os.PathLike)):
            return self._download_into(expected, destination, size, progress)
        path = Path(destination)
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, renamed on success
            dir=path.parent, prefix=f".{path.name}.", suffix=".partial", delete=False
        )
        try:
            with handle:
                received = self._download_into(expected, handle, size, progress)
            os.replace(handle.name, path)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
        return received

    def _download_into(
        self, digest: Digest, writer: Any, size: int | None, progress: ProgressCallback | None
    ) -> int:
        received = 0
        with self._open_blob(digest, progress, size=size) as download:
            for chunk in download.chunks():
                writer.write(chunk)
                received += len(chunk)
        return received

    # --- Blob uploads ----------------------------------------------------------------------

    def _start_upload(self, query: Mapping[str, str] | None = None) -> httpx.Response:
        url = self._url("blobs/uploads/")
        scopes = self._scopes("pull", "push")
        if query:
            url = url.copy_merge_params(dict(query))
            if "from" in query:
                scopes += (repository_scope(query["from"], "pull"),)
        return self._request(
            "POST",
            url,
            scopes=scopes,
            headers={"Content-Length": "0"},
            # Repeating a POST that failed opens at most a spare session, which the
            # registry expires: safe to retry.
            idempotent=True,
        )

    def _new_session(self) -> tuple[httpx.URL, int]:
        """Open an upload session: its URL and the registry's minimum chunk size."""
        response = self._check(self._start_upload(), "starting a blob upload", 202)
        minimum = response.headers.get("OCI-Chunk-Min-Length", "")
        return self._location(response), int(minimum) if minimum.isdigit() else 0

    def _location(self, response: httpx.Response, default: httpx.URL | None = None) -> httpx.URL:
        """The session URL an upload answer points at next (absolute or relative)."""
        location = response.headers.get("Location")
        if location:
            return self._server_url(response, location, "the upload session Location")
        if default is not None:
            return default
        raise RegistryError(
            f"{self.registry} answered a blob upload step without a Location header",
            registry=self.registry,
            repository=self.repository,
            status=response.status_code,
        )

    def upload_blob(
        self,
        source: BlobSource,
        *,
        digest: Digest | str | None = None,
        size: int | None = None,
        chunk_size: int | None = None,
        progress: ProgressCallback | None = None,
        check_exists: bool = True,
    ) -> tuple[Digest, int]:
        """Upload a blob from bytes, a file path or a binary stream; return (digest, size).

        With a known digest and size (always the case for bytes) the blob goes in one
        ``PUT``; otherwise it streams in one ``PATCH`` hashed on the fly, or in ``PATCH``
        chunks of ``chunk_size`` bytes (raised to the registry's minimum) when given. Files
        and streams are never read into memory whole. When ``check_exists`` and the digest
        is known, a blob the repository already has is not sent again.
        """
        src = _Source(source, size)
        expected = Digest.coerce(digest) if digest is not None else None
        if expected is None and src.data is not None:
            expected = sha256_of_bytes(src.data)
        if expected is not None and check_exists:
            existing = self.blob_exists(expected)
            if existing is not None:
                if progress is not None:
                    progress(existing, existing)
                return expected, existing

        def attempt() -> tuple[Digest, int]:
            if chunk_size is None and expected is not None and src.size is not None:
                return self._upload_whole(src, expected, src.size, progress)
            return self._upload_patches(src, expected, chunk_size, progress)

        return self._restarting(attempt, src=src)

    def _restarting(
        self,
        attempt: Callable[[], R],
        *,
        src: _Source | None = None,
        also: tuple[type[Exception], ...] = (),
    ) -> R:
        """Run ``attempt``, starting it over after a backoff when the upload session is lost
        (or it raises one of ``also``), up to ``options.max_retries`` times; never when
        ``src`` cannot be read again. The last failure is raised (a lost session's cause).

        The wait is the registry's ``Retry-After`` when its answer had one (capped at
        ``options.max_retry_wait``). A timeout among ``also`` is not restarted: it comes from
        a request that spent its retries already (a registry that stopped answering)."""
        restartable: tuple[type[Exception], ...] = (_SessionLost, *also)
        restarts = 0
        while True:
            try:
                return attempt()
            except restartable as failure:
                cause = failure.cause if isinstance(failure, _SessionLost) else failure
                restarts += 1
                if (
                    (src is not None and not src.replayable)
                    or restarts > self.options.max_retries
                    or (isinstance(failure, TransportError) and failure.timeout)
                ):
                    raise cause from None
                self.options.sleep(self.options.retry_wait(restarts - 1, _retry_after(cause)))

    def _upload_whole(
        self, src: _Source, digest: Digest, size: int, progress: ProgressCallback | None
    ) -> tuple[Digest, int]:
        """POST, then one PUT ?digest= carrying every byte."""
        location, _minimum = self._new_session()
        with src.open_at(0) as reader:
            # Always in 1 MiB pieces, even from bytes: httpcore re-slices a large buffer
            # after every partial send, which makes one huge body quadratic (20 MB/s).
            self._finish(location, digest, _chunks(reader, size, progress), size, size)
        return digest, size

    def _finish(
        self,
        location: httpx.URL,
        digest: Digest,
        content: bytes | Iterator[bytes] = b"",
        length: int = 0,
        size: int = 0,
    ) -> None:
        """The closing PUT ?digest= of an upload of ``size`` bytes (``length`` of them in
        this request): the registry commits the blob before it answers, which may take a
        while for a large one (see ``TransportOptions.commit_timeout``). A failure that
        loses the session raises _SessionLost."""
        url = location.copy_merge_params({"digest": str(digest)})
        try:
            response = self._request(
                "PUT",
                url,
                scopes=self._scopes("pull", "push"),
                headers={"Content-Type": _OCTET_STREAM, "Content-Length": str(length)},
                content=content,
                idempotent=False,
                timeout=self.options.commit_timeout(size),
            )
        except TransportError as exc:
            # The registry may have committed the blob before the connection broke.
            if self.blob_exists(digest) is not None:
                return
            raise _SessionLost(exc) from exc
        except _StreamedBodyRefused as exc:
            raise _SessionLost(exc) from exc  # the auth flow has a fresh token by now
        if response.status_code in RETRY_STATUSES:
            raise _SessionLost(self._error(response, f"finishing upload of blob {digest}"))
        self._check(response, f"finishing upload of blob {digest}")
        announced = response.headers.get("Docker-Content-Digest")
        if announced and Digest.parse(announced) != digest:
            raise DigestMismatchError(
                f"registry {self.registry} stored blob {digest} as {announced}",
                expected=str(digest),
                actual=announced,
            )

    def _upload_patches(
        self,
        src: _Source,
        expected: Digest | None,
        chunk_size: int | None,
        progress: ProgressCallback | None,
    ) -> tuple[Digest, int]:
        """POST, PATCH (one streamed body, or chunks), then PUT ?digest= with no body."""
        location, minimum = self._new_session()
        algorithm = expected.algorithm if expected is not None else "sha256"
        upload: _PatchUpload
        if chunk_size is not None:
            upload = _ChunkedUpload(self, src, location, max(chunk_size, minimum, 1), algorithm)
        else:
            upload = _StreamedUpload(self, src, location, algorithm)
        upload.progress = progress
        location, computed, size = upload.run()
        if expected is not None and computed != expected:
            raise DigestMismatchError(
                f"the upload source for blob {expected} has digest {computed}",
                expected=str(expected),
                actual=str(computed),
            )
        self._finish(location, computed, size=size)
        return computed, size

    def _patch(
        self, location: httpx.URL, content: bytes | Iterator[bytes], start: int, length: int | None
    ) -> tuple[httpx.URL, int | None]:
        """One PATCH; returns the next session URL and the offset the registry reports."""
        headers = {"Content-Type": _OCTET_STREAM}
        if length is not None:
            headers["Content-Length"] = str(length)
            headers["Content-Range"] = f"{start}-{start + length - 1}"
        try:
            response = self._request(
                "PATCH",
                location,
                scopes=self._scopes("pull", "push"),
                headers=headers,
                content=content,
                idempotent=False,  # resumed from the registry's Range instead
            )
        except _StreamedBodyRefused as exc:
            raise _SessionLost(exc) from exc  # start again, with the auth flow's fresh token
        self._check(response, "uploading blob data")
        return self._location(response, location), _parse_range_end(response.headers.get("Range"))

    def upload_status(
        self, location: httpx.URL | str, *, retries: int | None = None
    ) -> tuple[httpx.URL, int] | None:
        """How many bytes an upload session holds: (session URL, offset), or None if gone."""
        url = httpx.URL(location) if isinstance(location, str) else location
        response = self._request("GET", url, scopes=self._scopes("pull", "push"), retries=retries)
        if response.status_code in (200, 204):
            offset = _parse_range_end(response.headers.get("Range"))
            return self._location(response, url), offset or 0
        error = self._error(response, "checking a blob upload")
        if response.status_code == 404 or error.code in _SESSION_GONE_CODES:
            return None
        raise error

    def _after_failure(
        self, location: httpx.URL, failure: Exception, retries: int
    ) -> tuple[httpx.URL, int]:
        """Where to continue after a failed PATCH: the registry's offset, or _SessionLost."""
        status = self.upload_status(location, retries=retries)
        if status is None:
            raise _SessionLost(failure)
        return status

    def cancel_upload(self, location: httpx.URL | str) -> None:
        """Abandon an upload session (errors are ignored: the registry expires it anyway)."""
        url = httpx.URL(location) if isinstance(location, str) else location
        with suppress(TransportError):
            self._request("DELETE", url, scopes=self._scopes("pull", "push"))

    def mount_blob(self, digest: Digest | str, from_repository: str) -> bool:
        """Ask the registry to link blob ``digest`` from another repository into this one.

        True when mounted (201). False when the registry declined (202: no such blob there,
        no access to it, or mounting unsupported); its upload session is cancelled, and the
        caller uploads the blob (:meth:`copy_blob` does).
        """
        identifier = str(Digest.coerce(digest))
        response = self._start_upload({"mount": identifier, "from": from_repository})
        if response.status_code == 201:
            return True
        self._check(response, f"mounting blob {identifier} from {from_repository}", 202)
        self.cancel_upload(self._location(response))
        return False

    def copy_blob(
        self,
        source: RegistryClient,
        digest: Digest | str,
        *,
        size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> tuple[Digest, int]:
        """Copy blob ``digest`` from ``source``'s repository into this one; (digest, size).

        Nothing is sent when this repository has it; on the same registry it is mounted
        when possible; otherwise it streams from one to the other, verified on the way (and
        held to ``size``, its descriptor's, as in :meth:`iter_blob`).
        """
        expected = Digest.coerce(digest)
        existing = self.blob_exists(expected)
        same_registry = source.base_url == self.base_url
        if (
            existing is None
            and same_registry
            and source.repository != self.repository
            and self.mount_blob(expected, source.repository)
        ):
            existing = self.blob_exists(expected)
        if existing is not None:
            if progress is not None:
                progress(existing, existing)
            return expected, existing
        return self._restarting(
            lambda: self._stream_from(source, expected, size, progress), also=(TransportError,)
        )

    def _stream_from(
        self,
        source: RegistryClient,
        digest: Digest,
        expected_size: int | None,
        progress: ProgressCallback | None,
    ) -> tuple[Digest, int]:
        location, _minimum = self._new_session()
        try:
            with source._open_blob(digest, progress, size=expected_size) as download:
                size = download.size
                chunks = _from_source(download.chunks())
                if size is None:  # no length: stream it through a PATCH
                    location, offset = self._patch(location, chunks, 0, None)
                    self._finish(location, digest, size=offset or 0)
                    size = self.blob_exists(digest) or 0
                else:
                    self._finish(location, digest, chunks, size, size)
        except _SourceFailed as failed:
            raise failed.cause from failed.cause.__cause__
        return digest, size

    # --- Bulk blob work --------------------------------------------------------------------

    def upload_blobs(
        self, sources: Sequence[BlobSource], *, progress: ProgressCallback | None = None
    ) -> list[tuple[Digest, int]]:
        """Upload several blobs, ``options.max_concurrency`` at a time; (digest, size) each."""
        shared = _SharedProgress(progress, None)
        return map_bounded(
            lambda source: self.upload_blob(source, progress=shared.part()),
            sources,
            self.options.max_concurrency,
        )

    def download_blobs(
        self,
        destinations: Mapping[Digest | str, str | os.PathLike[str]],
        *,
        progress: ProgressCallback | None = None,
    ) -> list[int]:
        """Download several blobs to paths, ``options.max_concurrency`` at a time; sizes."""
        shared = _SharedProgress(progress, None)
        return map_bounded(
            lambda item: self.get_blob(item[0], item[1], progress=shared.part()),
            list(destinations.items()),
            self.options.max_concurrency,
        )

    def copy_blobs(
        self,
        source: RegistryClient,
        digests: Iterable[Digest | str],
        *,
        progress: ProgressCallback | None = None,
    ) -> list[tuple[Digest, int]]:
        """:meth:`copy_blob` for several blobs, ``options.max_concurrency`` at a time."""
        shared = _SharedProgress(progress, None)
        return map_bounded(
            lambda digest: self.copy_blob(source, digest, progress=shared.part()),
            list(digests),
            self.options.max_concurrency,
        )

    # --- Listing ---------------------------------------------------------------------------

    def list_tags(self, page_size: int | None = None) -> list[str]:
        """Every tag of the repository, following ``Link: <...>; rel="next"`` pages."""
        return self._paginate(
            self._url("tags/list"), "tags", self._scopes("pull"), page_size, "listing tags"
        )

    def catalog(self, page_size: int | None = None) -> list[str]:
        """Every repository of the registry (``/v2/_catalog``), following pagination."""
        return self._paginate(
            self.base_url.join("/v2/_catalog"),
            "repositories",
            (CATALOG_SCOPE,),
            page_size,
            "listing repositories",
        )

    def _paginate(
        self,
        url: httpx.URL,
        key: str,
        scopes: tuple[str, ...],
        page_size: int | None,
        action: str,
    ) -> list[str]:
        if page_size is not None:
            url = url.copy_merge_params({"n": str(page_size)})
        names: list[str] = []
        seen: set[str] = set()
        next_url: httpx.URL | None = url
        while next_url is not None and str(next_url) not in seen:
            seen.add(str(next_url))
            response = self._request("GET", next_url, scopes=scopes, follow_redirects=True)
            self._check(response, action, 200)
            try:
                page = response.json()
            except ValueError as exc:
                raise DocumentError(f"{action} in {self.registry}: not JSON: {exc}") from None
            names.extend(page.get(key) or [])
            link = next_link(response.headers.get("Link"))
            next_url = self._server_url(response, link, "the next page") if link else None
        return names


class _BlobDownload:
    """One blob download: hashed as it streams, resumed with ``Range`` when it breaks.

    The first response is requested at once (so that a 404 is raised before any chunk);
    :meth:`chunks` streams the body. With a known length the digest is checked before the
    final chunk is handed on, so a consumer never sees the complete (wrong) content; it is
    always checked at the end too (an empty body included).

    ``size`` is the descriptor's: a registry announcing another length fails at once, and
    reading stops there (a longer body fails as soon as it passes it; a shorter one at its
    end). ``limit`` is the most to read when the size is not known.
    """

    def __init__(
        self,
        client: RegistryClient,
        digest: Digest,
        progress: ProgressCallback | None,
        *,
        size: int | None = None,
        limit: int | None = None,
    ) -> None:
        self.client = client
        self.digest = digest
        self.progress = progress
        self.expected_size = size
        self.limit = limit
        self._url = client._url(f"blobs/{digest}")
        self._response: httpx.Response | None = self._open(0)
        announced = _content_length(self._response)
        if size is not None and announced is not None and announced != size:
            self.close()
            raise client._size_error("blob", digest, size, announced)
        if size is None and limit is not None and announced is not None and announced > limit:
            self.close()
            raise client._too_large("blob", digest, announced, limit)
        self.size = size if size is not None else announced

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None

    def _open(self, offset: int, retries: int | None = None) -> httpx.Response:
        """GET the blob from ``offset``; a resumed answer is checked to start there."""
        client = self.client
        response = client._request(
            "GET",
            self._url,
            scopes=client._scopes("pull"),
            headers={"Range": f"bytes={offset}-"} if offset else None,
            stream=True,
            follow_redirects=True,
            retries=retries,
        )
        if response.status_code == 200:
            return response  # a registry that ignores Range sends it all: skipped by chunks()
        if offset and response.status_code == 206:
            match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
            if match is not None and int(match.group(1)) == offset:
                return response
            response.close()
            raise RegistryError(
                f"{client.registry} answered a download of blob {self.digest} resumed at byte "
                f"{offset} with Content-Range {response.headers.get('Content-Range')!r}",
                registry=client.registry,
                repository=client.repository,
                status=206,
            )
        raise client._error(response, f"getting blob {self.digest}")

    def _mismatch(self, actual: Digest, received: int) -> DigestMismatchError:
        client = self.client
        return DigestMismatchError(
            f"blob {client.registry}/{client.repository}@{self.digest} has digest {actual} "
            f"({received} bytes received)",
            expected=str(self.digest),
            actual=str(actual),
        )

    def _too_long(self) -> OCIError:
        self.close()
        if self.expected_size is not None:
            return self.client._size_error("blob", self.digest, self.expected_size, None)
        assert self.limit is not None
        return self.client._too_large("blob", self.digest, None, self.limit)

    def chunks(self) -> Iterator[bytes]:
        digest, options = self.digest, self.client.options
        hasher = new_hasher(digest.algorithm)
        total = self.size
        # Never read past the descriptor's size (or the limit): a longer body fails there.
        bound = self.expected_size if self.expected_size is not None else self.limit
        done = 0
        failures = 0

        def check() -> None:
            actual = Digest(digest.algorithm, hasher.hexdigest())
            if actual != digest:
                raise self._mismatch(actual, done)

        while True:
            if self._response is None:
                # A resumed request spends what is left of the same retries: a registry that
                # stalls midway and then for good fails after max_retries + 1 attempts in
                # all, not max_retries more.
                self._response = self._open(done, retries=options.max_retries - failures)
            response = self._response
            # A full answer to a resumed request: drop what we already have.
            skip = done if response.status_code == 200 else 0
            try:
                for raw in response.iter_raw():  # raw: a blob's bytes are its identity
                    chunk = raw
                    if skip:
                        chunk, skip = raw[skip:], max(0, skip - len(raw))
                        if not chunk:
                            continue
                    if bound is not None and done + len(chunk) > bound:
                        raise self._too_long()
                    hasher.update(chunk)
                    done += len(chunk)
                    if done == total:
                        check()
                    yield chunk
                    if self.progress is not None:
                        self.progress(done, total)
            except httpx.TransportError as exc:
                self.close()
                failures += 1
                if failures > options.max_retries:
                    raise self.client._transport_error(
                        exc, response.request.url, attempts=failures
                    ) from exc
                wait = options.retry_wait(failures - 1)
                _log.info(
                    "blob %s broke off after %d bytes (%s: %s); resuming in %.2fs",
                    digest,
                    done,
                    type(exc).__name__,
                    exc,
                    wait,
                )
                options.sleep(wait)
                continue
            self.close()
            break
        if skip:
            raise DocumentError(
                f"{self.client.registry} sent {digest} shorter on a resumed download than before"
            )
        if self.expected_size is not None and done != self.expected_size:
            raise self.client._size_error("blob", digest, self.expected_size, done)
        check()


def _chunks(reader: _Reader, size: int, progress: ProgressCallback | None) -> Iterator[bytes]:
    """``size`` bytes of ``reader`` in large reads, reporting progress."""
    done = 0
    while done < size:
        block = reader.read(min(_READ_SIZE, size - done))
        if not block:
            raise DocumentError(f"upload source ended after {done} of {size} bytes")
        done += len(block)
        yield block
        if progress is not None:
            progress(done, size)


class _PatchUpload:
    """Shared by the two PATCH strategies: the session, the hash, and failure accounting."""

    def run(self) -> tuple[httpx.URL, Digest, int]:
        """Send every byte; return the session URL, the digest of what was sent, its size."""
        raise NotImplementedError

    def __init__(
        self, client: RegistryClient, src: _Source, location: httpx.URL, algorithm: str
    ) -> None:
        self.client = client
        self.src = src
        self.location = location
        self.algorithm = algorithm
        self.progress: ProgressCallback | None = None
        self.failures = 0
        self.done = 0

    def failed(self, failure: Exception) -> int:
        """Count a failed PATCH, wait, and return the offset the registry holds."""
        self.failures += 1
        options = self.client.options
        if self.failures > options.max_retries:
            raise failure
        options.sleep(options.retry_wait(self.failures - 1, _retry_after(failure)))
        # The status check spends what is left of the same retries.
        self.location, offset = self.client._after_failure(
            self.location, failure, options.max_retries - self.failures
        )
        return offset

    def report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(done, self.src.size)


def _is_retryable(error: RegistryError) -> bool:
    return error.status in RETRY_STATUSES


def _retry_after(failure: BaseException) -> float | None:
    """The wait a registry asked for in the answer behind ``failure`` (its Retry-After)."""
    return failure.retry_after if isinstance(failure, RegistryError) else None


class _SourceFailed(Exception):
    """The source of a copy failed while its bytes were being sent on: not the target's
    request failing (which would restart the upload), the source's own error."""

    def __init__(self, cause: OCIError) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _from_source(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks``, with the source's errors marked so that the target does not take them
    for its own (a source that stopped answering already spent its retries)."""
    try:
        yield from chunks
    except OCIError as exc:
        raise _SourceFailed(exc) from exc


class _ChunkedUpload(_PatchUpload):
    """PATCH chunks of ``chunk_size``; only the current chunk is held in memory."""

    def __init__(
        self,
        client: RegistryClient,
        src: _Source,
        location: httpx.URL,
        chunk_size: int,
        algorithm: str,
    ) -> None:
        super().__init__(client, src, location, algorithm)
        self.chunk_size = chunk_size

    def run(self) -> tuple[httpx.URL, Digest, int]:
        hasher = new_hasher(self.algorithm)
        offset = 0  # what the registry holds
        chunk, chunk_start = b"", 0
        with self.src.open_at(0) as reader:
            while True:
                if offset == chunk_start + len(chunk):
                    chunk_start, chunk = offset, _read_full(reader, self.chunk_size)
                    if not chunk:
                        break
                    hasher.update(chunk)  # each byte is hashed once, as it is read
                piece = chunk[offset - chunk_start :]
                try:
                    self.location, reported = self.client._patch(
                        self.location, piece, offset, len(piece)
                    )
                    offset = reported if reported is not None else offset + len(piece)
                except (TransportError, RegistryError) as failure:
                    if isinstance(failure, RegistryError) and not _is_retryable(failure):
                        raise
                    offset = self.failed(failure)
                if not chunk_start <= offset <= chunk_start + len(chunk):
                    # The registry holds less than the chunk in hand: only a restart helps.
                    raise _SessionLost(
                        RangeError(
                            f"{self.client.registry} upload session is at byte {offset}, "
                            f"outside the chunk {chunk_start}-{chunk_start + len(chunk)} in hand",
                            registry=self.client.registry,
                            repository=self.client.repository,
                        )
                    )
                self.report(offset)
        return self.location, Digest(self.algorithm, hasher.hexdigest()), offset


class _StreamedUpload(_PatchUpload):
    """One PATCH streaming the whole source (a resumed one streams the rest)."""

    def run(self) -> tuple[httpx.URL, Digest, int]:
        offset = 0
        while True:
            with self.src.open_at(0) as reader:
                hasher = self._hash_prefix(reader, offset)
                remaining = None if self.src.size is None else self.src.size - offset
                self.done = offset
                if remaining == 0:
                    return self.location, Digest(self.algorithm, hasher.hexdigest()), offset
                try:
                    self.location, reported = self.client._patch(
                        self.location, self._body(reader, hasher), offset, remaining
                    )
                except (TransportError, RegistryError) as failure:
                    if isinstance(failure, RegistryError) and not _is_retryable(failure):
                        raise
                    if not self.src.replayable:
                        raise
                    offset = self.failed(failure)
                    continue
            if reported is not None and reported != self.done:
                raise _SessionLost(
                    RangeError(
                        f"{self.client.registry} upload session holds {reported} bytes after "
                        f"{self.done} were sent",
                        registry=self.client.registry,
                        repository=self.client.repository,
                    )
                )
            return self.location, Digest(self.algorithm, hasher.hexdigest()), self.done

    def _hash_prefix(self, reader: _Reader, offset: int) -> _Hasher:
        """A hash of the first ``offset`` bytes, which a resumed upload does not send again."""
        hasher = new_hasher(self.algorithm)
        hashed = 0
        while hashed < offset:
            block = reader.read(min(_READ_SIZE, offset - hashed))
            if not block:
                raise DocumentError("the upload source shrank while it was being uploaded")
            hasher.update(block)
            hashed += len(block)
        return hasher

    def _body(self, reader: _Reader, hasher: _Hasher) -> Iterator[bytes]:
        while True:
            block = reader.read(_READ_SIZE)
            if not block:
                return
            hasher.update(block)
            self.done += len(block)
            yield block
            self.report(self.done)
