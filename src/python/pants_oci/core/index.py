"""Multi-platform images: an OCI index of single-platform images, published to a registry or
an OCI layout (:class:`ImageIndex`), or made of per-platform layouts already written
(:func:`index_layouts`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from pants_oci.core import media_types
from pants_oci.core._transport_options import ProgressCallback
from pants_oci.core.digest import Digest
from pants_oci.core.errors import ImageArchiveError, ImageBuildError
from pants_oci.core.image import Image
from pants_oci.core.layout import (
    BASE_NAME_ANNOTATION,
    BLOB_SOURCE_ANNOTATION,
    ImageLayout,
    staged_directory,
)
from pants_oci.core.models import (
    Descriptor,
    DockerManifestList,
    ImageConfig,
    OCIIndex,
    Platform,
    parse_manifest,
)
from pants_oci.core.reference import DEFAULT_TAG, Reference, parse_reference, validate_tag
from pants_oci.core.referrers import layout_artifacts
from pants_oci.core.remote import put_manifest_tags

__all__ = ["ImageIndex", "build_index", "index_layouts"]


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
            data = image.push_blobs(target, progress)
            put_manifest_tags(target, data.manifest.to_bytes(), media_types.OCI_MANIFEST, [])
        index = self.get_index()
        return put_manifest_tags(target, index.to_bytes(), media_types.OCI_INDEX, tags)

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
    attached: list[Descriptor] = []
    blob_sources: dict[str, str] = {}
    root_annotations: dict[str, str] = {}
    for source in sources:
        layout = ImageLayout.open(source)
        entry = layout.only_image("an index is made of layouts of one image each")
        annotations = dict(entry.annotations or {})
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
        attached.extend(_copy_referrers(layout, entry.digest, output))
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
    output.add_untagged(attached)
    return root, entries


def _copy_referrers(layout: ImageLayout, digest: Digest, output: ImageLayout) -> list[Descriptor]:
    """The artifacts attached to the image ``digest`` in ``layout`` (its SBOMs, provenance),
    copied to ``output`` (they are small); their descriptors."""
    found = layout_artifacts(layout, digest)
    for referrer, artifact in found:
        for descriptor in (referrer, artifact.config, *artifact.layers):
            if not output.has_blob(descriptor.digest):
                output.write_blob(layout.read_blob(descriptor.digest))
    return [referrer for referrer, _ in found]


def _link_or_copy(path: Path, layout: ImageLayout, digest: Digest) -> None:
    try:
        os.link(path, layout.blob_path(digest))
    except OSError:
        layout.add_blob_file(path, digest)
