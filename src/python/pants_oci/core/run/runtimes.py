"""The runtimes that run an image: runc, on a bundle, as root; podman, on the OCI layout itself;
and the choice between them. Ctrl-C and SIGTERM stop the container as ``docker stop`` does.
"""

from __future__ import annotations

import os
import resource
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pants_oci.core._settings import LIBRARY, Setting, how_to_set
from pants_oci.core.errors import RunError, RuntimeNotFoundError
from pants_oci.core.layout import REF_NAME_ANNOTATION, ImageLayout
from pants_oci.core.run.settings import RunSettings

__all__ = ["choose_runtime", "run_podman", "run_runc"]

_INSTALL_HINT = (
    "install runc and run as root (Debian/Ubuntu: `apt install runc`), or install podman "
    "(Debian/Ubuntu: `apt install podman`)"
)
# After Ctrl-C (which runc passes on to the container) the container gets this long to stop
# before it is killed: a PID 1 without a SIGINT handler ignores the signal.
_STOP_GRACE_SECONDS = 10.0


def choose_runtime(runtime: str, hints_for: str = LIBRARY) -> tuple[Literal["runc", "podman"], str]:
    runc, podman = shutil.which("runc"), shutil.which("podman")
    root = os.geteuid() == 0
    if runtime == "runc":
        if runc is None:
            raise RuntimeNotFoundError(f"runc is not on PATH; {_INSTALL_HINT}")
        if not root:
            raise RuntimeNotFoundError(
                "pants-oci runs images with runc only as root (rootless runc is not supported); "
                f"run as root, or use podman ({how_to_set(Setting.RUNTIME, hints_for, 'podman')})"
            )
        return "runc", runc
    if runtime == "podman":
        if podman is None:
            raise RuntimeNotFoundError(
                "podman is not on PATH; install it (Debian/Ubuntu: `apt install podman`)"
            )
        return "podman", podman
    if runtime != "auto":
        raise RunError(f"unknown runtime {runtime!r}; use 'auto', 'runc' or 'podman'")
    if runc is not None and root:
        return "runc", runc
    if podman is not None:
        return "podman", podman
    found = "runc is on PATH but this is not root" if runc is not None else "neither was found"
    raise RuntimeNotFoundError(
        f"running an image needs runc (as root) or podman, and {found}; {_INSTALL_HINT}"
    )


class _Stop(Exception):
    """SIGTERM to this process: stop the container, as Ctrl-C does."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop()


def run_runc(runc: str, bundle: Path, state: Path, stop_signal: str | None) -> int:
    """``runc run``; on Ctrl-C or SIGTERM the container gets the image's stop signal (as
    ``docker stop`` sends it; SIGTERM without one), then SIGKILL after a grace period."""
    container = f"pants-oci-{secrets.token_hex(6)}"
    base = [runc, "--root", str(state)]
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    process = subprocess.Popen([*base, "run", "--bundle", str(bundle), container])
    try:
        return process.wait()
    except (KeyboardInterrupt, _Stop):
        kill = [*base, "kill", container]
        subprocess.run([*kill, stop_signal or "TERM"], capture_output=True, check=False)
        try:
            process.wait(timeout=_STOP_GRACE_SECONDS)
        except (subprocess.TimeoutExpired, KeyboardInterrupt, _Stop):
            subprocess.run([*kill, "KILL"], capture_output=True, check=False)
            process.wait()
        return process.returncode
    finally:
        signal.signal(signal.SIGTERM, previous)
        # `runc run` deletes the container when it ends; this is for when runc itself did not.
        subprocess.run([*base, "delete", "--force", container], capture_output=True, check=False)


def _podman_ulimits() -> list[str]:
    """``--ulimit`` flags that give the container this process's limits of open files and
    processes, as runc's container inherits them.

    Left to itself, podman (as root) asks the runtime for 1048576 of each, which only a
    process with CAP_SYS_RESOURCE may raise them to: in a container without it, ``runc create``
    fails with "error setting rlimit type 7: operation not permitted". podman also lowers its
    own process limit to ``kernel.pid_max`` before it starts the runtime, so that caps the
    process limit asked for too."""

    def value(limit: int, cap: int | None = None) -> str:
        if cap is not None and (limit == resource.RLIM_INFINITY or limit > cap):
            limit = cap
        return "-1" if limit == resource.RLIM_INFINITY else str(limit)

    try:
        pid_max: int | None = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = None
    flags = []
    for name, kind, cap in (
        ("nofile", resource.RLIMIT_NOFILE, None),
        ("nproc", resource.RLIMIT_NPROC, pid_max),
    ):
        soft, hard = resource.getrlimit(kind)
        flags.append(f"--ulimit={name}={value(soft, cap)}:{value(hard, cap)}")
    return flags


# podman's oci: transport names the image it copies into its storage after the path it is
# given, `localhost/PATH:REF`, and refuses a path that is not a valid image name (one with an
# uppercase letter, as Pants' sandbox directories have). So podman gets this relative path, a
# symlink to the layout in a new temporary directory it runs in: whatever the layout's path, the
# image is `localhost/pants-oci-run:REF`, one name that each run moves on.
_PODMAN_LINK = "pants-oci-run"


def run_podman(
    podman: str,
    layout: ImageLayout,
    ref: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    settings: RunSettings,
) -> int:
    target = f"oci:{_PODMAN_LINK}"
    if ref.startswith("sha256:"):
        # podman's oci: transport takes ref names only: a name of that digest, if any (with
        # several tags, index.json has several entries and podman will not guess).
        names = [
            (entry.annotations or {}).get(REF_NAME_ANNOTATION)
            for entry in layout.index().manifests
            if str(entry.digest) == ref
        ]
        ref = next((name for name in names if name), "")
    if ref:
        target += f":{ref}"
    flags = [*_podman_ulimits(), *(f"--env={key}={value}" for key, value in env.items())]
    flags += [f"--volume={m.source}:{m.destination}:ro" for m in settings.mounts]
    if settings.workdir:
        flags.append(f"--workdir={settings.workdir}")
    if settings.user is not None:
        flags.append(f"--user={settings.user}")
    argv = [podman, "run", "--rm", "-i", "--network=host", *flags, target, *args]
    work = Path(tempfile.mkdtemp(prefix="pants-oci-podman-"))
    try:
        (work / _PODMAN_LINK).symlink_to(layout.root.resolve(), target_is_directory=True)
        return subprocess.run(argv, cwd=work, check=False).returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)
