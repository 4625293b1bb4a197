"""What an image starts from, read: scratch, an image in a registry (one platform of it), an image
of an OCI layout, or of a docker-archive tar (see :class:`~pants_oci.core.image.Image` for how
a base is named).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pants_oci.core._clients import Clients
from pants_oci.core._transfer import Blob
from pants_oci.core.base_spec import SCRATCH, BaseKind, parse_base
from pants_oci.core.digest import Digest
from pants_oci.core.errors import ImageArchiveError
from pants_oci.core.layout import (
    BASE_DIGEST_ANNOTATION,
    BASE_NAME_ANNOTATION,
    BASE_REF_NAME,
    BLOB_SOURCE_ANNOTATION,
    ImageLayout,
    LocalImage,
)
from pants_oci.core.models import (
    Descriptor,
    ImageConfig,
    Platform,
    RootFS,
)
from pants_oci.core.platforms import require_platform
from pants_oci.core.reference import Reference, parse_reference
from pants_oci.core.tarball import read_docker_archive

# The registry client and httpx are imported where a registry base is read.
if TYPE_CHECKING:
    from pants_oci.core.registry import RegistryClient

__all__ = ["Base", "BaseLoader"]


@dataclass
class Base:
    """What an image starts from."""

    description: str
    config: ImageConfig
    layers: tuple[Descriptor, ...] = ()
    layout: ImageLayout | None = None  # where local base blobs are
    reference: Reference | None = None  # the registry image the base is (when known)
    manifest_digest: Digest | None = None
    manifest_annotations: Mapping[str, str] = field(default_factory=dict)
    # Where base blobs missing locally are: a client, or how to make one when first needed (a
    # build that writes no base layer never imports the registry stack).
    remote: RegistryClient | Callable[[], RegistryClient] | None = None

    def blob(self, descriptor: Descriptor) -> Blob:
        path = None
        if self.layout is not None and self.layout.has_blob(descriptor.digest):
            path = self.layout.blob_path(descriptor.digest)
        if callable(self.remote):
            self.remote = self.remote()
        return Blob(descriptor, path=path, remote=self.remote, mountable=True)

    def layout_annotations(self) -> dict[str, str]:
        """What an image layout records of the base, in the index entry of an image on it."""
        annotations: dict[str, str] = {}
        if self.reference is not None:
            annotations[BASE_NAME_ANNOTATION] = str(self.reference)
            if self.manifest_digest is not None:
                annotations[BLOB_SOURCE_ANNOTATION] = (
                    f"{self.reference.name}@{self.manifest_digest}"
                )
        if self.manifest_digest is not None:
            annotations[BASE_DIGEST_ANNOTATION] = str(self.manifest_digest)
        return annotations


def _annotations_of(manifest: object) -> dict[str, str]:
    """An OCI manifest's annotations (a Docker manifest has none)."""
    return dict(getattr(manifest, "annotations", None) or {})


def _split_prefixed_path(text: str, must_be_dir: bool) -> tuple[Path, str | None]:
    """``PATH`` or ``PATH:REF`` (paths may themselves contain ``:``)."""
    candidate = Path(text)
    if candidate.is_dir() if must_be_dir else candidate.is_file():
        return candidate, None
    path, colon, ref = text.rpartition(":")
    if colon and path:
        return Path(path), ref or None
    return candidate, None


class BaseLoader:
    """Reads bases for one image: of ``platform`` (None: this machine's Linux), through its
    registry ``clients``, a docker-archive unpacked into a directory under ``work_dir()``."""

    def __init__(
        self, clients: Clients, platform: Platform | None, work_dir: Callable[[], Path]
    ) -> None:
        self._clients = clients
        self.platform = platform
        self._work_dir = work_dir

    def load_base(self, base: str | os.PathLike[str], explicit: Reference | None) -> Base:
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
            return Base(description=SCRATCH, config=config)
        if spec.kind is BaseKind.OCI_LAYOUT:
            path, ref = _split_prefixed_path(spec.location, must_be_dir=True)
            return self._layout_base(path, ref, explicit)
        if spec.kind is BaseKind.DOCKER_ARCHIVE:
            path, ref = _split_prefixed_path(spec.location, must_be_dir=False)
            return self._archive_base(path, ref)
        assert spec.reference is not None
        return self._registry_base(spec.reference)

    def _registry_base(self, reference: Reference) -> Base:
        from pants_oci.core.registry import walk_to_image_manifest

        client = self._clients.get(reference)
        document = walk_to_image_manifest(
            client.get_manifest(reference.identifier),
            self.platform,
            lambda entry: client.get_manifest(entry.digest, size=entry.size),
            str(reference),
        )
        config = ImageConfig.from_bytes(
            client.read_blob(document.config.digest, size=document.config.size)
        )
        require_platform(config, self.platform, f"base {reference}")
        return Base(
            description=str(reference),
            config=config,
            layers=document.layers,
            reference=reference,
            manifest_digest=document.digest,
            manifest_annotations=_annotations_of(document),
            remote=client,
        )

    def _layout_base(self, path: Path, ref: str | None, explicit: Reference | None) -> Base:
        layout = ImageLayout.open(path)
        name = layout.default_ref(
            ref, prefer=BASE_REF_NAME, how_to_choose=f"name one as oci-layout:{layout.root}:REF"
        )
        local = layout.image(name, self.platform)
        require_platform(local.config, self.platform, f"base {path}:{name}")
        annotations = layout.ref_annotations(name)
        recorded = annotations.get(BLOB_SOURCE_ANNOTATION)
        reference = explicit or (parse_reference(recorded) if recorded else None)
        missing = [d for d in local.layers if not layout.has_blob(d.digest)]
        return Base(
            description=f"{path}:{name}",
            config=local.config,
            layers=local.layers,
            layout=layout,
            reference=reference,
            manifest_digest=local.manifest_descriptor.digest,
            manifest_annotations=_annotations_of(local.manifest),
            # A client only when blobs are missing (a complete layout needs no network), and
            # only once one is read.
            remote=functools.partial(self._clients.get, reference)
            if reference is not None and missing
            else None,
        )

    def _archive_base(self, path: Path, repo_tag: str | None) -> Base:
        layout = ImageLayout.create(self._work_dir() / "docker-archive-base")
        local: LocalImage = read_docker_archive(path, layout, repo_tag=repo_tag)
        require_platform(local.config, self.platform, f"base {path}")
        return Base(
            description=f"docker-archive:{path}",
            config=local.config,
            layers=local.layers,
            layout=layout,
            manifest_digest=local.manifest_descriptor.digest,
        )
