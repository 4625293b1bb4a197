"""Golden digests: reference images whose every byte is pinned.

Layers, configs, manifests, an index and a docker-archive are built the way `pants package`
builds them (the `pants-oci` command line) and the way a library user does (the `Image` API),
from fixed inputs and SOURCE_DATE_EPOCH. A change to any byte of any of them (a refactor
that reorders JSON keys, a tar header field, the gzip header, an annotation) fails here
loudly. Change a digest only for a deliberate format change, and say so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core import cli
from pants_oci.core.image import Image
from pants_oci.core.layer import CustomFile

EPOCH = 1_700_000_000

# What the command line builds (see _build_with_cli).
GOLDEN_CLI = {
    "app layer (gzip)": "sha256:ffc6178abc42cfe0e9ac949b4ad1a0bb881742da1d0ee21ff73ee44643de3e3c",
    "app layer diff_id": "sha256:a2824af47a25640aea71c67be95c9f9fb90128cde04f45ec0cdb7aa96124c8c8",
    "data layer (zstd)": "sha256:bf628ae7ec60b34ee43a2a67d5909733a0824f58193e30b5014e7ea2a08fd9c5",
    "amd64 image": "sha256:e7259fb170596ca888668c4cb723d729f0fb308dd1cecb64385968b60d0ffa30",
    "amd64 config": "sha256:3ea596a9e5b438cb66c6cc94504c5660970078aa10d6ddd7527870bd2cdab716",
    "arm64 image": "sha256:2a698c7114a432227f1114c795c4c7acdc87c763d7371d3a36fd300f6aa48f24",
    "layered image": "sha256:42d044d111b3eb6f736e96fc0a6d75317751d23f601286af2f2cbbc902e52db7",
    "index": "sha256:e9b1e7d97bbeb8b8cf43161888dc0e871fcb46783067c236a2b714ffac7ee3ff",
    "docker-archive": "sha256:734650ca5801b8e58939e59922c4511c3dbac22ad4a2c47a36cffbacc3ba223d",
}
# What the Image API builds (see _build_with_api).
GOLDEN_API = {
    "image": "sha256:afe74ad2d77d3d0f0896f99737a299d4ed0e233d79c702005223fd90b11f3ac8",
    "layer": "sha256:f26fe6c4ebda123232ad4a6f256776118453dffd49129df33e46e20f77b8a86c",
}


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def _run(*argv: str) -> Any:
    """`pants-oci ARGV`, its JSON output."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = cli.main(["-q", *argv])
    assert status in (0, None), out.getvalue()
    text = out.getvalue().strip()
    return json.loads(text) if text else None


def _tagged(layout: Path, tag: str) -> dict[str, Any]:
    index = json.loads((layout / "index.json").read_text())
    (entry,) = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    return dict(entry)


def _blob(layout: Path, digest: str) -> Any:
    return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())


def _write_sources(work: Path) -> None:
    (work / "app").mkdir()
    (work / "app" / "main.py").write_text("print('hello')\n")
    (work / "app" / "run.sh").write_text("#!/bin/sh\nexec python3 /app/main.py\n")
    os.chmod(work / "app" / "run.sh", 0o755)  # noqa: S103 (an executable source)
    (work / "data.txt").write_text("data\n" * 1000)


def _layer(work: Path, name: str, spec: dict[str, Any]) -> tuple[Path, Path, dict[str, Any]]:
    (work / f"{name}.json").write_text(json.dumps({"source_date_epoch": EPOCH, **spec}))
    blob, meta = work / f"{name}.blob", work / f"{name}.meta.json"
    result = _run("layer", "build", "--spec", f"{name}.json", "--output", str(blob))
    meta.write_text(json.dumps(result))
    return blob, meta, result


def _build_with_cli(work: Path) -> dict[str, str]:
    _write_sources(work)
    app_blob, app_meta, app = _layer(
        work, "app", {"entries": [{"source": "app", "target": "/app"}], "uid": 1000, "gid": 1000}
    )
    data_blob, data_meta, data = _layer(
        work,
        "data",
        {"entries": [{"source": "data.txt", "target": "/srv/data.txt"}], "compression": "zstd"},
    )
    config = {
        "entrypoint": ["/app/run.sh"],
        "cmd": ["--serve"],
        "env": {"PORT": "8080", "LANG": "C.UTF-8"},
        "workdir": "/app",
        "user": "1000:1000",
        "labels": {"org.opencontainers.image.source": "https://example.com/app"},
        "annotations": {"org.opencontainers.image.description": "golden"},
        "exposed_ports": ["8080/tcp", "53/udp"],
        "volumes": ["/data"],
        "stop_signal": "SIGQUIT",
    }
    layers = ("--layer", f"{app_blob}={app_meta}", "--layer", f"{data_blob}={data_meta}")
    images = {}
    for platform in ("linux/amd64", "linux/arm64"):
        (work / "config.json").write_text(json.dumps({**config, "platform": platform}))
        out = work / platform.replace("/", "-")
        extra = ("--docker-archive", str(work / "app.tar")) if platform == "linux/amd64" else ()
        _run(
            *("image", "assemble", "--base", "scratch", "--config", "config.json"),
            *layers,
            *("--output", str(out), "--tag", "1.0", "--source-date-epoch", str(EPOCH)),
            *extra,
        )
        images[platform] = out
    amd64 = _tagged(images["linux/amd64"], "1.0")
    # An image on the amd64 one as its base: one more layer and one more label.
    (work / "config.json").write_text(json.dumps({"labels": {"tier": "web"}}))
    _run(
        *("image", "assemble", "--base", str(images["linux/amd64"]), "--config", "config.json"),
        *("--layer", f"{data_blob}={data_meta}", "--output", str(work / "layered")),
        *("--tag", "2.0", "--source-date-epoch", str(EPOCH)),
    )
    _run(
        *("image", "index", "--image", str(images["linux/amd64"])),
        *("--image", str(images["linux/arm64"]), "--output", str(work / "index"), "--tag", "1.0"),
    )
    return {
        "app layer (gzip)": app["digest"],
        "app layer diff_id": app["diff_id"],
        "data layer (zstd)": data["digest"],
        "amd64 image": amd64["digest"],
        "amd64 config": _blob(images["linux/amd64"], amd64["digest"])["config"]["digest"],
        "arm64 image": _tagged(images["linux/arm64"], "1.0")["digest"],
        "layered image": _tagged(work / "layered", "2.0")["digest"],
        "index": _tagged(work / "index", "1.0")["digest"],
        "docker-archive": _sha256(work / "app.tar"),
    }


def _build_with_api(work: Path) -> dict[str, str]:
    with Image("scratch", platform="linux/amd64", source_date_epoch=EPOCH) as image:
        layer = image.add_files(
            {
                "/etc/motd": CustomFile(data=b"hello\n"),
                "/opt/tool": CustomFile(data=b"#!/bin/sh\n", mode=0o755, uid=1000),
                "/var/log/app": CustomFile(kind="directory", mode=0o750),
                "/usr/bin/tool": CustomFile(kind="symlink", link_target="/opt/tool"),
            }
        )
        image.cmd = ["/opt/tool"]
        image.set_env("HOME", "/root")
        digest = image.write_layout(work / "api", ["v1"])
    return {"image": str(digest), "layer": str(layer.digest)}


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return tmp_path


def test_images_built_by_the_command_line_are_byte_for_byte_the_golden_ones(work: Path) -> None:
    assert _build_with_cli(work) == GOLDEN_CLI


def test_images_built_by_the_api_are_byte_for_byte_the_golden_ones(work: Path) -> None:
    assert _build_with_api(work) == GOLDEN_API
