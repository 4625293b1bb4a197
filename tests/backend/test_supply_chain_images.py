"""SBOMs and provenance of real `./pants package` / `publish` runs (issue 19): a Python service
on a private multi-platform base pinned by the base-image lockfile, its requirements locked by
a Pants lockfile (offline: wheels made by tests/harness/wheels.py), built for two platforms.

Each platform image gets an SPDX and a CycloneDX SBOM and a SLSA provenance statement in the
layout, listing what the build knows (the lockfile's wheel hashes, the licenses the wheels
declare, the base by digest, the interpreter, the layers); others' validators accept them; a
second clean build gives the same bytes; bumping one requirement changes its entry alone; and
`publish` attaches them to the pushed images, where they are read back.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core.models import Platform
from pants_oci.core.referrers import attached_document, list_referrers
from pants_oci.core.supply_chain import CYCLONEDX_MEDIA_TYPE, IN_TOTO_MEDIA_TYPE, SPDX_MEDIA_TYPE
from pants_oci.core.transport import TransportOptions
from tests.harness.busybox import PushedImage, host_architecture
from tests.harness.layouts import layout_blob
from tests.harness.python_base import multi_platform_python_base
from tests.harness.registry import Registry
from tests.harness.validators import cyclonedx_errors, spdx_check
from tests.harness.wheels import find_links_with, pure_wheel
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow

HOST = host_architecture()
OTHER = "arm64" if HOST == "amd64" else "amd64"
PINS = {"ocitest-alpha": "1.0.0", "ocitest-delta": "1.0.0"}
RESOLVED = ["ocitest-alpha", "ocitest-bravo", "ocitest-charlie", "ocitest-delta"]
METADATA = {
    "ocitest-alpha": {"License-Expression": "MIT"},
    "ocitest-delta": {"License": "Delta Public Licence\n(the whole text would follow)"},
}
SUPPLY_CHAIN = [SPDX_MEDIA_TYPE, CYCLONEDX_MEDIA_TYPE, IN_TOTO_MEDIA_TYPE]
LOCKFILE = "3rdparty/python/default.lock"


def _files(base_tag: str, registry: Registry, pins: dict[str, str]) -> dict[str, str]:
    requirements = "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))
    return {
        "3rdparty/python/requirements.txt": requirements,
        "3rdparty/python/BUILD": "python_requirements()\n",
        "svc/main.py": "import ocitest_alpha, ocitest_delta\nprint(ocitest_alpha.VERSION)\n",
        "svc/BUILD": f"""
