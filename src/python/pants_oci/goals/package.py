"""`pants package` for `oci_image`: writes the image as an OCI layout under dist/.

    dist/<path>/<name>/              an OCI image layout (`oci-layout`, `index.json`, `blobs/`),
                                     tagged with the target's `image_tags`
    dist/<path>/<name>/image-info.json   manifest and config digests, layers, tags

`skopeo copy oci:dist/<path>/<name>:<tag> ...` and `umoci unpack` read it directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Iterable, List, Union

from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.engine.addresses import Address
from pants.engine.fs import AddPrefix, CreateDigest, Digest, FileContent, MergeDigests
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.unions import UnionRule

from pants_oci.target_types import OciImageBaseField, OciImageTagsField
from pants_oci.util_rules.image import BuildImageRequest, BuiltImage

IMAGE_INFO = "image-info.json"


@dataclass(frozen=True)
class OciImageFieldSet(PackageFieldSet):
    required_fields = (OciImageBaseField,)

    base: OciImageBaseField
    tags: OciImageTagsField

    @property
    def output_dir(self) -> str:
        return self.create_output_dir(self.address)

    @staticmethod
    def create_output_dir(address: Address) -> str:
        """dist/<path>/<name>/, relative to the distdir."""
        return os.path.join(address.spec_path, address.target_name)


@rule(desc="Package OCI image")
async def package_oci_image(field_set: OciImageFieldSet) -> BuiltPackage:
    image = await Get(BuiltImage, BuildImageRequest(field_set.address))
    info = json.loads(image.info)
    info_file = await Get(
        Digest,
        CreateDigest(
            [FileContent(IMAGE_INFO, json.dumps(info, indent=2, sort_keys=True).encode())]
        ),
    )
    contents = await Get(Digest, MergeDigests([image.layout, info_file]))
    digests = [await Get(Digest, AddPrefix(contents, field_set.output_dir))]
    artifacts: List[BuiltPackageArtifact] = []
    if image.docker_archive:
        # The archive is `<name>.tar` at its digest's root: it lands beside the layout.
        spec_path = field_set.address.spec_path
        digests.append(await Get(Digest, AddPrefix(image.docker_archive, spec_path or ".")))
        artifacts.append(BuiltPackageArtifact(relpath=f"{field_set.output_dir}.tar"))
    digest = await Get(Digest, MergeDigests(digests))
    tags = ", ".join(info.get("tags") or ())
    return BuiltPackage(
        digest,
        (
            *artifacts,
            BuiltPackageArtifact(
                relpath=field_set.output_dir,
                extra_log_lines=(
                    f"    manifest {info['manifest_digest']}",
                    f"    tags: {tags}" if tags else "    (untagged)",
                ),
            ),
        ),
    )


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [*collect_rules(), UnionRule(PackageFieldSet, OciImageFieldSet)]
