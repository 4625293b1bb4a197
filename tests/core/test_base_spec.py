"""The one grammar of bases, as the Image API, the CLI and the Pants backend read them
(tests/backend/test_target_types.py checks that the backend reads them by it)."""

from __future__ import annotations

import pytest

from pants_oci.core.base_spec import BaseKind, BaseSpec, parse_base
from pants_oci.core.errors import InvalidReferenceError
from pants_oci.core.reference import parse_reference

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("scratch", BaseSpec(BaseKind.SCRATCH)),
        ("  scratch ", BaseSpec(BaseKind.SCRATCH)),
        ("oci-layout:images/base", BaseSpec(BaseKind.OCI_LAYOUT, location="images/base")),
        ("oci:images/base:v1", BaseSpec(BaseKind.OCI_LAYOUT, location="images/base:v1")),
        ("docker-archive:base.tar", BaseSpec(BaseKind.DOCKER_ARCHIVE, location="base.tar")),
        (
            "python:3.11-slim",
            BaseSpec(BaseKind.REGISTRY, reference=parse_reference("python:3.11-slim")),
        ),
        (
            f"ghcr.io/acme/base@{DIGEST}",
            BaseSpec(BaseKind.REGISTRY, reference=parse_reference(f"ghcr.io/acme/base@{DIGEST}")),
        ),
        # A registry on a port is no transport prefix.
        (
            "localhost:5000/base:1",
            BaseSpec(BaseKind.REGISTRY, reference=parse_reference("localhost:5000/base:1")),
        ),
    ],
)
def test_parse_base(text: str, expected: BaseSpec) -> None:
    assert parse_base(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("oci-layout:", "names no path after 'oci-layout:'"),
        ("docker-archive:", "names no path after 'docker-archive:'"),
        ("Not A Reference", "invalid image reference .*must be lowercase"),
    ],
)
def test_bad_bases_say_why(text: str, problem: str) -> None:
    with pytest.raises(InvalidReferenceError, match=problem):
        parse_base(text)


def test_only_a_registry_base_named_by_tag_is_unpinned() -> None:
    assert parse_base("python:3.11").unpinned_reference == parse_reference("python:3.11")
    assert parse_base(f"python@{DIGEST}").unpinned_reference is None
    assert parse_base("oci-layout:x").unpinned_reference is None
    assert parse_base("scratch").unpinned_reference is None
