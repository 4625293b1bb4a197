"""A small runnable base image built from the host's static busybox, for tests to build on,
and the helpers other harness images share: deterministic layers, configs and OCI layouts."""

from __future__ import annotations

import gzip
import io
import json
import os
import platform
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tests.harness.distribution import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    push_blob,
    push_manifest,
    sha256_digest,
)
from tests.harness.processes import HarnessError
from tests.harness.registry import Registry

BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "[", "basename", "cat", "chmod", "cp", "date", "dirname", "echo", "env", "false", "find",
    "grep", "head", "hostname", "id", "ln", "ls", "mkdir", "mv", "printf", "pwd", "readlink",
    "rm", "sed", "sh", "sha256sum", "sleep", "stat", "tail", "test", "touch", "true", "uname",
    "wc", "whoami",
)  # fmt: skip
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_GOARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def host_architecture() -> str:
    machine = platform.machine()
    if machine not in _GOARCH:
        raise HarnessError(f"no OCI architecture name known for host machine {machine!r}")
    return _GOARCH[machine]


LayerFiles = dict[str, tuple[tarfile.TarInfo, bytes | None]]
"""A layer's entries by name: (header, bytes for a regular file, else None)."""


def tar_entry(name: str, kind: bytes, mode: int, **extra: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = kind, mode
    # Fixed metadata so the same host files always give the same layer digest.
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
    for key, value in extra.items():
        setattr(info, key, value)
    return info


def put(files: LayerFiles, info: tarfile.TarInfo, data: bytes | None = None) -> None:
    """Add (or replace) one entry; a regular file's size comes from its bytes."""
    if data is not None:
        info.size = len(data)
    files[info.name] = (info, data)


def base_files(busybox: Path = BUSYBOX) -> LayerFiles:
    """The busybox rootfs: /bin/busybox and its applets, /etc/passwd and group, /root, /tmp.
    Other test base images start from these so they too have a shell."""
    if not busybox.is_file():
        raise HarnessError(f"{busybox} is missing; run ./test, which installs busybox-static")
    files: LayerFiles = {}
    for directory, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777)):
        put(files, tar_entry(directory, tarfile.DIRTYPE, mode))
    put(files, tar_entry("bin/busybox", tarfile.REGTYPE, 0o755), busybox.read_bytes())
    for applet in APPLETS:
        put(files, tar_entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, linkname="busybox"))
    put(files, tar_entry("etc/passwd", tarfile.REGTYPE, 0o644), b"root:x:0:0:root:/root:/bin/sh\n")
    put(files, tar_entry("etc/group", tarfile.REGTYPE, 0o644), b"root:x:0:\n")
    return files


def pack_layer(files: LayerFiles, compresslevel: int = 9) -> tuple[bytes, bytes]:
    """(uncompressed tar, gzip of it), entries sorted by name: the same files always give
    the same bytes."""
    tar_buffer = io.BytesIO()
    # PAX only adds extended headers where ustar cannot hold a value (e.g. a long name), so
    # short-named layers are plain ustar.
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            info, data = files[name]
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    tar_bytes = tar_buffer.getvalue()
    gz_buffer = io.BytesIO()
    # mtime=0 and no file name keep the gzip header fixed.
    with gzip.GzipFile(
        filename="", fileobj=gz_buffer, mode="wb", compresslevel=compresslevel, mtime=0
    ) as gz:
        gz.write(tar_bytes)
    return tar_bytes, gz_buffer.getvalue()


def build_layer(busybox: Path = BUSYBOX) -> tuple[bytes, bytes]:
    """(uncompressed tar, gzip of it); deterministic for a given busybox binary."""
    return pack_layer(base_files(busybox))


@dataclass(frozen=True)
class ImageBlobs:
    """A single-layer OCI image as bytes, not tied to any registry."""

    manifest: bytes
    config: bytes
    layer: bytes  # gzip
    diff_id: str  # sha256 of the uncompressed layer tar
    architecture: str
    os: str = "linux"
    manifest_media_type: str = OCI_MANIFEST

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)

    @property
    def layer_digest(self) -> str:
        return sha256_digest(self.layer)

    @property
    def blobs(self) -> dict[str, bytes]:
        return {self.config_digest: self.config, self.layer_digest: self.layer}


