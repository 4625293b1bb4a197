"""What a push says when it cannot finish: which tags moved and which did not (so CI can
act), a pinned destination checked before anything is sent, and whose digest is whose."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pants_oci.core import cli
from pants_oci.core.errors import DigestMismatchError, ImageBuildError, PartialPushError
from pants_oci.core.image import Image
from pants_oci.core.remote import push_layout
from pants_oci.core.transport import TransportOptions
from tests.core.registry_support import (
    client_for,
    hermetic_cli_environment,
    proxy_fixture,  # noqa: F401 - the `proxy` fixture
)
from tests.harness.proxies import FaultProxy
from tests.harness.registry import Registry


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hermetic_cli_environment(monkeypatch, tmp_path)


def _layout(tmp_path: Path) -> tuple[Path, str]:
    (tmp_path / "files").mkdir()
    (tmp_path / "files/hello.txt").write_text(f"hello from {tmp_path.name}\n")
    with Image("scratch", platform="linux/amd64") as image:
        image.add_files({"/": str(tmp_path / "files")})
        digest = image.write_layout(tmp_path / "layout", ["latest"])
    return tmp_path / "layout", str(digest)


def _tag_digest(registry: Registry, repository: str, tag: str) -> str | None:
    with client_for(registry, repository) as client:
        found = client.head_manifest(tag)
    return None if found is None else str(found.digest)


def test_a_failed_second_tag_says_which_tags_moved(
    tmp_path: Path, registry_anonymous: Registry, proxy: FaultProxy, unique_repo: str
) -> None:
    layout, digest = _layout(tmp_path)
    proxy.respond("PUT", r"/manifests/second$", 500, times=None)
    first = f"{proxy.host}/{unique_repo}:first"
    second = f"{proxy.host}/{unique_repo}:second"
    with pytest.raises(PartialPushError) as failed:
        push_layout(layout, [first, second], options=TransportOptions(max_retries=0))
    assert failed.value.updated == (first,)
    assert failed.value.not_updated == (second,)
    message = str(failed.value)
    assert f"{first} had moved to {digest}" in message and f"{second} still point" in message
    assert _tag_digest(registry_anonymous, unique_repo, "first") == digest
    assert _tag_digest(registry_anonymous, unique_repo, "second") is None


def test_the_cli_prints_which_tags_moved_as_json(
    tmp_path: Path,
    proxy: FaultProxy,
    unique_repo: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    layout, _digest = _layout(tmp_path)
    proxy.respond("PUT", r"/manifests/v2$", 500, times=None)
    refs = [f"{proxy.host}/{unique_repo}:v1", f"{proxy.host}/{unique_repo}:v2"]
    status = cli.main(["--retries", "0", "push", str(layout), "--to", refs[0], "--to", refs[1]])
    out, err = capsys.readouterr()
    assert status == 1
    assert json.loads(out) == {"pushed": [], "updated": [refs[0]], "not_updated": [refs[1]]}
    assert f"{refs[0]} had moved" in err and "Traceback" not in err


def test_a_failed_push_names_its_destinations(
    tmp_path: Path, proxy: FaultProxy, unique_repo: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # `pants publish` runs one push per name, their output one after the other: each error
    # says which push it ended.
    layout, _digest = _layout(tmp_path)
    proxy.cut("*", r"/blobs/uploads/[^?]+", after_bytes=0, times=None)
    ref = f"{proxy.host}/{unique_repo}:v1"
    status = cli.main(["--retries", "0", "push", str(layout), "--to", ref])
    out, err = capsys.readouterr()
    assert status == 1 and out == ""
    [error] = [line for line in err.splitlines() if line.startswith("pants-oci: error:")]
    assert error.startswith(f"pants-oci: error: pushing {ref}: registry {proxy.host} "), err
    assert "dropped the connection" in error, err
    # It was reached: the hint is not about plain HTTP or a private CA.
    [hint] = [line for line in err.splitlines() if line.startswith("pants-oci: hint:")]
    assert "was reached, then cut the connection" in hint, err
    assert "insecure" not in hint and "ca-bundle" not in hint, err
    assert "Traceback" not in err


def test_a_pinned_destination_of_another_image_is_refused_before_anything_is_sent(
    tmp_path: Path, proxy: FaultProxy, unique_repo: str
) -> None:
    layout, digest = _layout(tmp_path)
    other = "sha256:" + "0" * 64
    with pytest.raises(ImageBuildError, match=f"the layout's image is {digest}.*nothing was sent"):
        push_layout(layout, [f"{proxy.host}/{unique_repo}@{other}"])
    assert proxy.seen() == []


def test_a_manifest_stored_under_another_digest_says_whose_is_whose(
    tmp_path: Path, proxy: FaultProxy, unique_repo: str
) -> None:
    layout, digest = _layout(tmp_path)
    lie = "sha256:" + "1" * 64
    proxy.respond("PUT", r"/manifests/latest$", 201, headers={"Docker-Content-Digest": lie})
    with pytest.raises(DigestMismatchError) as failed:
        push_layout(layout, [f"{proxy.host}/{unique_repo}:latest"])
    message = str(failed.value)
    assert f"under {lie} (the registry's Docker-Content-Digest)" in message
    assert f"hash to {digest} (ours)" in message
