"""RegistryClient: the OCI distribution API of one repository (manifests, blobs, tags and
the catalog), over the request plumbing of :mod:`pants_oci.core.registry._session`.

Blob transfers are :mod:`~pants_oci.core.registry._downloads`' and
:mod:`~pants_oci.core.registry._uploads`' job; this class is their API.

Private: import RegistryClient from :mod:`pants_oci.core.registry`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from typing import BinaryIO

import httpx

from pants_oci.core import media_types
from pants_oci.core.digest import Digest, sha256_of_bytes, verify_bytes
from pants_oci.core.errors import (
    DigestMismatchError,
    DocumentError,
    RegistryError,
    TransportError,
    UnsupportedMediaTypeError,
)
from pants_oci.core.models import (
    MAX_CONFIG_SIZE,
    MAX_MANIFEST_SIZE,
    AnyManifest,
    Descriptor,
    OCIIndex,
    Platform,
    parse_manifest,
)
from pants_oci.core.reference import Reference, validate_tag
from pants_oci.core.registry._concurrency import SharedProgress, map_bounded
from pants_oci.core.registry._copies import copy_by_streaming
from pants_oci.core.registry._downloads import download_to, open_blob
from pants_oci.core.registry._http import content_length, next_link
from pants_oci.core.registry._index_walk import ImageManifest, walk_to_image_manifest
from pants_oci.core.registry._session import LISTING_REPOSITORIES, RepositorySession
from pants_oci.core.registry._uploads import (
    BlobSource,
    GrowingBlob,
    session_location,
    session_status,
    start_upload,
    upload_from_source,
    upload_while_written,
)
from pants_oci.core.transport import ProgressCallback, TransportOptions

__all__ = ["CATALOG_SCOPE", "RegistryClient", "catalog"]

CATALOG_SCOPE = "registry:catalog:*"
# The repository of the client `catalog()` makes: the catalog is the registry's, so no request
# (nor error message) names it.
_NO_REPOSITORY = "catalog"


class RegistryClient(RepositorySession):
    """Talks the OCI distribution API to one repository of one registry.

    ``registry`` is a reference's registry part (``docker.io``, ``ghcr.io``,
    ``localhost:5000``); ``repository`` its path (``library/busybox``). ``auth`` defaults to
    :class:`~pants_oci.core.auth.RegistryAuth` over the user's
    :func:`~pants_oci.core.auth.default_keychain`; pass ``RegistryAuth(None)`` for anonymous
    access.
    ``http_client`` lets several clients share one connection pool (see
    :meth:`for_repository`); a client closes only an ``httpx.Client`` it created.
    """

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

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RegistryClient({self.registry!r}, {self.repository!r})"

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
            announced = content_length(response)
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
        size = content_length(response)
        if not announced or size is None:
            return self.get_manifest(reference).descriptor()
        digest = Digest.parse(announced)
        if expected is not None and digest != expected:
            raise DigestMismatchError(
                f"registry {self.registry} answered HEAD {self.repository}@{expected} with "
                f"Docker-Content-Digest {digest}",
                expected=str(expected),
                actual=str(digest),
                registry=self.registry,
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
        digest, _ = self._put_manifest(manifest, media_type, tag)
        return digest

    def _put_manifest(
        self, manifest: AnyManifest | bytes, media_type: str | None, tag: str | None
    ) -> tuple[Digest, httpx.Response]:
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
                registry=self.registry,
            )
        return digest, response

    def put_referrer(self, manifest: AnyManifest | bytes, media_type: str | None = None) -> bool:
        """Store a manifest that has a ``subject`` (by digest); True when the registry says it
        indexed the subject for the referrers API (an ``OCI-Subject`` header naming it), False
        when the client must maintain the fallback tag (see :mod:`pants_oci.core.referrers`)."""
        if isinstance(manifest, (bytes, bytearray, memoryview)):
            subject = parse_manifest(bytes(manifest), media_type)
        else:
            subject = manifest
        wanted = getattr(subject, "subject", None)
        _, response = self._put_manifest(manifest, media_type, None)
        announced = response.headers.get("OCI-Subject")
        return wanted is not None and announced == str(wanted.digest)

    def get_referrers(
        self, digest: Digest | str, artifact_type: str | None = None
    ) -> OCIIndex | None:
        """``GET /v2/<name>/referrers/<digest>``: the index of the manifests whose ``subject``
        is ``digest`` (only those of ``artifact_type``, when given: filtered here if the
        registry does not say it filtered), or None when the registry has no referrers API
        (it answers 404; the fallback tag then holds them)."""
        identifier = str(Digest.coerce(digest))
        url = self._url(f"referrers/{identifier}")
        if artifact_type is not None:
            url = url.copy_merge_params({"artifactType": artifact_type})
        response = self._request("GET", url, scopes=self._scopes("pull"), follow_redirects=True)
        if response.status_code == 404:
            return None
        self._check(response, f"listing the referrers of {identifier}", 200)
        index = parse_manifest(response.content, media_types.OCI_INDEX)
        if not isinstance(index, OCIIndex):
            raise DocumentError(
                f"registry {self.registry} listed the referrers of {identifier} as "
                f"{type(index).__name__}, not an OCI index"
            )
        filtered = "artifactType" in response.headers.get("OCI-Filters-Applied", "")
        if artifact_type is not None and not filtered:
            index = index.replace(
                manifests=tuple(
                    entry for entry in index.manifests if entry.artifact_type == artifact_type
                )
            )
        return index

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
        return walk_to_image_manifest(
            self.get_manifest(reference),
            platform,
            lambda entry: self.get_manifest(entry.digest, size=entry.size),
            f"{self.registry}/{self.repository}{'@' if ':' in str(reference) else ':'}{reference}",
        )

    # --- Blob downloads --------------------------------------------------------------------

    def blob_exists(self, digest: Digest | str) -> bool:
        """Whether blob ``digest`` is in this repository (a ``HEAD``): True for an empty one
        too. :meth:`blob_size` says how big it is."""
        return self.blob_size(digest) is not None

    def blob_size(self, digest: Digest | str) -> int | None:
        """The size of blob ``digest`` in this repository, or None if it is not there (0 is an
        empty blob, or a registry that sent no ``Content-Length``)."""
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
        size = content_length(response)
        return size if size is not None else 0

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
        with open_blob(self, expected, progress, size=size) as download:
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
        with open_blob(self, expected, size=size, limit=limit) as download:
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
        return download_to(self, Digest.coerce(digest), destination, size, progress)

    # --- Blob uploads ----------------------------------------------------------------------

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
        is known, a blob the repository already has is not sent again (nor read: it is taken
        to be the source's).

        Bytes that are not ``size`` bytes, or do not hash to ``digest``, fail with
        :class:`SizeMismatchError` or :class:`DigestMismatchError` whichever way they go
        (bytes before anything is sent; one ``PUT`` cut short before its last piece; ``PATCH``
        uploads before the closing ``PUT``; a registry's own ``DIGEST_INVALID`` too, its
        ``actual`` unknown); the upload session is cancelled, and nothing is stored under
        ``digest``.
        """
        return upload_from_source(
            self,
            source,
            digest=digest,
            size=size,
            chunk_size=chunk_size,
            progress=progress,
            check_exists=check_exists,
        )

    def upload_blob_while_written(
        self,
        blob: GrowingBlob,
        *,
        chunk_size: int = 8 * 1024 * 1024,
    ) -> tuple[Digest, int] | None:
        """Upload a blob while it is being written: ``blob.available(n)`` waits for the
        writer, ``blob.read(n)`` reads what it counted, and ``blob.digest()`` is the blob's
        digest once the writer has finished.

        Whenever ``chunk_size`` bytes or more (at least the registry's
        ``OCI-Chunk-Min-Length``) are written, they go in a ``PATCH``; the closing
        ``PUT ?digest=`` carries the last bytes. When the digest is known while bytes remain
        to send, a blob the repository has already is not sent on. Returns (digest, size),
        or None when the blob was written whole within its first chunk (upload it with
        :meth:`upload_blob`). Nothing is retried: on failure the session is cancelled and
        the error raised."""
        return upload_while_written(self, blob, chunk_size)

    def upload_status(
        self, location: httpx.URL | str, *, retries: int | None = None
    ) -> tuple[httpx.URL, int] | None:
        """How many bytes an upload session holds: (session URL, offset), or None if gone."""
        return session_status(self, location, retries=retries)

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
        response = start_upload(self, {"mount": identifier, "from": from_repository})
        if response.status_code == 201:
            return True
        self._check(response, f"mounting blob {identifier} from {from_repository}", 202)
        self.cancel_upload(session_location(self, response))
        return False

    def copy_blob(
        self,
        source: RegistryClient,
        digest: Digest | str,
        *,
        size: int | None = None,
        progress: ProgressCallback | None = None,
        check_exists: bool = True,
    ) -> tuple[Digest, int]:
        """Copy blob ``digest`` from ``source``'s repository into this one; (digest, size).

        Nothing is sent when this repository has it; on the same registry it is mounted
        when possible; otherwise it streams from one to the other, verified on the way (and
        held to ``size``, its descriptor's, as in :meth:`iter_blob`). ``check_exists=False``
        streams it whatever this repository has.
        """
        expected = Digest.coerce(digest)
        if not check_exists:
            return copy_by_streaming(self, source, expected, size, progress)
        existing = self.blob_size(expected)
        same_registry = source.base_url == self.base_url
        if (
            existing is None
            and same_registry
            and source.repository != self.repository
            and self.mount_blob(expected, source.repository)
        ):
            existing = self.blob_size(expected)
        if existing is not None:
            if progress is not None:
                progress(existing, existing)
            return expected, existing
        return copy_by_streaming(self, source, expected, size, progress)

    # --- Bulk blob work --------------------------------------------------------------------

    def upload_blobs(
        self, sources: Sequence[BlobSource], *, progress: ProgressCallback | None = None
    ) -> list[tuple[Digest, int]]:
        """Upload several blobs, ``options.max_concurrency`` at a time; (digest, size) each."""
        shared = SharedProgress(progress, None)
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
        shared = SharedProgress(progress, None)
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
        shared = SharedProgress(progress, None)
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
            LISTING_REPOSITORIES,
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


def catalog(
    registry: str,
    *,
    auth: httpx.Auth | None = None,
    options: TransportOptions | None = None,
    page_size: int | None = None,
) -> list[str]:
    """Every repository of ``registry`` (``GET /v2/_catalog``, following pagination): no
    repository to name. ``auth`` and ``options`` are :class:`RegistryClient`'s."""
    with RegistryClient(registry, _NO_REPOSITORY, auth=auth, options=options) as client:
        return client.catalog(page_size)
