"""Every entry of a registry's error JSON is kept and named, not only the first: a manifest
naming several blobs the repository lacks (one MANIFEST_BLOB_UNKNOWN each, from the real
distribution registry), several codes in one answer, and bodies with no usable entries."""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Callable

import httpx
import pytest

from pants_oci.core import media_types
from pants_oci.core.cli.report import report
from pants_oci.core.digest import sha256_of_bytes
from pants_oci.core.errors import NotFoundError, RegistryError, RegistryErrorEntry
from pants_oci.core.registry import RegistryClient
from pants_oci.core.transport import TransportOptions
from tests.core.registry_support import RecordedSleeps, client_for, image_manifest, unique_config
from tests.harness.registry import Registry


def _missing_blobs_error(
    registry: Registry, repository: str, count: int
) -> tuple[RegistryError, list[str]]:
    """The registry's answer to a manifest whose ``count`` layers it does not have."""
    config = unique_config()
    layers = [secrets.token_bytes(64) for _ in range(count)]
    raw = image_manifest(config, layers, media_types.OCI_MANIFEST)
    with client_for(registry, repository) as client:
        client.upload_blob(config)  # only the config is there
        with pytest.raises(RegistryError) as failed:
            client.put_manifest(raw, tag="v1")
    return failed.value, [str(sha256_of_bytes(layer)) for layer in layers]


def test_every_missing_blob_of_a_manifest_is_named(
    registry_anonymous: Registry, unique_repo: str
) -> None:
    error, digests = _missing_blobs_error(registry_anonymous, unique_repo, 4)
    assert error.status == 400
    assert [entry.code for entry in error.errors] == ["MANIFEST_BLOB_UNKNOWN"] * 4
    assert sorted(entry.detail for entry in error.errors) == sorted(digests)
    # The first entry stays where it always was.
    assert error.code == "MANIFEST_BLOB_UNKNOWN" and error.detail in digests
    assert error.message == error.errors[0].message
    message = str(error)
    assert all(digest in message for digest in digests), message
    # One code and message, named once, with every digest.
    assert message.count("MANIFEST_BLOB_UNKNOWN") == 1
    assert message.count(error.errors[0].message or "?") == 1


def test_many_missing_blobs_are_all_kept_and_named_up_to_ten(
    registry_token: Registry, unique_repo: str
) -> None:
    error, digests = _missing_blobs_error(registry_token, unique_repo, 13)
    assert sorted(entry.detail for entry in error.errors) == sorted(digests)
    message = str(error)
    named = [digest for digest in digests if digest in message]
    assert len(named) == 10 and "and 3 more" in message, message
    assert len(message) < 1200


def test_the_cli_reports_one_line_per_registry_error(
    registry_anonymous: Registry, unique_repo: str
) -> None:
    error, digests = _missing_blobs_error(registry_anonymous, unique_repo, 3)
    stream = io.StringIO()
    report(error, None, stream)
    lines = stream.getvalue().splitlines()
    entries = [line for line in lines if line.startswith("pants-oci: registry error: ")]
    assert len(entries) == 3
    for digest in digests:
        assert sum(digest in line for line in entries) == 1
        assert all(line.count("MANIFEST_BLOB_UNKNOWN") == 1 for line in entries)


# --- Bodies from a mock transport --------------------------------------------------------------


