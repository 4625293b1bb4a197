"""A runc bundle of a layout's image: its layer blobs (fetched from the registry image the layout
records when it lacks them), unpacked in order into ``rootfs/``, and ``config.json``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from pants_oci.core import media_types
from pants_oci.core._compat import zip_strict
from pants_oci.core._transport_options import TransportOptions
from pants_oci.core.errors import RunError
from pants_oci.core.layout import BLOB_SOURCE_ANNOTATION, LocalImage
from pants_oci.core.run.runtime_spec import runtime_spec
from pants_oci.core.run.settings import RunSettings
from pants_oci.core.run.unpack import RootFS, unpack_budget

__all__ = ["make_bundle"]

_log = logging.getLogger(__name__)


def make_bundle(
    image: LocalImage,
    ref: str,
    work: Path,
    *,
    command: list[str],
    env: Mapping[str, str],
    settings: RunSettings,
    options: TransportOptions | None,
) -> Path:
    """The bundle directory, made in ``work`` (which also gets the blobs it fetches)."""
    where = f"image {image.layout.root}:{ref}"
    blobs = _layer_blobs(image, ref, work / "blobs", options)
    bundle = work / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    os.chmod(bundle / "rootfs", 0o755)  # noqa: S103 - the container's `/`, for any user
    hints_for = (options or TransportOptions()).hints_for
    root = RootFS(bundle / "rootfs", unpack_budget(settings, work, hints_for))
    try:
        for number, (layer, path) in enumerate(zip_strict(image.layers, blobs), 1):
            with path.open("rb") as blob:
                root.unpack(blob, f"{where}: layer {number} ({layer.digest})")
        spec = runtime_spec(
            image.config,
            root,
            bundle,
            command=command,
            env=env,
            where=where,
            settings=settings,
        )
    finally:
        root.close()
    (bundle / "config.json").write_text(json.dumps(spec, indent=2))
    return bundle


def _layer_blobs(
    image: LocalImage, ref: str, download_dir: Path, options: TransportOptions | None
) -> list[Path]:
    """A file holding each layer blob, bottom first: the layout's own, or fetched into
    ``download_dir`` from the registry image the layout records."""
    layout = image.layout
    for layer in image.layers:
        if not media_types.is_layer(layer.media_type):
            raise RunError(
                f"{layout.root}:{ref}: {layer.digest} is a {layer.media_type}, not a filesystem "
                "layer; only container images can be run"
            )
    missing = [layer for layer in image.layers if not layout.has_blob(layer.digest)]
    source = layout.ref_annotations(ref).get(BLOB_SOURCE_ANNOTATION)
    if missing and (source is None or any(layer.urls for layer in missing)):
        raise RunError(
            f"{layout.root} lacks layer blob {missing[0].digest} of {ref!r} and records no "
            "registry to fetch it from; write the layout with its base layers "
            "(`base pull --with-layers` for the base, or include_base_layers=True)"
        )
    if missing:
        assert source is not None
        # The registry stack is imported only when a layout is incomplete.
        from pants_oci.core.reference import parse_reference  # noqa: PLC0415
        from pants_oci.core.registry import RegistryClient  # noqa: PLC0415

        _log.info("fetching %d base layers of %s from %s", len(missing), ref, source)
        download_dir.mkdir()
        with RegistryClient.from_reference(parse_reference(source), options=options) as client:
            for layer in missing:
                client.get_blob(layer.digest, download_dir / layer.digest.hex, size=layer.size)
    return [
        layout.blob_path(layer.digest)
        if layout.has_blob(layer.digest)
        else download_dir / layer.digest.hex
        for layer in image.layers
    ]
