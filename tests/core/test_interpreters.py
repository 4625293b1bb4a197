"""Finding a base image's Python by name in its layers, after whiteouts."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from pants_oci.core.digest import sha256_of_bytes
from pants_oci.core.errors import ImageArchiveError
from pants_oci.core.interpreters import PythonInterpreter, find_python_interpreters
from pants_oci.core.layout import ImageLayout
from pants_oci.core.models import Descriptor

Entry = tuple[str, bytes]  # name, tar type


def _layer(entries: list[Entry]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind in entries:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind == tarfile.SYMTYPE:
                info.linkname = "python3.11"
            tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    return gzip.compress(buffer.getvalue(), mtime=0)


def _layout(root: Path, layers: list[list[Entry]], *, drop_last_blob: bool = False) -> Path:
    layout = ImageLayout.create(root)
    blobs = [_layer(entries) for entries in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [str(sha256_of_bytes(gzip.decompress(b))) for b in blobs]}
    }).encode()  # fmt: skip
    layout.write_blob(config)
    for blob in blobs[:-1] if drop_last_blob else blobs:
        layout.write_blob(blob)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": str(sha256_of_bytes(config)), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": str(sha256_of_bytes(b)), "size": len(b)} for b in blobs],
    }).encode()  # fmt: skip
    layout.write_blob(manifest)
    descriptor = Descriptor(
        media_type="application/vnd.oci.image.manifest.v1+json",
        digest=sha256_of_bytes(manifest),
        size=len(manifest),
    )
    layout.set_refs({"base": [descriptor], "other-tag": [descriptor]})
    return root


def test_interpreters_in_preferred_order_after_whiteouts(tmp_path: Path) -> None:
    layout = _layout(
        tmp_path / "layout",
        [
            [
                ("usr/bin/python3.9", tarfile.REGTYPE),
                ("./usr/bin/python3.11", tarfile.REGTYPE),
                ("usr/bin/python3", tarfile.SYMTYPE),  # no minor version: not listed
                ("usr/local/bin/python3.12", tarfile.SYMTYPE),
                ("usr/local/bin/python3.10", tarfile.REGTYPE),
                ("opt/bin/python3.13", tarfile.REGTYPE),  # not a usual bin directory
                ("bin/python3.11", tarfile.DIRTYPE),  # not an executable
            ],
            # An upper layer deletes one interpreter and empties /usr/local/bin.
            [
                ("usr/bin/.wh.python3.9", tarfile.REGTYPE),
                ("usr/local/bin/.wh..wh..opq", tarfile.REGTYPE),
                ("usr/local/bin/python3.13", tarfile.REGTYPE),
            ],
        ],
    )
    assert find_python_interpreters(layout) == [
        PythonInterpreter("/usr/local/bin/python3.13", "3.13"),
        PythonInterpreter("/usr/bin/python3.11", "3.11"),
    ]


def test_whiteouts_hide_lower_layers_only_and_whole_directories(tmp_path: Path) -> None:
    layout = _layout(
        tmp_path / "layout",
        [
            [
                ("usr/local/bin/python3.12", tarfile.REGTYPE),
                ("usr/bin/python3.11", tarfile.REGTYPE),
                ("bin/python3.10", tarfile.REGTYPE),
            ],
            [
                # This layer's own interpreter survives its opaque marker, wherever it is.
                ("bin/python3.9", tarfile.REGTYPE),
                ("bin/.wh..wh..opq", tarfile.REGTYPE),
                ("usr/.wh.local", tarfile.REGTYPE),  # a whole directory tree goes
            ],
        ],
    )
    assert find_python_interpreters(layout) == [
        PythonInterpreter("/usr/bin/python3.11", "3.11"),
        PythonInterpreter("/bin/python3.9", "3.9"),
    ]


def test_no_interpreter_and_missing_layers(tmp_path: Path) -> None:
    empty = _layout(tmp_path / "empty", [[("etc/passwd", tarfile.REGTYPE)]])
    assert find_python_interpreters(empty) == []
    sparse = _layout(tmp_path / "sparse", [[("usr/bin/python3.11", tarfile.REGTYPE)]],
                     drop_last_blob=True)  # fmt: skip
    with pytest.raises(ImageArchiveError, match="is missing"):
        find_python_interpreters(sparse)


def test_a_member_that_leaves_the_root_is_refused_as_run_refuses_it(tmp_path: Path) -> None:
    """One policy for every reader of layers: `..` is never resolved as if `/` were the root."""
    hostile = _layout(tmp_path / "hostile", [[("../../usr/local/bin/python3.12", tarfile.REGTYPE)]])
    with pytest.raises(ImageArchiveError, match=r"'\.\./\.\./usr/local/bin/python3\.12'.*'\.\.'"):
        find_python_interpreters(hostile)
