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
:func:`catalog` lists a registry's repositories (``/v2/_catalog``) with no repository to
name. :meth:`RegistryClient.blob_exists` answers a bool (True for an empty blob too);
:meth:`RegistryClient.blob_size` the size, or None.
:meth:`RegistryClient.ping` (``GET /v2/``) checks that a registry is there and takes our
credentials. Errors are the classes of :mod:`pants_oci.core.errors`: a
:class:`RegistryError` subclass for an error answer (carrying the registry, repository,
status and every entry of the registry's error JSON), :class:`TransportError` when the
registry cannot be reached, :class:`DigestMismatchError` for content that is not what it
claims. Uploads hold their bytes to the digest and size stated for them, whichever protocol
carries them: :class:`DigestMismatchError` and :class:`SizeMismatchError` again, and nothing
is stored under the stated digest.

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

The package's modules, one job each: ``_session`` (the request plumbing), ``_client`` (the
API), ``_downloads``, ``_uploads``, ``_index_walk`` (an index down to a platform's image),
``_concurrency`` (bulk transfers) and ``_http`` (small protocol helpers). Transport settings
are :mod:`pants_oci.core.transport`'s, credentials :mod:`pants_oci.core.auth`'s, platform
matching :mod:`pants_oci.core.platforms`'.
"""

from __future__ import annotations

from pants_oci.core.registry._client import RegistryClient, catalog
from pants_oci.core.registry._concurrency import map_bounded
from pants_oci.core.registry._http import next_link
from pants_oci.core.registry._index_walk import ImageManifest, Index, walk_to_image_manifest
from pants_oci.core.registry._uploads import BlobSource

__all__ = [
    "BlobSource",
    "ImageManifest",
    "Index",
    "RegistryClient",
    "catalog",
    "map_bounded",
    "next_link",
    "walk_to_image_manifest",
]
