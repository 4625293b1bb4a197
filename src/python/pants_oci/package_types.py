"""What `pants package` makes of an `oci_image`, typed: the `BuiltOciImage` artifact.

As Pants' docker backend's `BuiltDockerImage`: the package goal writes it among its package's
artifacts, and `publish` and `run` read the image from it (its layout directory, digest, tags
and names), never from the `image-info.json` file the package writes for users.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact
from pants.engine.addresses import Address

from pants_oci.util_rules.registries import RegistryNames


@dataclass(frozen=True)
class BuiltOciImage(BuiltPackageArtifact):
    """An image written by `package`: an OCI layout at `relpath` (relative to the distdir,
    and to the package's digest), with its `image-info.json`; and a docker-archive at
    `docker_archive` when the target's `formats` ask for one.

    Its fields have defaults only because `BuiltPackageArtifact`'s do (as in
    `BuiltDockerImage`): make one with `create`, which sets them all."""

    address: Optional[Address] = None
    manifest_digest: str = ""  # the index's, for several platforms
    media_type: str = ""  # of the manifest (or index)
    platforms: Tuple[str, ...] = ()
    tags: Tuple[str, ...] = ()  # of the layout
    registries: Tuple[RegistryNames, ...] = ()  # its names in each registry: what publish pushes
    docker_archive: Optional[str] = None
    sparse: bool = False  # a `sparse-oci-layout`: without its registry base's layer blobs

    @classmethod
    def create(
        cls,
        *,
        address: Address,
        layout_dir: str,
        manifest_digest: str,
        media_type: str,
        platforms: Tuple[str, ...],
        tags: Tuple[str, ...],
        registries: Tuple[RegistryNames, ...],
        docker_archive: Optional[str],
        sparse: bool,
    ) -> BuiltOciImage:
        return cls(
            relpath=layout_dir,
            extra_log_lines=(
                f"    manifest {manifest_digest}",
                f"    tags: {', '.join(tags)}" if tags else "    (untagged)",
            ),
            address=address,
            manifest_digest=manifest_digest,
            media_type=media_type,
            platforms=platforms,
            tags=tags,
            registries=registries,
            docker_archive=docker_archive,
            sparse=sparse,
        )

    @property
    def layout_dir(self) -> str:
        assert self.relpath is not None
        return self.relpath

    @classmethod
    def of(cls, package: BuiltPackage) -> BuiltOciImage:
        """The image among the artifacts of the `package` of an `oci_image`."""
        [image] = (artifact for artifact in package.artifacts if isinstance(artifact, cls))
        return image
