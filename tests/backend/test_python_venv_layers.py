"""Python images whose third-party distributions are layers of their own (issue 18), with real
`./pants` against the loopback registry, offline: every requirement comes from a find-links
directory of wheels made by the test (tests/harness/wheels.py).

Two services over one set of pins, one built for linux/amd64 and linux/arm64 on a base index
whose images both carry the host's Python: shared distributions share layer digests across
images and platforms, each platform gets its own native wheel, one bumped pin changes one
layer and `publish` uploads only it with the configs, and runc runs the image.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.harness.busybox import PushedImage, host_architecture
from tests.harness.distribution import OCI_INDEX
from tests.harness.layouts import attached_documents
from tests.harness.python_base import SYSTEM_PYTHON, multi_platform_python_base
from tests.harness.registry import Registry, access_log
from tests.harness.tools import runc_run, umoci_unpack
from tests.harness.wheels import (
    NATIVE_PINS,
    STANDARD_PINS,
    find_links_with,
    import_name,
    pex_binary,
    pure_wheel,
)
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow

ALL = sorted([*STANDARD_PINS, *NATIVE_PINS])
# Service two shares seven distributions with service one, and not ocitest-echo.
TWO = ["ocitest-alpha", "ocitest-delta", "ocitest-foxtrot", "ocitest-golf", "ocitest-native"]
TWO_RESOLVED = sorted([*TWO, "ocitest-bravo", "ocitest-charlie"])  # alpha requires both
BUMPED = "ocitest-echo"
SITE = "opt/venv/lib/python3.11/site-packages"
HOST = host_architecture()
OTHER = "arm64" if HOST == "amd64" else "amd64"
MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}


def _complete_platforms() -> dict[str, str]:
    """Complete platforms of the Python the base carries (PEX's `interpreter inspect` of the
    host's /usr/bin/python3.11), for the host's machine and for the other one."""
    pex3 = pex_binary().parent / "pex3"
    inspected = subprocess.run(
        [
            str(pex3),
            "interpreter",
            "inspect",
            "--markers",
            "--tags",
            "--python",
            str(SYSTEM_PYTHON),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    host, other = MACHINE[HOST], MACHINE[OTHER]
    return {
        "svc/three/host.json": inspected,
        "svc/three/other.json": inspected.replace(host, other),
    }


def _service(
    name: str,
    dists: list[str],
    base: str,
    registry: Registry,
    *,
    extra: str = "",
    pex_extra: str = "",
) -> dict[str, str]:
    imports = "\n".join(f"import {import_name(d)}" for d in dists)
    modules = ", ".join(import_name(d) for d in dists)
    main = (
        f"import json, sys\n{imports}\n\n"
        f"versions = {{m.NAME: m.VERSION for m in ({modules},)}}\n"
        'print(json.dumps(versions, sort_keys=True, separators=(",", ":")),'
        " ocitest_native.ARCH, sys.prefix)\n"
    )
    deps = ", ".join(f'"3rdparty:{d}"' for d in dists)
    build = f"""
python_sources(name="src", dependencies=[{deps}])
pex_binary(name="bin", entry_point="main.py", dependencies=[":src"], {pex_extra})
oci_image(
    name="image",
    base="{base}",
    dependencies=[":bin"],
    registries=["{registry.host}"],
    repository="svc/{name}",
    image_tags=["1"],
    {extra}
)
"""
    return {f"svc/{name}/BUILD": build, f"svc/{name}/main.py": main}


def _requirements(pins: dict[str, str]) -> str:
    return "".join(
        f'python_requirement(name="{name}", requirements=["{name}=={version}"])\n'
        for name, version in sorted(pins.items())
    )


def _layout(repo: Path, name: str) -> Path:
    return repo / "dist" / f"svc.{name}" / "image"


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs/sha256" / digest.split(":", 1)[1]).read_bytes()


def _manifests(layout: Path) -> dict[str, dict[str, Any]]:
    """The layout's image manifests by architecture (through its index, if it has one)."""
    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    document = json.loads(_blob(layout, top["digest"]))
    if document.get("mediaType") != OCI_INDEX and "manifests" not in document:
        config = json.loads(_blob(layout, document["config"]["digest"]))
        return {config["architecture"]: document}
    return {
        entry["platform"]["architecture"]: json.loads(_blob(layout, entry["digest"]))
        for entry in document["manifests"]
    }


def _names(layout: Path, digest: str) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(_blob(layout, digest)))) as tar:
        return tar.getnames()


