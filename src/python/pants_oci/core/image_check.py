"""Check that an image is whole and says true things about itself, as ``crane validate`` does.

:func:`check_layout` checks the images of an OCI layout directory, :func:`check_remote` an
image (or index) in a registry, :func:`check_docker_archive` the images of a docker-archive
tar. Each reads every blob and answers a list of :class:`Problem` (empty: the image is sound)
rather than stopping at the first:

- every blob and document hashes to its descriptor's digest and is its descriptor's size;
- every media type is one this library knows (manifests, indexes, configs and layers of an
  image; artifacts such as SBOMs are checked for digest and size only);
- the config's ``rootfs.diff_ids`` are the layers' uncompressed digests, one for each layer;
- the config's platform is the one the index entry declares;
- an index: all of that for every image it lists (``platform``: for that platform's only);
- a docker-archive: its ``manifest.json`` lists, per image, a config and layers the archive
  holds (and valid ``RepoTags``, which name every tag of its ``repositories`` file); the
  config hashes to the digest its name says; each layer is its config's diff_id.

Errors that are not about the image (a registry that cannot be reached, a directory that is
not a layout) are raised, as everywhere else.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast

from pants_oci.core import media_types
from pants_oci.core.compression import decompressed, inspect_layer_blob
from pants_oci.core.digest import Digest, HashingWriter, sha256_of_bytes, sha256_of_file
from pants_oci.core.errors import (
    DigestMismatchError,
    DocumentError,
    ImageArchiveError,
    InvalidReferenceError,
    NotFoundError,
    OCIError,
    RefNotFoundError,
    SizeMismatchError,
)
from pants_oci.core.layout import REF_NAME_ANNOTATION, ImageLayout
from pants_oci.core.models import (
    DockerManifestList,
    ImageConfig,
    OCIIndex,
    Platform,
    parse_manifest,
)
from pants_oci.core.platforms import platform_matches
from pants_oci.core.reference import parse_reference
from pants_oci.core.tarball import archive_member

if TYPE_CHECKING:
    from pants_oci.core._transport_options import TransportOptions
    from pants_oci.core.models import Descriptor
    from pants_oci.core.reference import Reference
    from pants_oci.core.registry import RegistryClient

__all__ = ["Problem", "check_docker_archive", "check_layout", "check_remote"]

# What a Problem is about; scripts may match on it.
DIGEST = "digest"
SIZE = "size"
MISSING = "missing"
MEDIA_TYPE = "media-type"
DIFF_IDS = "diff-ids"
PLATFORM = "platform"
INVALID = "invalid"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an image: its ``kind`` (``digest``, ``size``, ``missing``,
    ``media-type``, ``diff-ids``, ``platform`` or ``invalid``), what it is about (``subject``:
    e.g. ``layer sha256:... of manifest sha256:...``) and what is wrong (``message``)."""

    kind: str
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "subject": self.subject, "message": self.message}


class _Unreadable(Exception):
    """A blob or document that cannot be read as its descriptor says: a Problem already."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _Source(Protocol):
    def document(self, descriptor: Descriptor, subject: str) -> bytes: ...

    def blob(self, descriptor: Descriptor, subject: str) -> Path: ...


def _measure(descriptor: Descriptor, digest: Digest, size: int, subject: str) -> list[Problem]:
    problems = []
    if digest != descriptor.digest:
        problems.append(Problem(DIGEST, subject, f"its bytes hash to {digest}"))
    if size != descriptor.size:
        problems.append(
            Problem(SIZE, subject, f"is {size} bytes; its descriptor says {descriptor.size}")
        )
    return problems


class _LayoutSource:
    def __init__(self, layout: ImageLayout) -> None:
        self.layout = layout

    def blob(self, descriptor: Descriptor, subject: str) -> Path:
        path = self.layout.blob_path(descriptor.digest)
        if not path.is_file():
            raise _Unreadable(Problem(MISSING, subject, f"{path} is missing"))
        return path

    def document(self, descriptor: Descriptor, subject: str) -> bytes:
        return self.blob(descriptor, subject).read_bytes()


class _RegistrySource:
    """Blobs downloaded into ``directory``, one at a time (each deleted once checked)."""

    def __init__(self, client: RegistryClient, directory: Path) -> None:
        self.client = client
        self.directory = directory

    def document(self, descriptor: Descriptor, subject: str) -> bytes:
        with _refused(subject):
            return self.client.get_manifest(descriptor.digest, size=descriptor.size).to_bytes()

    def blob(self, descriptor: Descriptor, subject: str) -> Path:
        for stale in self.directory.iterdir():
            stale.unlink()
        path = self.directory / descriptor.digest.hex
        with _refused(subject), path.open("wb") as handle:
            for chunk in self.client.iter_blob(descriptor.digest, size=descriptor.size):
                handle.write(chunk)
        return path


@contextmanager
def _refused(subject: str) -> Iterator[None]:
    """A registry's verification failure (digest, size, absence) as a Problem."""
    try:
        yield
    except DigestMismatchError as error:
        raise _Unreadable(Problem(DIGEST, subject, str(error))) from None
    except SizeMismatchError as error:
        raise _Unreadable(Problem(SIZE, subject, str(error))) from None
    except NotFoundError as error:
        raise _Unreadable(Problem(MISSING, subject, str(error))) from None


