"""Build an image on a base, and publish it: to a registry, an OCI layout or a docker archive.

::

    from pants_oci.core import Image, CustomFile

    with Image("docker.io/library/python:3.12-slim", "ghcr.io/acme/app") as image:
        image.add_files({"/app": "dist/app", "/app/VERSION": CustomFile(data=b"1.2\\n")})
        image.workdir = "/app"
        image.cmd = ["python", "-m", "app"]
        image.set_env("APP_MODE", "production")
        digest = image.save(["1.2", "latest"])

The base is a registry reference (a tag or digest; an index is resolved to ``platform``,
by default Linux on this machine's CPU), ``"scratch"``, an OCI image layout
(``"oci-layout:PATH[:REF]"`` or a :class:`~pathlib.Path` to the directory) or a docker-archive
tar (``"docker-archive:PATH"``).

What :meth:`Image.save` does, in order, so that a failure part-way changes no tag:

1. every blob the manifest needs is put in the target repository, ``max_concurrency`` at a
   time: base layers are copied from wherever they are (a HEAD first: blobs the target has
   are skipped; mounted when base and target share a registry; otherwise streamed from
   registry to registry, verified on the way, with no temporary files); new layers are
   uploaded from the files :meth:`Image.add_files` wrote; foreign layers (those with
   ``urls``) are left where they are unless ``copy_foreign_layers=True``;
2. the image config;
3. the manifest, once, under the first tag; the other tags are the same bytes PUT again.

Reproducibility: the image's ``created`` time, its history entries and every file in the
layers :meth:`Image.add_files` makes are stamped with ``SOURCE_DATE_EPOCH`` (or 0, which is
1970-01-01T00:00:00Z), so the same inputs give the same digests on any machine.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from pants_oci.core import media_types
from pants_oci.core._compat import zip_strict
from pants_oci.core._credentials import Keychain
from pants_oci.core._keychains import default_keychain
from pants_oci.core._transport_options import ProgressCallback, TransportOptions
from pants_oci.core.base_spec import SCRATCH, BaseKind, parse_base
from pants_oci.core.digest import Digest, sha256_of_bytes
from pants_oci.core.errors import (
    DocumentError,
    ImageArchiveError,
    ImageBuildError,
    InvalidValueError,
    OCIError,
    PartialPushError,
    RefNotFoundError,
)
from pants_oci.core.layer import Compression, LayerBuilder, Source, resolve_source_date_epoch
from pants_oci.core.layout import ImageLayout, LocalImage, staged_directory
from pants_oci.core.models import (
    MAX_INDEX_DEPTH,
    AnyManifest,
    ContainerConfig,
    Descriptor,
    DockerManifest,
    DockerManifestList,
    History,
    ImageConfig,
    OCIIndex,
    OCIManifest,
    Platform,
    RootFS,
    parse_manifest,
    require_platform,
)
from pants_oci.core.reference import Reference, parse_reference, validate_tag
from pants_oci.core.tarball import read_docker_archive
from pants_oci.core.tarball import write_docker_archive as _write_archive
from pants_oci.core.validation import (
    check_absolute_path,
    check_env_name,
    check_layer_media_type,
    check_port,
    check_stop_signal,
    check_string_map,
    check_user,
)

# The registry client, the auth flow and httpx are imported where a registry is reached, so
# that building from scratch or a local base (`pants-oci image assemble`) does not import them.
if TYPE_CHECKING:
    from pants_oci.core.auth import RegistryAuth
    from pants_oci.core.registry import RegistryClient

__all__ = [
    "BASE_DIGEST_ANNOTATION",
    "BASE_NAME_ANNOTATION",
    "BLOB_SOURCE_ANNOTATION",
    "Image",
    "ImageData",
    "ImageIndex",
    "RunConfig",
    "build_index",
    "copy_image",
    "created_timestamp",
    "index_layouts",
    "push_layout",
    "resolve_source_date_epoch",
]

_log = logging.getLogger(__name__)

# OCI's pre-defined annotations for the image an image was built on.
BASE_NAME_ANNOTATION = "org.opencontainers.image.base.name"
BASE_DIGEST_ANNOTATION = "org.opencontainers.image.base.digest"
# On an index.json entry of a layout we wrote: the registry repository (pinned by digest)
# that has the blobs the layout leaves out, so a push can copy them registry to registry.
BLOB_SOURCE_ANNOTATION = "dev.pants-oci.blob-source"

DEFAULT_TAG = "latest"
_READ_CHUNK = 1 << 20

# Docker media types and the OCI types an OCI manifest names the same blobs by.
_OCI_LAYER_TYPES = {
    media_types.DOCKER_LAYER: media_types.OCI_LAYER_GZIP,
    media_types.DOCKER_LAYER_UNCOMPRESSED: media_types.OCI_LAYER,
    media_types.DOCKER_FOREIGN_LAYER: media_types.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
}
_FOREIGN_LAYER_TYPES = frozenset(
    {
        media_types.DOCKER_FOREIGN_LAYER,
        media_types.OCI_LAYER_NONDISTRIBUTABLE,
        media_types.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        media_types.OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
    }
)

ImageManifest = Union[OCIManifest, DockerManifest]


# --- Reproducible timestamps ------------------------------------------------------------------
# resolve_source_date_epoch is defined in pants_oci.core.layer (so that `layer build` need not
# import this module) and re-exported here.


def created_timestamp(epoch: int) -> str:
    """RFC 3339 in UTC with a ``Z``, as image configs write it: ``1970-01-01T00:00:00Z``."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- The editable run configuration -------------------------------------------------------------

# ContainerConfig's JSON names that RunConfig has fields for; any other key is kept as read.
_RUN_CONFIG_KEYS = frozenset(
    {
        "Entrypoint",
        "Cmd",
        "Env",
        "WorkingDir",
        "User",
        "Labels",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
    }
)


def _str_list(value: Iterable[str] | str | None, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"{what} is a list of strings (exec form), not the string {value!r}")
    items = list(value)
    if not all(isinstance(item, str) for item in items):
        raise TypeError(f"{what} must be a list of strings, got {items!r}")
    return items


def _port_key(port: str | int) -> str:
    """A port as the config keys it: ``80`` means ``80/tcp``, as Docker's EXPOSE reads it
    (values set through :class:`Image` are checked; a base's are kept as they are)."""
    text = str(port)
    return text if "/" in text else f"{text}/tcp"


def _platform_argument(platform: Platform | str | None) -> Platform | None:
    if platform is None or isinstance(platform, Platform):
        return platform
    if isinstance(platform, str):
        return Platform.parse(platform)
    raise InvalidValueError(
        "platform",
        platform,
        "is not a platform: give a string such as 'linux/amd64', or a Platform.",
    )


