"""`pants package` for `oci_image`: writes the image as an OCI layout under dist/.

    dist/<output_path>/                  an OCI image layout (`oci-layout`, `index.json`,
                                         `blobs/`), tagged with the target's `image_tags`
    dist/<output_path>/image-info.json   manifest and config digests, layers, tags, and the
                                         image's names in its registries
    dist/<output_path>.tar               a docker-archive, when `formats` asks for one

`output_path` is Pants' own field, by default `<path.with.dots>/<name>` as for every package.
`skopeo copy oci:dist/<output_path>:<tag> ...` and `umoci unpack` read the layout directly.
The package's `BuiltOciImage` artifact (package_types.py) is what `publish` and `run` read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Iterable, List, Union

from pants.core.goals.package import (
    BuiltPackage,
    BuiltPackageArtifact,
    OutputPathField,
    PackageFieldSet,
)
from pants.engine.fs import AddPrefix, CreateDigest, Digest, FileContent, MergeDigests
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.unions import UnionRule

from pants_oci.package_types import BuiltOciImage
from pants_oci.target_types import OciImageBaseField, OciImageTagsField, image_output_path
from pants_oci.util_rules.image import BuildImageRequest, BuiltImage

IMAGE_INFO = "image-info.json"


@dataclass(frozen=True)
class OciImageFieldSet(PackageFieldSet):
    required_fields = (OciImageBaseField,)

    base: OciImageBaseField
    tags: OciImageTagsField
    output_path: OutputPathField

    @property
    def output_dir(self) -> str:
        """The layout's directory, relative to the distdir."""
        return image_output_path(self.output_path)


@rule(desc="Package OCI image")
async def package_oci_image(field_set: OciImageFieldSet) -> BuiltPackage:
    image = await Get(BuiltImage, BuildImageRequest(field_set.address))
    info = json.dumps(image.image_info(), indent=2, sort_keys=True).encode()
    info_file = await Get(Digest, CreateDigest([FileContent(IMAGE_INFO, info)]))
    contents = await Get(Digest, MergeDigests([image.layout, info_file]))
    digests = [await Get(Digest, AddPrefix(contents, field_set.output_dir))]
    artifacts: List[BuiltPackageArtifact] = []
    archive = None
    if image.docker_archive:
        # The archive is `<basename of output_path>.tar` at its digest's root.
        directory = os.path.dirname(field_set.output_dir)
        digests.append(await Get(Digest, AddPrefix(image.docker_archive, directory or ".")))
        archive = f"{field_set.output_dir}.tar"
        artifacts.append(BuiltPackageArtifact(relpath=archive))
    digest = await Get(Digest, MergeDigests(digests))
    built = BuiltOciImage.create(
        address=field_set.address,
        layout_dir=field_set.output_dir,
        manifest_digest=image.manifest_digest,
        media_type=image.summary.media_type,
        platforms=image.platforms,
        tags=image.summary.tags,
        registries=image.registries,
        docker_archive=archive,
        sparse=image.sparse,
    )
    return BuiltPackage(digest, (*artifacts, built))


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [*collect_rules(), UnionRule(PackageFieldSet, OciImageFieldSet)]