def check_layout(
    root: str | os.PathLike[str], ref: str | None = None, *, platform: Platform | None = None
) -> list[Problem]:
    """The problems of the images of the OCI layout at ``root``: every one its ``index.json``
    lists, or the one ``ref`` names (a ref name or a digest); for an index, its images for
    ``platform`` only, when given. ImageArchiveError when ``root`` is not a layout."""
    layout = ImageLayout.open(root)
    checker = _Checker(_LayoutSource(layout), platform)
    descriptors = list(layout.index().manifests)
    if ref is not None:
        descriptors = [entry for entry in descriptors if _names(entry, ref)]
        if not descriptors:
            raise RefNotFoundError(
                f"{root} has no image named {ref!r}", wanted=ref, available=layout.refs()
            )
    for descriptor in descriptors:
        checker.document(descriptor, None)
    return checker.problems


def _names(entry: Descriptor, ref: str) -> bool:
    """Whether an ``index.json`` entry is the one ``ref`` (a ref name or digest) names."""
    names = (entry.annotations or {}).get(REF_NAME_ANNOTATION)
    return ref in (str(entry.digest), names)


def check_remote(
    reference: Reference,
    *,
    platform: Platform | None = None,
    options: TransportOptions | None = None,
) -> list[Problem]:
    """The problems of the image (or index) ``reference`` names in its registry; for an
    index, its images for ``platform`` only, when given. Every blob is downloaded (into a
    temporary directory, one at a time)."""
    from pants_oci.core.registry import RegistryClient

    with (
        RegistryClient.from_reference(reference, options=options) as client,
        tempfile.TemporaryDirectory(prefix="pants-oci-check-") as temporary,
    ):
        root = client.get_manifest(reference.identifier)
        checker = _Checker(_RegistrySource(client, Path(temporary)), platform)
        checker.document(root.descriptor(), None)
        return checker.problems