def _member(layout: Path, digest: str, site_path: str) -> str:
    """A file of a layer, by its path in site-packages."""
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(_blob(layout, digest)))) as tar:
        member = tar.extractfile(f"{SITE}/{site_path}")
        assert member is not None
        return member.read().decode()


def _layers_by_distribution(layout: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """Each distribution's layer digest, found by the `.dist-info` directory it holds."""
    found = {}
    for layer in manifest["layers"]:
        for name in _names(layout, layer["digest"]):
            parts = name.split("/")
            if len(parts) > 5 and parts[5].endswith(".dist-info"):
                project = parts[5][: -len(".dist-info")].rsplit("-", 1)[0]
                found[project.replace("_", "-")] = layer["digest"]
    return found


def _uploaded_blobs(registry: Registry, since: int) -> set[str]:
    return {
        entry.query["digest"][0]
        for entry in access_log(registry)[since:]
        if entry.method == "PUT" and "/blobs/uploads/" in entry.path and entry.status == 201
    }


def test_distribution_layers_are_shared_bumped_alone_and_native_per_platform(
    tmp_path: Path, python_base_image: PushedImage, registry_anonymous: Registry
) -> None:
    registry = registry_anonymous
    links = find_links_with(tmp_path / "wheels")
    pure_wheel(links.directory, BUMPED, "1.1.0")  # the bump, already on the index
    base = multi_platform_python_base(python_base_image, registry, OTHER)
    platforms = f'platforms=["linux/{HOST}", "linux/{OTHER}"],'
    files = {
        "3rdparty/BUILD": _requirements(dict(links.pins)),
        **_service("one", ALL, base, registry, extra=platforms),
        **_service("two", TWO, base, registry),
        # Resolved for the pex_binary's complete platforms, its distributions in 2 layers.
        **_service(
            "three",
            TWO,
            base,
            registry,
            extra=f"{platforms} python_layer_budget=2,",
            pex_extra='complete_platforms=[":host", ":other"]',
        ),
        "svc/three/BUILD.platforms": 'file(name="host", source="host.json")\n'
        'file(name="other", source="other.json")\n',
        **_complete_platforms(),
    }
    repo = make_pants_repo(
        tmp_path / "repo",
        files,
        extra_toml=f'[python-repos]\nfind_links = ["file://{links.directory}"]\n',
    )
    run_pants("package", "svc/one:image", "svc/two:image", "svc/three:image", cwd=repo)
    one, two = _manifests(_layout(repo, "one")), _manifests(_layout(repo, "two"))
    assert sorted(one) == sorted([HOST, OTHER]) and list(two) == [HOST]
    one_host = _layers_by_distribution(_layout(repo, "one"), one[HOST])
    one_other = _layers_by_distribution(_layout(repo, "one"), one[OTHER])
    two_host = _layers_by_distribution(_layout(repo, "two"), two[HOST])
    assert sorted(one_host) == ALL and sorted(two_host) == TWO_RESOLVED
    # Every distribution is a layer of its own: eleven, plus base, venv and code.
    assert len(one[HOST]["layers"]) == 1 + 1 + len(ALL) + 1

    # Shared: a distribution's layer is the same bytes in every image that has it, and on
    # every platform when it is pure Python; first-party code too.
    for dist in TWO_RESOLVED:
        assert two_host[dist] == one_host[dist], dist
    for dist in STANDARD_PINS:
        assert one_other[dist] == one_host[dist], dist
    assert one[OTHER]["layers"][-1] == one[HOST]["layers"][-1]  # the code layer

    # Multi-platform without emulation: each platform's image has its own native wheel.
    native = "ocitest-native"
    assert one_other[native] != one_host[native]
    for arch, layers in ((HOST, one_host), (OTHER, one_other)):
        names = _names(_layout(repo, "one"), layers[native])
        machine = MACHINE[arch]
        assert f"{SITE}/ocitest_native/_native.cpython-311-{machine}-linux-gnu.so" in names
        assert not any(MACHINE[a] in n for a in MACHINE if a != arch for n in names)
        wheel = _member(
            _layout(repo, "one"), layers[native], "ocitest_native-1.0.0.dist-info/WHEEL"
        )
        tags = [line.split(": ", 1)[1] for line in wheel.splitlines() if line.startswith("Tag:")]
        assert tags == [
            f"cp311-cp311-manylinux_2_17_{machine}",
            f"cp311-cp311-manylinux2014_{machine}",
        ]

    # Complete platforms: each platform's PEX is resolved for the matching one; under a
    # budget of 2, the seven distributions share two layers (venv and code besides).
    three = _manifests(_layout(repo, "three"))
    for arch in (HOST, OTHER):
        layers = three[arch]["layers"]
        assert len(layers) == 1 + 1 + 2 + 1
        by_distribution = _layers_by_distribution(_layout(repo, "three"), three[arch])
        assert sorted(by_distribution) == TWO_RESOLVED
        assert len(set(by_distribution.values())) == 2
        native_names = _names(_layout(repo, "three"), by_distribution["ocitest-native"])
        so = f"{SITE}/ocitest_native/_native.cpython-311-{MACHINE[arch]}-linux-gnu.so"
        assert so in native_names

    # runc runs service two: the venv's Python imports its third-party packages, native
    # one included, from the layers they are in.
    bundle = tmp_path / "bundle"
    umoci_unpack(_layout(repo, "two"), "1", bundle)
    ran = runc_run(bundle, None)
    versions, arch, prefix = ran.stdout.split()
    assert json.loads(versions) == {d: links.pins[d] for d in TWO}
    assert (arch, prefix) == (MACHINE[HOST], "/opt/venv")

    run_pants("publish", "svc/one:image", "svc/two:image", cwd=repo)
    published = len(access_log(registry))

    # Bump one pin: only that distribution's layer changes, in both images that have it.
    bumped_pins = {**links.pins, BUMPED: "1.1.0"}
    (repo / "3rdparty/BUILD").write_text(_requirements(bumped_pins))
    run_pants("package", "svc/one:image", "svc/two:image", cwd=repo)
    after = _manifests(_layout(repo, "one"))
    for arch, by_distribution in ((HOST, one_host), (OTHER, one_other)):
        before_layers = [layer["digest"] for layer in one[arch]["layers"]]
        after_layers = [layer["digest"] for layer in after[arch]["layers"]]
        changed = [b for b, a in zip(before_layers, after_layers, strict=True) if a != b]
        assert len(after_layers) == len(before_layers)
        assert changed == [by_distribution[BUMPED]]
    new_echo = _layers_by_distribution(_layout(repo, "one"), after[HOST])[BUMPED]
    assert _manifests(_layout(repo, "two"))[HOST] == two[HOST]  # two has no ocitest-echo

    # `publish` uploads the new layer (once: it is the same on both platforms), the two
    # configs, and the new images' SBOMs and provenance; every other blob is already there.
    run_pants("publish", "svc/one:image", "svc/two:image", cwd=repo)
    configs = {after[arch]["config"]["digest"] for arch in (HOST, OTHER)}
    documents = attached_documents(_layout(repo, "one"))
    assert len(documents) == 6  # 3 per platform image
    assert _uploaded_blobs(registry, published) == {new_echo, *configs, *documents}
