"""OCI image-layout directories: write images into them, read images (and bases) out.

A layout is what ``skopeo copy ... oci:DIR:TAG``, ``umoci`` and ``crane`` read and write::

    DIR/oci-layout            {"imageLayoutVersion":"1.0.0"}
    DIR/index.json            an OCI index; entries name their tag in the annotation
                              org.opencontainers.image.ref.name
    DIR/blobs/sha256/<hex>    every manifest, index, config and layer, by digest

Writing is crash-safe and repeatable: each blob goes to a temporary file in
``blobs/sha256/`` and is renamed into place (a blob already present is left alone), and
``index.json`` is replaced the same way, last, so a reader never sees a tag whose blobs are
not all there::

    layout = ImageLayout.create("out/image")
    layer = layout.write_layer(builder)                  # a LayerBuilder
    config = layout.write_document(image_config)         # an ImageConfig
    manifest = layout.write_document(OCIManifest(config=config, layers=(layer.descriptor(),)))
    layout.tag("latest", manifest)

Reading resolves a tag (or a digest) to one image, through an index for multi-platform
images, and hands back a :class:`LocalImage` whose blobs can be read or used as a base::

    image = ImageLayout.open("base").image("3.12", platform=Platform.parse("linux/arm64"))
    image.config.rootfs.diff_ids, image.layers, image.blob_path(image.layers[0].digest)

A tag may point at an image index (the usual form for multi-platform images) or, as some
tools write, be given to several per-platform manifests listed in ``index.json`` itself;
both are read.

Whole outputs are published atomically (see :mod:`pants_oci.core.outputs`):
:func:`staged_directory` builds a layout in a temporary sibling directory and swaps it into
place only once it is complete, so a failed write leaves no output (and any previous one
untouched), and of concurrent writers to one path the last to finish wins while each leaves a
complete layout there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

from pants_oci.core import media_types, outputs
from pants_oci.core.compression import Compression, GzipEngine
from pants_oci.core.digest import Digest, HashingWriter, sha256_of_bytes
from pants_oci.core.errors import (
    DigestMismatchError,
    DocumentError,
    ImageArchiveError,
    PlatformNotFoundError,
    RefNotFoundError,
)
from pants_oci.core.layer import LayerBlob, LayerBuilder
from pants_oci.core.models import (
    Descriptor,
    DockerManifest,
    DockerManifestList,
    ImageConfig,
    OCIIndex,
    OCIManifest,
    Platform,
    parse_manifest,
)
from pants_oci.core.platforms import MAX_INDEX_DEPTH, matching_entries
from pants_oci.core.validation import check_image_tag

__all__ = [
    "BASE_DIGEST_ANNOTATION",
    "BASE_NAME_ANNOTATION",
    "BASE_REF_NAME",
    "BLOB_SOURCE_ANNOTATION",
    "LAYOUT_VERSION",
    "REF_NAME_ANNOTATION",
    "ImageLayout",
    "LocalImage",
    "staged_directory",
]


class _HasDigest(Protocol):
    @property
    def digest(self) -> Digest: ...


_WithDigest = TypeVar("_WithDigest", bound=_HasDigest)

LAYOUT_VERSION = "1.0.0"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
# OCI's pre-defined annotations for the image an image was built on.
BASE_NAME_ANNOTATION = "org.opencontainers.image.base.name"
BASE_DIGEST_ANNOTATION = "org.opencontainers.image.base.digest"
# On an index.json entry of a layout we wrote: the registry repository (pinned by digest)
# that has the blobs the layout leaves out, so a push can copy them registry to registry.
BLOB_SOURCE_ANNOTATION = "dev.pants-oci.blob-source"
# The ref name `base pull` gives the image in its layout.
BASE_REF_NAME = "base"
_OCI_LAYOUT_FILE = "oci-layout"
_INDEX_FILE = "index.json"


def _check_replaceable(target: Path) -> None:
    if not (target / _OCI_LAYOUT_FILE).exists():
        raise ImageArchiveError(
            f"{target} exists and is not an OCI image layout; refusing to replace it"
        )


def staged_directory(target: str | os.PathLike[str]) -> AbstractContextManager[Path]:
    """A new empty directory beside ``target`` to build a layout in, swapped into place when
    the block completes and removed when it fails (see :mod:`pants_oci.core.outputs`); what
    it replaces must be an OCI layout."""
    return outputs.staged_directory(target, _check_replaceable)


@dataclass(frozen=True)
class LocalImage:
    """One image (single platform) whose blobs are files in an OCI layout."""

    layout: ImageLayout
    manifest: OCIManifest | DockerManifest
    manifest_descriptor: Descriptor
    config: ImageConfig

    @property
    def config_descriptor(self) -> Descriptor:
        return self.manifest.config

    @property
    def layers(self) -> tuple[Descriptor, ...]:
        """The layer descriptors, base layer first."""
        return self.manifest.layers

    @property
    def diff_ids(self) -> tuple[Digest, ...]:
        return self.config.rootfs.diff_ids

    def blob_path(self, digest: Digest | str) -> Path:
        return self.layout.blob_path(digest)

    def open_blob(self, digest: Digest | str) -> BinaryIO:
        return self.layout.open_blob(digest)


class ImageLayout:
    """An OCI image-layout directory. ``create`` makes (or reuses) one; ``open`` needs one."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    @classmethod
    def create(cls, root: str | os.PathLike[str]) -> ImageLayout:
        """Make ``root`` a layout (creating directories and ``oci-layout``); an existing
        layout is reused as it is."""
        layout = cls(root)
        (layout.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = layout.root / _OCI_LAYOUT_FILE
        if marker.exists():
            layout._check_version()
        else:
            outputs.atomic_write(
                marker, json.dumps({"imageLayoutVersion": LAYOUT_VERSION}).encode()
            )
        return layout

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> ImageLayout:
        """An existing layout; ImageArchiveError if ``root`` is not one."""
        layout = cls(root)
        layout._check_version()
        return layout

    def _check_version(self) -> None:
        marker = self.root / _OCI_LAYOUT_FILE
        try:
            version = json.loads(marker.read_bytes()).get("imageLayoutVersion")
        except FileNotFoundError:
            raise ImageArchiveError(
                f"{self.root} is not an OCI image layout (no oci-layout file)"
            ) from None
        except (OSError, ValueError, AttributeError) as exc:
            raise ImageArchiveError(f"{marker} is unreadable: {exc}") from None
        if version != LAYOUT_VERSION:
            raise ImageArchiveError(
                f"{self.root} is OCI layout version {version!r}; only {LAYOUT_VERSION} is supported"
            )

    # --- Blobs --------------------------------------------------------------------------------

    def blob_path(self, digest: Digest | str) -> Path:
        digest = Digest.coerce(digest)
        return self.root / "blobs" / digest.algorithm / digest.hex

    def has_blob(self, digest: Digest | str) -> bool:
        return self.blob_path(digest).is_file()

    def open_blob(self, digest: Digest | str) -> BinaryIO:
        try:
            return self.blob_path(digest).open("rb")
        except FileNotFoundError:
            raise ImageArchiveError(f"{self.root} is missing blob {digest}") from None

    def read_blob(self, digest: Digest | str, *, verify: bool = True) -> bytes:
        """A blob's bytes, checked against its digest unless ``verify=False``."""
        with self.open_blob(digest) as handle:
            data = handle.read()
        if verify and sha256_of_bytes(data) != Digest.coerce(digest):
            raise DigestMismatchError(
                f"blob {digest} in {self.root} does not match its digest",
                expected=str(digest),
                actual=str(sha256_of_bytes(data)),
            )
        return data

    def write_blob(self, data: bytes) -> Digest:
        """Store ``data`` by its sha256 digest (nothing to do if it is already there)."""
        digest = sha256_of_bytes(data)
        path = self.blob_path(digest)
        if not (path.is_file() and path.stat().st_size == len(data)):
            outputs.atomic_write(path, data)
        return digest

    @contextmanager
    def ingest(self, expected: Digest | str | None = None) -> Iterator[HashingWriter]:
        """Stream a blob in: write to the yielded writer; on leaving the block the blob is
        renamed into place under its digest (checked against ``expected`` if given)."""
        with outputs.staged_file(self.root / "blobs" / "sha256", ".ingest-") as staged:
            writer = HashingWriter(staged.file)
            yield writer
            if expected is not None:
                writer.verify(expected, subject="blob written to the layout")
            staged.commit(self.blob_path(writer.digest()))

    def add_blob_file(
        self,
        path: str | os.PathLike[str],
        digest: Digest | str | None = None,
        *,
        move: bool = False,
    ) -> tuple[Digest, int]:
        """Put a file in the layout as a blob. With ``digest`` (already known, e.g. from a
        LayerBlob) and ``move=True`` it is renamed in, without reading it (same filesystem
        only); otherwise it is copied and hashed. Returns (digest, size)."""
        source = Path(path)
        if digest is not None and move:
            target = self.blob_path(digest)
            os.chmod(source, 0o644)  # as outputs.py leaves files: readable by everyone
            os.replace(source, target)
            return Digest.coerce(digest), target.stat().st_size
        with source.open("rb") as handle, self.ingest(digest) as writer:
            while chunk := handle.read(1 << 20):
                writer.write(chunk)
        if move:
            source.unlink()
        return writer.digest(), writer.size

    def write_blob_with(self, write: Callable[[BinaryIO], _WithDigest]) -> _WithDigest:
        """Have ``write`` stream a blob into a temporary file in the layout and return
        something with its ``digest`` (a Descriptor, a LayerBlob); the file is then renamed
        into place under that digest. For writers that hash as they go, like layers."""
        with outputs.staged_file(self.root / "blobs" / "sha256", ".blob-") as staged:
            result = write(staged.file)
            staged.commit(self.blob_path(result.digest))
        return result

    def write_layer(
        self,
        builder: LayerBuilder,
        *,
        compression: Compression = "gzip",
        level: int | None = None,
        gzip_engine: GzipEngine = "auto",
    ) -> LayerBlob:
        """Build ``builder``'s layer straight into the layout's blobs."""
        return self.write_blob_with(
            lambda handle: builder.write(
                handle, compression=compression, level=level, gzip_engine=gzip_engine
            )
        )

    def write_document(
        self,
        document: OCIManifest | OCIIndex | DockerManifest | ImageConfig,
        *,
        platform: Platform | None = None,
        annotations: dict[str, str] | None = None,
    ) -> Descriptor:
        """Store a manifest, index or config (its exact bytes); return its descriptor."""
        self.write_blob(document.to_bytes())
        return document.descriptor(platform=platform, annotations=annotations)

    # --- index.json ---------------------------------------------------------------------------

    def index(self) -> OCIIndex:
        """The layout's ``index.json`` (an empty index if there is none yet)."""
        try:
            raw = (self.root / _INDEX_FILE).read_bytes()
        except FileNotFoundError:
            return OCIIndex(manifests=())
        try:
            return OCIIndex.from_bytes(raw)
        except DocumentError as exc:
            raise DocumentError(f"{self.root / _INDEX_FILE}: {exc}") from None

    def refs(self) -> list[str]:
        """The ref names (tags) in ``index.json``, sorted."""
        names = {
            (entry.annotations or {}).get(REF_NAME_ANNOTATION) for entry in self.index().manifests
        }
        return sorted(name for name in names if name)

    def _images(self) -> dict[Digest, Descriptor]:
        """The ``index.json`` entries by digest: one per image (or index), however many ref
        names it has. Artifacts attached to an image (entries with an ``artifactType``: an
        SBOM, a provenance statement; see :mod:`pants_oci.core.referrers`) are not images."""
        return {
            entry.digest: entry
            for entry in self.index().manifests
            if entry.artifact_type is None
            or (entry.annotations or {}).get(REF_NAME_ANNOTATION) is not None
        }

    def only_image(self, needs: str) -> Descriptor:
        """The ``index.json`` entry of the layout's one image (or index). ImageArchiveError
        when it holds several, or none (the message ends with ``needs``, saying what needs
        one)."""
        images = self._images()
        if len(images) != 1:
            raise ImageArchiveError(
                f"{self.root} holds {len(images)} images ({', '.join(self.refs()) or 'unnamed'}); "
                f"{needs}"
            )
        return next(iter(images.values()))

    def default_ref(
        self, ref: str | None = None, *, prefer: str | None = None, how_to_choose: str
    ) -> str:
        """``ref``, or when none is given the ref that names the layout's image: its only ref
        name; else ``prefer``, when it is one of its ref names; else the digest of its only
        image. RefNotFoundError when the layout holds several images and none of these
        chooses one (the message ends with ``how_to_choose``, saying how to name one)."""
        if ref is not None:
            return ref
        refs = self.refs()
        if len(refs) == 1:
            return refs[0]
        if prefer is not None and prefer in refs:
            return prefer
        images = self._images()
        if len(images) == 1:
            return str(next(iter(images)))
        raise RefNotFoundError(
            f"{self.root} holds {len(images)} images ({', '.join(refs) or 'none named'}); "
            f"{how_to_choose}",
            wanted="",
            available=refs,
        )

    def ref_annotations(self, ref: str) -> dict[str, str]:
        """The annotations of the ``index.json`` entry named ``ref`` (a ref name or digest)."""
        for entry in self.index().manifests:
            annotations = entry.annotations or {}
            if annotations.get(REF_NAME_ANNOTATION) == ref or str(entry.digest) == ref:
                return dict(annotations)
        return {}

    def tag(self, ref_name: str, descriptor: Descriptor) -> None:
        """Point ``ref_name`` at a manifest or index (replacing what it named before)."""
        self.set_refs({ref_name: [descriptor]})

    def set_refs(self, refs: Mapping[str, list[Descriptor]]) -> None:
        """Point each ref name at its descriptors (usually one; several per-platform
        manifests are allowed) in one rewrite of ``index.json``. Other refs, and entries
        without a ref name, are kept in their order; new entries go at the end."""
        for ref_name, descriptors in refs.items():
            check_image_tag(ref_name)
            for descriptor in descriptors:
                if not self.has_blob(descriptor.digest):
                    raise ImageArchiveError(
                        f"cannot tag {ref_name!r}: blob {descriptor.digest} is not in {self.root}"
                    )
        index = self.index()
        kept = [
            entry
            for entry in index.manifests
            if (entry.annotations or {}).get(REF_NAME_ANNOTATION) not in refs
        ]
        added = [
            _with_annotation(descriptor, ref_name)
            for ref_name, descriptors in refs.items()
            for descriptor in descriptors
        ]
        outputs.atomic_write(
            self.root / _INDEX_FILE, index.replace(manifests=(*kept, *added)).to_bytes()
        )

    # --- Reading images -----------------------------------------------------------------------

    def add_untagged(self, descriptors: Sequence[Descriptor]) -> None:
        """List manifests in ``index.json`` without a ref name (as attached artifacts are),
        each once, after the entries already there."""
        for descriptor in descriptors:
            if not self.has_blob(descriptor.digest):
                raise ImageArchiveError(
                    f"cannot list {descriptor.digest}: it is not a blob in {self.root}"
                )
        index = self.index()
        listed = {entry.digest for entry in index.manifests}
        added = tuple(entry for entry in descriptors if entry.digest not in listed)
        if added:
            outputs.atomic_write(
                self.root / _INDEX_FILE,
                index.replace(manifests=(*index.manifests, *added)).to_bytes(),
            )

    def resolve(self, ref: str, platform: Platform | None = None) -> Descriptor:
        """The descriptor of the single-platform manifest that ``ref`` (a ref name or a
        ``sha256:`` digest) means for ``platform``.

        Without ``platform``, a ref with one image gives that image, and a multi-platform
        ref gives the image for this machine's Linux platform.
        """
        candidates = self._candidates(ref)
        return self._choose(ref, candidates, platform, depth=0)

    def _candidates(self, ref: str) -> list[Descriptor]:
        entries = self.index().manifests
        if ref.startswith("sha256:"):
            digest = Digest.parse(ref)
            listed = [entry for entry in entries if entry.digest == digest]
            if listed:
                return listed[:1]
            if self.has_blob(digest):  # a manifest not named in index.json, e.g. in an index
                return [self._describe_blob(digest)]
        else:
            named = [
                entry
                for entry in entries
                if (entry.annotations or {}).get(REF_NAME_ANNOTATION) == ref
            ]
            if named:
                return named
        raise RefNotFoundError(
            f"{self.root} has no image {ref!r}; it has {', '.join(self.refs()) or 'none'}",
            wanted=ref,
            available=self.refs(),
        )

    def _describe_blob(self, digest: Digest) -> Descriptor:
        data = self.read_blob(digest)
        manifest = parse_manifest(data)
        media_type = manifest.media_type or type(manifest).default_media_type
        return Descriptor(media_type=media_type, digest=digest, size=len(data))

    def _choose(
        self, ref: str, candidates: list[Descriptor], platform: Platform | None, depth: int
    ) -> Descriptor:
        if depth > MAX_INDEX_DEPTH:
            raise DocumentError(f"{ref!r}: indexes nested more than {MAX_INDEX_DEPTH} deep")
        if len(candidates) == 1:
            only = candidates[0]
            if not media_types.is_index(only.media_type):
                if platform is not None and only.platform is not None:
                    self._require_platform(ref, candidates, platform)
                return only
            nested = parse_manifest(self.read_blob(only.digest), only.media_type)
            if not isinstance(nested, (OCIIndex, DockerManifestList)):
                raise DocumentError(f"{ref!r}: {only.digest} is not the index it is said to be")
            return self._choose(ref, list(nested.manifests), platform, depth + 1)
        wanted = platform or Platform.host_linux()
        return self._require_platform(ref, candidates, wanted)

    def _require_platform(
        self, ref: str, candidates: list[Descriptor], wanted: Platform
    ) -> Descriptor:
        matching = matching_entries(candidates, wanted)
        if not matching:
            available = [str(entry.platform) for entry in candidates if entry.platform is not None]
            raise PlatformNotFoundError(
                f"{ref!r} in {self.root} has no image for {wanted}; it has "
                f"{', '.join(available) or 'no platform-tagged images'}",
                wanted=str(wanted),
                available=available,
            )
        return matching[0]

    def manifest(self, ref: str, platform: Platform | None = None) -> OCIManifest | DockerManifest:
        """The single-platform manifest ``ref`` means (see :meth:`resolve`)."""
        descriptor = self.resolve(ref, platform)
        manifest = parse_manifest(self.read_blob(descriptor.digest), descriptor.media_type)
        if not isinstance(manifest, (OCIManifest, DockerManifest)):
            raise DocumentError(f"{ref!r} resolved to {descriptor.media_type}, not an image")
        return manifest

    def image(self, ref: str, platform: Platform | None = None) -> LocalImage:
        """The image ``ref`` means, with its config read and checked against its digest."""
        descriptor = self.resolve(ref, platform)
        manifest = parse_manifest(self.read_blob(descriptor.digest), descriptor.media_type)
        if not isinstance(manifest, (OCIManifest, DockerManifest)):
            raise DocumentError(f"{ref!r} resolved to {descriptor.media_type}, not an image")
        config = ImageConfig.from_bytes(self.read_blob(manifest.config.digest))
        if len(config.rootfs.diff_ids) != len(manifest.layers):
            raise DocumentError(
                f"{ref!r}: the config lists {len(config.rootfs.diff_ids)} diff_ids but the "
                f"manifest has {len(manifest.layers)} layers"
            )
        return LocalImage(
            layout=self, manifest=manifest, manifest_descriptor=descriptor, config=config
        )


def _with_annotation(descriptor: Descriptor, ref_name: str) -> Descriptor:
    annotations: dict[str, Any] = dict(descriptor.annotations or {})
    annotations[REF_NAME_ANNOTATION] = ref_name
    return descriptor.model_copy(update={"annotations": annotations})