@dataclass
class RunConfig:
    """How a container of the image runs: the ``config`` part of the image config.

    :meth:`Image.get_image_config` returns the image's own instance: change it in place and
    :meth:`Image.save` (or a writer) uses the changes. Fields are plain Python values; keys
    of the base image's config that have no field here (``Healthcheck``, ``Shell``,
    ``OnBuild``...) are kept in ``extra`` as they were read.
    """

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)  # "NAME=value"
    workdir: str | None = None
    user: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)  # "80/tcp"
    volumes: list[str] = field(default_factory=list)
    stop_signal: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_container_config(cls, config: ContainerConfig | None) -> RunConfig:
        data: dict[str, Any] = (
            config.model_dump(mode="json", by_alias=True, exclude_none=True) if config else {}
        )
        return cls(
            entrypoint=data.get("Entrypoint"),
            cmd=data.get("Cmd"),
            env=list(data.get("Env") or ()),
            workdir=data.get("WorkingDir"),
            user=data.get("User"),
            labels=dict(data.get("Labels") or {}),
            exposed_ports=list(data.get("ExposedPorts") or {}),
            volumes=list(data.get("Volumes") or {}),
            stop_signal=data.get("StopSignal"),
            extra={key: value for key, value in data.items() if key not in _RUN_CONFIG_KEYS},
        )

    def to_container_config(self) -> ContainerConfig:
        data: dict[str, Any] = dict(self.extra)
        values: dict[str, Any] = {
            "User": self.user,
            "ExposedPorts": {_port_key(port): {} for port in self.exposed_ports} or None,
            "Env": list(self.env) or None,
            "Entrypoint": None if self.entrypoint is None else list(self.entrypoint),
            "Cmd": None if self.cmd is None else list(self.cmd),
            "Volumes": {volume: {} for volume in self.volumes} or None,
            "WorkingDir": self.workdir or None,
            "Labels": dict(self.labels) or None,
            "StopSignal": self.stop_signal,
        }
        data.update({key: value for key, value in values.items() if value is not None})
        try:
            return ContainerConfig.model_validate(data)
        except ValueError as exc:
            raise ImageBuildError(f"the image's run configuration is not valid: {exc}") from None

    def get_env(self, name: str) -> str | None:
        """The value of environment variable ``name``, or None when it is not set."""
        prefix = f"{name}="
        return next((item[len(prefix) :] for item in self.env if item.startswith(prefix)), None)

    def set_env(self, name: str, value: str) -> None:
        """Set ``name``: in place when it is already set (keeping the order), else appended."""
        check_env_name(name)
        if not isinstance(value, str):
            raise InvalidValueError(f"environment variable {name}", value, "is not a string.")
        prefix, item = f"{name}=", f"{name}={value}"
        for index, existing in enumerate(self.env):
            if existing.startswith(prefix) or existing == name:
                self.env[index] = item
                return
        self.env.append(item)

    def unset_env(self, name: str) -> None:
        prefix = f"{name}="
        self.env = [item for item in self.env if not item.startswith(prefix) and item != name]


@dataclass(frozen=True)
class ImageData:
    """The documents an image is: what :meth:`Image.get_image_data` returns."""

    manifest: OCIManifest
    config: ImageConfig

    @property
    def manifest_digest(self) -> Digest:
        return self.manifest.digest

    @property
    def config_digest(self) -> Digest:
        return self.manifest.config.digest


# --- Moving blobs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Blob:
    """A blob an image needs, and where its bytes can be had (first match wins)."""

    descriptor: Descriptor
    data: bytes | None = None  # in memory (configs, manifests of an index)
    path: Path | None = None  # a local file
    remote: RegistryClient | None = None  # a repository that has it
    # A base image's blob: on ``remote``'s registry it is mounted, not uploaded again.
    mountable: bool = False

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest

    @property
    def foreign(self) -> bool:
        """Non-distributable: its bytes live at its ``urls``, not in registries."""
        return bool(self.descriptor.urls) or self.descriptor.media_type in _FOREIGN_LAYER_TYPES


class _ProgressTotal:
    """Adds per-blob progress of parallel transfers up into one (done, total) callback."""

    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self._callback = callback
        self._total = total
        self._done: dict[int, int] = {}
        self._lock = threading.Lock()

    def part(self, key: int) -> ProgressCallback | None:
        if self._callback is None:
            return None

        def report(done: int, _total: int | None) -> None:
            with self._lock:
                self._done[key] = done
                current = sum(self._done.values())
            assert self._callback is not None
            self._callback(min(current, self._total), self._total)

        return report


