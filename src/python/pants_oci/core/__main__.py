"""``python -m pants_oci.core``: the ``pants-oci`` command line (see :mod:`pants_oci.core.cli`)."""

from __future__ import annotations

from pants_oci.core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
