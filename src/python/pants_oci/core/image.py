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

On an image with a target, :meth:`Image.add_files` uploads the new layer there while it
writes it (in chunks; a blob, which no tag names until save() puts the manifest): save()
finds it there (HEAD), or, when that upload failed (a registry refusing chunks, say),
uploads the layer from its file. ``upload_while_building=False`` leaves it all to save().

Reproducibility: the image's ``created`` time, its history entries and every file in the
layers :meth:`Image.add_files` makes are stamped with ``SOURCE_DATE_EPOCH`` (or 0, which is
1970-01-01T00:00:00Z), so the same inputs give the same digests on any machine.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from pants_oci.core import media_types
from pants_oci.core._add_files import layer_builder
from pants_oci.core._bases import Base, BaseLoader
from pants_oci.core._clients import Clients
from pants_oci.core._compat import zip_strict
from pants_oci.core._transfer import Blob, LayerUploads, place_blob, transfer_blobs
from pants_oci.core._transport_options import ProgressCallback, TransportOptions
from pants_oci.core.auth import Keychain
from pants_oci.core.base_spec import SCRATCH
from pants_oci.core.compression import Compression
from pants_oci.core.digest import Digest, sha256_of_bytes
from pants_oci.core.errors import DocumentError, ImageBuildError, OCIError
from pants_oci.core.layer import (
    FileFilter,
    LayerBlob,
    LayerBuilder,
    Source,
    resolve_source_date_epoch,
)
from pants_oci.core.layout import ImageLayout, staged_directory
from pants_oci.core.models import (
    Descriptor,
    History,
    ImageConfig,
    OCIManifest,
    Platform,
    RootFS,
)
from pants_oci.core.reference import DEFAULT_TAG, Reference, parse_reference, validate_tag
from pants_oci.core.remote import put_manifest_tags
from pants_oci.core.run_config import RunConfig, RunConfigProperties
from pants_oci.core.tarball import write_docker_archive as _write_archive
from pants_oci.core.validation import (
    check_arguments,
    check_layer_media_type,
    check_list,
    check_type,
)

# The registry client, the auth flow and httpx are imported where a registry is reached, so
# that building from scratch or a local base (`pants-oci image assemble`) does not import them.
if TYPE_CHECKING:
    from pants_oci.core.registry import RegistryClient

_log = logging.getLogger(__name__)

# RunConfig (what Image.get_image_config returns) and resolve_source_date_epoch are defined
# in their own modules and re-exported here, with the builder they serve.
__all__ = [
    "Image",
    "ImageData",
    "RunConfig",
    "created_timestamp",
    "resolve_source_date_epoch",
]

# Docker media types and the OCI types an OCI manifest names the same blobs by.
_OCI_LAYER_TYPES = {
    media_types.DOCKER_LAYER: media_types.OCI_LAYER_GZIP,
    media_types.DOCKER_LAYER_UNCOMPRESSED: media_types.OCI_LAYER,
    media_types.DOCKER_FOREIGN_LAYER: media_types.OCI_LAYER_NONDISTRIBUTABLE_GZIP,
}


