"""What an image's SBOM and provenance say beyond what assembly sees (its layers, base digest
and platform): the facts of the build, as `image assemble --supply-chain` takes them.

The third-party distributions come from the packed PEX (name, version, the wheel installed)
and their sha256 from the resolve's lockfile, matched by the wheel's file name (else the
sdist it was built from); licenses come from the distributions' own metadata, which
`layer build` reads as it unpacks them.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Tuple
from urllib.parse import urlparse

from pants.engine.addresses import Address
from pants.engine.fs import DigestContents, PathGlobs
from pants.engine.rules import Get, Rule, collect_rules, rule
from pants.version import VERSION as PANTS_VERSION

from pants_oci.core import wire
from pants_oci.util_rules.base_images import ResolvedBase
from pants_oci.util_rules.python_image import PythonFacts
from pants_oci.util_rules.python_layers import normalize_name

_SDIST_SUFFIXES = (".tar.gz", ".zip", ".tar.bz2", ".tgz")
# (normalized name, version) -> (artifact file name, sha256) for each locked artifact.
LockedArtifacts = Dict[Tuple[str, str], Tuple[Tuple[str, str], ...]]


@dataclass(frozen=True)
class BuildFactsRequest:
    address: Address
    base: ResolvedBase
    base_text: str  # the image's `base` field, as written
    layer_owners: Tuple[Address, ...]
    python: Optional[PythonFacts]
    code_layer_digest: Optional[str]


def locked_artifacts(text: str) -> LockedArtifacts:
    """The sha256 of each artifact a Pants (pex) lockfile locks; nothing from a lockfile in
    another format (the PEX build reports a broken one)."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    try:
        document = json.loads(body)
        found: LockedArtifacts = {}
        for resolve in document.get("locked_resolves", ()):
            for requirement in resolve.get("locked_requirements", ()):
                key = (normalize_name(requirement["project_name"]), str(requirement["version"]))
                found[key] = found.get(key, ()) + tuple(
                    (posixpath.basename(urlparse(artifact["url"]).path), artifact["hash"])
                    for artifact in requirement.get("artifacts", ())
                    if artifact.get("algorithm") == "sha256"
                )
        return found
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}


def artifact_sha256(
    locked: LockedArtifacts, name: str, version: str, archive: str
) -> Optional[str]:
    """The lockfile's sha256 of the wheel installed as `archive`, else of the sdist it was
    built from; None when the lockfile does not lock it."""
    artifacts = locked.get((normalize_name(name), version), ())
    for file_name, sha256 in artifacts:
        if file_name == archive:
            return sha256
    sdists = [sha256 for file_name, sha256 in artifacts if file_name.endswith(_SDIST_SUFFIXES)]
    return sdists[0] if len(sdists) == 1 else None


async def _python_facts(python: PythonFacts, code_layer_digest: Optional[str]) -> wire.FactsPython:
    pex = python.pex
    locked: LockedArtifacts = {}
    lockfile_sha256 = None
    if pex.lockfile:
        contents = await Get(DigestContents, PathGlobs([pex.lockfile]))
        if contents:
            locked = locked_artifacts(contents[0].content.decode(errors="replace"))
            lockfile_sha256 = hashlib.sha256(contents[0].content).hexdigest()
    distributions = []
    for distribution in pex.distributions:
        archive = posixpath.basename(distribution.path)
        distributions.append(
            wire.FactsDistribution(
                name=distribution.name,
                version=distribution.version,
                archive=archive,
                sha256=artifact_sha256(locked, distribution.name, distribution.version, archive),
            )
        )
    interpreter = python.interpreter
    return wire.FactsPython(
        pex_binary=str(pex.address),
        version=interpreter.version if interpreter else "",
        interpreter=interpreter.path if interpreter else None,
        resolve=pex.resolve,
        lockfile=pex.lockfile,
        lockfile_sha256=lockfile_sha256,
        sources_layer=code_layer_digest,
        distributions=tuple(sorted(distributions, key=lambda d: (d.name, d.version))),
    )


@rule(desc="Gather the build facts of an OCI image's SBOM")
async def build_facts(request: BuildFactsRequest) -> wire.BuildFacts:
    python = None
    if request.python is not None:
        python = await _python_facts(request.python, request.code_layer_digest)
    owners = sorted({str(a) for a in request.layer_owners} - {str(request.address)})
    return wire.BuildFacts(
        image=str(request.address),
        targets=(str(request.address), *owners),
        pants_version=PANTS_VERSION,
        base=request.base_text,
        base_lockfile=request.base.locked_by,
        python=python,
    )


def rules() -> Iterable[Rule]:
    return collect_rules()