python_sources(name="src")
pex_binary(name="bin", entry_point="main.py", dependencies=[":src"])
oci_image(
    name="image",
    base="{base_tag}",
    dependencies=[":bin"],
    platforms=["linux/{HOST}", "linux/{OTHER}"],
    registries=["{registry.host}"],
    repository="svc/app",
    image_tags=["1"],
)
oci_image(name="plain", base="{base_tag}", dependencies=[":bin"], supply_chain=False)
""",
    }


def _repo(root: Path, files: dict[str, str], links: Path) -> Path:
    return make_pants_repo(
        root,
        files,
        python_toml=f'enable_resolves = true\nresolves = {{ python-default = "{LOCKFILE}" }}\n',
        extra_toml=f'[python-repos]\nfind_links = ["file://{links}"]\n',
    )


def _attached(layout: Path) -> dict[tuple[str, str], bytes]:
    """The documents attached in the layout, by (subject's architecture, artifact type)."""
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    [top] = [entry for entry in entries if "artifactType" not in entry]
    index = json.loads(layout_blob(layout, top["digest"]))
    arch = {e["digest"]: e["platform"]["architecture"] for e in index["manifests"]}
    found = {}
    for entry in entries:
        if "artifactType" in entry:
            manifest = json.loads(layout_blob(layout, entry["digest"]))
            assert manifest["artifactType"] == entry["artifactType"]
            [document] = manifest["layers"]
            key = (arch[manifest["subject"]["digest"]], entry["artifactType"])
            found[key] = layout_blob(layout, document["digest"])
    return found


def _components(cyclonedx: bytes) -> dict[str, dict[str, Any]]:
    return {c["bom-ref"]: c for c in json.loads(cyclonedx)["components"]}


def test_images_carry_sboms_and_provenance_from_the_build(
    tmp_path: Path, python_base_image: PushedImage, registry_anonymous: Registry
) -> None:
    registry = registry_anonymous
    pins = {**PINS, "ocitest-bravo": "1.0.0", "ocitest-charlie": "1.0.0"}
    links = find_links_with(tmp_path / "wheels", pins, native={}, metadata=METADATA)
    bumped_wheel = pure_wheel(
        links.directory, "ocitest-delta", "1.1.0", metadata=METADATA["ocitest-delta"]
    )
    wheel_sha = {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in links.wheels}
    pinned_base = multi_platform_python_base(python_base_image, registry, OTHER)
    base_tag = pinned_base.split("@", 1)[0] + ":3.11"
    repo = _repo(tmp_path / "repo", _files(base_tag, registry, PINS), links.directory)
    run_pants("generate-lockfiles", "--resolve=python-default", cwd=repo)
    run_pants("generate-oci-lockfile", cwd=repo)
    run_pants("package", "svc:image", "svc:plain", cwd=repo)
    layout = repo / "dist/svc/image"
    attached = _attached(layout)
    assert sorted(attached) == sorted((arch, t) for arch in (HOST, OTHER) for t in SUPPLY_CHAIN)
    # An image whose target turns the supply chain off has none.
    plain = json.loads((repo / "dist/svc/plain/index.json").read_text())["manifests"]
    assert [entry.get("artifactType") for entry in plain] == [None]

    # What the build knows, in the host image's CycloneDX SBOM.
    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    index = json.loads(layout_blob(layout, top["digest"]))
    host_manifest = next(e for e in index["manifests"] if e["platform"]["architecture"] == HOST)
    image_manifest = json.loads(layout_blob(layout, host_manifest["digest"]))
    bom = json.loads(attached[(HOST, CYCLONEDX_MEDIA_TYPE)])
    assert bom["metadata"]["component"]["version"] == host_manifest["digest"]
    components = _components(attached[(HOST, CYCLONEDX_MEDIA_TYPE)])
    libraries = {c["name"]: c for c in components.values() if c["type"] == "library"}
    assert sorted(libraries) == RESOLVED
    for name, component in libraries.items():
        archive = f"{name.replace('-', '_')}-1.0.0-py3-none-any.whl"
        assert component["hashes"] == [{"alg": "SHA-256", "content": wheel_sha[archive]}], name
        assert component["purl"] == f"pkg:pypi/{name}@1.0.0"
    assert libraries["ocitest-alpha"]["licenses"] == [{"expression": "MIT"}]
    assert libraries["ocitest-delta"]["licenses"] == [{"license": {"name": "Delta Public Licence"}}]
    assert "licenses" not in libraries["ocitest-bravo"]
    # The base by the digest of the platform's image in its index.
    base = components["base"]
    base_image = "sha256:" + hashlib.sha256(python_base_image.image.manifest).hexdigest()
    assert base["version"] == base_image
    assert base["name"] == pinned_base.split("@", 1)[0]
    assert {"name": "pants-oci:lockfile", "value": "oci.lock.json"} in base["properties"]
    assert components["python"]["version"] == "3.11"
    layer_digests = [layer["digest"] for layer in image_manifest["layers"]]
    assert [components[f"layer-{n}"]["version"] for n in range(len(layer_digests))] == layer_digests
    assert components["sources"]["version"] == layer_digests[-1]  # the code layer

    # Others' validators accept both SBOMs of both platforms.
    for arch in (HOST, OTHER):
        assert cyclonedx_errors(attached[(arch, CYCLONEDX_MEDIA_TYPE)], tmp_path) == []
        checked = spdx_check(attached[(arch, SPDX_MEDIA_TYPE)], tmp_path)
        assert checked["errors"] == [] and set(RESOLVED) <= set(checked["packages"])

    provenance = json.loads(attached[(HOST, IN_TOTO_MEDIA_TYPE)])
    assert provenance["subject"][0]["digest"] == {"sha256": host_manifest["digest"][7:]}
    definition = provenance["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["targets"] == ["svc:image", "svc:bin"]
    assert definition["externalParameters"]["base"] == base_tag
    resolved = {d["name"]: d for d in definition["resolvedDependencies"]}
    lock_sha = hashlib.sha256((repo / LOCKFILE).read_bytes()).hexdigest()
    assert resolved[LOCKFILE]["digest"] == {"sha256": lock_sha}
    assert resolved[pinned_base.split("@", 1)[0]]["uri"].startswith(
        f"oci://{pinned_base.split('@')[0]}@sha256:"
    )

    # Reproducible: a clean build of a copy elsewhere (no process cache) gives the same bytes.
    copy = tmp_path / "copy"
    shutil.copytree(repo, copy, ignore=shutil.ignore_patterns("dist", ".pants.d", ".pids"))
    run_pants("--no-local-cache", "package", "svc:image", cwd=copy)
    assert _attached(copy / "dist/svc/image") == attached

    # Bump one requirement: only its entry changes (and what names the image and its layers).
    (repo / "3rdparty/python/requirements.txt").write_text(
        "ocitest-alpha==1.0.0\nocitest-delta==1.1.0\n"
    )
    run_pants("generate-lockfiles", "--resolve=python-default", cwd=repo)
    run_pants("package", "svc:image", cwd=repo)
    after = _components(_attached(layout)[(HOST, CYCLONEDX_MEDIA_TYPE)])
    changed = {ref for ref in set(components) | set(after) if components.get(ref) != after.get(ref)}
    layers_after = {c["version"] for c in after.values() if c["type"] == "file"}
    delta_layer = {f"layer-{n}" for n, d in enumerate(layer_digests) if d not in layers_after}
    assert len(delta_layer) == 1
    assert changed == {"pypi-ocitest-delta-1.0.0", "pypi-ocitest-delta-1.1.0", *delta_layer}
    assert after["pypi-ocitest-delta-1.1.0"]["hashes"] == [
        {"alg": "SHA-256", "content": hashlib.sha256(bumped_wheel.read_bytes()).hexdigest()}
    ]

    # Publish: attached to each pushed platform image, read back by reference.
    run_pants("publish", "svc:image", cwd=repo)
    reference = f"{registry.host}/svc/app:1"
    options = TransportOptions()
    found = list_referrers(reference, options=options)
    published = _attached(layout)
    assert sorted(item.descriptor.artifact_type or "" for item in found) == sorted(SUPPLY_CHAIN * 2)
    for arch in (HOST, OTHER):
        spdx = attached_document(
            reference, SPDX_MEDIA_TYPE, platform=Platform.parse(f"linux/{arch}"), options=options
        )
        assert spdx == published[(arch, SPDX_MEDIA_TYPE)]