# resolve_source_date_epoch is defined in pants_oci.core.layer (`layer build` need not import this)
def created_timestamp(epoch: int) -> str:
    """RFC 3339 in UTC with a ``Z``, as image configs write it: ``1970-01-01T00:00:00Z``."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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


# --- Image --------------------------------------------------------------------------------------


def oci_layer_descriptor(descriptor: Descriptor) -> Descriptor:
    """The descriptor an OCI manifest gives a (possibly Docker-typed) layer blob."""
    oci_type = _OCI_LAYER_TYPES.get(media_types.base_media_type(descriptor.media_type))
    return descriptor.model_copy(update={"media_type": oci_type}) if oci_type else descriptor


@dataclass(frozen=True)
class _Layer:
    descriptor: Descriptor
    diff_id: Digest
    path: Path | None = None  # the blob's bytes, when they are a local file
    from_base: bool = False


class Image(RunConfigProperties):
    """An image being built on a base; publish it with :meth:`save` or the writers.

    ``target`` is where :meth:`save` pushes (a reference; its tag is the default tag).
    ``keychain`` supplies credentials (default: :func:`~pants_oci.core.auth.default_keychain`,
    i.e. docker's config and helpers, and Google's application default credentials).
    ``platform`` picks the image of a multi-platform base (default: this machine's Linux) and,
    for ``"scratch"``, is the image's platform. ``base_reference`` names the registry image a
    layout base came from, where base layers missing from the layout are fetched (a layout
    written by ``pants-oci base pull`` records it itself). ``source_date_epoch`` overrides
    ``$SOURCE_DATE_EPOCH``. ``upload_while_building``: see the module's docstring.

    The run configuration's lists (``cmd``, ``entrypoint``, ``env``, ``exposed_ports``,
    ``volumes``) and ``labels`` are live views: ``image.env.append("A=1")``,
    ``image.labels["a"] = "b"`` change the image, and each new item is checked as assigning it
    would be (:class:`~pants_oci.core.run_config.ConfigList`). Arguments of the wrong type
    raise TypeError naming the argument and the type it takes.

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
        upload_while_building: bool = True,
    ) -> None:
        optional_ref, none = (Reference, str, type(None)), type(None)
        check_arguments(
            "Image",
            ("base", base, (str, os.PathLike), "a reference str, 'scratch' or a path"),
            ("target", target, optional_ref, "a Reference, a str or None"),
            ("options", options, (TransportOptions, none), "TransportOptions or None"),
            ("platform", platform, (Platform, str, none), "a Platform, a str or None"),
            ("base_reference", base_reference, optional_ref, "a Reference, a str or None"),
            ("source_date_epoch", source_date_epoch, (int, none), "an int or None"),
            ("copy_foreign_layers", copy_foreign_layers, bool, "a bool"),
            ("upload_while_building", upload_while_building, bool, "a bool"),
        )
        if not callable(getattr(keychain, "resolve", None)) and keychain is not None:
            check_type(keychain, type(None), "Image() argument 'keychain'", "a Keychain or None")
        self.options = options or TransportOptions()
        self.target = (
            parse_reference(target) if isinstance(target, str) else target
        )  # None: only the writers can publish
        self.platform = Platform.parse(platform) if isinstance(platform, str) else platform
        self.copy_foreign_layers = copy_foreign_layers
        self.upload_while_building = upload_while_building
        self.epoch = resolve_source_date_epoch(source_date_epoch)
        self.created = created_timestamp(self.epoch)
        self.annotations: dict[str, str] = {}
        self._clients = Clients(keychain, self.options)
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._synced: set[Digest] = set()
        self._uploads = LayerUploads(self.options.max_concurrency)
        self._cmd_set = False
        explicit_base = (
            parse_reference(base_reference) if isinstance(base_reference, str) else base_reference
        )
        loader = BaseLoader(self._clients, self.platform, self._work_dir)
        self._base: Base = loader.load_base(base, explicit_base)
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
            _Layer(oci_layer_descriptor(descriptor), diff_id, from_base=True)
            for descriptor, diff_id in zip_strict(self._base.layers, diff_ids)
        ]

    def _work_dir(self) -> Path:
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="pants-oci-image-")
        return Path(self._workdir.name)

    # --- Lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close registry connections and delete the files of layers made by add_files."""
        self._uploads.cancel()
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
        files: Mapping[str, Source] | Source,
        target_dir: str | None = None,
        *,
        ignore: Sequence[str] = (),
        ignore_files: Sequence[str | os.PathLike[str]] = (),
        ignore_file_names: Sequence[str] = (),
        filter: FileFilter | None = None,
        compression: Compression = "gzip",
        level: int | None = None,
        follow_symlinks: bool = False,
    ) -> Descriptor:
        """Build one layer from ``{absolute path in image: source}`` and add it on top;
        ``add_files("local/dir", "/target")`` and ``add_files("local/dir")`` (at ``/``) are
        short for one source.

        A directory source puts its contents at the target directory; a file or
        :class:`~pants_oci.core.layer.CustomFile` goes at the target path. ``ignore`` and
        ``ignore_files`` hold gitignore patterns applied within directory sources, files named
        ``ignore_file_names`` (``[".ignore"]``) hold more in the directories they are in, and
        ``filter(relative_path)`` returning False leaves an entry of one out
        (:data:`~pants_oci.core.layer.FileFilter`). Symlinks stay links unless
        ``follow_symlinks``. Every entry is stamped with SOURCE_DATE_EPOCH, owned by 0:0,
        with normalised modes (see :mod:`pants_oci.core.layer`). Returns the new layer's
        descriptor.
        """
        check_arguments(
            "add_files",
            ("compression", compression, str, "'gzip', 'zstd' or 'none'"),
            ("level", level, (int, type(None)), "an int or None"),
        )
        builder, targets = layer_builder(
            files,
            target_dir,
            ignore=ignore,
            ignore_files=ignore_files,
            ignore_file_names=ignore_file_names,
            filter=filter,
            follow_symlinks=follow_symlinks,
            mtime=self.epoch,
        )
        directory = self._work_dir() / "layers"
        directory.mkdir(exist_ok=True)
        handle, name = tempfile.mkstemp(dir=directory, suffix=".layer")
        os.close(handle)
        blob = self._write_layer(builder, Path(name), compression, level)
        return self.add_layer(
            blob.digest,
            blob.diff_id,
            blob.size,
            media_type=blob.media_type,
            blob=Path(name),
            created_by=f"pants-oci add_files {', '.join(targets)}",
        )

    def _write_layer(
        self, builder: LayerBuilder, path: Path, compression: Compression, level: int | None
    ) -> LayerBlob:
        """Write the layer's file; uploading it to the target meanwhile when there is one."""
        target = self._upload_target()
        if target is None:
            return builder.write_file(path, compression=compression, level=level)
        return self._uploads.write(
            target, path, lambda sink: builder.write(sink, compression=compression, level=level)
        )

    def _upload_target(self) -> RegistryClient | None:
        """The target's client, when add_files is to upload to it while building."""
        if self.target is None or not self.upload_while_building:
            return None
        try:
            return self.client()
        except (OCIError, OSError) as exc:  # save() reports it, if it is what the image is for
            _log.debug("not uploading while building: no client for %s: %s", self.target, exc)
            return None

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
        digests, optional_str = (Digest, str), (str, type(None))
        check_arguments(
            "add_layer",
            ("digest", digest, digests, "a Digest or a 'sha256:...' str"),
            ("diff_id", diff_id, digests, "a Digest or a 'sha256:...' str"),
            ("size", size, int, "an int"),
            ("media_type", media_type, str, "a layer media type str"),
            ("blob", blob, (str, os.PathLike, type(None)), "a path or None"),
            ("created_by", created_by, optional_str, "a str or None"),
            ("annotations", annotations, (Mapping, type(None)), "a mapping of str to str or None"),
        )
        for url in [] if urls is None else check_list(urls, "add_layer() argument 'urls'"):
            check_type(url, str, "add_layer() argument 'urls' item", "a URL str")
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

    def _blob(self, layer: _Layer) -> Blob:
        if layer.from_base:
            return self._base.blob(layer.descriptor)
        return Blob(layer.descriptor, path=layer.path)

    @property
    def base_reference(self) -> Reference | None:
        """The registry image the base is, when known."""
        return self._base.reference

    @property
    def base_manifest_digest(self) -> Digest | None:
        return self._base.manifest_digest

    def keep_base_metadata(self) -> None:
        """Make this image an edit of its base rather than a new image on it: keep the base's
        manifest annotations (under any set here) and its config's ``created`` time, as crane's
        ``mutate`` and ``flatten`` do. A new image on a base gets neither: the annotations
        describe the base, and ``created`` is SOURCE_DATE_EPOCH's, so that it is reproducible."""
        self.annotations = {**self._base.manifest_annotations, **self.annotations}
        if self._base.config.created is not None:
            self.created = self._base.config.created

    # --- Publishing ----------------------------------------------------------------------------

    def sync(
        self,
        *,
        copy_foreign_layers: bool | None = None,
        ignore_exists: bool = False,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Copy the base's layers into the target repository now (save() then skips them):
        start the slow part early while other work goes on. The options are save()'s."""
        target = self.client()
        base_blobs = [
            self._base.blob(layer.descriptor) for layer in self._layers if layer.from_base
        ]
        transfer_blobs(
            target,
            base_blobs,
            copy_foreign_layers=self._copy_foreign(copy_foreign_layers),
            progress=progress,
            check_exists=not ignore_exists,
        )
        self._synced.update(blob.digest for blob in base_blobs)

    def _copy_foreign(self, override: bool | None) -> bool:
        check_type(override, (bool, type(None)), "copy_foreign_layers", "a bool or None")
        return self.copy_foreign_layers if override is None else override

    def push_blobs(
        self,
        target: RegistryClient,
        progress: ProgressCallback | None,
        *,
        copy_foreign_layers: bool | None = None,
        ignore_exists: bool = False,
    ) -> ImageData:
        """Put the image's layers (those :meth:`sync` has not) and its config in ``target``,
        and return the documents: all but the manifest, which :meth:`save` (or an index's)
        puts last."""
        self._uploads.wait()  # a layer they put in the target is found there (HEAD)
        data = self.get_image_data()
        blobs = [self._blob(layer) for layer in self._layers]
        blobs = [blob for blob in blobs if ignore_exists or blob.digest not in self._synced]
        copy_foreign = self._copy_foreign(copy_foreign_layers)
        check = not ignore_exists
        transfer_blobs(
            target, blobs, copy_foreign_layers=copy_foreign, progress=progress, check_exists=check
        )
        config_bytes = data.config.to_bytes()
        target.upload_blob(config_bytes, digest=sha256_of_bytes(config_bytes), check_exists=check)
        return data

    def save(
        self,
        tags: Sequence[str] | None = None,
        *,
        cmd: Iterable[str] | None = None,
        env: Iterable[str] | None = None,
        workdir: str | None = None,
        copy_foreign_layers: bool | None = None,
        ignore_exists: bool = False,
        progress: ProgressCallback | None = None,
    ) -> Digest:
        """Push the image to the target repository; return the manifest digest.

        ``tags`` default to the target's tag (``latest`` when it has none; by digest only
        when the target is pinned by digest). Blobs first, then the config, then the
        manifest: nothing is tagged unless everything it needs is in place.

        ``cmd``, ``env`` and ``workdir``, when given, are set first as assigning the
        properties does (``env`` items replace same-named variables, others are appended).
        ``copy_foreign_layers`` overrides the image's for this push. ``ignore_exists=True``
        sends every blob even when the target has it (no HEAD first; for tests and debugging).
        """
        target = self.client()
        if tags is None:
            assert self.target is not None
            default = self.target.tag or (None if self.target.digest else DEFAULT_TAG)
            tags = [default] if default else []
        tags = [validate_tag(tag) for tag in tags]  # before anything is uploaded
        check_arguments("save", ("ignore_exists", ignore_exists, bool, "a bool"))
        for name, value in (("cmd", cmd), ("env", env), ("workdir", workdir)):
            if value is not None:
                setattr(self, name, value)
        data = self.push_blobs(
            target, progress, copy_foreign_layers=copy_foreign_layers, ignore_exists=ignore_exists
        )
        return put_manifest_tags(target, data.manifest.to_bytes(), media_types.OCI_MANIFEST, tags)

    def write_layout(
        self,
        directory: str | os.PathLike[str],
        tags: Sequence[str] = (DEFAULT_TAG,),
        *,
        include_base_layers: bool = True,
        fetch_missing: bool = True,
        omit_layers: bool = False,
    ) -> Digest:
        """Write the image into an OCI image layout (created if need be), tagged ``tags``;
        return the manifest digest.

        Base layers come from the base layout (hard-linked) or are fetched from the base's
        registry. With ``include_base_layers=False`` base layers the base layout does not
        have are left out, and ``index.json`` records the registry image that has them
        (:data:`~pants_oci.core.layout.BLOB_SOURCE_ANNOTATION`), for
        :func:`~pants_oci.core.remote.push_layout` to copy them from.
        ``omit_layers=True`` writes the documents only, no layer blob (nor reads one): for a
        build system that adds the blobs from where it keeps them.

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
                omit_layers=omit_layers,
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
        omit_layers: bool,
    ) -> Digest:
        data = self.get_image_data()
        for layer in [] if omit_layers else self._layers:
            place_blob(
                layout,
                self._blob(layer),
                fetch=fetch_missing and include_base_layers,
                required=include_base_layers or not layer.from_base,
            )
        layout.write_document(data.config)
        descriptor = layout.write_document(
            data.manifest,
            platform=self._platform,
            annotations=self._base.layout_annotations() or None,
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