class _Checker:
    def __init__(self, source: _Source, platform: Platform | None) -> None:
        self.source = source
        self.platform = platform
        self.problems: list[Problem] = []

    def document(self, descriptor: Descriptor, parent: str | None) -> None:
        """Check a manifest or index and everything it points to."""
        kind = "index" if media_types.is_index(descriptor.media_type) else "manifest"
        subject = f"{kind} {descriptor.digest}"
        if parent is not None:
            subject += f" of {parent}"
        known = media_types.is_index(descriptor.media_type) or media_types.is_manifest(
            descriptor.media_type
        )
        if not known:
            self._problem(MEDIA_TYPE, subject, f"unknown media type {descriptor.media_type!r}")
            return
        try:
            raw = self.source.document(descriptor, subject)
        except _Unreadable as unreadable:
            self.problems.append(unreadable.problem)
            return
        self.problems.extend(_measure(descriptor, sha256_of_bytes(raw), len(raw), subject))
        try:
            document = parse_manifest(raw, descriptor.media_type)
        except DocumentError as error:
            self._problem(INVALID, subject, str(error))
            return
        if isinstance(document, (OCIIndex, DockerManifestList)):
            for child in document.manifests:
                if self._wanted(child):
                    self.document(child, f"index {descriptor.digest}")
            return
        config_descriptor = document.config
        if not media_types.is_config(config_descriptor.media_type):
            # An artifact (an SBOM, a signature): its blobs' digests and sizes only.
            self._artifact([config_descriptor, *document.layers], subject)
            return
        config = self._config(config_descriptor, subject)
        diff_ids = [self._layer(layer, subject) for layer in document.layers]
        if config is None:
            return
        self._check_platform(config, descriptor, subject)
        declared = list(config.rootfs.diff_ids)
        if len(declared) != len(diff_ids):
            self._problem(
                DIFF_IDS,
                f"config {config_descriptor.digest} of {subject}",
                f"rootfs.diff_ids lists {len(declared)} layers; the manifest has {len(diff_ids)}",
            )
        for position, (want, have) in enumerate(zip(declared, diff_ids)):
            if have is not None and want != have:
                self._problem(
                    DIFF_IDS,
                    f"config {config_descriptor.digest} of {subject}",
                    f"rootfs.diff_ids[{position}] is {want}, but layer {position} "
                    f"({document.layers[position].digest}) uncompresses to {have}",
                )

    def _wanted(self, child: Descriptor) -> bool:
        """Whether to check an index's entry: every one, or ``platform``'s."""
        if self.platform is None or child.platform is None:
            return True
        return platform_matches(self.platform, child.platform)

    def _problem(self, kind: str, subject: str, message: str) -> None:
        self.problems.append(Problem(kind, subject, message))

    def _config(self, descriptor: Descriptor, parent: str) -> ImageConfig | None:
        subject = f"config {descriptor.digest} of {parent}"
        try:
            path = self.source.blob(descriptor, subject)
        except _Unreadable as unreadable:
            self.problems.append(unreadable.problem)
            return None
        raw = path.read_bytes()
        self.problems.extend(_measure(descriptor, sha256_of_bytes(raw), len(raw), subject))
        try:
            return ImageConfig.from_bytes(raw)
        except DocumentError as error:
            self._problem(INVALID, subject, str(error))
            return None

    def _layer(self, descriptor: Descriptor, parent: str) -> Digest | None:
        """Check a layer blob; its diff ID (None when it cannot be read)."""
        subject = f"layer {descriptor.digest} of {parent}"
        if not media_types.is_layer(descriptor.media_type):
            self._problem(MEDIA_TYPE, subject, f"unknown media type {descriptor.media_type!r}")
        try:
            path = self.source.blob(descriptor, subject)
        except _Unreadable as unreadable:
            self.problems.append(unreadable.problem)
            return None
        try:
            facts = inspect_layer_blob(path)
        except (OCIError, OSError, EOFError, ValueError) as error:
            digest, size = sha256_of_file(path)
            self.problems.extend(_measure(descriptor, digest, size, subject))
            self._problem(INVALID, subject, f"cannot be read as a layer: {error}")
            return None
        self.problems.extend(_measure(descriptor, facts.digest, facts.size, subject))
        return facts.diff_id

    def _artifact(self, blobs: Sequence[Descriptor], parent: str) -> None:
        for descriptor in blobs:
            subject = f"blob {descriptor.digest} of {parent}"
            try:
                path = self.source.blob(descriptor, subject)
            except _Unreadable as unreadable:
                self.problems.append(unreadable.problem)
                continue
            digest, size = sha256_of_file(path)
            self.problems.extend(_measure(descriptor, digest, size, subject))

    def _check_platform(self, config: ImageConfig, descriptor: Descriptor, subject: str) -> None:
        declared = descriptor.platform
        if declared is None or declared.os == "unknown":  # attestations say unknown/unknown
            return
        if not platform_matches(declared, config.platform):
            self._problem(
                PLATFORM,
                subject,
                f"the index entry says {declared}, but the config says {config.platform}",
            )


# --- Docker archives ----------------------------------------------------------------------------

_ARCHIVE_MANIFEST = "manifest.json"
_ARCHIVE_REPOSITORIES = "repositories"
_HEX_NAME = re.compile(r"(?:^|/)([0-9a-f]{64})(?:\.json)?$")  # `<hex>.json`, `blobs/sha256/<hex>`


def check_docker_archive(path: str | os.PathLike[str]) -> list[Problem]:
    """The problems of the images of the docker-archive tar at ``path`` (``docker save``'s,
    ``pants-oci pull --format docker-archive``'s): its ``manifest.json`` is a list of images,
    each with a config and layers that the archive holds and ``RepoTags`` that are image
    references (naming every tag its ``repositories`` file names); each config hashes to the
    digest its name says, and each layer's tar (gzip and zstd read through) hashes to its
    config's ``rootfs.diff_ids`` entry, one per layer. ImageArchiveError when ``path`` cannot
    be read as a tar at all."""
    name = os.fspath(path)
    try:
        with tarfile.open(name, "r:*") as archive:
            return _ArchiveChecker(archive, name).check()
    except tarfile.ReadError as exc:
        raise ImageArchiveError(
            f"cannot read docker archive {name}: {exc}; give a docker-archive tar "
            "(docker save's), an OCI layout or a registry reference"
        ) from None


