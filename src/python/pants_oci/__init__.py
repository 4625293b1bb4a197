"""pants_oci: daemonless OCI container images as a Pants backend."""

from __future__ import annotations

# The one place the version is written: the distribution (see the root BUILD) and
# `pants help oci` read it from here.
__version__ = "0.1.0"
