"""The base-image lockfile (`[oci].lockfile`): base tags pinned to digests.

Builds read only the lockfile: a `base` written as a tag becomes the locked manifest digest of
the image's platform, so the build is reproducible and never looks a tag up. The
`generate-oci-lockfile` goal (goals/generate_lockfile.py) writes it.

    {
      "//": "...",
      "version": 1,
      "bases": {
        "docker.io/library/python:3.11-slim": {
          "digest": "sha256:...",              <- what the tag pointed at (index or manifest)
          "media_type": "application/vnd.oci.image.index.v1+json",
          "platforms": {"linux/amd64": "sha256:...", "linux/arm64/v8": "sha256:..."}
        }
      },
      "images": {                              <- what builds need of a platform's image
        "sha256:...": {                        <- (by manifest digest) without its layers
          "directories": ["bin", "etc", ...],  <- its directories and symlinks
          "pythons": [{"path": "/usr/local/bin/python3.11", "version": "3.11"}]
        }
      }
    }

With an image's facts at hand, a build whose output need not hold the base's layers (a
`sparse-oci-layout`) downloads only the base's manifest and config. Lockfiles without
`images` still work: builds then read the facts from the base's layers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from pants.engine.addresses import Address
from pants.engine.fs import DigestContents, GlobMatchErrorBehavior, PathGlobs
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.engine.target import InvalidFieldException
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from pants_oci.core import wire
from pants_oci.core.platforms import PlatformParts, platform_matches
from pants_oci.core.reference import Reference
from pants_oci.subsystems.oci import OciSubsystem

LOCKFILE_VERSION = 1
GENERATE_COMMAND = "pants generate-oci-lockfile"


class LockfileError(Exception):
    pass


@dataclass(frozen=True)
class LockedBase:
    digest: str
    media_type: str
    platforms: FrozenDict[str, str]

    def to_json(self) -> Dict[str, Any]:
        return {
            "digest": self.digest,
            "media_type": self.media_type,
            "platforms": dict(sorted(self.platforms.items())),
        }


@dataclass(frozen=True)
class ImageFacts:
    """What builds need to know of a base image's filesystem, recorded so that they need not
    download its layers: its directories (and symlinks, which layers must not replace with
    directories) and its Python interpreters, preferred first."""

    directories: Tuple[str, ...]
    pythons: Tuple[wire.PythonInterpreter, ...]

    def to_json(self) -> Dict[str, Any]:
        return {
            "directories": sorted(self.directories),
            "pythons": [python.to_json() for python in self.pythons],
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ImageFacts:
        return cls(
            directories=tuple(str(path) for path in document["directories"]),
            pythons=tuple(
                wire.PythonInterpreter(path=str(entry["path"]), version=str(entry["version"]))
                for entry in document["pythons"]
            ),
        )


@dataclass(frozen=True)
class BaseLockfile:
    """The lockfile's entries by canonical reference (`docker.io/library/python:3.11-slim`);
    `exists` is false when there is no lockfile yet."""

    path: str
    exists: bool
    bases: FrozenDict[str, LockedBase]
    # Facts of the platform images by manifest digest (see ImageFacts).
    images: FrozenDict[str, ImageFacts]
    error: Optional[str] = None  # why the file cannot be read: builds fail, generating fixes

    def require_valid(self) -> None:
        if self.error is not None:
            raise LockfileError(self.error)

    def render(self) -> bytes:
        return render_lockfile(self.bases, self.images)


def render_lockfile(
    bases: Mapping[str, LockedBase], images: Mapping[str, ImageFacts] = FrozenDict()
) -> bytes:
    document = {
        "//": (
            f"Base images pinned by `{GENERATE_COMMAND}`. Regenerate it, don't edit it; "
            "review changed digests like any dependency upgrade."
        ),
        "version": LOCKFILE_VERSION,
        "bases": {name: bases[name].to_json() for name in sorted(bases)},
        "images": {digest: images[digest].to_json() for digest in sorted(images)},
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def lock_key(reference: Reference) -> str:
    """How the lockfile names a base: the full reference, with the default tag spelled out."""
    return str(reference if reference.tag else reference.with_tag("latest"))


def _parse(
    path: str, content: bytes
) -> Tuple[FrozenDict[str, LockedBase], FrozenDict[str, ImageFacts]]:
    fix = f"Regenerate it with `{GENERATE_COMMAND}`."
    try:
        document = json.loads(content)
        if document.get("version") != LOCKFILE_VERSION:
            raise LockfileError(
                f"The base-image lockfile {path} has version {document.get('version')!r}, "
                f"not {LOCKFILE_VERSION}. {fix}"
            )
        bases = {
            name: LockedBase(
                digest=str(entry["digest"]),
                media_type=str(entry["media_type"]),
                platforms=FrozenDict({str(k): str(v) for k, v in entry["platforms"].items()}),
            )
            for name, entry in document["bases"].items()
        }
        images = {
            str(digest): ImageFacts.from_json(facts)
            for digest, facts in document.get("images", {}).items()
        }
        return FrozenDict(bases), FrozenDict(images)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise LockfileError(f"The base-image lockfile {path} is not valid ({e!r}). {fix}") from None


@dataclass(frozen=True)
class BaseLockfileRequest:
    """Read `[oci].lockfile` (read only by builds with a tag base)."""


@rule(desc="Read the OCI base-image lockfile")
async def read_base_lockfile(_: BaseLockfileRequest, oci: OciSubsystem) -> BaseLockfile:
    contents = await Get(
        DigestContents,
        PathGlobs(
            [oci.lockfile],
            glob_match_error_behavior=GlobMatchErrorBehavior.ignore,
        ),
    )
    if not contents:
        return BaseLockfile(oci.lockfile, False, FrozenDict(), FrozenDict())
    try:
        bases, images = _parse(oci.lockfile, contents[0].content)
        return BaseLockfile(oci.lockfile, True, bases, images)
    except LockfileError as e:
        return BaseLockfile(oci.lockfile, True, FrozenDict(), FrozenDict(), error=str(e))


def choose_platform(platforms: Mapping[str, str], wanted: str) -> Optional[str]:
    """The locked platform that `wanted` means: an exact match, else the one entry that
    satisfies it as an image of an index would (see `platform_matches`: the same os and
    architecture and, when `wanted` names one, the same variant; a missing variant is the
    architecture's default: `linux/arm64/v8` is `linux/arm64`)."""
    if wanted in platforms:
        return wanted
    want = PlatformParts.split(wanted)
    same = [name for name in platforms if platform_matches(want, PlatformParts.split(name))]
    return same[0] if len(same) == 1 else None


def locked_base(
    lockfile: BaseLockfile, reference: Reference, platform: str, address: Address, alias: str
) -> str:
    """`repository@sha256:...`: the manifest of `platform` that the lockfile pins the tag
    `reference` to. Errors say which command brings the lockfile up to date."""
    lockfile.require_valid()
    key = lock_key(reference)
    where = f"The `{alias}` field in target {address} is {reference.familiar!r}, a tag"
    if not lockfile.exists:
        raise InvalidFieldException(
            softwrap(
                f"""
                {where}, and there is no base-image lockfile ({lockfile.path}, from
                `[oci].lockfile`) to pin it. Run `{GENERATE_COMMAND}` and check the file in,
                or pin the base by digest in the BUILD file.
                """
            )
        )
    entry = lockfile.bases.get(key)
    if entry is None:
        raise InvalidFieldException(
            softwrap(
                f"""
                {where} that is not in the base-image lockfile {lockfile.path}: the lockfile is
                out of date with the BUILD files. Run `{GENERATE_COMMAND}` to add it.
                """
            )
        )
    chosen = choose_platform(entry.platforms, platform)
    if chosen is None:
        raise InvalidFieldException(
            softwrap(
                f"""
                {where} pinned in {lockfile.path} to {entry.digest}, which has no image for
                platform {platform} (it has: {", ".join(sorted(entry.platforms)) or "none"}).
                Choose a platform the base provides, or a base for {platform}; if the base
                gained it upstream, run `{GENERATE_COMMAND}`.
                """
            )
        )
    return f"{reference.name}@{entry.platforms[chosen]}"


def rules() -> Iterable[Rule]:
    return collect_rules()
