"""Running `pants-oci` in-process, as the CLI tests of crane's commands do: `-q`, exit status
checked, stdout as bytes (a blob's, a document's), as text, or as its one JSON object."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pants_oci.core import cli

Capture = pytest.CaptureFixture[bytes]  # stdout may be a blob's bytes


def cli_bytes(capsys: Capture, *argv: str) -> bytes:
    """Run a command that must succeed: its stdout."""
    status = cli.main(["-q", *argv])
    out, err = capsys.readouterr()
    assert status == 0, err.decode()
    return out


def cli_text(capsys: Capture, *argv: str) -> str:
    return cli_bytes(capsys, *argv).decode()


def cli_json(capsys: Capture, *argv: str) -> Any:
    """Run a command with `--json`: the single JSON object it prints."""
    out = cli_text(capsys, *argv, "--json")
    assert out.endswith("\n") and out.count("\n") == 1
    return json.loads(out)