def _client_answering(status: int, body: bytes) -> RegistryClient:
    def registry(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    http = httpx.Client(transport=httpx.MockTransport(registry))
    return RegistryClient(
        "127.0.0.1:1", "app", auth=httpx.Auth(), options=TransportOptions(sleep=RecordedSleeps()),
        http_client=http,
    )  # fmt: skip


def _error_for(status: int, body: bytes, call: Callable[[RegistryClient], object]) -> RegistryError:
    with _client_answering(status, body) as client, pytest.raises(RegistryError) as failed:
        call(client)
    return failed.value


def test_two_different_codes_are_both_kept_and_named() -> None:
    body = json.dumps(
        {
            "errors": [
                {"code": "NAME_UNKNOWN", "message": "repository name not known", "detail": {}},
                {"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": "v1"},
                {"code": "NAME_UNKNOWN", "message": "repository name not known", "detail": {}},
            ]
        }
    ).encode()
    error = _error_for(404, body, lambda client: client.get_manifest("v1"))
    assert isinstance(error, NotFoundError)
    assert error.errors == (
        RegistryErrorEntry("NAME_UNKNOWN", "repository name not known", {}),
        RegistryErrorEntry("MANIFEST_UNKNOWN", "manifest unknown", "v1"),
        RegistryErrorEntry("NAME_UNKNOWN", "repository name not known", {}),
    )
    assert (error.code, error.message, error.detail) == (
        "NAME_UNKNOWN",
        "repository name not known",
        {},
    )
    message = str(error)
    assert "HTTP 404 NAME_UNKNOWN: repository name not known; MANIFEST_UNKNOWN" in message
    assert "manifest unknown (v1)" in message
    assert message.count("NAME_UNKNOWN") == 1  # the same entry twice is named once

    stream = io.StringIO()
    report(error, None, stream)
    entries = [line for line in stream.getvalue().splitlines() if "registry error:" in line]
    assert entries == [
        "pants-oci: registry error: NAME_UNKNOWN: repository name not known",
        "pants-oci: registry error: MANIFEST_UNKNOWN: manifest unknown: v1",
        "pants-oci: registry error: NAME_UNKNOWN: repository name not known",
    ]


def test_a_single_error_reads_as_before() -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}'
    error = _error_for(404, body, lambda client: client.get_manifest("v1"))
    assert error.errors == (RegistryErrorEntry("MANIFEST_UNKNOWN", "manifest unknown", {}),)
    assert str(error).endswith("HTTP 404 MANIFEST_UNKNOWN: manifest unknown")
    stream = io.StringIO()
    report(error, None, stream)
    assert "registry error:" not in stream.getvalue()  # its one line says it all


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>502 Bad Gateway</html>",
        b"[1, 2]",
        b'{"errors": "everything"}',
        b'{"errors": []}',
        b'{"errors": [1, null, "x", {"code": 7, "message": ["no"]}, {"detail": "only"}]}',
        b'{"errors": [{"code": "UNKNOWN"' + b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["empty", "html", "list", "string", "none", "no-usable-entry", "truncated", "deep"],
)
def test_a_body_without_usable_errors_gives_none(body: bytes) -> None:
    error = _error_for(500, body, lambda client: client.get_manifest("v1"))
    assert error.errors == ()
    assert (error.code, error.message, error.detail) == (None, None, None)
    assert str(error).endswith("failed: HTTP 500")


def test_only_the_usable_entries_are_kept() -> None:
    body = json.dumps(
        {"errors": [{"code": 7}, {"message": "only a message"}, "x", {"code": "DENIED"}]}
    ).encode()
    error = _error_for(403, body, lambda client: client.get_manifest("v1"))
    assert error.errors == (
        RegistryErrorEntry(None, "only a message"),
        RegistryErrorEntry("DENIED", None),
    )
    assert "HTTP 403 only a message; DENIED" in str(error)


def test_a_long_detail_is_cut_and_many_codes_are_bounded() -> None:
    entries = [{"code": f"CODE_{n}", "message": "m", "detail": "d" * 5000} for n in range(25)]
    error = _error_for(400, json.dumps({"errors": entries}).encode(), lambda c: c.list_tags())
    assert len(error.errors) == 25
    message = str(error)
    assert "CODE_9:" in message and "CODE_10:" not in message
    assert "and 15 more errors" in message
    assert len(message) < 3000


def test_an_error_built_by_hand_keeps_its_first_entry() -> None:
    error = RegistryError("x", registry="r", code="DENIED", registry_message="no")
    assert error.errors == (RegistryErrorEntry("DENIED", "no"),)
    entries = (RegistryErrorEntry("A", "a", 1), RegistryErrorEntry("B", "b"))
    by_entries = RegistryError("y", registry="r", errors=entries)
    assert (by_entries.code, by_entries.message, by_entries.detail) == ("A", "a", 1)
    assert by_entries.errors == entries
    assert RegistryError("z", registry="r").errors == ()
