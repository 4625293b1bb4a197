"""Reading the OCI layouts `pants package` writes, as a test checks them."""

from __future__ import annotations

import json
from pathlib import Path

# The two-byte `{}` config of every artifact manifest (OCI 1.1's empty descriptor).
EMPTY_CONFIG_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


def layout_blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs/sha256" / digest.split(":", 1)[1]).read_bytes()


def attached_documents(layout: Path) -> set[str]:
    """The digests of the documents (SBOMs, provenance) attached to the layout's images: the
    layers of its artifact manifests, which `index.json` lists with their `artifactType`."""
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    return {
        layer["digest"]
        for entry in entries
        if "artifactType" in entry
        for layer in json.loads(layout_blob(layout, entry["digest"]))["layers"]
    }
