"""Others' tools, to check the supply-chain documents we write: cyclonedx-python-lib's JSON schema
validation (CycloneDX 1.6), spdx-tools' parser and validator (SPDX 2.3), and oras-py's pull.

They live in the virtualenv that ./test installs (build-support/tool-venvs.sh) and names in
$PANTS_OCI_VALIDATORS_PYTHON, out of the test environment's pins; each call is one process of
that Python, which prints JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.harness.processes import HarnessError

VALIDATORS_ENV = "PANTS_OCI_VALIDATORS_PYTHON"

_CYCLONEDX = """
import json, sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
print(json.dumps([] if errors is None else [str(errors)]))
"""

_SPDX = """
import json, sys
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
document = parse_file(sys.argv[1])
messages = validate_full_spdx_document(document)
print(json.dumps({
    "errors": [m.validation_message for m in messages],
    "packages": sorted(p.name for p in document.packages),
}))
"""

_ORAS_PULL = """
import json, sys
import oras.client
client = oras.client.OrasClient(hostname=sys.argv[1], insecure=True)
files = client.pull(target=sys.argv[2], outdir=sys.argv[3])
print(json.dumps(sorted(files)))
"""


def validators_python() -> str:
    """The validators' Python that ./test installed; an error (never a skip) when missing."""
    path = os.environ.get(VALIDATORS_ENV, "")
    if not (path and os.path.isfile(path) and os.access(path, os.X_OK)):
        raise HarnessError(
            f"${VALIDATORS_ENV}={path!r} is not an executable: run ./test, which installs "
            "cyclonedx-python-lib, spdx-tools and oras into .pants-bootstrap/validators-venv-*"
        )
    return path


def _run(script: str, *args: str) -> Any:
    result = subprocess.run(
        [validators_python(), "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise HarnessError(f"validator failed ({result.returncode}): {result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def cyclonedx_errors(document: bytes, scratch: Path) -> list[str]:
    """What cyclonedx-python-lib's strict JSON validation (CycloneDX 1.6) finds wrong."""
    path = scratch / "sbom.cdx.json"
    path.write_bytes(document)
    errors: list[str] = _run(_CYCLONEDX, str(path))
    return errors


def spdx_check(document: bytes, scratch: Path) -> dict[str, Any]:
    """spdx-tools' reading of an SPDX JSON document: `errors` (its validator's messages) and
    the names of its `packages`."""
    path = scratch / "sbom.spdx.json"  # spdx-tools picks the parser by extension
    path.write_bytes(document)
    checked: dict[str, Any] = _run(_SPDX, str(path))
    return checked


def oras_pull(host: str, reference: str, outdir: Path) -> list[Path]:
    """`oras pull` (oras-py) of an artifact over plain HTTP: the files it wrote."""
    outdir.mkdir(parents=True, exist_ok=True)
    return [Path(p) for p in _run(_ORAS_PULL, host, reference, str(outdir))]
