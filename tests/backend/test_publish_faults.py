"""`pants publish` of several images while the registry fails (issue 15): real `./pants` against
a real registry on loopback with a FaultProxy (tests/harness/proxies.py) in front of it.

Four images, two tags each, all to one `[oci].registries` alias that is the proxy:

- `ok` publishes;
- `torn`: its manifest PUT under its second tag is answered 500 every time (the first tag moves);
- `reset`: every blob upload request of it has its connection reset;
- `stalled`: the registry takes every request of it and never answers.

One `publish` with those faults must go on past each failure, exit non-zero, and report each
name published or failed, on the console and in `--publish-output`; the registry (read
directly, not through the proxy) must hold exactly the names reported published, each naming
the packaged manifest, and no tag may name a manifest with a missing blob. With the faults
gone, publishing again must publish the rest: every name, the digests `package` built.

Two Pants runs (without pantsd), as few as the assertions need: `package publish` with the
faults (the digests `package` built are read from dist/), then `publish` without them. With
`[oci].retries = 1` and `[oci].read_timeout = 1.5`, each push of the stalled image gives up
after 2 x 1.5 s and a backoff.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core.errors import RegistryError
from pants_oci.core.models import DockerManifest, OCIManifest
from tests.core.registry_support import client_for
from tests.harness.proxies import FaultProxy
from tests.harness.registry import Registry
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow

IMAGES = ("ok", "torn", "reset", "stalled")
TAGS = ("1.0", "stable")
RETRIES = 1
READ_TIMEOUT = 1.5
# What a publish with the faults must leave in the registry: image -> its tags there.
MOVED_UNDER_FAULTS = {"ok": TAGS, "torn": ("1.0",), "reset": (), "stalled": ()}
STORAGE_FAILURE = "the storage backend is on fire"


@dataclass(frozen=True)
class Setup:
    repo: Path
    proxy: FaultProxy
    registry: Registry
    prefix: str  # of every repository the images go to

    def name(self, image: str, tag: str) -> str:
        """An image's name as publish pushes it: through the proxy."""
        return f"{self.proxy.host}/{self.prefix}/{image}:{tag}"


@dataclass(frozen=True)
class RegistryState:
    """What the registry itself holds under the test's prefix, read without the proxy."""

    tags: dict[str, dict[str, str]]  # image -> tag -> manifest digest
    incomplete: list[str]  # "repository:tag lacks blob digest", for each missing blob


@dataclass(frozen=True)
class Publish:
    result: subprocess.CompletedProcess[str]
    record: list[dict[str, Any]]  # `--publish-output`
    summary: dict[str, str]  # name -> "published" / "failed", from the console
    state: RegistryState  # right after the run


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, registry_anonymous: Registry
) -> Iterator[Setup]:
    prefix = f"publish-faults-{uuid.uuid4().hex[:8]}"
    build = "\n".join(
        f"""
files(name="{image}-files", sources=["{image}.txt"])
oci_image(
    name="{image}",
    dependencies=[":{image}-files"],
    registries=["@faulty"],
    repository="{prefix}/{{name}}",
    image_tags={list(TAGS)!r},
)"""
        for image in IMAGES
    )
    with FaultProxy(registry_anonymous.url) as proxy:
        repo = make_pants_repo(
            tmp_path_factory.mktemp("publish-faults") / "repo",
            {
                "svc/BUILD": build,
                # Content of each image's own: no blob is shared between the images.
                **{f"svc/{image}.txt": f"{image} {prefix}\n" for image in IMAGES},
            },
            extra_toml=f"""
[oci]
retries = {RETRIES}
read_timeout = {READ_TIMEOUT}

[oci.registries.faulty]
address = "{proxy.host}"
""",
        )
        yield Setup(repo, proxy, registry_anonymous, prefix)