def image_from_layer(
    tar_bytes: bytes, layer: bytes, *, env: list[str], cmd: list[str], created_by: str
) -> ImageBlobs:
    """A single-layer image for the host architecture; JSON with sorted keys and no spaces,
    so the same layer always gives the same config and manifest digests."""
    diff_id = sha256_digest(tar_bytes)
    architecture = host_architecture()
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": env, "Cmd": cmd, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": created_by}],
    }
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": OCI_CONFIG,
            "digest": sha256_digest(config_bytes),
            "size": len(config_bytes),
        },
        "layers": [
            {"mediaType": OCI_LAYER_GZIP, "digest": sha256_digest(layer), "size": len(layer)}
        ],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    return ImageBlobs(
        manifest=manifest_bytes,
        config=config_bytes,
        layer=layer,
        diff_id=diff_id,
        architecture=architecture,
    )


def build_busybox_image(busybox: Path = BUSYBOX) -> ImageBlobs:
    tar_bytes, layer = build_layer(busybox)
    return image_from_layer(
        tar_bytes,
        layer,
        env=[PATH_ENV],
        cmd=["sh"],
        created_by="pants_oci test harness: busybox base",
    )


def write_oci_layout(image: ImageBlobs, layout_dir: Path, tag: str = "latest") -> Path:
    """Write `image` as a new OCI image layout (oci-layout, index.json naming it `tag` by the
    org.opencontainers.image.ref.name annotation, blobs/sha256/...), without the product's
    layout code. Returns layout_dir."""
    if (layout_dir / "index.json").exists():
        raise HarnessError(f"{layout_dir} already holds an OCI layout; use a fresh directory")
    blobs_dir = layout_dir / "blobs" / "sha256"
    blobs_dir.mkdir(parents=True, exist_ok=True)
    for data in (image.layer, image.config, image.manifest):
        (blobs_dir / sha256_digest(data).removeprefix("sha256:")).write_bytes(data)
    (layout_dir / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": image.manifest_media_type,
                "digest": image.manifest_digest,
                "size": len(image.manifest),
                "annotations": {"org.opencontainers.image.ref.name": tag},
                "platform": {"architecture": image.architecture, "os": image.os},
            }
        ],
    }
    (layout_dir / "index.json").write_text(json.dumps(index, indent=2))
    return layout_dir


@dataclass(frozen=True)
class PushedImage:
    """An image as it sits in one registry repository."""

    image: ImageBlobs
    registry: Registry
    repository: str
    tag: str

    @property
    def ref(self) -> str:
        """By digest: 127.0.0.1:PORT/REPO@sha256:..."""
        return f"{self.registry.host}/{self.repository}@{self.manifest_digest}"

    @property
    def tag_ref(self) -> str:
        return f"{self.registry.host}/{self.repository}:{self.tag}"

    @property
    def manifest_digest(self) -> str:
        return self.image.manifest_digest

    @property
    def config_digest(self) -> str:
        return self.image.config_digest

    @property
    def layer_digest(self) -> str:
        return self.image.layer_digest

    @property
    def diff_id(self) -> str:
        return self.image.diff_id

    @property
    def manifest(self) -> bytes:
        return self.image.manifest

    @property
    def config(self) -> bytes:
        return self.image.config

    @property
    def layer(self) -> bytes:
        return self.image.layer

    @property
    def blobs(self) -> dict[str, bytes]:
        return self.image.blobs

    def push_to(self, registry: Registry, repository: str, tag: str = "latest") -> PushedImage:
        return push_image_to(self.image, registry, repository, tag)


def push_image_to(
    image: ImageBlobs, registry: Registry, repository: str, tag: str = "latest"
) -> PushedImage:
    """Push blobs then the manifest by tag, authenticating as the registry's mode needs."""
    with registry.httpx_client() as client:
        for data in (image.layer, image.config):
            push_blob(client, repository, data)
        push_manifest(client, repository, tag, image.manifest, image.manifest_media_type)
    return PushedImage(image=image, registry=registry, repository=repository, tag=tag)


def push_large_base(registry: Registry, repository: str, data_bytes: int) -> PushedImage:
    """A busybox base with `data_bytes` of incompressible bytes of its own at
    /opt/data/blob, tagged `1.0` (random: no earlier run has its blobs in a blob cache)."""
    files = base_files()
    for directory in ("opt", "opt/data"):
        put(files, tar_entry(directory, tarfile.DIRTYPE, 0o755))
    put(files, tar_entry("opt/data/blob", tarfile.REGTYPE, 0o644), os.urandom(data_bytes))
    tar_bytes, layer = pack_layer(files, compresslevel=1)
    image = image_from_layer(tar_bytes, layer, env=[PATH_ENV], cmd=["sh"], created_by="large")
    return push_image_to(image, registry, repository, "1.0")
