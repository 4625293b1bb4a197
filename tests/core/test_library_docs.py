"""docs/library.md's examples run as written: every ```python block, in order, in one
namespace, against the loopback registry (``REGISTRY``) with busybox in it (``BASE``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness.busybox import PushedImage
from tests.harness.registry import Registry

LIBRARY = Path(__file__).resolve().parents[2] / "docs/library.md"
README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def test_the_library_tour_runs(
    busybox_image: PushedImage,
    registry_anonymous: Registry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # the examples write app/, layout/, app.tar, ...
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    # The docs' repositories (docs/app, docs/auth) are fresh: this registry serves one session.
    namespace: dict[str, object] = {
        "__name__": "library_docs",
        "REGISTRY": registry_anonymous.host,
        "BASE": busybox_image.tag_ref,
    }
    blocks = python_blocks(LIBRARY.read_text())
    assert len(blocks) >= 8
    for number, block in enumerate(blocks, 1):
        code = compile(block, f"docs/library.md python block {number}", "exec")
        exec(code, namespace)  # noqa: S102 -- the docs' own examples, run as a reader would


def test_the_migration_table_covers_the_seed_readme() -> None:
    """Each call of the seed's API has a row (the README's list of them, by name)."""
    table = LIBRARY.read_text().partition("## From container-image-builder")[2]
    for call in (
        "new Image",
        "addFiles",
        "ignores",
        "ignoreFiles",
        "options.tar",
        "walkdir",
        "image.save",
        "WorkingDir",
        "copyRemoteLayers",
        "ignoreExists",
        "getImageConfig",
        "getImageData",
        "image.client",
        "image.sync",
        "addLayer",
        "removeLayer",
        "CustomFile",
        "linkPath",
        "ctime",
        "GCRAuthOptions",
        "auth(imageSpecifier",
        "new RegistryClient",
        "client.manifest(",
        "client.tags()",
        "manifestUpload",
        "blobExists",
        "client.blob(",
        "client.upload(",
        "client.mount(",
    ):
        assert call in table, call


def test_the_readme_points_at_the_library_docs() -> None:
    section = README.read_text().partition("## Using the core library")[2].partition("\n## ")[0]
    assert "docs/library.md" in section
    for name in ("keychain=", "RegistryClient", "CustomFile", "sync", "add_layer", "remove_layer"):
        assert name in section, name
