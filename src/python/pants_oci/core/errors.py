"""Every exception pants_oci.core raises, in one place.

    OCIError                          base of all of them
    ├── InvalidReferenceError         an image reference that the grammar rejects (ValueError)
    ├── InvalidDigestError            a malformed `algorithm:hex` digest (ValueError)
    ├── InvalidValueError             a platform, port, path, signal, tag... that
    │                                     core/validation.py or platforms.py refuses (ValueError)
    ├── DigestMismatchError           bytes whose digest is not the one expected (read, or uploaded)
    ├── SizeMismatchError             a blob whose size is not its descriptor's (or the one stated)
    ├── DocumentError                 a manifest, index or config we cannot use
    │   └── UnsupportedMediaTypeError     e.g. Docker schema1 manifests
    ├── PlatformNotFoundError         no manifest in an index matches the wanted platform
    ├── LayerError                    a layer's inputs cannot be read, or contradict each other
    │   └── CorruptLayerError             a layer blob whose gzip or zstd bytes are damaged or
    │                                         cut short (an OSError too, as gzip's own errors are)
    ├── ImageArchiveError             an OCI image layout or docker-archive tar we cannot use
    │   └── RefNotFoundError              it holds no image under the name asked for
    ├── ImageBuildError               an image cannot be built, written or pushed as asked
    │   └── PartialPushError              a push failed after some tags had moved (it says which)
    ├── InputFileError                a JSON input (layer spec, layer metadata, image config) is bad
    ├── RunError                      an image cannot be unpacked or run (`pants-oci run`)
    │   └── RuntimeNotFoundError          no container runtime (runc as root, podman) to run it
    ├── CredentialError               credentials could not be found or read
    │   └── CredentialHelperError         a docker-credential-* helper failed
    ├── TransportError                connection, TLS or timeout failure talking to a registry
    └── RegistryError                 the registry answered with an error
        ├── UnauthorizedError             401: credentials missing or wrong
        │   └── InsecureTokenServiceError     its token service would take them in cleartext
        ├── DeniedError                   403: the credentials lack access
        ├── NotFoundError                 404: unknown repository, manifest or blob
        ├── RangeError                    416: an upload resumed at the wrong offset
        └── TooManyRequestsError          429: rate limited, after retries

A RegistryError carries the registry host, the repository, the HTTP status, and every entry of
the registry's error JSON (`{"errors": [{"code", "message", "detail"}, ...]}`) as `errors`, a
tuple of RegistryErrorEntry; `code`, `message` and `detail` are the first entry's. str() is a
sentence naming them all: entries of one code and message once, with their string details (a
manifest naming several missing blobs: MANIFEST_BLOB_UNKNOWN with each digest), the first 10
and "and N more" beyond.

A blob upload whose bytes are not the digest stated for them is a DigestMismatchError whichever
way it is sent (one PUT, PATCH chunks, a stream; found here, or by the registry: then `actual`
is None and `registry` names it), and nothing is stored under the stated digest; an upload whose
bytes are not the size stated is a SizeMismatchError the same way.

Credentials never appear in any message: errors are built from hosts, repositories and registry
answers, never from request headers.

This module is stdlib-only and Python 3.9-compatible: the Pants backend imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence


class OCIError(Exception):
    """Base class of every error raised by pants_oci.core."""


class InvalidReferenceError(OCIError, ValueError):
    """An image reference that the distribution reference grammar rejects."""


class InvalidDigestError(OCIError, ValueError):
    """A digest that is not `algorithm:encoded` with a valid algorithm and encoding."""


class InvalidValueError(OCIError, ValueError):
    """A value describing an image that core/validation.py (or core/platforms.py) refuses.
    `what` names it, `value` is what was given, `problem` finishes a sentence about it (why,
    and what to write)."""

    def __init__(self, what: str, value: Any, problem: str) -> None:
        super().__init__(f"{what} {value!r} {problem}")
        self.what = what
        self.value = value
        self.problem = problem


class DigestMismatchError(OCIError):
    """Content whose digest differs from the digest it was requested or announced by.

    `actual` is None when it is not known: a registry refused an upload's bytes (its
    DIGEST_INVALID) without saying what they hash to. `registry` names the registry involved
    where it is known (always for an upload, and a blob read from one); None otherwise (a
    layout, a file, a cache)."""

    def __init__(
        self,
        message: str,
        *,
        expected: str,
        actual: Optional[str],
        registry: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual
        self.registry = registry


class SizeMismatchError(OCIError):
    """A blob whose size differs from the size its descriptor gives (or an upload's bytes
    from the size stated for them): longer (reading stops there: `actual` is None when the
    rest was not read) or shorter. `registry` is the registry the blob came from or was sent
    to, None for a blob read from anywhere else (a blob cache); `digest` is None for an upload
    of a stream whose digest was not stated."""

    def __init__(
        self,
        message: str,
        *,
        digest: Optional[str],
        expected: int,
        actual: Optional[int],
        registry: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.digest = digest
        self.expected = expected
        self.actual = actual
        self.registry = registry


class DocumentError(OCIError):
    """A manifest, index or image config that cannot be parsed or used."""


class UnsupportedMediaTypeError(DocumentError):
    """A document of a media type we refuse, such as Docker schema1."""


class PlatformNotFoundError(OCIError):
    """An index or manifest list has no manifest for the wanted platform."""

    def __init__(self, message: str, *, wanted: str, available: list[str]) -> None:
        super().__init__(message)
        self.wanted = wanted
        self.available = available


class LayerError(OCIError):
    """A layer cannot be built: a missing or unreadable source, a file that changed while it
    was read, two sources for one path, a symlink loop, a path that leaves the layer root."""


class CorruptLayerError(LayerError, OSError):
    """A layer blob whose compressed bytes cannot be decompressed: damaged, cut short, or not
    the compression its magic bytes say. An OSError too, as gzip's BadGzipFile is, so that
    code reading files handles it with their other read errors."""


class ImageArchiveError(OCIError):
    """An OCI image layout directory or a docker-archive tar that is malformed or unusable."""


class RefNotFoundError(ImageArchiveError):
    """A layout or archive has no image under the ref name (tag) or digest asked for."""

    def __init__(self, message: str, *, wanted: str, available: list[str]) -> None:
        super().__init__(message)
        self.wanted = wanted
        self.available = available


class ImageBuildError(OCIError):
    """An image cannot be built, written or pushed as asked: a layer that is not in the image,
    a blob that is nowhere to be found, a base whose platform is not the one asked for."""


class PartialPushError(ImageBuildError):
    """A push that failed after some of its tags were updated: `updated` names the references
    that now point at the new image, `not_updated` those that do not (CI can act on both)."""

    def __init__(self, message: str, *, updated: tuple[str, ...], not_updated: tuple[str, ...]):
        super().__init__(message)
        self.updated = updated
        self.not_updated = not_updated


class InputFileError(OCIError):
    """A JSON input file (a layer spec, layer metadata, an image config) that cannot be read,
    is not JSON, or has fields of the wrong name or type."""


class RunError(OCIError):
    """An image cannot be run: it has nothing to run, its user is not in its /etc/passwd, a
    layer blob is missing, or a layer cannot be unpacked safely (a member that would leave the
    root filesystem)."""


class RuntimeNotFoundError(RunError):
    """No container runtime to run an image with: runc (as root) or podman."""


class CredentialError(OCIError):
    """Credentials for a registry could not be found or read."""


class CredentialHelperError(CredentialError):
    """A `docker-credential-<name>` helper failed, timed out, or is not installed."""


class TransportError(OCIError):
    """The registry could not be reached: connection refused, TLS failure, timeout.

    `tls` is True for a TLS failure (a certificate or handshake), whose message says how to
    trust the registry's CA or reach it over plain HTTP. `timeout` is True when the registry
    stopped answering (a connect or read timeout, after the retries), whose message names
    the setting that waits longer. `dropped` is True when a connection was made and then lost
    (reset, closed mid-answer), after the retries: the registry was reachable, so neither
    plain HTTP nor a CA is the fix."""

    def __init__(
        self,
        message: str,
        *,
        registry: str,
        tls: bool = False,
        timeout: bool = False,
        dropped: bool = False,
    ) -> None:
        super().__init__(message)
        self.registry = registry
        self.tls = tls
        self.timeout = timeout
        self.dropped = dropped


@dataclass(frozen=True)
class RegistryErrorEntry:
    """One entry of a registry's error JSON: its `code` (e.g. "MANIFEST_BLOB_UNKNOWN"),
    `message` ("blob unknown to registry") and `detail` (any JSON value: a digest, an
    object...); None for what it left out or sent as something other than a string."""

    code: Optional[str]
    message: Optional[str]
    detail: Any = None


class RegistryError(OCIError):
    """The registry answered a request with an error status.

    `errors` is every entry of its error JSON (a tuple of RegistryErrorEntry, empty when it
    sent none, or none that could be read); `code`, `message` and `detail` are the first's
    (e.g. "MANIFEST_UNKNOWN" and "manifest unknown"; None when it sent none). str(error) is the
    readable sentence given as the first argument, which names them all. `retry_after` is the
    wait in seconds the registry asked for in a Retry-After header (None when it sent none).
    """

    def __init__(
        self,
        message: str,
        *,
        registry: str,
        repository: Optional[str] = None,
        status: Optional[int] = None,
        code: Optional[str] = None,
        detail: Any = None,
        registry_message: Optional[str] = None,
        retry_after: Optional[float] = None,
        errors: Sequence[RegistryErrorEntry] = (),
    ) -> None:
        super().__init__(message)
        entries = tuple(errors)
        if not entries and (code is not None or registry_message is not None):
            entries = (RegistryErrorEntry(code, registry_message, detail),)
        elif entries and code is None and registry_message is None and detail is None:
            code, registry_message, detail = entries[0].code, entries[0].message, entries[0].detail
        self.registry = registry
        self.repository = repository
        self.status = status
        self.errors: tuple[RegistryErrorEntry, ...] = entries
        self.code = code
        self.detail = detail
        self.message = registry_message
        self.retry_after = retry_after


class UnauthorizedError(RegistryError):
    """401: the registry wants credentials, or refused the ones given."""


class InsecureTokenServiceError(UnauthorizedError):
    """401 naming a token service (``realm``) that credentials would reach in cleartext: plain
    HTTP to a host other than the registry the user chose to reach over plain HTTP. Nothing
    was sent to it; the message names the realm and the fix."""


class DeniedError(RegistryError):
    """403 (or a token without the needed scope): authenticated, but not allowed."""


class NotFoundError(RegistryError):
    """404: the repository, manifest, tag or blob does not exist."""


class RangeError(RegistryError):
    """416: an upload chunk did not start where the registry's upload session is."""


class TooManyRequestsError(RegistryError):
    """429: the registry is rate limiting us, and retries did not get through."""