class _IteratorReader:
    """A read()-able view of an iterator of byte chunks (an HTTP body) for upload_blob."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def _copy_from_urls(
    target: RegistryClient, descriptor: Descriptor, progress: ProgressCallback | None
) -> None:
    """Upload a foreign layer fetched from its ``urls`` (the first that answers 200)."""
    import httpx

    from pants_oci.core.transport import make_http_client

    if target.blob_exists(descriptor.digest) is not None:
        return
    failures: list[str] = []
    with make_http_client(target.options) as http:
        for url in descriptor.urls or ():
            try:
                with http.stream("GET", url, follow_redirects=True) as response:
                    if response.status_code != 200:
                        failures.append(f"{url}: HTTP {response.status_code}")
                        continue
                    reader: Any = _IteratorReader(response.iter_raw())
                    # The digest is checked while the bytes stream through.
                    target.upload_blob(
                        reader,
                        digest=descriptor.digest,
                        size=descriptor.size,
                        progress=progress,
                        check_exists=False,
                    )
                    return
            except httpx.HTTPError as exc:
                failures.append(f"{url}: {exc}")
    raise ImageBuildError(
        f"cannot copy foreign layer {descriptor.digest} to {target.registry}/"
        f"{target.repository}: none of its urls served it ({'; '.join(failures) or 'no urls'})"
    )


def _transfer_blobs(
    target: RegistryClient,
    blobs: Sequence[_Blob],
    *,
    copy_foreign_layers: bool = False,
    progress: ProgressCallback | None = None,
) -> None:
    """Put every blob in ``target`` (HEAD first), ``max_concurrency`` at a time."""
    from pants_oci.core.registry import map_bounded

    unique = list({blob.digest: blob for blob in blobs}.values())
    wanted = [blob for blob in unique if copy_foreign_layers or not blob.foreign]
    total = _ProgressTotal(progress, sum(blob.descriptor.size for blob in wanted))

    def put(item: tuple[int, _Blob]) -> None:
        key, blob = item
        part = total.part(key)
        digest, size = blob.digest, blob.descriptor.size
        if (
            blob.mountable
            and blob.remote is not None
            and _mounted(target, blob.remote, digest, part)
        ):
            return
        if blob.data is not None:
            target.upload_blob(blob.data, digest=digest, progress=part)
        elif blob.path is not None:
            target.upload_blob(blob.path, digest=digest, size=size, progress=part)
        elif blob.remote is not None:
            target.copy_blob(blob.remote, digest, size=size, progress=part)
        elif blob.foreign:
            _copy_from_urls(target, blob.descriptor, part)
        elif target.blob_exists(digest) is None:
            raise ImageBuildError(
                f"blob {digest} is not in {target.registry}/{target.repository} and this image "
                "has no source for it (add the layer with blob=..., or give the base's registry "
                "reference)"
            )

    if wanted:
        _log.info("putting %d blobs in %s/%s", len(wanted), target.registry, target.repository)
    map_bounded(put, list(enumerate(wanted)), target.options.max_concurrency)


def _base_layers(source: RegistryClient, reference: Reference) -> frozenset[Digest]:
    """The layers of the base image a layout records, pinned by digest (none if it cannot be
    read: the push then uploads them, as for a base on another registry)."""
    if reference.digest is None:
        return frozenset()
    try:
        document = source.get_manifest(reference.digest)
    except OCIError as e:
        _log.debug("not mounting base layers: cannot read %s: %s", reference, e)
        return frozenset()
    if isinstance(document, (OCIManifest, DockerManifest)):
        return frozenset(layer.digest for layer in document.layers)
    return frozenset()


def _mounted(
    target: RegistryClient,
    source: RegistryClient,
    digest: Digest,
    progress: ProgressCallback | None,
) -> bool:
    """True if ``target`` has the blob now, mounted from ``source``'s repository on the same
    registry (a base's blob: no byte is sent, even when a local copy could be uploaded)."""
    if source.base_url != target.base_url or source.repository == target.repository:
        return False
    existing = target.blob_exists(digest)
    if existing is None:
        if not target.mount_blob(digest, source.repository):
            return False
        existing = target.blob_exists(digest)  # a 201 that stored nothing is no mount
        if existing is None:
            return False
    if progress is not None:
        progress(existing, existing)
    return True


def _put_manifest_tags(
    target: RegistryClient,
    raw: bytes,
    media_type: str,
    tags: Sequence[str],
    updated: list[str] | None = None,
) -> Digest:
    """One manifest PUT under the first tag (or by digest), then the same bytes per tag;
    each tag that now points at it is added to ``updated``."""
    first: str | None = tags[0] if tags else None
    digest = target.put_manifest(raw, media_type, tag=first)
    moved = updated if updated is not None else []
    if first is not None:
        moved.append(f"{target.registry}/{target.repository}:{first}")
    for tag in tags[1:]:
        target.put_manifest(raw, media_type, tag=tag)
        moved.append(f"{target.registry}/{target.repository}:{tag}")
    _log.info(
        "pushed %s/%s@%s%s",
        target.registry,
        target.repository,
        digest,
        f" as {', '.join(tags)}" if tags else "",
    )
    return digest


def _place_blob(layout: ImageLayout, blob: _Blob, *, fetch: bool, required: bool) -> bool:
    """Put ``blob`` in ``layout`` (hard-linked when it is a local file); True if it is there."""
    digest = blob.digest
    if layout.has_blob(digest):
        return True
    if blob.data is not None:
        layout.write_blob(blob.data)
        return True
    if blob.path is not None:
        target = layout.blob_path(digest)
        if blob.path.stat().st_size != blob.descriptor.size:
            raise ImageBuildError(
                f"{blob.path} is {blob.path.stat().st_size} bytes, but layer {digest} is "
                f"{blob.descriptor.size}"
            )
        try:
            os.link(blob.path, target)  # blobs are immutable: share the bytes
        except OSError:
            layout.add_blob_file(blob.path, digest)  # copied, and checked against its digest
        return True
    if blob.remote is not None and fetch:
        with layout.ingest(digest) as writer:
            for chunk in blob.remote.iter_blob(digest, size=blob.descriptor.size):
                writer.write(chunk)
        return True
    if required:
        where = (
            f" (it is in {blob.remote.registry}/{blob.remote.repository}; fetching was not allowed)"
            if blob.remote is not None
            else ""
        )
        raise ImageBuildError(
            f"blob {digest} is not available locally{where}; pull the base with its layers "
            "(`base pull --with-layers`) or let the writer fetch them"
        )
    return False


# --- Registry clients ---------------------------------------------------------------------------


class _Clients:
    """Registry clients by repository, sharing one auth and one connection pool per registry
    (so that copies within a registry can be mounts)."""

    def __init__(self, keychain: Keychain | None, options: TransportOptions) -> None:
        self.options = options
        self._keychain = keychain if keychain is not None else default_keychain()
        self._auth: RegistryAuth | None = None  # made with the first client
        self._roots: dict[str, RegistryClient] = {}
        self._clients: dict[str, RegistryClient] = {}
        self._lock = threading.Lock()

    def get(self, reference: Reference | str) -> RegistryClient:
        ref = parse_reference(reference) if isinstance(reference, str) else reference
        with self._lock:
            client = self._clients.get(ref.name)
            if client is None:
                root = self._roots.get(ref.registry)
                if root is None:
                    from pants_oci.core.auth import RegistryAuth
                    from pants_oci.core.registry import RegistryClient

                    if self._auth is None:
                        self._auth = RegistryAuth(self._keychain)
                    client = RegistryClient.from_reference(
                        ref, auth=self._auth, options=self.options
                    )
                    self._roots[ref.registry] = client
                else:
                    client = root.for_repository(ref.repository)
                self._clients[ref.name] = client
            return client

    def close(self) -> None:
        for root in self._roots.values():
            root.close()
        self._roots.clear()
        self._clients.clear()


# --- Bases --------------------------------------------------------------------------------------


@dataclass
class _Base:
    """What an image starts from."""

    description: str
    config: ImageConfig
    layers: tuple[Descriptor, ...] = ()
    layout: ImageLayout | None = None  # where local base blobs are
    reference: Reference | None = None  # the registry image the base is (when known)
    manifest_digest: Digest | None = None
    remote: RegistryClient | None = None  # where base blobs missing locally are

    def blob(self, descriptor: Descriptor) -> _Blob:
        path = None
        if self.layout is not None and self.layout.has_blob(descriptor.digest):
            path = self.layout.blob_path(descriptor.digest)
        return _Blob(descriptor, path=path, remote=self.remote, mountable=True)


def _oci_layer(descriptor: Descriptor) -> Descriptor:
    """The descriptor an OCI manifest gives a (possibly Docker-typed) layer blob."""
    oci_type = _OCI_LAYER_TYPES.get(media_types.base_media_type(descriptor.media_type))
    return descriptor.model_copy(update={"media_type": oci_type}) if oci_type else descriptor


def _split_prefixed_path(text: str, must_be_dir: bool) -> tuple[Path, str | None]:
    """``PATH`` or ``PATH:REF`` (paths may themselves contain ``:``)."""
    candidate = Path(text)
    if candidate.is_dir() if must_be_dir else candidate.is_file():
        return candidate, None
    path, colon, ref = text.rpartition(":")
    if colon and path:
        return Path(path), ref or None
    return candidate, None


def _layout_ref(layout: ImageLayout, ref: str | None) -> str:
    """The ref to use when a layout base names none: its only image, or ``base``."""
    if ref is not None:
        return ref
    refs = layout.refs()
    if len(refs) == 1:
        return refs[0]
    if "base" in refs:
        return "base"
    digests = {entry.digest for entry in layout.index().manifests}
    if len(digests) == 1:
        return str(next(iter(digests)))
    raise RefNotFoundError(
        f"{layout.root} holds {len(refs)} images; name one as oci-layout:{layout.root}:REF "
        f"(it has {', '.join(refs) or 'no named images'})",
        wanted="",
        available=refs,
    )


# --- Image --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    descriptor: Descriptor
    diff_id: Digest
    path: Path | None = None  # the blob's bytes, when they are a local file
    from_base: bool = False


class Image:
    """An image being built on a base; publish it with :meth:`save` or the writers.

    ``target`` is where :meth:`save` pushes (a reference; its tag is the default tag).
    ``keychain`` supplies credentials (default: :func:`~pants_oci.core.auth.default_keychain`,
    i.e. docker's config and helpers, and Google's application default credentials).
    ``platform`` picks the image of a multi-platform base (default: this machine's Linux) and,
    for ``"scratch"``, is the image's platform. ``base_reference`` names the registry image a
    layout base came from, where base layers missing from the layout are fetched (a layout
    written by ``pants-oci base pull`` records it itself). ``source_date_epoch`` overrides
    ``$SOURCE_DATE_EPOCH``.

    Close the image (or use it as a context manager) to drop its connections and the
    temporary directory its new layers are written to.
    """

    def __init__(
        self,
        base: str | os.PathLike[str] = SCRATCH,
        target: Reference | str | None = None,
        *,
        keychain: Keychain | None = None,
        options: TransportOptions | None = None,
        platform: Platform | str | None = None,
        base_reference: Reference | str | None = None,
        source_date_epoch: int | None = None,
        copy_foreign_layers: bool = False,
    ) -> None:
        self.options = options or TransportOptions()
        self.target = (
            parse_reference(target) if isinstance(target, str) else target
        )  # None: only the writers can publish
        self.platform = _platform_argument(platform)
        self.copy_foreign_layers = copy_foreign_layers
        self.epoch = resolve_source_date_epoch(source_date_epoch)
        self.created = created_timestamp(self.epoch)
        self.annotations: dict[str, str] = {}
        self._clients = _Clients(keychain, self.options)
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._synced: set[Digest] = set()
        self._cmd_set = False
        explicit_base = (
            parse_reference(base_reference) if isinstance(base_reference, str) else base_reference
        )
        self._base = self._load_base(base, explicit_base)
        config = self._base.config
        self._config = RunConfig.from_container_config(config.config)
        self._history: list[History] = list(config.history or ())
        self._platform = config.platform
        diff_ids = config.rootfs.diff_ids
        if len(diff_ids) != len(self._base.layers):
            raise DocumentError(
                f"base {self._base.description}: its config lists {len(diff_ids)} diff_ids but "
                f"its manifest has {len(self._base.layers)} layers"
            )
        self._layers = [
            _Layer(_oci_layer(descriptor), diff_id, from_base=True)
            for descriptor, diff_id in zip_strict(self._base.layers, diff_ids)
        ]

    # --- Loading the base ----------------------------------------------------------------------

    def _load_base(self, base: str | os.PathLike[str], explicit: Reference | None) -> _Base:
        if isinstance(base, os.PathLike):
            path = Path(base)
            if (path / "oci-layout").is_file():
                return self._layout_base(path, None, explicit)
            if path.is_file():
                return self._archive_base(path, None)
            raise ImageArchiveError(
                f"base {path} is neither an OCI image layout directory nor a docker-archive tar"
            )
        spec = parse_base(base)
        if spec.kind is BaseKind.SCRATCH:
            platform = self.platform or Platform.host_linux()
            config = ImageConfig(
                architecture=platform.architecture,
                os=platform.os,
                variant=platform.variant,
                rootfs=RootFS(),
            )
            return _Base(description=SCRATCH, config=config)
        if spec.kind is BaseKind.OCI_LAYOUT:
            path, ref = _split_prefixed_path(spec.location, must_be_dir=True)
            return self._layout_base(path, ref, explicit)
        if spec.kind is BaseKind.DOCKER_ARCHIVE:
            path, ref = _split_prefixed_path(spec.location, must_be_dir=False)
            return self._archive_base(path, ref)
        assert spec.reference is not None
        return self._registry_base(spec.reference)

    def _registry_base(self, reference: Reference) -> _Base:
        from pants_oci.core.registry import resolve_platform

        client = self._clients.get(reference)
        document = client.get_manifest(reference.identifier)
        for _depth in range(MAX_INDEX_DEPTH):
            if isinstance(document, (OCIManifest, DockerManifest)):
                break
            entry = resolve_platform(document, self.platform)
            document = client.get_manifest(entry.digest, size=entry.size)
        if not isinstance(document, (OCIManifest, DockerManifest)):
            raise DocumentError(f"{reference}: indexes nested more than {MAX_INDEX_DEPTH} deep")
        config = ImageConfig.from_bytes(
            client.read_blob(document.config.digest, size=document.config.size)
        )
        require_platform(config, self.platform, f"base {reference}")
        return _Base(
            description=str(reference),
            config=config,
            layers=document.layers,
            reference=reference,
            manifest_digest=document.digest,
            remote=client,
        )

    def _layout_base(self, path: Path, ref: str | None, explicit: Reference | None) -> _Base:
        layout = ImageLayout.open(path)
        name = _layout_ref(layout, ref)
        local = layout.image(name, self.platform)
        require_platform(local.config, self.platform, f"base {path}:{name}")
        annotations = layout.ref_annotations(name)
        recorded = annotations.get(BLOB_SOURCE_ANNOTATION)
        reference = explicit or (parse_reference(recorded) if recorded else None)
        missing = [d for d in local.layers if not layout.has_blob(d.digest)]
        return _Base(
            description=f"{path}:{name}",
            config=local.config,
            layers=local.layers,
            layout=layout,
            reference=reference,
            manifest_digest=local.manifest_descriptor.digest,
            # A client only when blobs are missing: a complete layout needs no network.
            remote=self._clients.get(reference) if reference is not None and missing else None,
        )

    def _archive_base(self, path: Path, repo_tag: str | None) -> _Base:
        layout = ImageLayout.create(self._work_dir() / "docker-archive-base")
        local: LocalImage = read_docker_archive(path, layout, repo_tag=repo_tag)
        require_platform(local.config, self.platform, f"base {path}")
        return _Base(
            description=f"docker-archive:{path}",
            config=local.config,
            layers=local.layers,
            layout=layout,
            manifest_digest=local.manifest_descriptor.digest,
        )

    def _work_dir(self) -> Path:
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="pants-oci-image-")
        return Path(self._workdir.name)

    # --- Lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close registry connections and delete the files of layers made by add_files."""
        self._clients.close()
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        target = f", target={str(self.target)!r}" if self.target else ""
        return f"Image(base={self._base.description!r}{target}, layers={len(self._layers)})"

    def client(self, reference: Reference | str | None = None) -> RegistryClient:
        """The (cached, authenticated) registry client for ``reference``'s repository;
        default the target's."""
        if reference is None:
            if self.target is None:
                raise ImageBuildError("this image has no target; give Image(base, target)")
            reference = self.target
        return self._clients.get(reference)

    # --- Run configuration ---------------------------------------------------------------------

    def get_image_config(self) -> RunConfig:
        """The image's run configuration, live: changes to it are what save() writes."""
        return self._config

    @property
    def cmd(self) -> list[str] | None:
        return None if self._config.cmd is None else list(self._config.cmd)

    @cmd.setter
    def cmd(self, value: Sequence[str] | None) -> None:
        self._config.cmd = _str_list(value, "cmd")
        self._cmd_set = True

    @property
    def entrypoint(self) -> list[str] | None:
        return None if self._config.entrypoint is None else list(self._config.entrypoint)

    @entrypoint.setter
    def entrypoint(self, value: Sequence[str] | None) -> None:
        """As in a Dockerfile, a new entrypoint drops the cmd inherited from the base (a cmd
        set on this image, before or after, stays)."""
        self._config.entrypoint = _str_list(value, "entrypoint")
        if not self._cmd_set:
            self._config.cmd = None

    @property
    def env(self) -> list[str]:
        """``NAME=value`` items (a copy). Assigning a list sets each item: replacing a
        variable in place when already set, appending otherwise (the base's others stay)."""
        return list(self._config.env)

    @env.setter
    def env(self, items: Iterable[str]) -> None:
        for item in _str_list(items, "env") or ():
            name, _, value = item.partition("=")
            self._config.set_env(name, value)

    def set_env(self, name: str, value: str) -> None:
        self._config.set_env(name, value)

    def unset_env(self, name: str) -> None:
        self._config.unset_env(name)

    @property
    def workdir(self) -> str | None:
        return self._config.workdir

    @workdir.setter
    def workdir(self, value: str | None) -> None:
        self._config.workdir = None if value is None else check_absolute_path(value, "workdir")

    @property
    def user(self) -> str | None:
        return self._config.user

    @user.setter
    def user(self, value: str | None) -> None:
        self._config.user = None if value is None else check_user(value)

    @property
    def labels(self) -> dict[str, str]:
        """The labels, live: ``image.labels["a"] = "b"`` and ``.update(...)`` are saved."""
        return self._config.labels

    @labels.setter
    def labels(self, value: Mapping[str, str]) -> None:
        self._config.labels = check_string_map(value, "labels")

    @property
    def exposed_ports(self) -> list[str]:
        return [_port_key(port) for port in self._config.exposed_ports]

    @exposed_ports.setter
    def exposed_ports(self, ports: Iterable[str | int]) -> None:
        self._config.exposed_ports = list(dict.fromkeys(check_port(port) for port in ports))

    def expose(self, *ports: str | int) -> None:
        """Add exposed ports (``8080`` means ``8080/tcp``) to those of the base."""
        self.exposed_ports = [*self.exposed_ports, *(check_port(port) for port in ports)]

    @property
    def volumes(self) -> list[str]:
        return list(self._config.volumes)

    @volumes.setter
    def volumes(self, paths: Iterable[str]) -> None:
        self._config.volumes = list(
            dict.fromkeys(check_absolute_path(path, "volume") for path in paths)
        )

    @property
    def stop_signal(self) -> str | None:
        return self._config.stop_signal

    @stop_signal.setter
    def stop_signal(self, value: str | None) -> None:
        self._config.stop_signal = None if value is None else check_stop_signal(value)

    @property
    def image_platform(self) -> Platform:
        """The platform the image is for (its base's, or ``platform`` for scratch)."""
        return self._platform

    # --- Layers --------------------------------------------------------------------------------

    @property
    def layers(self) -> list[Descriptor]:
        """The manifest's layer descriptors, base layer first."""
        return [layer.descriptor for layer in self._layers]

    @property
    def diff_ids(self) -> list[Digest]:
        return [layer.diff_id for layer in self._layers]

    def add_files(
        self,
        files: Mapping[str, Source],
        *,
        ignore: Sequence[str] = (),
        ignore_files: Sequence[str | os.PathLike[str]] = (),
        compression: Compression = "gzip",
        level: int | None = None,
        follow_symlinks: bool = False,
    ) -> Descriptor:
        """Build one layer from ``{absolute path in image: source}`` and add it on top.

        A directory source puts its contents at the target directory; a file or
        :class:`~pants_oci.core.layer.CustomFile` goes at the target path. ``ignore`` and
        ``ignore_files`` hold gitignore patterns applied within directory sources. Every
        entry is stamped with SOURCE_DATE_EPOCH, owned by 0:0, with normalised modes (see
        :mod:`pants_oci.core.layer`). Returns the new layer's descriptor.
        """
        for target in files:
            check_absolute_path(target, "add_files target")
        builder = LayerBuilder(mtime=self.epoch, follow_symlinks=follow_symlinks)
        builder.add_files(files, ignore=ignore, ignore_files=ignore_files)
        directory = self._work_dir() / "layers"
        directory.mkdir(exist_ok=True)
        handle, name = tempfile.mkstemp(dir=directory, suffix=".layer")
        os.close(handle)
        blob = builder.write_file(name, compression=compression, level=level)
        targets = ", ".join(sorted(files))
        return self.add_layer(
            blob.digest,
            blob.diff_id,
            blob.size,
            media_type=blob.media_type,
            blob=Path(name),
            created_by=f"pants-oci add_files {targets}",
        )

    def add_layer(
        self,
        digest: Digest | str,
        diff_id: Digest | str,
        size: int,
        urls: Sequence[str] | None = None,
        media_type: str = media_types.OCI_LAYER_GZIP,
        *,
        blob: str | os.PathLike[str] | None = None,
        created_by: str | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Descriptor:
        """Add a layer on top, by its blob ``digest``, uncompressed ``diff_id`` and blob
        ``size``; a history entry is added with it.

        ``blob`` is a local file holding the layer, uploaded by save(). Without it the layer
        must already be in the target repository, or be foreign (``urls``: where clients
        download it; registries are not given it unless ``copy_foreign_layers``).
        """
        descriptor = Descriptor(
            media_type=check_layer_media_type(media_type),
            digest=Digest.coerce(digest),
            size=size,
            urls=tuple(urls) if urls else None,
            annotations=dict(annotations) if annotations else None,
        )
        path = Path(blob) if blob is not None else None
        if path is not None and not path.is_file():
            raise ImageBuildError(f"layer blob {path} does not exist (for layer {digest})")
        self._layers.append(_Layer(descriptor, Digest.coerce(diff_id), path))
        self._history.append(
            History(
                created=self.created,
                created_by=created_by or f"pants-oci add_layer {descriptor.digest}",
            )
        )
        return descriptor

    def remove_layer(self, digest: Digest | str) -> None:
        """Remove the (lowest) layer with blob ``digest``, its diff_id and its history entry."""
        wanted = Digest.coerce(digest)
        position = next(
            (i for i, layer in enumerate(self._layers) if layer.descriptor.digest == wanted), None
        )
        if position is None:
            listed = ", ".join(str(layer.descriptor.digest) for layer in self._layers)
            raise ImageBuildError(f"no layer {wanted} in this image (it has: {listed or 'none'})")
        del self._layers[position]
        # History entries that made layers, in order; only remove one when they line up.
        made_layers = [i for i, entry in enumerate(self._history) if not entry.empty_layer]
        if len(made_layers) == len(self._layers) + 1:
            del self._history[made_layers[position]]

    # --- The documents -------------------------------------------------------------------------

    def _config_document(self) -> ImageConfig:
        return self._base.config.replace(
            created=self.created,
            config=self._config.to_container_config(),
            rootfs=RootFS(diff_ids=tuple(self.diff_ids)),
            history=tuple(self._history) or None,
        )

    def get_image_data(self) -> ImageData:
        """The manifest and config that save() and the writers would publish now."""
        config = self._config_document()
        manifest = OCIManifest(
            config=config.descriptor(media_type=media_types.OCI_CONFIG),
            layers=tuple(self.layers),
            annotations=dict(self.annotations) or None,
        )
        return ImageData(manifest=manifest, config=config)

    def _blob(self, layer: _Layer) -> _Blob:
        if layer.from_base:
            return self._base.blob(layer.descriptor)
        return _Blob(layer.descriptor, path=layer.path)

    def _layout_annotations(self) -> dict[str, str]:
        base = self._base
        annotations: dict[str, str] = {}
        if base.reference is not None:
            annotations[BASE_NAME_ANNOTATION] = str(base.reference)
            if base.manifest_digest is not None:
                annotations[BLOB_SOURCE_ANNOTATION] = (
                    f"{base.reference.name}@{base.manifest_digest}"
                )
        if base.manifest_digest is not None:
            annotations[BASE_DIGEST_ANNOTATION] = str(base.manifest_digest)
        return annotations

    @property
    def base_reference(self) -> Reference | None:
        """The registry image the base is, when known."""
        return self._base.reference

    @property
    def base_manifest_digest(self) -> Digest | None:
        return self._base.manifest_digest

    # --- Publishing ----------------------------------------------------------------------------

    def sync(self, *, progress: ProgressCallback | None = None) -> None:
        """Copy the base's layers into the target repository now (save() then skips them):
        start the slow part early while other work goes on."""
        target = self.client()
        base_blobs = [
            self._base.blob(layer.descriptor) for layer in self._layers if layer.from_base
        ]
        _transfer_blobs(
            target,
            base_blobs,
            copy_foreign_layers=self.copy_foreign_layers,
            progress=progress,
        )
        self._synced.update(blob.digest for blob in base_blobs)

    def _push_blobs(self, target: RegistryClient, progress: ProgressCallback | None) -> ImageData:
        data = self.get_image_data()
        blobs = [self._blob(layer) for layer in self._layers]
        blobs = [blob for blob in blobs if blob.digest not in self._synced]
        _transfer_blobs(
            target, blobs, copy_foreign_layers=self.copy_foreign_layers, progress=progress
        )
        config_bytes = data.config.to_bytes()
        target.upload_blob(config_bytes, digest=sha256_of_bytes(config_bytes))
        return data

    def save(
        self, tags: Sequence[str] | None = None, *, progress: ProgressCallback | None = None
    ) -> Digest:
        """Push the image to the target repository; return the manifest digest.

        ``tags`` default to the target's tag (``latest`` when it has none; by digest only
        when the target is pinned by digest). Blobs first, then the config, then the
        manifest: nothing is tagged unless everything it needs is in place.
        """
        target = self.client()
        if tags is None:
            assert self.target is not None
            default = self.target.tag or (None if self.target.digest else DEFAULT_TAG)
            tags = [default] if default else []
        tags = [validate_tag(tag) for tag in tags]  # before anything is uploaded
        data = self._push_blobs(target, progress)
        return _put_manifest_tags(target, data.manifest.to_bytes(), media_types.OCI_MANIFEST, tags)

    def write_layout(
        self,
        directory: str | os.PathLike[str],
        tags: Sequence[str] = (DEFAULT_TAG,),
        *,
        include_base_layers: bool = True,
        fetch_missing: bool = True,
        omit_base_layers: bool = False,
    ) -> Digest:
        """Write the image into an OCI image layout (created if need be), tagged ``tags``;
        return the manifest digest.

        Base layers come from the base layout (hard-linked) or are fetched from the base's
        registry. With ``include_base_layers=False`` base layers the base layout does not
        have are left out, and ``index.json`` records the registry image that has them
        (:data:`BLOB_SOURCE_ANNOTATION`), for :func:`push_layout` to copy them from.
        ``omit_base_layers=True`` leaves out every base layer, even those at hand: for a
        build system that adds them from where it keeps the base.

        A new ``directory`` is built beside it and renamed into place only when complete
        (:func:`~pants_oci.core.layout.staged_directory`): a failure leaves nothing. Into an
        existing directory (a layout to add a tag to) the image is added in place, safely
        for readers: each blob is renamed into place whole, and ``index.json`` is replaced
        atomically last, so a tag never names blobs that are not there; a failure leaves
        the layout as it was, give or take unreferenced blobs. Concurrent writers adding
        tags to one existing layout are not coordinated (the last ``index.json`` wins).
        """

        def write(root: str | os.PathLike[str]) -> Digest:
            return self._write_into(
                ImageLayout.create(root),
                tags,
                include_base_layers=include_base_layers,
                fetch_missing=fetch_missing,
                omit_base_layers=omit_base_layers,
            )

        if os.path.lexists(directory):
            return write(directory)
        with staged_directory(directory) as staged:
            return write(staged)

    def _write_into(
        self,
        layout: ImageLayout,
        tags: Sequence[str],
        *,
        include_base_layers: bool,
        fetch_missing: bool,
        omit_base_layers: bool,
    ) -> Digest:
        data = self.get_image_data()
        for layer in self._layers:
            if omit_base_layers and layer.from_base:
                continue
            _place_blob(
                layout,
                self._blob(layer),
                fetch=fetch_missing and include_base_layers,
                required=include_base_layers or not layer.from_base,
            )
        layout.write_document(data.config)
        descriptor = layout.write_document(
            data.manifest,
            platform=self._platform,
            annotations=self._layout_annotations() or None,
        )
        layout.set_refs({tag: [descriptor] for tag in tags})
        return data.manifest_digest

    def write_docker_archive(
        self,
        path: str | os.PathLike[str],
        tags: Sequence[str] = (),
        *,
        fetch_missing: bool = True,
        repositories: bool = False,
    ) -> Digest:
        """Write the image as a ``docker load``-able tar; ``tags`` are full names
        (``example.com/app:1.2``); ``repositories`` adds the legacy ``repositories`` file
        naming them too. Every layer is needed: missing base layers are fetched
        from the base's registry (ImageBuildError when that is not allowed or possible).
        Returns the config digest, which is the image ID docker shows."""
        with tempfile.TemporaryDirectory(prefix="pants-oci-archive-") as staging:
            digest = self.write_layout(staging, (), fetch_missing=fetch_missing)
            local = ImageLayout.open(staging).image(str(digest))
            _write_archive(path, local, list(tags), repositories=repositories)
        return local.config_descriptor.digest


# --- Multi-platform indexes ---------------------------------------------------------------------


class ImageIndex:
    """Several single-platform images published as one multi-platform reference."""

    def __init__(
        self,
        images: Sequence[Image],
        target: Reference | str | None = None,
        *,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        if not images:
            raise ImageBuildError("an image index needs at least one image")
        seen: dict[str, int] = {}
        for position, image in enumerate(images):
            name = str(image.image_platform)
            if name in seen:
                raise ImageBuildError(
                    f"images {seen[name]} and {position} of the index are both for {name}"
                )
            seen[name] = position
        self.images = list(images)
        given = parse_reference(target) if isinstance(target, str) else target
        self.target = given or images[0].target
        self.annotations = dict(annotations or {})

    def get_index(self) -> OCIIndex:
        """The index document: one entry per image, with its platform."""
        entries = tuple(
            image.get_image_data().manifest.descriptor(platform=image.image_platform)
            for image in self.images
        )
        return OCIIndex(manifests=entries, annotations=self.annotations or None)

    def save(
        self, tags: Sequence[str] | None = None, *, progress: ProgressCallback | None = None
    ) -> Digest:
        """Push every image (by digest), then the index under ``tags``; its digest."""
        if self.target is None:
            raise ImageBuildError("this index has no target; give ImageIndex(images, target)")
        target = self.images[0].client(self.target)
        if tags is None:
            tags = [self.target.tag or DEFAULT_TAG]
        tags = [validate_tag(tag) for tag in tags]  # before anything is uploaded
        for image in self.images:
            data = image._push_blobs(target, progress)
            _put_manifest_tags(target, data.manifest.to_bytes(), media_types.OCI_MANIFEST, [])
        index = self.get_index()
        return _put_manifest_tags(target, index.to_bytes(), media_types.OCI_INDEX, tags)

    def write_layout(
        self, directory: str | os.PathLike[str], tags: Sequence[str] = (DEFAULT_TAG,)
    ) -> Digest:
        """Write every image and the index into an OCI layout, the index tagged ``tags``
        (a new ``directory`` appears only complete, as with :meth:`Image.write_layout`)."""
        if not os.path.lexists(directory):
            with staged_directory(directory) as staged:
                return self.write_layout(staged, tags)
        for image in self.images:
            image.write_layout(directory, ())
        layout = ImageLayout.open(directory)
        descriptor = layout.write_document(self.get_index())
        layout.set_refs({tag: [descriptor] for tag in tags})
        return descriptor.digest


def build_index(
    images: Sequence[Image],
    target: Reference | str | None = None,
    *,
    annotations: Mapping[str, str] | None = None,
) -> ImageIndex:
    """An :class:`ImageIndex` of ``images`` (one per platform)."""
    return ImageIndex(images, target, annotations=annotations)


def index_layouts(
    sources: Sequence[str | os.PathLike[str]],
    directory: str | os.PathLike[str],
    tags: Sequence[str] = (DEFAULT_TAG,),
    *,
    include_layers: bool = True,
) -> tuple[Descriptor, list[tuple[Platform, Descriptor]]]:
    """Combine single-image layouts (one per platform) into one layout whose ``tags`` name an
    OCI index of them. Blobs are hard-linked (copied across filesystems); a source layout
    may lack base layers, as long as all sources record base blobs in the same repository.
    ``include_layers=False`` writes only the documents (for a build system that adds the
    layer blobs itself). Returns the index's descriptor and each image's (platform, manifest
    descriptor)."""
    if not sources:
        raise ImageBuildError("an image index needs at least one image layout")
    output = ImageLayout.create(directory)
    entries: list[tuple[Platform, Descriptor]] = []
    blob_sources: dict[str, str] = {}
    root_annotations: dict[str, str] = {}
    for source in sources:
        layout = ImageLayout.open(source)
        entry, annotations = _root_descriptor(layout)
        manifest = parse_manifest(layout.read_blob(entry.digest), entry.media_type)
        if isinstance(manifest, (OCIIndex, DockerManifestList)):
            raise ImageArchiveError(f"{layout.root}: holds an index; give single-image layouts")
        config = ImageConfig.from_bytes(layout.read_blob(manifest.config.digest))
        platform = config.platform
        for seen, _ in entries:
            if str(seen) == str(platform):
                raise ImageBuildError(f"{layout.root}: a second image for platform {platform}")
        blobs = (entry, manifest.config, *(manifest.layers if include_layers else ()))
        for descriptor in blobs:
            if layout.has_blob(descriptor.digest) and not output.has_blob(descriptor.digest):
                _link_or_copy(layout.blob_path(descriptor.digest), output, descriptor.digest)
        entries.append((platform, manifest.descriptor(platform=platform)))
        if BLOB_SOURCE_ANNOTATION in annotations:
            blob_source = annotations[BLOB_SOURCE_ANNOTATION]
            blob_sources[parse_reference(blob_source).name] = blob_source
            root_annotations.setdefault(BLOB_SOURCE_ANNOTATION, blob_source)
        if BASE_NAME_ANNOTATION in annotations:
            root_annotations.setdefault(BASE_NAME_ANNOTATION, annotations[BASE_NAME_ANNOTATION])
    if len(blob_sources) > 1:
        # push_layout copies missing base blobs from one repository.
        raise ImageBuildError(
            "the images of an index must have their base layers in one repository, not "
            + ", ".join(sorted(blob_sources))
            + "; give complete layouts (with base layers) instead"
        )
    index = OCIIndex(manifests=tuple(descriptor for _, descriptor in entries))
    root = output.write_document(index, annotations=root_annotations or None)
    output.set_refs({tag: [root] for tag in tags})
    return root, entries


def _link_or_copy(path: Path, layout: ImageLayout, digest: Digest) -> None:
    try:
        os.link(path, layout.blob_path(digest))
    except OSError:
        layout.add_blob_file(path, digest)


# --- Publishing what is already built -----------------------------------------------------------


@dataclass(frozen=True)
class _Document:
    """A manifest or index to PUT, with the blobs it needs in place first."""

    raw: bytes
    media_type: str
    blobs: tuple[_Blob, ...] = ()


def _layout_documents(
    layout: ImageLayout,
    descriptor: Descriptor,
    remote: RegistryClient | None,
    base_layers: frozenset[Digest] = frozenset(),
    depth: int = 0,
) -> list[_Document]:
    """The root document of ``descriptor`` and everything under it, children first
    (``base_layers``: the blobs ``remote`` has as the base's, to mount rather than upload)."""
    if depth > MAX_INDEX_DEPTH:
        raise DocumentError(f"{layout.root}: indexes nested more than {MAX_INDEX_DEPTH} deep")
    raw = layout.read_blob(descriptor.digest)
    document: AnyManifest = parse_manifest(raw, descriptor.media_type)
    media_type = document.media_type or type(document).default_media_type
    if isinstance(document, (OCIIndex, DockerManifestList)):
        children = [
            item
            for child in document.manifests
            for item in _layout_documents(layout, child, remote, base_layers, depth + 1)
        ]
        return [*children, _Document(raw, media_type)]
    blobs = [
        _Blob(
            item,
            path=layout.blob_path(item.digest) if layout.has_blob(item.digest) else None,
            remote=remote,
            mountable=item.digest in base_layers,
        )
        for item in (document.config, *document.layers)
    ]
    return [_Document(raw, media_type, tuple(blobs))]


def _root_descriptor(layout: ImageLayout) -> tuple[Descriptor, dict[str, str]]:
    entries = layout.index().manifests
    by_digest = {entry.digest: entry for entry in entries}
    if len(by_digest) != 1:
        raise ImageArchiveError(
            f"{layout.root} holds {len(by_digest)} images "
            f"({', '.join(layout.refs()) or 'unnamed'}); push needs a layout with exactly one "
            "image (or one index)"
        )
    entry = next(iter(by_digest.values()))
    return entry, dict(entry.annotations or {})


def push_layout(
    directory: str | os.PathLike[str],
    references: Sequence[Reference | str],
    *,
    base_reference: Reference | str | None = None,
    keychain: Keychain | None = None,
    options: TransportOptions | None = None,
    copy_foreign_layers: bool = False,
    progress: ProgressCallback | None = None,
) -> list[tuple[Reference, Digest]]:
    """Push the one image (or index) of an OCI layout to each of ``references``, exactly as
    it is (same bytes, same digest).

    Per repository: blobs first (skipping what it has; mounted from a repository pushed to
    before on the same registry; blobs the layout lacks copied from ``base_reference`` or the
    registry image the layout records), then the manifest under the first tag, then the same
    bytes under the others. Returns (reference, digest) per reference, in order.
    """
    layout = ImageLayout.open(directory)
    root, annotations = _root_descriptor(layout)
    refs = [parse_reference(r) if isinstance(r, str) else r for r in references]
    if not refs:
        raise ImageBuildError("push needs at least one destination reference")
    clients = _Clients(keychain, options or TransportOptions())
    try:
        source_text = base_reference or annotations.get(BLOB_SOURCE_ANNOTATION)
        source = clients.get(source_text) if source_text else None
        base_layers: frozenset[Digest] = frozenset()
        if source is not None and any(clients.get(r).base_url == source.base_url for r in refs):
            base_layers = _base_layers(source, parse_reference(str(source_text)))
        documents = _layout_documents(layout, root, source, base_layers)
        layout_digest = sha256_of_bytes(documents[-1].raw)
        for ref in refs:  # before anything is sent
            if ref.digest is not None and Digest.parse(ref.digest) != layout_digest:
                raise ImageBuildError(
                    f"cannot push to {ref}: the layout's image is {layout_digest}, not "
                    f"{ref.digest}; nothing was sent"
                )
        by_repository: dict[str, list[Reference]] = {}
        for ref in refs:
            by_repository.setdefault(ref.name, []).append(ref)
        results: dict[int, Digest] = {}
        updated: list[str] = []
        try:
            _push_groups(
                clients,
                by_repository,
                documents,
                results,
                updated,
                copy_foreign_layers=copy_foreign_layers,
                progress=progress,
            )
        except OCIError as error:
            if not updated:
                raise
            wanted: list[str] = []
            for ref in refs:
                if ref.digest is None or ref.tag:
                    client = clients.get(ref)
                    wanted.append(f"{client.registry}/{client.repository}:{ref.tag or DEFAULT_TAG}")
            not_updated = tuple(name for name in wanted if name not in updated)
            raise PartialPushError(
                f"{error}; before that, {', '.join(updated)} had moved to {layout_digest}, and "
                f"{', '.join(not_updated) or 'no other tag'} still point where they did",
                updated=tuple(updated),
                not_updated=not_updated,
            ) from error
        return [(ref, results[id(ref)]) for ref in refs]
    finally:
        clients.close()


def _push_groups(
    clients: _Clients,
    by_repository: dict[str, list[Reference]],
    documents: list[_Document],
    results: dict[int, Digest],
    updated: list[str],
    *,
    copy_foreign_layers: bool,
    progress: ProgressCallback | None,
) -> None:
    """Each repository in turn: blobs, child manifests, then the root under its tags."""
    first_in_registry: dict[str, RegistryClient] = {}
    for name, group in by_repository.items():
        target = clients.get(group[0])
        earlier = first_in_registry.setdefault(target.registry, target)
        for document in documents:
            blobs = document.blobs
            if earlier is not target:  # the registry has them already: mount, not upload
                blobs = tuple(_Blob(blob.descriptor, remote=earlier) for blob in blobs)
            _transfer_blobs(
                target, blobs, copy_foreign_layers=copy_foreign_layers, progress=progress
            )
            if document is not documents[-1]:
                target.put_manifest(document.raw, document.media_type)
        tags = [ref.tag or DEFAULT_TAG for ref in group if ref.digest is None or ref.tag]
        root_doc = documents[-1]
        digest = _put_manifest_tags(target, root_doc.raw, root_doc.media_type, tags, updated)
        _log.debug("pushed %s", name)
        for ref in group:
            results[id(ref)] = digest


def copy_image(
    source: Reference | str,
    destination: Reference | str,
    *,
    keychain: Keychain | None = None,
    options: TransportOptions | None = None,
    copy_foreign_layers: bool = False,
    progress: ProgressCallback | None = None,
) -> Digest:
    """Copy an image, or an index with every platform's image, from one repository to
    another; the same bytes under the same digests. Returns the root digest."""
    src = parse_reference(source) if isinstance(source, str) else source
    dst = parse_reference(destination) if isinstance(destination, str) else destination
    clients = _Clients(keychain, options or TransportOptions())
    try:
        source_client, target = clients.get(src), clients.get(dst)

        def copy(identifier: str, depth: int, size: int | None = None) -> tuple[bytes, str]:
            if depth > MAX_INDEX_DEPTH:
                raise DocumentError(f"{src}: indexes nested more than {MAX_INDEX_DEPTH} deep")
            document = source_client.get_manifest(identifier, size=size)
            media_type = document.media_type or type(document).default_media_type
            if isinstance(document, (OCIIndex, DockerManifestList)):
                for child in document.manifests:
                    raw, child_type = copy(str(child.digest), depth + 1, child.size)
                    target.put_manifest(raw, child_type)
            else:
                blobs = [
                    _Blob(item, remote=source_client)
                    for item in (document.config, *document.layers)
                ]
                _transfer_blobs(
                    target, blobs, copy_foreign_layers=copy_foreign_layers, progress=progress
                )
            return document.to_bytes(), media_type

        raw, media_type = copy(src.identifier, 0)
        tags = [dst.tag or DEFAULT_TAG] if dst.digest is None or dst.tag else []
        return _put_manifest_tags(target, raw, media_type, tags)
    finally:
        clients.close()
