"""Run the image of an OCI image layout, with runc (as root) or podman: ``pants-oci run``.

With runc, the image is unpacked into a fresh temporary bundle and run by
``runc run``::

    status = run_layout("dist/app-layout", args=["sh", "-c", "echo hi"], env={"MODE": "dev"})

1. The image is the layout's only one, or the one named ``ref`` (a multi-platform ref gives
   this machine's Linux image). Layer blobs the layout lacks (a layout written with
   ``include_base_layers=False``) are fetched from the registry image its ``index.json``
   records (:data:`~pants_oci.core.layout.BLOB_SOURCE_ANNOTATION`).
2. The layers are unpacked in order into ``rootfs/``, with OCI whiteouts (``.wh.NAME`` deletes
   NAME of the layers below, ``.wh..wh..opq`` empties its directory of them), hard links,
   symlinks, modes, xattrs and, as root, ownership and device nodes. Every path is reached
   through directory file descriptors, opened without following symlinks: a symlink met on
   the way is resolved as if ``rootfs/`` were ``/`` (as containerd does), so no member can
   write outside ``rootfs/``; a member with a ``..`` component is refused.
3. ``config.json`` runs the image config's entrypoint + cmd (``args`` replace cmd, as
   ``docker run IMAGE ARGS`` does), with its env (``env`` added over it), working directory
   and user (names looked up in the image's ``/etc/passwd`` and ``/etc/group``). The
   container gets its own pid, ipc, uts and mount namespaces but shares the host's network
   namespace (like ``docker run --network host``: servers in it are reachable on the host's
   addresses, and the host's ``/etc/resolv.conf`` and ``/etc/hosts`` are copied in), Docker's
   default capabilities, no seccomp profile, no tty, and a writable root filesystem.
4. ``runc run`` inherits stdin, stdout and stderr; its exit status (the container's; 128+N
   when signal N killed it) is returned. The bundle and runc's state directory are deleted
   afterwards, whatever happens.

With podman (``runtime="podman"``, or ``"auto"`` when runc or root is not available) the
layout is handed to ``podman run --rm -i --network host oci:pants-oci-run[:REF]``, which does
the same. It runs in a temporary directory where ``pants-oci-run`` links to the layout, since
podman names the image after that path (``localhost/pants-oci-run:REF``); ``--ulimit`` flags
give the container this process's limits of open files and processes (as runc's container
inherits them), which podman would otherwise raise, as only CAP_SYS_RESOURCE allows.

The package's modules, one job each: :mod:`~pants_oci.core.run.launch` (``run_layout``),
:mod:`~pants_oci.core.run.bundle` (the bundle runc runs), :mod:`~pants_oci.core.run.unpack`
(layers into a root filesystem, never outside it), :mod:`~pants_oci.core.run.runtime_spec`
(``config.json``), :mod:`~pants_oci.core.run.runtimes` (runc, podman, and signals) and
:mod:`~pants_oci.core.run.settings` (what ``run`` is told).
"""

from __future__ import annotations

from pants_oci.core.run.launch import run_layout
from pants_oci.core.run.settings import Mount, RunSettings, Runtime

__all__ = ["Mount", "RunSettings", "Runtime", "run_layout"]
