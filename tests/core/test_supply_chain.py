"""SBOMs (SPDX 2.3, CycloneDX 1.6) and provenance (in-toto, SLSA v1) from build facts: valid by
others' validators, byte-reproducible, and saying exactly what the facts say."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from pants_oci import __version__
from pants_oci.core import wire
from pants_oci.core.supply_chain import (
    SLSA_PROVENANCE_V1,
    SubjectImage,
    supply_chain_documents,
)
from tests.harness.validators import cyclonedx_errors, spdx_check

MANIFEST = "sha256:" + "d" * 64
BASE = "sha256:" + "f" * 64
LAYERS = ("sha256:" + "1" * 64, "sha256:" + "2" * 64, "sha256:" + "3" * 64)
ALPHA_WHEEL_SHA = "a1" * 32
LOCK_SHA = "0c" * 32

SUBJECT = SubjectImage(
    name="src/app:image",
    manifest_digest=MANIFEST,
    platform="linux/arm64",
    layers=LAYERS,
    created="2024-01-02T03:04:05Z",
    base_reference="registry.example:5000/bases/python@" + BASE,
    base_digest=BASE,
)
FACTS = wire.BuildFacts(
    image="src/app:image",
    targets=("src/app:image", "src/app:bin"),
    pants_version="2.17.1",
    base="registry.example:5000/bases/python:3.11",
    base_lockfile="oci.lock.json",
    python=wire.FactsPython(
        pex_binary="src/app:bin",
        version="3.11",
        interpreter="/usr/local/bin/python3.11",
        resolve="python-default",
        lockfile="3rdparty/python/default.lock",
        lockfile_sha256=LOCK_SHA,
        sources_layer=LAYERS[2],
        distributions=(
            wire.FactsDistribution(
                "ocitest-alpha", "1.0.0", "ocitest_alpha-1.0.0-py3-none-any.whl", ALPHA_WHEEL_SHA
            ),
            wire.FactsDistribution(
                "Ocitest_Bravo", "2.0.0", "ocitest_bravo-2.0.0-py3-none-any.whl"
            ),
        ),
    ),
)
LICENSES = {
    "ocitest-alpha": wire.LayerDistribution("ocitest-alpha", "1.0.0", "MIT OR Apache-2.0"),
    "ocitest_bravo": wire.LayerDistribution("Ocitest_Bravo", "2.0.0", None, "Bravo Public Licence"),
}


def _documents(subject: SubjectImage = SUBJECT, facts: wire.BuildFacts | None = FACTS) -> Any:
    return supply_chain_documents(subject, facts, LICENSES)


def test_the_sboms_pass_the_validators_of_their_formats(tmp_path: Path) -> None:
    documents = _documents()
    assert cyclonedx_errors(documents.cyclonedx, tmp_path) == []
    checked = spdx_check(documents.spdx, tmp_path)
    assert checked["errors"] == []
    assert checked["packages"] == sorted(
        [
            "src/app:image",
            "registry.example:5000/bases/python",
            "python",
            "ocitest-alpha",
            "ocitest-bravo",
            "src/app:bin",
            "layer 0",
            "layer 1",
            "layer 2",
        ]
    )


def test_facts_less_sboms_of_an_image_on_scratch_are_valid_too(tmp_path: Path) -> None:
    bare = dataclasses.replace(SUBJECT, base_reference=None, base_digest=None)
    documents = supply_chain_documents(bare)
    assert cyclonedx_errors(documents.cyclonedx, tmp_path) == []
    assert spdx_check(documents.spdx, tmp_path)["errors"] == []


def test_the_cyclonedx_sbom_lists_what_the_build_knows() -> None:
    bom = json.loads(_documents().cyclonedx)
    assert bom["specVersion"] == "1.6"
    assert bom["metadata"]["timestamp"] == SUBJECT.created
    assert bom["metadata"]["component"]["hashes"] == [{"alg": "SHA-256", "content": "d" * 64}]
    by_ref = {component["bom-ref"]: component for component in bom["components"]}
    alpha = by_ref["pypi-ocitest-alpha-1.0.0"]
    assert alpha["purl"] == "pkg:pypi/ocitest-alpha@1.0.0"
    assert alpha["hashes"] == [{"alg": "SHA-256", "content": ALPHA_WHEEL_SHA}]
    assert alpha["licenses"] == [{"expression": "MIT OR Apache-2.0"}]
    # A name as the metadata spells it is normalized; no lockfile hash, none claimed.
    bravo = by_ref["pypi-ocitest-bravo-2.0.0"]
    assert bravo["purl"] == "pkg:pypi/ocitest-bravo@2.0.0"
    assert "hashes" not in bravo
    assert bravo["licenses"] == [{"license": {"name": "Bravo Public Licence"}}]
    base = by_ref["base"]
    assert base["purl"] == (
        "pkg:oci/python@sha256%3A" + "f" * 64 + "?repository_url=registry.example:5000/bases/python"
    )
    assert {"name": "pants-oci:lockfile", "value": "oci.lock.json"} in base["properties"]
    assert by_ref["python"]["version"] == "3.11"
    assert by_ref["sources"]["hashes"] == [{"alg": "SHA-256", "content": "3" * 64}]
    assert [by_ref[f"layer-{n}"]["hashes"][0]["content"] for n in range(3)] == [
        "1" * 64,
        "2" * 64,
        "3" * 64,
    ]
    tools = {tool["name"]: tool["version"] for tool in bom["metadata"]["tools"]["components"]}
    assert tools == {"pants-oci": __version__, "pants": "2.17.1"}


def test_the_spdx_sbom_declares_licenses_only_as_spdx_expressions() -> None:
    document = json.loads(_documents().spdx)
    packages = {package["name"]: package for package in document["packages"]}
    assert packages["ocitest-alpha"]["licenseDeclared"] == "MIT OR Apache-2.0"
    assert packages["ocitest-alpha"]["checksums"] == [
        {"algorithm": "SHA256", "checksumValue": ALPHA_WHEEL_SHA}
    ]
    # Free text is no SPDX expression: NOASSERTION, and the text as a comment.
    assert packages["ocitest-bravo"]["licenseDeclared"] == "NOASSERTION"
    assert "Bravo Public Licence" in packages["ocitest-bravo"]["licenseComments"]
    relations = {
        (r["relationshipType"], r["relatedSpdxElement"]) for r in document["relationships"]
    }
    assert ("DESCENDANT_OF", "SPDXRef-base") in relations
    assert ("DESCRIBES", "SPDXRef-image") in relations
    assert document["creationInfo"]["created"] == SUBJECT.created


def test_the_provenance_is_a_slsa_v1_statement_about_the_image() -> None:
    statement = json.loads(_documents().provenance)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == SLSA_PROVENANCE_V1
    assert statement["subject"] == [{"name": "src/app:image", "digest": {"sha256": "d" * 64}}]
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["targets"] == ["src/app:image", "src/app:bin"]
    assert definition["externalParameters"]["platform"] == "linux/arm64"
    resolved = {d["name"]: d for d in definition["resolvedDependencies"]}
    assert resolved["registry.example:5000/bases/python"]["uri"] == (
        "oci://registry.example:5000/bases/python@" + BASE
    )
    assert resolved["registry.example:5000/bases/python"]["annotations"] == {
        "pants-oci:lockfile": "oci.lock.json"
    }
    assert resolved["ocitest-alpha"]["digest"] == {"sha256": ALPHA_WHEEL_SHA}
    assert resolved["3rdparty/python/default.lock"]["digest"] == {"sha256": LOCK_SHA}
    builder = statement["predicate"]["runDetails"]["builder"]
    assert builder["version"] == {"pants-oci": __version__, "pants": "2.17.1"}


def test_the_same_inputs_give_the_same_bytes_and_any_change_new_identities() -> None:
    first, second = _documents(), _documents()
    assert first == second
    for document in (first.spdx, first.cyclonedx, first.provenance):
        text = document.decode()
        # No clock, no random identifier: only the image's own `created`.
        assert "2024-01-02T03:04:05Z" in text
    python = FACTS.python
    assert python is not None
    bumped = dataclasses.replace(
        FACTS,
        python=dataclasses.replace(
            python,
            distributions=(
                wire.FactsDistribution(
                    "ocitest-alpha", "1.1.0", "ocitest_alpha-1.1.0-py3-none-any.whl", "b2" * 32
                ),
                python.distributions[1],
            ),
        ),
    )
    changed = _documents(facts=bumped)
    assert changed.spdx != first.spdx and changed.cyclonedx != first.cyclonedx
    assert (
        json.loads(changed.spdx)["documentNamespace"] != json.loads(first.spdx)["documentNamespace"]
    )
    assert (
        json.loads(changed.cyclonedx)["serialNumber"] != json.loads(first.cyclonedx)["serialNumber"]
    )


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64/v8"])
def test_each_platform_image_gets_its_own_documents(platform: str) -> None:
    other = dataclasses.replace(SUBJECT, platform=platform, manifest_digest="sha256:" + "e" * 64)
    assert _documents(other).spdx != _documents().spdx
    bom = json.loads(_documents(other).cyclonedx)
    assert bom["metadata"]["component"]["properties"] == [
        {"name": "pants-oci:platform", "value": platform}
    ]
