"""The OCI runtime config (``config.json``) runc runs an image by: the image config's command,
env, working directory and user, over which ``run``'s settings apply, in a container like
``docker run --network host`` makes (see :mod:`pants_oci.core.run`).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pants_oci.core.errors import RunError
from pants_oci.core.models import ImageConfig
from pants_oci.core.run.settings import RunSettings
from pants_oci.core.run.unpack import RootFS

__all__ = ["DEFAULT_PATH", "image_command", "runtime_spec"]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What Docker gives a container by default: enough for entrypoints that chown or drop
# privileges (gosu, su-exec), nothing that administers the host.
_CAPABILITIES = [
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
    "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
]  # fmt: skip
_MASKED_PATHS = [
    "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware",
]  # fmt: skip
_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
_MOUNTS: list[dict[str, Any]] = [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/dev/shm",  # noqa: S108 - a mount in the container
        "type": "tmpfs",
        "source": "shm",
        "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": ["nosuid", "noexec", "nodev"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["nosuid", "noexec", "nodev", "ro"],
    },
    {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
    },
]
_HOST_FILES = ("resolv.conf", "hosts")  # copied in: the container shares the host's network


def image_command(config: ImageConfig, args: Sequence[str], where: str) -> list[str]:
    run = config.config
    entrypoint = list(run.entrypoint or ()) if run else []
    cmd = list(run.cmd or ()) if run else []
    command = entrypoint + (list(args) if args else cmd)
    if not command:
        raise RunError(
            f"{where} has no entrypoint and no cmd: there is nothing to run; give the command "
            "to run after `--`"
        )
    return command


def _table(text: str | None) -> list[list[str]]:
    """The colon-separated records of /etc/passwd or /etc/group."""
    rows = []
    for line in (text or "").splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append(line.split(":"))
    return rows


def _user(root: RootFS, user: str, where: str) -> tuple[dict[str, Any], str]:
    """The spec's ``process.user`` for the image config's ``User``, and the user's home."""
    name, _, group = (user or "0").partition(":")
    passwd = [row for row in _table(root.read_file("etc/passwd")) if len(row) >= 6]
    if name.isdigit():
        uid = int(name)
        entry = next((row for row in passwd if row[2] == name), None)
    else:
        entry = next((row for row in passwd if row[0] == name), None)
        if entry is None or not entry[2].isdigit():
            raise RunError(
                f"{where} runs as user {user!r}, but the image's /etc/passwd has no user "
                f"{name!r}; add it to the image or set a numeric user (uid[:gid])"
            )
        uid = int(entry[2])
    groups = [row for row in _table(root.read_file("etc/group")) if len(row) >= 4]
    if not group:
        gid = int(entry[3]) if entry is not None and entry[3].isdigit() else 0
    elif group.isdigit():
        gid = int(group)
    else:
        match = next((row for row in groups if row[0] == group and row[2].isdigit()), None)
        if match is None:
            raise RunError(
                f"{where} runs as user {user!r}, but the image's /etc/group has no group "
                f"{group!r}; add it to the image or give a numeric gid"
            )
        gid = int(match[2])
    spec: dict[str, Any] = {"uid": uid, "gid": gid}
    if entry is not None:
        extra = sorted(
            {
                int(row[2])
                for row in groups
                if entry[0] in row[3].split(",") and row[2].isdigit() and int(row[2]) != gid
            }
        )
        if extra:
            spec["additionalGids"] = extra
    return spec, (entry[5] if entry is not None and entry[5] else "/")


def runtime_spec(
    config: ImageConfig,
    root: RootFS,
    bundle: Path,
    *,
    command: list[str],
    env: Mapping[str, str],
    where: str,
    settings: RunSettings,
) -> dict[str, Any]:
    run = config.config
    user_text = settings.user if settings.user is not None else (run.user if run else None)
    user, home = _user(root, user_text or "", where)
    variables: dict[str, str] = {}
    for item in (run.env if run else None) or ():
        key, _, value = item.partition("=")
        variables[key] = value
    variables.update(env)
    variables.setdefault("PATH", DEFAULT_PATH)
    variables.setdefault("HOME", home)
    workdir = settings.workdir or (run.working_dir if run else None) or "/"
    cwd = "/" + "/".join(p for p in workdir.split("/") if p)
    root.make_dirs(cwd)  # as docker does: a WORKDIR the layers lack is made (root's, 0755)
    mounts = list(_MOUNTS)
    for mount in settings.mounts:
        root.make_mount_point(mount.destination, directory=mount.source.is_dir())
        mounts.append(
            {
                "destination": mount.destination,
                "type": "bind",
                "source": str(mount.source),
                "options": ["rbind", "ro", "rprivate"],
            }
        )
    for name in _HOST_FILES:
        host = Path("/etc") / name
        if host.is_file():
            shutil.copyfile(host, bundle / name)
            mounts.append(
                {
                    "destination": f"/etc/{name}",
                    "type": "bind",
                    "source": str(bundle / name),
                    "options": ["rbind", "rprivate"],
                }
            )
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": user,
            "args": command,
            "env": [f"{key}={value}" for key, value in variables.items()],
            "cwd": cwd,
            "capabilities": {
                "bounding": _CAPABILITIES,
                "effective": _CAPABILITIES,
                "permitted": _CAPABILITIES,
            },
            "noNewPrivileges": False,  # as docker: setuid programs (su, sudo) still work
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": socket.gethostname(),  # the host's network, so the host's name
        "mounts": mounts,
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            # No network namespace: the host's, as with `docker run --network host`.
            "namespaces": [{"type": kind} for kind in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": _MASKED_PATHS,
            "readonlyPaths": _READONLY_PATHS,
        },
    }
