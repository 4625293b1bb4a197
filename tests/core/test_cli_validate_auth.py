"""`validate` (crane validate) and `auth login` / `auth logout` (docker login/logout without
docker), run in-process against real loopback registries and real OCI layouts, with a real
`docker-credential-*` helper script for the credential-store cases."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core import cli
from tests.harness.busybox import ImageBlobs, PushedImage, push_image_to, write_oci_layout
from tests.harness.fixtures import RegistryFactory
from tests.harness.registry import Registry

Capture = pytest.CaptureFixture[str]


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.core.registry_support import hermetic_cli_environment

    hermetic_cli_environment(monkeypatch, tmp_path)


def _main(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    status = cli.main(["-q", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def _sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _document(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def _with_manifest(image: ImageBlobs, edit: dict[str, Any]) -> ImageBlobs:
    manifest = json.loads(image.manifest)
    manifest.update(edit)
    return dataclasses.replace(image, manifest=_document(manifest))


def _with_diff_ids(image: ImageBlobs, diff_ids: list[str]) -> ImageBlobs:
    """The image with its config's rootfs.diff_ids replaced (the manifest names the new
    config)."""
    config = json.loads(image.config)
    config["rootfs"]["diff_ids"] = diff_ids
    config_bytes = _document(config)
    descriptor = {**json.loads(image.manifest)["config"], "digest": _sha(config_bytes)}
    edited = _with_manifest(image, {"config": {**descriptor, "size": len(config_bytes)}})
    return dataclasses.replace(edited, config=config_bytes)


# --- validate ------------------------------------------------------------------------------


def _validate_json(capsys: Capture, target: str) -> tuple[int, dict[str, Any]]:
    status, out, err = _main(capsys, "validate", "--json", target)
    assert err == "" or status == 1, err
    return status, json.loads(out)


def test_validate_a_pushed_image_and_a_good_layout(
    capsys: Capture, busybox_image: PushedImage, busybox_image_blobs: ImageBlobs, tmp_path: Path
) -> None:
    status, out, err = _main(capsys, "validate", busybox_image.ref)
    assert (status, out) == (0, f"OK {busybox_image.ref}\n"), err

    layout = write_oci_layout(busybox_image_blobs, tmp_path / "good")
    for target in (str(layout), f"oci-layout:{layout}", f"oci-layout:{layout}:latest"):
        status, document = _validate_json(capsys, target)
        assert (status, document) == (0, {"reference": target, "ok": True, "problems": []})
    status, document = _validate_json(capsys, busybox_image.ref)
    assert status == 0 and document["ok"] is True


def test_validate_a_layout_with_a_corrupted_blob(
    capsys: Capture, busybox_image_blobs: ImageBlobs, tmp_path: Path
) -> None:
    layout = write_oci_layout(busybox_image_blobs, tmp_path / "corrupt")
    blob = layout / "blobs/sha256" / busybox_image_blobs.layer_digest.removeprefix("sha256:")
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    status, out, _ = _main(capsys, "validate", str(layout))
    assert status == 1
    assert f"layer {busybox_image_blobs.layer_digest} of manifest" in out
    assert f"its bytes hash to {_sha(bytes(data))}" in out
    status, document = _validate_json(capsys, str(layout))
    assert status == 1 and document["ok"] is False
    assert "digest" in {problem["kind"] for problem in document["problems"]}


def test_validate_a_layout_with_a_wrong_size(
    capsys: Capture, busybox_image_blobs: ImageBlobs, tmp_path: Path
) -> None:
    image = busybox_image_blobs
    layer = json.loads(image.manifest)["layers"][0]
    wrong = _with_manifest(image, {"layers": [{**layer, "size": layer["size"] + 1}]})
    layout = write_oci_layout(wrong, tmp_path / "size")

    status, document = _validate_json(capsys, str(layout))
    assert status == 1
    assert document["problems"] == [
        {
            "kind": "size",
            "subject": f"layer {image.layer_digest} of manifest {wrong.manifest_digest}",
            "message": f"is {len(image.layer)} bytes; its descriptor says {len(image.layer) + 1}",
        }
    ]


def test_validate_a_layout_whose_diff_ids_disagree(
    capsys: Capture, busybox_image_blobs: ImageBlobs, tmp_path: Path
) -> None:
    image = busybox_image_blobs
    edited = _with_diff_ids(image, ["sha256:" + "0" * 64])
    layout = write_oci_layout(edited, tmp_path / "diff-ids")

    status, out, _ = _main(capsys, "validate", str(layout))
    assert status == 1
    assert out.count("\n") == 1, out
    assert f"rootfs.diff_ids[0] is sha256:{'0' * 64}" in out
    assert f"uncompresses to {image.diff_id}" in out
    status, document = _validate_json(capsys, str(layout))
    assert [problem["kind"] for problem in document["problems"]] == ["diff-ids"]


def test_validate_a_registry_image_with_a_corrupted_blob_and_wrong_diff_ids(
    capsys: Capture, busybox_image_blobs: ImageBlobs, registry_factory: RegistryFactory
) -> None:
    """What a registry serves is checked as a layout is: its own registry, since blobs are
    shared between its repositories and one is corrupted on disk here."""
    registry = registry_factory("anonymous")
    image = busybox_image_blobs
    disagreeing = _with_diff_ids(image, ["sha256:" + "1" * 64])
    pushed = push_image_to(disagreeing, registry, "team/diff-ids", "1")
    status, document = _validate_json(capsys, pushed.tag_ref)
    assert status == 1
    assert [problem["kind"] for problem in document["problems"]] == ["diff-ids"]
    assert f"uncompresses to {image.diff_id}" in document["problems"][0]["message"]

    good = push_image_to(image, registry, "team/corrupt", "1")
    assert _main(capsys, "validate", good.tag_ref)[0] == 0
    blob = registry.blob_path(image.layer_digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    status, out, err = _main(capsys, "validate", good.tag_ref)
    assert status == 1, err
    assert f"layer {image.layer_digest} of manifest" in out
    assert f"has digest {_sha(bytes(data))}" in out
    status, document = _validate_json(capsys, good.tag_ref)
    assert [problem["kind"] for problem in document["problems"]] == ["digest"]


def test_validate_refuses_what_it_cannot_check(capsys: Capture, tmp_path: Path) -> None:
    status, _, err = _main(capsys, "validate", f"docker-archive:{tmp_path}/x.tar")
    assert status == 1 and "OCI layout" in err
    status, _, err = _main(capsys, "validate", f"oci-layout:{tmp_path}/missing")
    assert status == 1 and "is not a directory" in err


# --- auth login / logout ---------------------------------------------------------------------


def _config(tmp_path: Path) -> Path:
    return tmp_path / "docker" / "config.json"


def _login(capsys: Capture, registry: Registry, password: str) -> tuple[int, str, str]:
    assert registry.username is not None
    # `--password=` so that a password starting with "-" is not taken for an option.
    return _main(
        capsys, "auth", "login", registry.host, "-u", registry.username, f"--password={password}"
    )


def test_login_saves_working_credentials_and_logout_removes_them(
    *,
    capsys: Capture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    registry_basic: Registry,
    busybox_image: PushedImage,
    unique_repo: str,
) -> None:
    pushed = busybox_image.push_to(registry_basic, unique_repo, "1")
    other = {"auth": base64.b64encode(b"someone:else").decode()}
    _config(tmp_path).write_text(json.dumps({"psFormat": "table", "auths": {"other.io": other}}))
    assert _main(capsys, "ls", f"{registry_basic.host}/{unique_repo}")[0] == 1  # no credentials

    assert registry_basic.username is not None and registry_basic.password is not None
    monkeypatch.setattr(sys, "stdin", io.StringIO(registry_basic.password + "\n"))
    status, out, err = _main(
        capsys, "auth", "login", registry_basic.host, "-u", "tester", "--password-stdin"
    )
    assert status == 0, err
    assert out == f"logged in to {registry_basic.host} (saved in {_config(tmp_path)})\n"
    assert registry_basic.password not in out + err
    assert stat.S_IMODE(os.stat(_config(tmp_path)).st_mode) == 0o600
    token = base64.b64encode(f"tester:{registry_basic.password}".encode()).decode()
    assert json.loads(_config(tmp_path).read_text()) == {
        "psFormat": "table",
        "auths": {"other.io": other, registry_basic.host: {"auth": token}},
    }

    status, out, err = _main(capsys, "ls", f"{registry_basic.host}/{unique_repo}")
    assert (status, out) == (0, "1\n"), err
    status, out, err = _main(capsys, "digest", pushed.tag_ref)
    assert (status, out) == (0, f"{pushed.manifest_digest}\n"), err

    status, out, err = _main(capsys, "auth", "logout", "--json", registry_basic.host)
    assert status == 0, err
    assert json.loads(out) == {
        "registry": registry_basic.host,
        "removed": True,
        "from": str(_config(tmp_path)),
    }
    assert json.loads(_config(tmp_path).read_text()) == {
        "psFormat": "table",
        "auths": {"other.io": other},
    }
    # A URL of the registry, as docker takes it, names the same registry.
    status, out, _ = _main(capsys, "auth", "logout", f"http://{registry_basic.host}/")
    assert (status, out) == (0, f"not logged in to {registry_basic.host}\n")


@pytest.mark.parametrize("mode", ["registry_basic", "registry_token"])
def test_login_with_a_wrong_password_fails_and_saves_nothing(
    capsys: Capture, tmp_path: Path, request: pytest.FixtureRequest, mode: str
) -> None:
    registry: Registry = request.getfixturevalue(mode)
    before = json.dumps({"auths": {}, "currentContext": "x"})
    _config(tmp_path).write_text(before)
    status, out, err = _login(capsys, registry, "not-the-password")
    assert status == 1 and out == ""
    assert f"{registry.host} refused the credentials of user 'tester' (HTTP 401" in err
    assert "hint: check the user name and the password" in err and "/login" not in err
    assert "not-the-password" not in err
    assert _config(tmp_path).read_text() == before

    status, _, err = _login(capsys, registry, str(registry.password))
    assert status == 0, err


_HELPER = """#!{python}
import json, sys
with open({log!r}, "a") as log:
    log.write(json.dumps({{"argv": sys.argv[1:], "stdin": sys.stdin.read()}}) + "\\n")