def _registry_state(setup: Setup) -> RegistryState:
    tags: dict[str, dict[str, str]] = {image: {} for image in IMAGES}
    incomplete = []
    with client_for(setup.registry, f"{setup.prefix}/{IMAGES[0]}") as client:
        repositories = [r for r in client.catalog() if r.startswith(f"{setup.prefix}/")]
    for repository in repositories:
        with client_for(setup.registry, repository) as client:
            try:
                listed = client.list_tags()
            except RegistryError as error:  # a repository with upload sessions only
                assert error.status == 404, error
                listed = []
            for tag in listed:
                if tag.startswith("sha256-"):
                    continue  # the image's referrers list (its SBOMs and provenance)
                manifest = client.get_manifest(tag)
                assert isinstance(manifest, OCIManifest | DockerManifest), manifest
                for blob in (manifest.config, *manifest.layers):
                    if client.blob_size(blob.digest) is None:
                        incomplete.append(f"{repository}:{tag} lacks blob {blob.digest}")
                tags[repository.removeprefix(f"{setup.prefix}/")][tag] = str(manifest.digest)
    return RegistryState(tags, incomplete)


# Pants' publish summary, one line per name: "✓ NAME published." / "✕ NAME failed.".
_SUMMARY_LINE = re.compile(r"^[✓✕] (?P<name>\S+) (?P<status>published|failed)\b", re.MULTILINE)


def _publish(setup: Setup, record: Path, *goals: str) -> Publish:
    result = run_pants(f"--publish-output={record}", *goals, "svc::", cwd=setup.repo, check=False)
    summary = {m["name"]: m["status"] for m in _SUMMARY_LINE.finditer(result.stderr)}
    written = json.loads(record.read_text()) if record.exists() else []
    return Publish(result, written, summary, _registry_state(setup))


@pytest.fixture(scope="module")
def faulted(setup: Setup) -> Publish:
    """`pants package publish` while the proxy breaks three of the four images, as the module
    docstring says: one Pants run builds the images and then publishes them."""
    proxy, prefix = setup.proxy, setup.prefix
    proxy.respond(
        "PUT",
        rf"/v2/{prefix}/torn/manifests/stable$",
        500,
        headers={"Content-Type": "application/json"},
        body=json.dumps({"errors": [{"code": "UNKNOWN", "message": STORAGE_FAILURE}]}).encode(),
        times=None,
    )
    # Upload sessions (PATCH, PUT, status GET), not their POST: the registry opens sessions
    # that never receive a byte.
    proxy.cut("*", rf"/v2/{prefix}/reset/blobs/uploads/[^?]+", after_bytes=0, times=None)
    proxy.stall("*", rf"/v2/{prefix}/stalled/", times=None)
    try:
        return _publish(setup, setup.repo.parent / "faulted.json", "package", "publish")
    finally:
        proxy.clear()


@pytest.fixture(scope="module")
def packaged(setup: Setup, faulted: Publish) -> dict[str, str]:
    """image -> the manifest digest the `package` goal of the faulted run built."""
    digests = {}
    for image in IMAGES:
        info_path = setup.repo / f"dist/svc/{image}/image-info.json"
        assert info_path.is_file(), f"`package` wrote no {info_path}\n{_output(faulted)}"
        info = json.loads(info_path.read_text())
        [entry] = info["registries"]
        assert entry["references"] == [setup.name(image, tag) for tag in TAGS], entry
        digests[image] = info["manifest_digest"]
    assert len(set(digests.values())) == len(IMAGES), digests
    return digests


@pytest.fixture(scope="module")
def republished(setup: Setup, faulted: Publish) -> Publish:
    """`pants publish` again once the registry behaves."""
    return _publish(setup, setup.repo.parent / "republished.json", "publish")


def _output(publish: Publish) -> str:
    return f"stdout:\n{publish.result.stdout}\nstderr:\n{publish.result.stderr}"


def _by_name(publish: Publish) -> dict[str, dict[str, Any]]:
    entries: dict[str, dict[str, Any]] = {}
    for entry in publish.record:
        for name in entry["names"]:
            assert name not in entries, f"{name} is recorded twice: {publish.record}"
            entries[name] = entry
    return entries


