"""A layer blob whose gzip or zstd bytes are damaged is one error, CorruptLayerError (a
LayerError, and an OSError as gzip's own errors are), whichever decompressor found it; every
command that reads layers reports it as a clear error (or, `validate`, as a problem), never a
traceback."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
import traceback
from pathlib import Path

import pytest
import zstandard

from pants_oci.core import cli
from pants_oci.core.compression import decompressed, inspect_layer_blob
from pants_oci.core.errors import CorruptLayerError, LayerError
from tests.core.registry_support import hermetic_cli_environment
from tests.harness.busybox import PushedImage, image_from_layer, write_oci_layout

Capture = pytest.CaptureFixture[str]


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hermetic_cli_environment(monkeypatch, tmp_path)


def _tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = os.urandom(64 << 10)  # incompressible: the damage lands in deflate data
        info = tarfile.TarInfo("data.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _damaged(blob: bytes, at: int, length: int = 16) -> bytes:
    return blob[:at] + bytes(b ^ 0xFF for b in blob[at : at + length]) + blob[at + length :]


TAR = _tar()
DAMAGED = {
    "gzip": _damaged(gzip.compress(TAR, mtime=0), 30 << 10),
    "gzip cut short": gzip.compress(TAR, mtime=0)[:-100],
    # Incompressible data is kept in raw blocks, unchecked: damage the first block's header.
    "zstd": _damaged(zstandard.ZstdCompressor().compress(TAR), 6, 3),
}


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_damaged_layers_are_one_error_type(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "layer"
    path.write_bytes(DAMAGED[kind])
    with pytest.raises(CorruptLayerError) as raised:
        inspect_layer_blob(path)
    assert isinstance(raised.value, LayerError) and isinstance(raised.value, OSError)
    assert "damaged or cut short" in str(raised.value)
    with (
        open(path, "rb") as blob,
        pytest.raises(CorruptLayerError),
        decompressed(blob) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        for member in tar:
            tar.extractfile(member).read()  # type: ignore[union-attr]


def _fails(capsys: Capture, *argv: str) -> str:
    try:
        status = cli.main(["-q", *argv])
    except BaseException:  # a traceback is the failure this test is about
        pytest.fail(f"pants-oci {' '.join(argv)} raised:\n{traceback.format_exc()}")
    out, err = capsys.readouterr()
    assert status == 1, err
    assert "Traceback" not in err
    return out + err


def test_commands_report_a_damaged_layer_clearly(
    capsys: Capture, busybox_image: PushedImage, tmp_path: Path
) -> None:
    damaged = DAMAGED["gzip"]
    layer = tmp_path / "bad.tar.gz"
    layer.write_bytes(damaged)
    target = f"{busybox_image.registry.host}/corrupt/append:1"
    err = _fails(capsys, "append", busybox_image.tag_ref, "--new-layer", str(layer), "-t", target)
    assert f"layer {layer} is not a readable tar file" in err and "damaged" in err

    image = image_from_layer(TAR, damaged, env=[], cmd=["sh"], created_by="damaged")
    layout = write_oci_layout(image, tmp_path / "layout")
    report = _fails(capsys, "validate", "--json", str(layout))
    document = json.loads(report[: report.index("\n") + 1])
    [problem] = document["problems"]
    assert problem["kind"] == "invalid" and "damaged or cut short" in problem["message"]

    archive = tmp_path / "image.tar"
    with tarfile.open(archive, "w") as tar:
        config_name = f"{image.config_digest.removeprefix('sha256:')}.json"
        manifest = [{"Config": config_name, "RepoTags": ["corrupt/archive:1"], "Layers": ["l.tar"]}]
        for name, data in (
            (config_name, image.config),
            ("l.tar", damaged),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    report = _fails(capsys, "validate", "--json", str(archive))
    document = json.loads(report[: report.index("\n") + 1])
    assert [problem["kind"] for problem in document["problems"]] == ["invalid"]
    err = _fails(capsys, "push", str(archive), "--to", f"{busybox_image.registry.host}/corrupt/a:1")
    assert "damaged or cut short" in err