"""


def test_login_and_logout_go_through_the_credential_store(
    capsys: Capture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, registry_basic: Registry
) -> None:
    bin_dir, log = tmp_path / "bin", tmp_path / "helper-calls"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-ocitest"
    helper.write_text(_HELPER.format(python=sys.executable, log=str(log)))
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
    before = json.dumps({"credsStore": "ocitest"})
    _config(tmp_path).write_text(before)
    password = str(registry_basic.password)

    status, out, err = _login(capsys, registry_basic, password)
    assert status == 0, err
    assert out == f"logged in to {registry_basic.host} (saved in docker-credential-ocitest)\n"
    assert _config(tmp_path).read_text() == before  # no secret in the file
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [
        {
            "argv": ["store"],
            "stdin": json.dumps(
                {"ServerURL": registry_basic.host, "Username": "tester", "Secret": password}
            ),
        }
    ]

    status, out, err = _main(capsys, "auth", "logout", registry_basic.host)
    assert status == 0, err
    assert out == f"logged out of {registry_basic.host} (removed from docker-credential-ocitest)\n"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[1] == {"argv": ["erase"], "stdin": registry_basic.host}
    assert _config(tmp_path).read_text() == before


def test_login_needs_one_password_source(capsys: Capture) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["auth", "login", "localhost:5000", "-u", "me"])
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        cli.main(["auth", "login", "localhost:5000", "-u", "me", "-p", "x", "--password-stdin"])
    assert exited.value.code == 2
