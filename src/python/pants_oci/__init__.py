"""pants_oci: daemonless OCI container images as a Pants backend."""

from __future__ import annotations
