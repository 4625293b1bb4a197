"""The push ledger: a blob pushed to one repository of a registry is mounted, not uploaded, when
a later push (another process) sends it to another repository of that registry; a stale or
corrupt ledger costs an upload, never the push."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pants_oci.core import cli
from pants_oci.core.auth import StaticKeychain
from pants_oci.core.image import Image
from pants_oci.core.layout import ImageLayout
from pants_oci.core.models import OCIManifest, parse_manifest
from pants_oci.core.push_ledger import PushLedger
from pants_oci.core.remote import push_layout
from tests.core.registry_support import client_for, hermetic_cli_environment, options_for
from tests.harness import tools
from tests.harness.registry import Logged, Registry, access_log

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
C = "sha256:" + "c" * 64


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hermetic_cli_environment(monkeypatch, tmp_path)


# --- The ledger file -----------------------------------------------------------------------------


def test_sources_are_per_registry_most_recent_first_and_bounded(tmp_path: Path) -> None:
    ledger = PushLedger(tmp_path / "ledger", max_sources=2, max_digests=2)
    ledger.record("http://r:5000", "one", [A, B])
    ledger.record("http://r:5000", "two", [A])
    ledger.record("http://r:5000", "three", [A])
    ledger.record("https://r:5000", "other", [A])
    assert ledger.sources("http://r:5000", A) == ["three", "two"]
    assert ledger.sources("http://r:5000/", B) == ["one"]
    ledger.record("http://r:5000", "one", [C])  # B is now the least recently recorded
    assert ledger.sources("http://r:5000", B) == []
    ledger.save()
    again = PushLedger(tmp_path / "ledger")
    assert again.sources("http://r:5000", A) == ["three", "two"]
    assert again.sources("http://r:5000", C) == ["one"]
    assert again.sources("https://r:5000", A) == ["other"]
    assert again.sources("http://elsewhere", A) == []
    text = "".join(p.read_text() for p in (tmp_path / "ledger").iterdir())
    assert "three" in text and not any(p.name.startswith(".") for p in tmp_path.glob("ledger/*"))


def test_concurrent_ledgers_merge_at_save(tmp_path: Path) -> None:
    tmp_path = tmp_path / "ledger"
    first, second = PushLedger(tmp_path), PushLedger(tmp_path)
    first.sources("http://r", A)  # read before the other saved
    second.record("http://r", "two", [A, B])
    second.save()
    first.record("http://r", "one", [A])
    first.save()
    merged = PushLedger(tmp_path)
    assert merged.sources("http://r", A) == ["one", "two"]
    assert merged.sources("http://r", B) == ["two"]


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"\xff\xfe", b"[]", b'{"version": 1, "registry": "http://r", "blobs": 3}'],
)
def test_a_corrupt_ledger_is_ignored_and_replaced(tmp_path: Path, content: bytes) -> None:
    tmp_path = tmp_path / "ledger"
    ledger = PushLedger(tmp_path)
    ledger.record("http://r", "one", [A])
    ledger.save()
    [path] = tmp_path.iterdir()
    path.write_bytes(content)
    assert PushLedger(tmp_path).sources("http://r", A) == []
    ledger = PushLedger(tmp_path)
    ledger.record("http://r", "two", [A, "not-a-digest"])
    ledger.save()
    assert PushLedger(tmp_path).sources("http://r", A) == ["two"]
    assert json.loads(path.read_text())["blobs"] == {A: ["two"]}


def test_an_unwritable_ledger_is_no_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    ledger = PushLedger(tmp_path / "file" / "ledger")
    ledger.record("http://r", "one", [A])
    ledger.save()  # logged, not raised
    assert ledger.sources("http://r", A) == ["one"]


# --- Pushes that share a layer -------------------------------------------------------------------


def _image(tmp_path: Path, name: str, layers: list[str]) -> tuple[Path, list[str]]:
    """A layout with one layer per entry of ``layers`` (a file of that content), and its layers'
    digests."""
    with Image("scratch", platform="linux/amd64") as image:
        for content in layers:
            files = tmp_path / f"files-{content}"
            if not files.exists():
                files.mkdir()
                (files / f"{content}.txt").write_text(f"{content}\n" * 1000)
            image.add_files({"/": str(files)})
        digest = image.write_layout(tmp_path / name, ["latest"])
    layout = ImageLayout.open(tmp_path / name)
    manifest = parse_manifest(layout.read_blob(digest))
    assert isinstance(manifest, OCIManifest)
    return tmp_path / name, [str(layer.digest) for layer in manifest.layers]


def _keychain(registry: Registry) -> StaticKeychain:
    if registry.username is None:
        return StaticKeychain({})
    return StaticKeychain(
        {registry.host: {"username": registry.username, "password": registry.password}}
    )


def _uploads(log: list[Logged], repository: str) -> list[str]:
    """The digests of the blob uploads to ``repository`` that the registry took (201)."""
    return [
        entry.query["digest"][0]
        for entry in log
        if entry.method == "PUT"
        and entry.path.startswith(f"/v2/{repository}/blobs/uploads/")
        and entry.status == 201
    ]


def _mounts(log: list[Logged], repository: str) -> list[tuple[str, str, int]]:
    """(digest, from, status) of each mount request to ``repository``."""
    return [
        (entry.query["mount"][0], entry.query["from"][0], entry.status)
        for entry in log
        if entry.method == "POST"
        and entry.path == f"/v2/{repository}/blobs/uploads/"
        and "mount" in entry.query
    ]


def _check_complete(registry: Registry, repository: str, tmp_path: Path) -> None:
    """The image in ``repository`` pulls back whole (skopeo verifies every blob)."""
    creds = (registry.username, registry.password) if registry.username else None
    manifest = tools.skopeo_inspect(registry.ref(repository), raw=True, registry=registry)
    pulled = tools.skopeo_copy_to_oci_layout(
        registry.ref(repository),
        tmp_path / f"pulled-{repository.replace('/', '-')}",
        registry=registry,
        src_creds=creds,
    )
    document = json.loads(manifest)
    with client_for(registry, repository) as client:
        for item in (document["config"], *document["layers"]):
            assert client.blob_size(item["digest"]) == item["size"]
    assert (pulled / "index.json").exists()


@pytest.mark.parametrize("mode", ["anonymous", "token"])
def test_a_layer_pushed_to_one_repository_is_mounted_into_another(
    tmp_path: Path, request: pytest.FixtureRequest, mode: str, unique_repo: str
) -> None:
    registry: Registry = request.getfixturevalue(f"registry_{mode}")
    one, two = f"{unique_repo}/one", f"{unique_repo}/two"
    layout_a, [shared] = _image(tmp_path, "a", ["shared"])
    layout_b, layers_b = _image(tmp_path, "b", ["shared", "own"])
    assert layers_b[0] == shared
    own = layers_b[1]
    ledger_dir = tmp_path / "ledger"
    push_layout(
        layout_a,
        [registry.ref(one)],
        keychain=_keychain(registry),
        options=options_for(registry),
        ledger=PushLedger(ledger_dir),
    )
    start = len(access_log(registry))
    if registry.token_service is not None:
        registry.token_service.reset_stats()
    # The second push is another process's: the command line, the same ledger directory.
    argv = ["push", str(layout_b), "--to", registry.ref(two), "--ledger", str(ledger_dir)]
    if registry.username is not None:
        docker = Path.home() / "docker"
        (docker / "config.json").write_text(json.dumps(registry.auth_json()))
    assert cli.main(argv) == 0
    log = access_log(registry)[start:]
    assert (shared, one, 201) in _mounts(log, two)
    assert shared not in _uploads(log, two)
    assert own in _uploads(log, two)
    if registry.token_service is not None:  # one token asked for pull on one, push on two
        scopes = [set(entry["scopes"]) for entry in registry.token_service.stats()]
        assert any(
            f"repository:{one}:pull" in s and f"repository:{two}:pull,push" in s for s in scopes
        ), scopes
    _check_complete(registry, two, tmp_path)
    ledger = PushLedger(ledger_dir)
    assert ledger.sources(registry.url, shared) == [two, one]
    assert ledger.sources(registry.url, own) == [two]
    assert registry.password is None or all(
        registry.password not in p.read_text() for p in ledger_dir.iterdir()
    )


def test_a_stale_source_falls_back_to_an_upload(
    tmp_path: Path, registry_anonymous: Registry, unique_repo: str
) -> None:
    registry = registry_anonymous
    two = f"{unique_repo}/two"
    layout_b, [shared, own] = _image(tmp_path, "b", ["shared", "own"])
    ledger = PushLedger(tmp_path / "ledger")
    ledger.record(registry.url, f"{unique_repo}/gone", [shared])
    ledger.save()
    start = len(access_log(registry))
    push_layout(
        layout_b,
        [registry.ref(two)],
        keychain=_keychain(registry),
        options=options_for(registry),
        ledger=PushLedger(tmp_path / "ledger"),
    )
    log = access_log(registry)[start:]
    assert _mounts(log, two) == [(shared, f"{unique_repo}/gone", 202)]
    assert shared in _uploads(log, two) and own in _uploads(log, two)
    _check_complete(registry, two, tmp_path)
    assert PushLedger(tmp_path / "ledger").sources(registry.url, shared) == [
        two,
        f"{unique_repo}/gone",
    ]


def test_a_corrupt_ledger_costs_an_upload(
    tmp_path: Path, registry_anonymous: Registry, unique_repo: str
) -> None:
    registry = registry_anonymous
    one, two = f"{unique_repo}/one", f"{unique_repo}/two"
    layout_a, [shared] = _image(tmp_path, "a", ["shared"])
    layout_b, _ = _image(tmp_path, "b", ["shared", "own"])
    ledger_dir = tmp_path / "ledger"
    options = options_for(registry)
    push_layout(layout_a, [registry.ref(one)], options=options, ledger=PushLedger(ledger_dir))
    for path in ledger_dir.iterdir():
        path.write_text('{"version": 1, "registry": ')
    start = len(access_log(registry))
    push_layout(layout_b, [registry.ref(two)], options=options, ledger=PushLedger(ledger_dir))
    log = access_log(registry)[start:]
    assert _mounts(log, two) == []
    assert shared in _uploads(log, two)
    assert PushLedger(ledger_dir).sources(registry.url, shared) == [two]
