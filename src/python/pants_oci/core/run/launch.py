"""``run_layout``: run the image of an OCI layout in the foreground, with runc or podman."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from pants_oci.core._transport_options import TransportOptions
from pants_oci.core.errors import RunError
from pants_oci.core.layout import ImageLayout, LocalImage
from pants_oci.core.models import Platform
from pants_oci.core.platforms import platform_matches
from pants_oci.core.run.bundle import make_bundle
from pants_oci.core.run.runtime_spec import image_command
from pants_oci.core.run.runtimes import choose_runtime, run_podman, run_runc
from pants_oci.core.run.settings import RunSettings, Runtime

__all__ = ["run_layout"]

_log = logging.getLogger(__name__)


def run_layout(
    layout_dir: str | os.PathLike[str],
    *,
    ref: str | None = None,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    runtime: Runtime | str = "auto",
    options: TransportOptions | None = None,
    settings: RunSettings | None = None,
) -> int:
    """Run the image ``ref`` (default: the only one) of the OCI layout ``layout_dir`` in the
    foreground and return its exit status. ``args`` replace the image's cmd (its entrypoint
    stays); ``env`` is added over the image's env; ``settings`` mount host paths read-only
    and override the working directory and user. ``runtime``: ``"runc"`` (as root),
    ``"podman"``, or ``"auto"`` (runc when it is on PATH and this is root, else podman).
    ``options`` reach the registry that has blobs an incomplete layout lacks."""
    env = dict(env or {})
    settings = settings or RunSettings()
    layout = ImageLayout.open(layout_dir)
    name = layout.default_ref(ref, how_to_choose="name the one to run with --ref NAME")
    image = layout.image(name)
    where = f"image {layout.root}:{name}"
    host = Platform.host_linux()
    if not platform_matches(host, image.config.platform):
        _log.warning("%s is for %s; this machine is %s", where, image.config.platform, host)
    command = image_command(image.config, args, where)
    kind, program = choose_runtime(runtime, (options or TransportOptions()).hints_for)
    if kind == "podman":
        missing = [layer for layer in image.layers if not layout.has_blob(layer.digest)]
        if missing:
            raise RunError(
                f"{layout.root} lacks layer blob {missing[0].digest} of {name!r}, which podman "
                "cannot fetch; write the layout with its base layers, or run as root with runc"
            )
        return run_podman(program, layout, name, args, env=env, settings=settings)
    return _run_with_runc(
        program, image, name, command=command, env=env, settings=settings, options=options
    )


def _run_with_runc(
    runc: str,
    image: LocalImage,
    ref: str,
    *,
    command: list[str],
    env: Mapping[str, str],
    settings: RunSettings,
    options: TransportOptions | None,
) -> int:
    """Unpack the image into a bundle in a new temporary directory, run it, delete it all."""
    work = Path(tempfile.mkdtemp(prefix="pants-oci-run-"))
    try:
        bundle = make_bundle(
            image, ref, work, command=command, env=env, settings=settings, options=options
        )
        run_config = image.config.config
        stop_signal = run_config.stop_signal if run_config else None
        return run_runc(runc, bundle, work / "state", stop_signal)
    finally:
        try:
            shutil.rmtree(work)
        except OSError as exc:
            _log.warning("could not delete the run's temporary directory %s: %s", work, exc)
