"""The repo's own `./pants`: bootstraps once, loads the backend, and stays quiet."""

from __future__ import annotations

import pytest

from tests.pants_runs import REPO, run_pants

pytestmark = pytest.mark.slow


def _venvs() -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in (REPO / ".pants-bootstrap").glob("venv-*")}


def test_second_run_performs_no_install_step() -> None:
    run_pants("--version")  # the environment exists after this, whatever ran before
    before = _venvs()
    result = run_pants("--version")
    assert result.stdout.strip() == "2.17.1"
    assert "pants_oci bootstrap" not in result.stderr, result.stderr
    assert _venvs() == before and len(before) == 1


def test_help_documents_oci_image_fields() -> None:
    result = run_pants("help", "oci_image")
    for text in (
        "oci_image",
        "built without a Docker daemon",
        "base",
        "entrypoint",
        "cmd",
        "env",
        "workdir",
        "pinned by digest",
    ):
        assert text in result.stdout, result.stdout
    assert "DEPRECAT" not in result.stderr and "WARN" not in result.stderr, result.stderr


def test_list_finds_example_image_and_prints_no_warnings() -> None:
    result = run_pants("list", "::")
    assert "examples/hello:hello" in result.stdout.split(), result.stdout
    assert "DEPRECAT" not in result.stderr and "WARN" not in result.stderr, result.stderr
