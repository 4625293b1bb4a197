"""core/validation.py: one set of rules for the values that describe an image.

The same bad values are refused by the Image API here, by `pants-oci image assemble` and
`layer build` (tests/core/test_cli_bad_inputs.py) and by BUILD fields
(tests/backend/test_target_types.py), each naming the value and what to write instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core import media_types, platforms, validation
from pants_oci.core.errors import InvalidReferenceError, InvalidValueError
from pants_oci.core.image import Image
from pants_oci.core.layer import CustomFile, LayerBuilder, Override
from pants_oci.core.models import Platform

ZERO = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("check", "good", "normalised"),
    [
        (validation.check_port, 8080, "8080/tcp"),
        (validation.check_port, "53/udp", "53/udp"),
        (validation.check_port, "0132/sctp", "0132/sctp"),
        (validation.check_stop_signal, "QUIT", "QUIT"),
        (validation.check_stop_signal, "SIGRTMIN+3", "SIGRTMIN+3"),
        (validation.check_stop_signal, "9", "9"),
        (validation.check_user, "1000:1000", "1000:1000"),
        (validation.check_image_tag, "1.2", "1.2"),
        (validation.check_image_tag, "example.com/app:1.2", "example.com/app:1.2"),
        (validation.check_layer_media_type, media_types.DOCKER_LAYER, media_types.DOCKER_LAYER),
        (platforms.check_platform, "linux/x86_64", ("linux", "amd64", None)),
        (platforms.check_platform, "linux/arm64/8", ("linux", "arm64", "v8")),
        (platforms.check_platform, "linux/arm64/v8.2", ("linux", "arm64", "v8.2")),
    ],
)
def test_good_values_are_kept_or_normalised(
    check: Callable[[Any], Any], good: Any, normalised: Any
) -> None:
    assert check(good) == normalised


@pytest.mark.parametrize(
    ("check", "bad", "words"),
    [
        (platforms.check_platform, "linux/amd65", "unknown architecture 'amd65'"),
        (platforms.check_platform, "", "is not `os/architecture[/variant]`"),
        (platforms.check_platform, "linux/arm/v9", "known: linux/arm/v5"),
        (platforms.check_platform, 5, "give a string"),
        (validation.check_port, "99999/tcp", "1 to 65535"),
        (validation.check_port, "80/sctpx", "tcp, udp or sctp"),
        (validation.check_port, 0, "1 to 65535"),
        (validation.check_port, True, "is not a port"),
        (validation.check_stop_signal, "SIGFOO", '"SIGQUIT"'),
        (validation.check_stop_signal, "65", "1 to 64"),
        (validation.check_user, 5, "(a string)"),
        (validation.check_user, "a:b:c", '"uid:gid"'),
        (validation.check_env_name, "1A", "not starting with a digit"),
        (validation.check_image_tag, "a b", "is not a tag"),
        (validation.check_image_tag, "a" * 129, "up to 128"),
        (validation.check_image_tag, "example.com/app@" + ZERO, "image name with a tag"),
        (validation.check_layer_media_type, "text/plain", media_types.OCI_LAYER_GZIP),
        (lambda v: validation.check_id(v, "uid"), -1, "0 to 4294967294"),
        (lambda v: validation.check_id(v, "uid"), 2**32 - 1, "0 to 4294967294"),
        (lambda v: validation.check_id(v, "uid"), "0", "is not an id"),
        (lambda v: validation.check_absolute_path(v, "workdir"), "app", "Use '/app'"),
        (lambda v: validation.check_absolute_path(v, "workdir"), "/a/../b", "`..`"),
        (lambda v: validation.check_string_map(v, "labels"), {"a": 1}, "write '1'"),
        (lambda v: validation.check_string_map(v, "labels"), {"": "x"}, "non-empty strings"),
    ],
)
def test_bad_values_name_the_value_and_the_fix(
    check: Callable[[Any], Any], bad: Any, words: str
) -> None:
    with pytest.raises(InvalidValueError) as caught:
        check(bad)
    assert repr(bad) in str(caught.value)
    assert words in caught.value.problem
    assert isinstance(caught.value, ValueError)  # what callers that catch ValueError expect


def _scratch() -> Image:
    return Image("scratch", platform="linux/amd64")


def _set(attribute: str, value: Any) -> Callable[[], object]:
    return lambda: setattr(_scratch(), attribute, value)


@pytest.mark.parametrize(
    ("action", "words"),
    [
        (lambda: Image("scratch", platform="linux/amd65"), "platform 'linux/amd65'"),
        (lambda: Image("scratch", platform=""), "platform ''"),
        (_set("exposed_ports", ["99999/tcp"]), "exposed port '99999/tcp'"),
        (lambda: _scratch().expose("80/sctpx"), "exposed port '80/sctpx'"),
        (_set("workdir", "app"), "workdir 'app' is not an absolute path"),
        (_set("volumes", ["data"]), "volume 'data'"),
        (_set("stop_signal", "SIGFOO"), "stop signal 'SIGFOO'"),
        (_set("labels", {"a": 1}), "labels {'a': 1} maps 'a' to 1"),
        (_set("user", 5), "user 5 is not a user"),
        (_set("env", ["1A=b"]), "environment variable name '1A'"),
        (lambda: _scratch().set_env("A", 1), "environment variable A 1 is not a string"),
        (
            lambda: _scratch().add_layer(ZERO, ZERO, 10, media_type="text/plain"),
            "layer media type 'text/plain'",
        ),
        (
            lambda: _scratch().add_files({"app/f": CustomFile(data=b"x")}),
            "add_files target 'app/f' is not an absolute path. Use '/app/f'",
        ),
        (lambda: CustomFile(data=b"x", uid=-1), "uid -1 is not an id"),
        (lambda: Override(gid=-1), "gid -1 is not an id"),
        (lambda: LayerBuilder(uid=2**32), "uid 4294967296 is not an id"),
    ],
)
def test_the_image_api_refuses_bad_values_when_they_are_given(
    action: Callable[[], object], words: str
) -> None:
    with pytest.raises(InvalidValueError) as caught:
        action()
    assert words in str(caught.value)


@pytest.mark.parametrize("tag", ["a b", "a" * 200, "", "-x"])
def test_layout_tags_are_checked_before_anything_is_written(tag: str, tmp_path: Path) -> None:
    with _scratch() as image, pytest.raises(InvalidValueError, match="is not a tag"):
        image.write_layout(tmp_path / "out", [tag])
    assert not (tmp_path / "out").exists()


def test_registry_tags_are_checked_before_anything_is_uploaded() -> None:
    # The target is a registry nothing listens on: the tag is refused before any connection.
    with (
        Image("scratch", "127.0.0.1:1/app", platform="linux/amd64") as image,
        pytest.raises(InvalidReferenceError, match="invalid tag 'a b'"),
    ):
        image.save(["a b"])


def test_good_values_reach_the_config(tmp_path: Path) -> None:
    with Image("scratch", platform="linux/x86_64") as image:
        image.expose(8080, "53/udp")
        image.workdir = "/app"
        image.user = "1000:1000"
        image.stop_signal = "SIGQUIT"
        image.labels = {"a": "1"}
        image.add_files({"/app/f": CustomFile(data=b"x", uid=1000)})
        image.write_layout(tmp_path / "out", ["example.com/app:1.2", "latest"])
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]]
    assert names == ["example.com/app:1.2", "latest"]
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((tmp_path / "out" / "blobs" / "sha256" / manifest_digest).read_text())
    config_digest = manifest["config"]["digest"].split(":")[1]
    config = json.loads((tmp_path / "out" / "blobs" / "sha256" / config_digest).read_text())
    assert config["architecture"] == "amd64"
    assert config["config"]["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert config["config"]["WorkingDir"] == "/app"
    assert config["config"]["StopSignal"] == "SIGQUIT"
    assert str(Platform.parse("linux/aarch64")) == "linux/arm64"


def test_values_an_image_inherits_from_its_base_are_kept_not_refused(tmp_path: Path) -> None:
    # A base may carry what Docker lets through (`VOLUME data`, `EXPOSE 8080/TCP`): building
    # on it must not fail for values the BUILD file never set.
    with _scratch() as base:
        inherited = base.get_image_config()
        inherited.volumes = ["data"]
        inherited.exposed_ports = ["8080/TCP"]
        base.write_layout(tmp_path / "base", ["base"])
    with Image(tmp_path / "base", platform="linux/amd64") as image:
        image.expose(9090)
        image.volumes = [*image.volumes, "/cache"]
        assert image.exposed_ports == ["8080/TCP", "9090/tcp"]
        assert image.volumes == ["data", "/cache"]
        with pytest.raises(InvalidValueError, match="volume 'logs'"):
            image.volumes = [*image.volumes, "logs"]
        with pytest.raises(InvalidValueError, match="exposed port '80/TCP'"):
            image.expose("80/TCP")


def test_a_layer_media_type_with_parameters_is_a_layer_media_type() -> None:
    with _scratch() as image:
        image.add_layer(ZERO, ZERO, 10, media_type=f"{media_types.OCI_LAYER_GZIP}; x=y")
