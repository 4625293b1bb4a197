"""The library API without traps (issue 20): the run configuration's lists and labels are
live, checked views; `blob_exists` is a bool (an empty blob exists) and `blob_size` the size;
wrong argument types are TypeErrors naming the argument; the catalog needs no repository."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core.digest import sha256_of_bytes
from pants_oci.core.errors import InvalidValueError, RegistryError
from pants_oci.core.image import Image
from pants_oci.core.layer import CustomFile
from pants_oci.core.registry import RegistryClient, catalog
from pants_oci.core.transport import TransportOptions
from tests.core.registry_support import auth_for, client_for, options_for
from tests.harness.proxies import FaultProxy
from tests.harness.registry import Registry


def _scratch() -> Image:
    return Image("scratch", platform="linux/amd64")


def _saved_config(image: Image) -> dict[str, Any]:
    config = image.get_image_data().config.to_bytes()
    return dict(json.loads(config)["config"])


# --- Live views ------------------------------------------------------------------------------


def test_edits_to_the_config_lists_and_labels_stick(tmp_path: Path) -> None:
    with _scratch() as image:
        image.env.append("A=1")
        image.env += ["B=2"]
        image.cmd = ["sh"]
        assert image.cmd is not None
        image.cmd.append("-c")
        image.entrypoint = ["/bin/env"]
        assert image.entrypoint is not None
        image.entrypoint.insert(0, "/usr/bin/time")
        image.volumes.append("/data")
        image.exposed_ports.append(8080)  # type: ignore[arg-type]  # ports may be ints
        image.exposed_ports.extend(["53/udp"])
        image.labels["team"] = "build"
        image.labels.update({"tier": "1"})
        assert image.env == ["A=1", "B=2"]
        assert image.exposed_ports == ["8080/tcp", "53/udp"]
        config = _saved_config(image)
    assert config["Env"] == ["A=1", "B=2"]
    assert config["Cmd"] == ["sh", "-c"]
    assert config["Entrypoint"] == ["/usr/bin/time", "/bin/env"]
    assert config["Volumes"] == {"/data": {}}
    assert config["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert config["Labels"] == {"team": "build", "tier": "1"}


def test_a_view_follows_the_config_and_removals_stick(tmp_path: Path) -> None:
    with _scratch() as image:
        env = image.env
        image.set_env("A", "1")
        image.set_env("B", "2")
        assert env == ["A=1", "B=2"] and len(env) == 2  # the view taken before still shows it
        del env[0]
        image.volumes = ["/a", "/b"]
        image.volumes.remove("/a")
        image.labels = {"x": "1", "y": "2"}
        del image.labels["x"]
        config = _saved_config(image)
    assert config["Env"] == ["B=2"]
    assert config["Volumes"] == {"/b": {}}
    assert config["Labels"] == {"y": "2"}


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda image: image.env.append("1BAD=x"), InvalidValueError, "'1BAD'"),
        (lambda image: image.env.append("NOEQUALS"), InvalidValueError, "has no `=`"),
        (lambda image: image.env.append(5), TypeError, r"Image\.env item: expected"),
        (lambda image: image.volumes.append("data"), InvalidValueError, "volume 'data'"),
        (lambda image: image.exposed_ports.append("http"), InvalidValueError, "'http'"),
        (lambda image: image.exposed_ports.insert(0, None), TypeError, "got NoneType"),
        (lambda image: image.cmd.append(3), TypeError, r"Image\.cmd/entrypoint item"),
        (lambda image: image.labels.__setitem__("a", 1), InvalidValueError, "values are strings"),
        (lambda image: image.labels.__setitem__("", "x"), InvalidValueError, "non-empty"),
    ],
)
def test_view_edits_are_checked_and_a_refused_edit_changes_nothing(
    edit: Any, error: type[Exception], message: str
) -> None:
    with _scratch() as image:
        image.cmd = ["sh"]
        before = image.get_image_data().config
        with pytest.raises(error, match=message):
            edit(image)
        assert image.get_image_data().config == before


# --- Argument types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Image(5), "Image() argument 'base': expected a reference str"),
        (lambda: Image("scratch", 5), "Image() argument 'target': expected a Reference"),
        (lambda: Image("scratch", platform=3), "argument 'platform': expected a Platform"),
        (lambda: Image("scratch", options={}), "argument 'options': expected TransportOptions"),
        (lambda: Image("scratch", keychain="me"), "argument 'keychain': expected a Keychain"),
        (lambda: Image("scratch", source_date_epoch="0"), "'source_date_epoch': expected an int"),
        (lambda: Image("scratch", upload_while_building=1), "expected a bool, got int"),
    ],
)
def test_image_constructor_arguments_of_the_wrong_type(call: Any, message: str) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        call()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda image: image.add_files(5),
            "add_files() argument 'files': expected a mapping of target path to local path or "
            "CustomFile, got int",
        ),
        (lambda image: image.add_files({"/a": "x"}, ignore="*.log"), "'ignore': expected a list"),
        (lambda image: image.add_files({"/a": "x"}, level="9"), "'level': expected an int"),
        (
            lambda image: image.add_layer(123, "sha256:" + "0" * 64, 1),
            "add_layer() argument 'digest': expected a Digest or a 'sha256:...' str, got int",
        ),
        (lambda image: image.add_layer("sha256:" + "0" * 64, None, 1), "'diff_id': expected"),
        (lambda image: image.add_layer("sha256:" + "0" * 64, "sha256:" + "0" * 64, "1"), "'size'"),
        (
            lambda image: image.add_layer("sha256:" + "0" * 64, "sha256:" + "0" * 64, 1, urls="u"),
            "add_layer() argument 'urls': expected a list, got str",
        ),
        (lambda image: setattr(image, "cmd", "sh -c x"), "Image.cmd: expected a list, got str"),
        (lambda image: setattr(image, "entrypoint", 1), "Image.entrypoint: expected a list"),
        (lambda image: setattr(image, "env", "A=1"), "Image.env: expected a list, got str"),
        (lambda image: setattr(image, "env", [1]), "Image.env item: expected a 'NAME=value'"),
        (lambda image: setattr(image, "volumes", 7), "Image.volumes: expected a list, got int"),
        (lambda image: setattr(image, "exposed_ports", 80), "Image.exposed_ports: expected a list"),
    ],
)
def test_image_method_and_setter_arguments_of_the_wrong_type(edit: Any, message: str) -> None:
    with _scratch() as image, pytest.raises(TypeError, match=re.escape(message)):
        edit(image)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"registry": 5000, "repository": "app"}, "argument 'registry': expected a registry"),
        ({"registry": "localhost", "repository": None}, "'repository': expected a repository"),
        ({"registry": "localhost", "repository": "a", "auth": ("u", "p")}, "'auth': expected an"),
        ({"registry": "localhost", "repository": "a", "options": {}}, "'options': expected"),
        ({"registry": "localhost", "repository": "a", "http_client": 1}, "'http_client'"),
    ],
)
def test_registry_client_arguments_of_the_wrong_type(kwargs: Any, message: str) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        RegistryClient(**kwargs)


def test_good_arguments_still_build(tmp_path: Path) -> None:
    with Image("scratch", platform="linux/amd64", options=TransportOptions()) as image:
        image.add_files({"/f": CustomFile(data=b"x")}, ignore=["*.log"], level=1)
        image.entrypoint = ("/bin/sh",)
        assert image.entrypoint == ["/bin/sh"]
        assert image.write_layout(tmp_path / "out")


# --- Blobs, and the catalog, on a real registry -------------------------------------------------


def test_an_empty_blob_exists(registry_anonymous: Registry, unique_repo: str) -> None:
    empty, absent = b"", b"never uploaded " + unique_repo.encode()
    with client_for(registry_anonymous, unique_repo) as client:
        client.upload_blob(empty)
        assert client.blob_exists(sha256_of_bytes(empty)) is True
        assert client.blob_size(sha256_of_bytes(empty)) == 0
        assert client.blob_exists(sha256_of_bytes(absent)) is False
        assert client.blob_size(sha256_of_bytes(absent)) is None
        client.upload_blob(b"12345")
        assert client.blob_size(sha256_of_bytes(b"12345")) == 5


def test_the_catalog_needs_no_repository(registry_anonymous: Registry, unique_repo: str) -> None:
    with client_for(registry_anonymous, unique_repo) as client:
        client.upload_blob(b"{}")
        raw = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": str(sha256_of_bytes(b"{}")),
                    "size": 2,
                },
                "layers": [],
            }
        ).encode()
        client.put_manifest(raw, tag="latest")
    options = options_for(registry_anonymous)
    repositories = catalog(
        registry_anonymous.host, auth=auth_for(registry_anonymous), options=options
    )
    assert unique_repo in repositories
    paged = catalog(
        registry_anonymous.host, auth=auth_for(registry_anonymous), options=options, page_size=2
    )
    assert paged == repositories


def test_a_catalog_error_names_the_registry_only(registry_anonymous: Registry) -> None:
    with FaultProxy(registry_anonymous.url) as proxy:
        proxy.respond("GET", r"/v2/_catalog", 403, times=None)
        with pytest.raises(RegistryError) as failure:
            catalog(proxy.host, auth=auth_for(registry_anonymous, host=proxy.host))
    assert f"listing repositories in {proxy.host} failed: HTTP 403" in str(failure.value)
