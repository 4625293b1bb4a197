"""A small runnable base image built from the host's static busybox, for tests to build on."""

from __future__ import annotations

import gzip
import io
import json
import platform
import tarfile
from dataclasses import dataclass
from pathlib import Path

from tests.harness.distribution import (
    OCI_CONFIG,
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


def _entry(name: str, kind: bytes, mode: int, **extra: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = kind, mode
    # Fixed metadata so the same busybox binary always gives the same layer digest.
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
    for key, value in extra.items():
        setattr(info, key, value)
    return info


def build_layer(busybox: Path = BUSYBOX) -> tuple[bytes, bytes]:
    """(uncompressed tar, gzip of it); deterministic for a given busybox binary."""
    files: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
        if data is not None:
            info.size = len(data)
        files[info.name] = (info, data)

    for directory, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777)):
        add(_entry(directory, tarfile.DIRTYPE, mode))
    add(_entry("bin/busybox", tarfile.REGTYPE, 0o755), busybox.read_bytes())
    for applet in APPLETS:
        add(_entry(f"bin/{applet}", tarfile.SYMTYPE, 0o777, linkname="busybox"))
    add(_entry("etc/passwd", tarfile.REGTYPE, 0o644), b"root:x:0:0:root:/root:/bin/sh\n")
    add(_entry("etc/group", tarfile.REGTYPE, 0o644), b"root:x:0:\n")

    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            info, data = files[name]
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    tar_bytes = tar_buffer.getvalue()
    gz_buffer = io.BytesIO()
    # mtime=0 and no file name keep the gzip header fixed.
    with gzip.GzipFile(filename="", fileobj=gz_buffer, mode="wb", compresslevel=9, mtime=0) as gz:
        gz.write(tar_bytes)
    return tar_bytes, gz_buffer.getvalue()


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


def build_busybox_image(busybox: Path = BUSYBOX) -> ImageBlobs:
    if not busybox.is_file():
        raise HarnessError(f"{busybox} is missing; run ./test, which installs busybox-static")
    tar_bytes, layer = build_layer(busybox)
    diff_id = sha256_digest(tar_bytes)
    architecture = host_architecture()
    config = {
        "architecture": architecture,
        "os": "linux",
        "config": {"Env": [PATH_ENV], "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "pants_oci test harness: busybox base"}],
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