def test_a_faulted_publish_fails_and_reports_each_name_published_or_failed(
    setup: Setup, packaged: dict[str, str], faulted: Publish
) -> None:
    assert faulted.result.returncode != 0, _output(faulted)
    expected = {
        setup.name(image, tag): "published" if tag in MOVED_UNDER_FAULTS[image] else "failed"
        for image in IMAGES
        for tag in TAGS
    }
    # The console: every image was tried, whatever failed before it; the torn image's first
    # tag is published, its second failed.
    assert faulted.summary == expected, _output(faulted)
    # `--publish-output`: the same, per name, with the target and the digest it is about.
    recorded = _by_name(faulted)
    assert {name: entry["published"] for name, entry in recorded.items()} == {
        name: status == "published" for name, status in expected.items()
    }, faulted.record
    for image in IMAGES:
        for tag in TAGS:
            entry = recorded[setup.name(image, tag)]
            assert entry["target"] == f"svc:{image}", entry
            assert entry["digest"] == packaged[image], entry
            assert entry["exit_code"] == (0 if entry["published"] else 1), entry


def test_each_failure_says_which_push_it_ended_and_why(setup: Setup, faulted: Publish) -> None:
    output = faulted.result.stdout + faulted.result.stderr
    assert "Traceback" not in output, _output(faulted)
    errors = [line for line in output.splitlines() if line.startswith("pants-oci: error:")]
    by_name: dict[str, str] = {}
    for error in errors:
        match = re.match(r"pants-oci: error: pushing (\S+): (.*)", error)
        assert match is not None, error
        assert match[1] not in by_name, errors
        by_name[match[1]] = match[2]
    # One error for each name that failed, none for a published one.
    assert set(by_name) == {
        setup.name(image, tag)
        for image in IMAGES
        for tag in TAGS
        if tag not in MOVED_UNDER_FAULTS[image]
    }, errors
    repository = f"{setup.proxy.host}/{setup.prefix}"
    assert by_name[setup.name("torn", "stable")] == (
        f"putting manifest stable in {repository}/torn failed: HTTP 500 UNKNOWN: {STORAGE_FAILURE}"
    )
    for tag in TAGS:
        reset = by_name[setup.name("reset", tag)]
        assert reset.startswith(f"registry {setup.proxy.host} "), errors
        assert "dropped the connection" in reset, errors
        # The stalled image: each push gave up after its attempts of the configured
        # timeout, naming the option that waits longer.
        stalled = by_name[setup.name("stalled", tag)]
        assert stalled.startswith(f"timed out talking to registry {setup.proxy.host} "), stalled
        assert (
            f"did not answer within {READ_TIMEOUT:g} s (ReadTimeout, {RETRIES + 1} attempts)"
            in stalled
        ), stalled
        assert "set `[oci].read_timeout` to" in stalled, stalled


def test_the_registry_holds_exactly_the_names_that_moved(
    packaged: dict[str, str], faulted: Publish
) -> None:
    assert faulted.state.tags == {
        image: {tag: packaged[image] for tag in tags} for image, tags in MOVED_UNDER_FAULTS.items()
    }
    assert faulted.state.incomplete == []


def test_publishing_again_publishes_the_rest(
    setup: Setup, packaged: dict[str, str], republished: Publish
) -> None:
    assert republished.result.returncode == 0, _output(republished)
    every_name = {setup.name(image, tag) for image in IMAGES for tag in TAGS}
    assert republished.summary == dict.fromkeys(every_name, "published"), _output(republished)
    assert {n: e["published"] for n, e in _by_name(republished).items()} == dict.fromkeys(
        every_name, True
    )
    assert republished.state.tags == {
        image: dict.fromkeys(TAGS, packaged[image]) for image in IMAGES
    }
    assert republished.state.incomplete == []
