"""The base-image lockfile's `images` section: the facts of base images that sparse layouts
build on, by manifest digest; written sorted, read back the same, optional when read."""

from __future__ import annotations

import json

from pants.util.frozendict import FrozenDict

from pants_oci.core import wire
from pants_oci.util_rules.lockfile import ImageFacts, LockedBase, _parse, render_lockfile

DIGEST = "sha256:" + "a" * 64
MANIFEST = "sha256:" + "b" * 64
BASES = {
    "docker.io/library/python:3.11-slim": LockedBase(
        digest=DIGEST,
        media_type="application/vnd.oci.image.index.v1+json",
        platforms=FrozenDict({"linux/amd64": MANIFEST}),
    )
}
FACTS = ImageFacts(
    directories=("usr", "bin", "usr/local"),
    pythons=(
        wire.PythonInterpreter(path="/usr/local/bin/python3.11", version="3.11"),
        wire.PythonInterpreter(path="/usr/bin/python3", version="3.9"),
    ),
)


def test_facts_are_written_sorted_and_read_back() -> None:
    rendered = render_lockfile(BASES, {MANIFEST: FACTS})
    document = json.loads(rendered)
    assert document["images"][MANIFEST] == {
        "directories": ["bin", "usr", "usr/local"],
        # Interpreters keep their order: the first is preferred.
        "pythons": [
            {"path": "/usr/local/bin/python3.11", "version": "3.11"},
            {"path": "/usr/bin/python3", "version": "3.9"},
        ],
    }
    bases, images = _parse("oci.lock.json", rendered)
    assert dict(bases) == BASES
    assert set(images) == {MANIFEST}
    assert set(images[MANIFEST].directories) == set(FACTS.directories)
    assert images[MANIFEST].pythons == FACTS.pythons
    # The same facts give the same bytes.
    assert render_lockfile(bases, images) == rendered


def test_a_lockfile_without_facts_still_reads() -> None:
    document = json.loads(render_lockfile(BASES))
    del document["images"]
    bases, images = _parse("oci.lock.json", json.dumps(document).encode())
    assert dict(bases) == BASES and not images
