"""podman for tests, configured hermetically: each test gets storage and configuration of its
own under its tmp_path, chosen by environment variables, so nothing is read from or written to
the host's /etc/containers, /var/lib/containers or ~/.config/containers.

The configuration works as root inside a container (this repo's CI): the `vfs` storage driver
(no overlay or fuse mounts), `cgroupfs` (no systemd), events in a file (no journald), the
host's network namespace (no CNI or netavark setup). Any process given `Podman.env` in its
environment (a `pants run`, `pants-oci run`) uses the same storage:

    def test_x(podman: Podman) -> None:
        podman("load", "-i", "image.tar")
        assert podman.image_exists("app:1.0")
        subprocess.run([...], env={**os.environ, **podman.env})

A test that needs podman to work and finds it cannot on this machine skips with podman's own
error text (`Podman.require_info`, `Podman.require_containers`): never a silent pass.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.processes import require_binary


@dataclass(frozen=True)
class Podman:
    """podman with the configuration of `configure_podman(root)`."""

    program: str
    root: Path
    env: Mapping[str, str]  # CONTAINERS_CONF, CONTAINERS_STORAGE_CONF, CONTAINERS_REGISTRIES_CONF

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `podman ARGS` (output captured); with check=True a non-zero exit fails the test
        with podman's stderr."""
        result = subprocess.run(
            [self.program, *args],
            env={**os.environ, **self.env},
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {result.returncode}\n"
                f"stderr:\n{result.stderr[-4000:]}\nstdout:\n{result.stdout[-2000:]}"
            )
        return result

    def image_exists(self, name: str) -> bool:
        """`podman image exists NAME` (exit 0: it does, 1: it does not)."""
        result = self("image", "exists", name, check=False)
        if result.returncode not in (0, 1):
            raise AssertionError(f"podman image exists {name} failed:\n{result.stderr}")
        return result.returncode == 0

    def image_names(self) -> list[str]:
        """Every `repository:tag` in this storage, sorted."""
        listed = self("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        return sorted(line for line in listed.splitlines() if line)

    def require_info(self) -> None:
        """Skip the test, with podman's error, if podman cannot even open its storage here."""
        result = self("info", check=False)
        if result.returncode != 0:
            pytest.skip(f"podman does not work on this machine: `podman info`: {result.stderr}")

    def require_containers(self, layout: Path, ref: str = "latest") -> None:
        """Skip the test, with podman's error, if podman cannot run a container here: runs
        `true` in the image `layout:ref` (an OCI layout holding a shell, such as busybox),
        with limits low enough for any machine."""
        self.require_info()
        result = self(
            "run", "--rm", "--network=host", "--ulimit=nofile=1024:1024",
            "--ulimit=nproc=1024:1024", f"oci:{layout}:{ref}", "true",
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            pytest.skip(
                f"podman cannot run containers on this machine: `podman run`: {result.stderr}"
            )

    def clean(self) -> None:
        """Remove every container and image of this storage (vfs keeps full copies)."""
        self("rm", "--all", "--force", check=False, timeout=120)
        self("rmi", "--all", "--force", check=False, timeout=120)


def configure_podman(root: Path) -> Podman:
    """Write podman's configuration under `root` (storage in `root/storage`, runtime state in
    `root/run`) and return a Podman that uses it."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("storage", "run", "tmp", "volumes", "networks"):
        (root / name).mkdir(exist_ok=True)
    storage_conf = root / "storage.conf"
    storage_conf.write_text(
        f"""[storage]
driver = "vfs"
graphroot = "{root / "storage"}"
runroot = "{root / "run"}"
"""
    )
    containers_conf = root / "containers.conf"
    containers_conf.write_text(
        f"""[containers]
netns = "host"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{root / "events.log"}"
tmp_dir = "{root / "tmp"}"
volume_path = "{root / "volumes"}"

[network]
network_config_dir = "{root / "networks"}"
"""
    )
    # No registry to search for short names: a test never pulls from the internet by accident.
    registries_conf = root / "registries.conf"
    registries_conf.write_text("unqualified-search-registries = []\n")
    return Podman(
        program=require_binary("podman"),
        root=root,
        env={
            "CONTAINERS_CONF": str(containers_conf),
            "CONTAINERS_STORAGE_CONF": str(storage_conf),
            "CONTAINERS_REGISTRIES_CONF": str(registries_conf),
        },
    )


@pytest.fixture
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """podman with storage and configuration of this test's own (see the module docstring);
    its containers and images are removed when the test ends."""
    configured = configure_podman(tmp_path_factory.mktemp("podman"))
    try:
        yield configured
    finally:
        configured.clean()