class _ArchiveChecker:
    def __init__(self, archive: tarfile.TarFile, name: str) -> None:
        self.archive = archive
        self.name = name
        self.problems: list[Problem] = []

    def _problem(self, kind: str, subject: str, message: str) -> None:
        self.problems.append(Problem(kind, subject, message))

    def member(self, member: str, subject: str) -> BinaryIO | None:
        """The member's bytes to read; None (a problem recorded) when the archive lacks it."""
        try:
            # Follows links, as docker's saves use; `./NAME` too, as `tar -C DIR .` writes.
            stream = self.archive.extractfile(archive_member(self.archive, member))
        except (KeyError, tarfile.TarError) as exc:
            self._problem(MISSING, subject, f"{self.name} has no member {member!r} ({exc})")
            return None
        if stream is None:
            self._problem(MISSING, subject, f"{member!r} in {self.name} is not a file")
        return cast("BinaryIO | None", stream)

    def check(self) -> list[Problem]:
        subject = f"{_ARCHIVE_MANIFEST} of {self.name}"
        stream = self.member(_ARCHIVE_MANIFEST, subject)
        if stream is None:
            return self.problems
        try:
            entries = json.loads(stream.read())
        except ValueError as exc:
            self._problem(INVALID, subject, f"is not JSON: {exc}")
            return self.problems
        if not isinstance(entries, list) or not entries:
            self._problem(INVALID, subject, "is not a list of images")
            return self.problems
        tagged: set[str] = set()
        for position, entry in enumerate(entries):
            tagged.update(self.image(entry, f"image {position} of {subject}"))
        self.repositories(tagged)
        return self.problems

    def image(self, entry: object, subject: str) -> list[str]:
        """Check one image of manifest.json; its RepoTags."""
        if not isinstance(entry, dict):
            self._problem(INVALID, subject, "is not a JSON object")
            return []
        config_name, layers, repo_tags = (entry.get(k) for k in ("Config", "Layers", "RepoTags"))
        if not isinstance(config_name, str) or not isinstance(layers, list):
            self._problem(INVALID, subject, 'needs "Config" (a member name) and "Layers" (a list)')
            return []
        tags = [tag for tag in repo_tags or () if isinstance(tag, str)]
        if not isinstance(repo_tags, (list, type(None))) or len(tags) != len(repo_tags or ()):
            self._problem(INVALID, subject, '"RepoTags" is not a list of names')
        for tag in tags:
            try:
                parse_reference(tag)
            except InvalidReferenceError as error:
                self._problem(INVALID, subject, f"RepoTags holds {tag!r}: {error}")
        config = self.config(config_name, subject)
        diff_ids = [self.layer(layer, position, subject) for position, layer in enumerate(layers)]
        if config is None:
            return tags
        declared = list(config.rootfs.diff_ids)
        config_subject = f"config {config_name} of {subject}"
        if len(declared) != len(layers):
            self._problem(
                DIFF_IDS,
                config_subject,
                f"rootfs.diff_ids lists {len(declared)} layers; manifest.json lists {len(layers)}",
            )
        for position, (want, have) in enumerate(zip(declared, diff_ids)):
            if have is not None and want != have:
                self._problem(
                    DIFF_IDS,
                    config_subject,
                    f"rootfs.diff_ids[{position}] is {want}, but layer {position} "
                    f"({layers[position]}) hashes to {have}",
                )
        return tags

    def config(self, member: str, parent: str) -> ImageConfig | None:
        subject = f"config {member} of {parent}"
        stream = self.member(member, subject)
        if stream is None:
            return None
        raw = stream.read()
        named = _HEX_NAME.search(member)
        digest = sha256_of_bytes(raw)
        if named is not None and named.group(1) != digest.hex:
            self._problem(
                DIGEST, subject, f"its bytes hash to {digest}; its name says sha256:{named[1]}"
            )
        try:
            return ImageConfig.from_bytes(raw)
        except DocumentError as error:
            self._problem(INVALID, subject, str(error))
            return None

    def layer(self, member: object, position: int, parent: str) -> Digest | None:
        """The diff_id of a layer member (None when it cannot be read: a problem recorded)."""
        subject = f"layer {position} ({member}) of {parent}"
        if not isinstance(member, str):
            self._problem(INVALID, subject, "is not a member name")
            return None
        stream = self.member(member, subject)
        if stream is None:
            return None
        hashed = HashingWriter()
        try:
            tar = decompressed(stream)
            while chunk := tar.read(1 << 20):
                hashed.write(chunk)
        except (OCIError, OSError, EOFError, ValueError, tarfile.TarError) as error:
            self._problem(INVALID, subject, f"cannot be read as a layer: {error}")
            return None
        return hashed.digest()

    def repositories(self, tagged: set[str]) -> None:
        """The legacy ``repositories`` file, if any: each repository's tags are RepoTags."""
        try:
            archive_member(self.archive, _ARCHIVE_REPOSITORIES)
        except KeyError:
            return
        subject = f"{_ARCHIVE_REPOSITORIES} of {self.name}"
        stream = self.member(_ARCHIVE_REPOSITORIES, subject)
        if stream is None:
            return
        try:
            repositories = json.loads(stream.read())
            names = [f"{repo}:{tag}" for repo, tags in repositories.items() for tag in tags]
        except (ValueError, AttributeError, TypeError) as exc:
            self._problem(INVALID, subject, f"is not a JSON object of repositories' tags: {exc}")
            return
        for name in names:
            if name not in tagged:
                self._problem(
                    INVALID, subject, f"names {name}, which no image of manifest.json has"
                )
