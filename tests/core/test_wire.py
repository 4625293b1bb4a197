"""`pants_oci.core.wire`, held to the command line it describes: each command's argv parses,
with the CLI's own parser, into the values its fields hold; every option of those commands is
a field (or left out on purpose); and what the CLI prints for each command the backend runs
reads as its result type and writes back byte for byte."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from pants_oci.core import cli, wire
from pants_oci.core.reference import DEFAULT_TAG
from tests.core.registry_support import hermetic_cli_environment


def _parse(command: wire.Command, options: wire.GlobalOptions | None = None) -> argparse.Namespace:
    argv = [*(options or wire.GlobalOptions()).argv(), *command.argv()]
    if "--" in argv:  # `run`'s container arguments are not the parser's
        argv = argv[: argv.index("--")]
    return cli.build_parser().parse_args(argv)


def test_layer_build_argv() -> None:
    args = _parse(wire.LayerBuild(spec="s.json", output="out.blob"))
    assert (args.command, args.action, args.spec, args.output) == (
        "layer",
        "build",
        "s.json",
        "out.blob",
    )


def test_base_pull_argv() -> None:
    full = wire.BasePull(
        "r.example/a@sha256:" + "0" * 64,
        output="base",
        platform="linux/arm64/v8",
        blob_cache=".cache",
        with_layers=True,
    )
    args = _parse(full)
    assert (args.command, args.action) == ("base", "pull")
    assert (args.reference, args.output, args.platform, args.blob_cache, args.with_layers) == (
        full.reference,
        "base",
        "linux/arm64/v8",
        ".cache",
        True,
    )
    args = _parse(wire.BasePull("busybox", output="o"))
    assert (args.platform, args.blob_cache, args.with_layers) == (None, None, False)


def test_image_assemble_argv() -> None:
    full = wire.ImageAssemble(
        base="base",
        config="c.json",
        output="image",
        layers=(wire.LayerInput("l/0/blob", "l/0/meta.json"), wire.LayerInput(None, "m1")),
        source_date_epoch=1700000000,
        tags=("1.0", "latest"),
        base_reference="r.example/a@sha256:" + "1" * 64,
        omit_layers=True,
        docker_archive="img.tar",
        archive_names=("r.example/img:1.0", "img:latest"),
    )
    args = _parse(full)
    assert (args.command, args.action, args.base, args.config, args.output) == (
        "image",
        "assemble",
        "base",
        "c.json",
        "image",
    )
    assert args.layer == ["l/0/blob=l/0/meta.json", "m1"]
    assert (args.source_date_epoch, args.tag, args.base_reference) == (
        1700000000,
        ["1.0", "latest"],
        full.base_reference,
    )
    assert (args.omit_layers, args.docker_archive, args.archive_name) == (
        True,
        "img.tar",
        ["r.example/img:1.0", "img:latest"],
    )
    args = _parse(wire.ImageAssemble(base="scratch", config="c", output="o"))
    assert (args.layer, args.tag, args.archive_name) == ([], [], [])
    assert (args.source_date_epoch, args.base_reference, args.docker_archive) == (None,) * 3
    assert args.omit_layers is False


def test_image_index_pythons_dirs_argv() -> None:
    args = _parse(wire.ImageIndex(("p/0", "p/1"), output="i", tags=("x",), omit_layers=True))
    assert (args.command, args.action, args.image, args.output) == (
        "image",
        "index",
        ["p/0", "p/1"],
        "i",
    )
    assert (args.tag, args.omit_layers) == (["x"], True)
    args = _parse(wire.ImageIndex(("p/0",), output="i"))
    assert (args.tag, args.omit_layers) == ([], False)
    args = _parse(wire.ImagePythons("base"))
    assert (args.command, args.action, args.base) == ("image", "pythons", "base")
    args = _parse(wire.ImageDirs("b"))
    assert (args.command, args.action, args.base) == ("image", "dirs", "b")


def test_inspect_and_push_argv() -> None:
    args = _parse(wire.Inspect("busybox:1", platform="linux/amd64"))
    assert (args.command, args.reference, args.platform, args.raw, args.config) == (
        "inspect",
        "busybox:1",
        "linux/amd64",
        False,
        False,
    )
    assert _parse(wire.Inspect("busybox")).platform is None
    args = _parse(wire.Push("dist/img", to=("r:5000/a:1", "r:5000/a:2"), base_reference="b@x"))
    assert (args.command, args.layout, args.to, args.base_reference) == (
        "push",
        "dist/img",
        ["r:5000/a:1", "r:5000/a:2"],
        "b@x",
    )
    assert _parse(wire.Push("l", to=("r/a:1",))).base_reference is None
    assert _parse(wire.Push("l", to=("r/a:1",))).ledger is None
    assert _parse(wire.Push("l", to=("r/a:1",), ledger="cache/pushed")).ledger == "cache/pushed"


def test_run_argv() -> None:
    full = wire.Run(
        "image",
        ref="sha256:" + "2" * 64,
        runtime="podman",
        pass_env_prefix="P_",
        mounts=("/a:/b", "/c:/d"),
        workdir="/w",
        user="1000:1000",
        max_unpacked_size=10,
        env=("A=1", "B"),
        container_args=("sh", "-c", "true"),
    )
    assert full.argv()[-4:] == ("--", "sh", "-c", "true")
    args = _parse(full)
    assert (args.command, args.layout, args.ref, args.runtime, args.pass_env_prefix) == (
        "run",
        "image",
        full.ref,
        "podman",
        "P_",
    )
    assert (args.mount, args.workdir, args.user, args.max_unpacked_size, args.env) == (
        ["/a:/b", "/c:/d"],
        "/w",
        "1000:1000",
        10,
        ["A=1", "B"],
    )
    # `container_args=()`: a `--` alone, after which `pants run ... -- ARGS` puts its own.
    assert wire.Run("l", container_args=()).argv() == ("run", "l", "--")
    args = _parse(wire.Run("l"))
    assert (args.ref, args.runtime, args.mount, args.env) == (None, "auto", [], [])


def test_global_options_argv() -> None:
    options = wire.GlobalOptions(
        hints_for="pants",
        concurrency=7,
        connect_timeout=3.5,
        read_timeout=45.0,
        retries=1,
        insecure_registries=("a:5000", "b.example"),
        ca_bundle="ca.pem",
    )
    args = _parse(wire.ImageDirs("b"), options)
    assert (args.hints_for, args.concurrency, args.connect_timeout, args.read_timeout) == (
        "pants",
        7,
        3.5,
        45.0,
    )
    assert (args.retries, args.insecure_registry, args.ca_bundle) == (
        1,
        ["a:5000", "b.example"],
        "ca.pem",
    )
    defaults = cli.build_parser().parse_args(["image", "dirs", "--base", "b"])
    assert vars(_parse(wire.ImageDirs("b"))) == vars(defaults)


def test_the_backends_command_lines_are_unchanged() -> None:
    """The argv the backend built before `wire` (process cache keys: a remote cache shared by
    machines on different plugin builds must keep hitting)."""
    assert wire.GlobalOptions(hints_for="pants", concurrency=4).argv() == (
        "--hints-for",
        "pants",
        "--concurrency",
        "4",
    )
    assert wire.LayerBuild("__oci_layer_spec.json", "__oci_layer.blob").argv() == (
        *("layer", "build", "--spec", "__oci_layer_spec.json", "--output", "__oci_layer.blob"),
    )
    pull = wire.BasePull("r/a@sha256:x", "base", "linux/amd64", ".cache", with_layers=True)
    assert pull.argv() == (
        *("base", "pull", "r/a@sha256:x", "--platform", "linux/amd64", "--output", "base"),
        *("--blob-cache", ".cache", "--with-layers"),
    )
    assemble = wire.ImageAssemble(
        base="base",
        config="__oci_image_config.json",
        output="image",
        layers=(wire.LayerInput("layers/0/__oci_layer.blob", "layers/0/meta.json"),),
        source_date_epoch=0,
        tags=("1.0", "a6f12252f1e6"),
        base_reference="r/a@sha256:x",
        omit_layers=True,
        docker_archive="img.tar",
        archive_names=("r/acme/img:1.0",),
    )
    assert assemble.argv() == (
        *("image", "assemble", "--base", "base"),
        *("--layer", "layers/0/__oci_layer.blob=layers/0/meta.json"),
        *("--config", "__oci_image_config.json", "--output", "image"),
        *("--source-date-epoch", "0", "--tag", "1.0", "--tag", "a6f12252f1e6"),
        *("--base-reference", "r/a@sha256:x", "--omit-layers"),
        *("--docker-archive", "img.tar", "--archive-name", "r/acme/img:1.0"),
    )
    index = wire.ImageIndex(("platforms/0", "platforms/1"), "image", ("x",), omit_layers=True)
    assert index.argv() == (
        *("image", "index", "--omit-layers", "--output", "image"),
        *("--image", "platforms/0", "--image", "platforms/1", "--tag", "x"),
    )
    assert wire.Push("dist/a", ("r/a:1", "r/a:2")).argv() == (
        *("push", "dist/a", "--to", "r/a:1", "--to", "r/a:2"),
    )


# --- Every option of a command the backend runs is a field -------------------------------------

# The CLI's option name (argparse `dest`) where the field's differs.
_FIELD_OF = {"layer": "layers", "tag": "tags", "archive_name": "archive_names"}
_FIELD_OF.update({"image": "images", "mount": "mounts", "insecure_registry": "insecure_registries"})
# Options no backend process uses, so no field: documents instead of a summary; HTTPS on
# loopback (tests); progress (a Pants process's stderr is shown only when it fails).
# What the backend never passes. `--progress`: its default (progress when stderr is a
# terminal) is what `pants publish`'s pushes want, shown on a terminal and not in CI logs.
_LEFT_OUT = {
    "inspect": {"raw", "config"},
    "global": {"https_registry", "quiet", "progress_mode"},
}


def _subcommand(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return commands.choices[name]


def _dests(parser: argparse.ArgumentParser) -> set[str]:
    return {
        action.dest
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
    }


@pytest.mark.parametrize(
    ("path", "command"),
    [
        (("layer", "build"), wire.LayerBuild),
        (("base", "pull"), wire.BasePull),
        (("image", "assemble"), wire.ImageAssemble),
        (("image", "index"), wire.ImageIndex),
        (("image", "pythons"), wire.ImagePythons),
        (("image", "dirs"), wire.ImageDirs),
        (("inspect",), wire.Inspect),
        (("push",), wire.Push),
        (("run",), wire.Run),
        ((), wire.GlobalOptions),
    ],
)
def test_every_option_of_a_command_is_a_field(path: tuple[str, ...], command: type) -> None:
    top = cli.build_parser()
    global_options = _dests(top)
    parser = top
    for name in path:
        parser = _subcommand(parser, name)
    options = _dests(parser) if path else global_options
    if path:
        options -= global_options
    left_out = _LEFT_OUT.get(path[0] if path else "global", set())
    fields = {field for field in command.__dataclass_fields__ if field != "container_args"}
    assert {_FIELD_OF.get(option, option) for option in options - left_out} == fields


# --- The CLI's output, read as results ----------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], command: wire.Command) -> str:
    """`command` run in-process, as the backend passes it; its stdout."""
    options = wire.GlobalOptions(hints_for="pants", concurrency=4)
    status = cli.main([*options.argv(), *command.argv()])
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def _read(command: wire.JsonCommand[Any], stdout: str) -> Any:
    """The result, checked to write back the CLI's very bytes (`to_json` can feed its
    output)."""
    result = command.parse_output(stdout)
    assert json.dumps(result.to_json(), separators=(",", ":")) + "\n" == stdout
    return result


def _write_json(path: Path, value: Any) -> str:
    path.write_text(json.dumps(value))
    return path.name


def test_the_clis_output_reads_as_the_wire_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    hermetic_cli_environment(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)  # where `layer build` reads its sources
    (tmp_path / "root/usr/local/bin").mkdir(parents=True)
    (tmp_path / "root/usr/local/bin/python3.11").write_text("#!/bin/false\n")
    (tmp_path / "root/srv/data.txt").parent.mkdir(parents=True)
    (tmp_path / "root/srv/data.txt").write_text("data\n")
    spec = _write_json(tmp_path / "spec.json", {"entries": [{"source": "root", "target": "/"}]})
    build = wire.LayerBuild(spec, "layer.blob")
    layer = _read(build, _run(capsys, build))
    assert isinstance(layer, wire.LayerBuildResult) and layer.size > 0
    meta = _write_json(tmp_path / "meta.json", layer.to_json())  # what assemble reads
    for architecture in ("amd64", "arm64"):
        config = {"platform": f"linux/{architecture}", "env": {"A": "1"}}
        assemble = wire.ImageAssemble(
            base="scratch",
            config=_write_json(tmp_path / f"{architecture}.json", config),
            output=architecture,
            layers=(wire.LayerInput(build.output, meta),),
            source_date_epoch=0,
            tags=("1.0",),
            docker_archive=f"{architecture}.tar",
            archive_names=("r.example/app:1.0",),
        )
        assembled = _read(assemble, _run(capsys, assemble))
        assert assembled.tags == ("1.0",)
        assert [(a.digest, a.diff_id) for a in assembled.layers] == [(layer.digest, layer.diff_id)]
        assert assembled.base == wire.AssembledBase(None, None)
    index = wire.ImageIndex(("amd64", "arm64"), output="index", omit_layers=True)
    indexed = _read(index, _run(capsys, index))
    assert [platform for platform, _ in indexed.platforms] == ["linux/amd64", "linux/arm64"]
    assert indexed.tags == (DEFAULT_TAG,)  # given no tags
    dirs = wire.ImageDirs("amd64")
    assert _read(dirs, _run(capsys, dirs)).directories == (
        "srv",
        "usr",
        "usr/local",
        "usr/local/bin",
    )
    pythons = wire.ImagePythons("amd64")
    assert _read(pythons, _run(capsys, pythons)).interpreters == (
        wire.PythonInterpreter("/usr/local/bin/python3.11", "3.11"),
    )


# Outputs of the commands that need a registry, as docs/cli.md shows them.
_REGISTRY_OUTPUTS: list[tuple[type[wire.Result], dict[str, Any]]] = [
    (
        wire.BasePullResult,
        {
            "reference": "docker.io/library/python:3.12-slim",
            "index_digest": None,
            "manifest_digest": "sha256:m",
            "config_digest": "sha256:c",
            "platform": "linux/amd64",
            "layers": [{"digest": "sha256:l", "size": 123, "media_type": "t"}],
        },
    ),
    (
        wire.InspectResult,
        {
            "reference": "r/a:1",
            "digest": "sha256:i",
            "media_type": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {"digest": "sha256:m", "media_type": "t", "size": 9, "platform": "linux/amd64"},
                {"digest": "sha256:n", "media_type": "t", "size": 9, "platform": None},
            ],
        },
    ),
    (
        wire.InspectResult,
        {
            "reference": "r/a:1",
            "digest": "sha256:m",
            "media_type": "application/vnd.oci.image.manifest.v1+json",
            "config_digest": "sha256:c",
            "platform": "linux/arm64/v8",
            "layers": [],
        },
    ),
    (wire.PushResult, {"pushed": [{"reference": "r/a:1", "digest": "sha256:m"}]}),
    (wire.PushResult, {"pushed": [], "updated": ["r/a:1"], "not_updated": ["r/a:2"]}),
]


@pytest.mark.parametrize(("result_type", "output"), _REGISTRY_OUTPUTS)
def test_registry_command_outputs_read_and_write_back(
    result_type: type[wire.Result], output: dict[str, Any]
) -> None:
    text = json.dumps(output, separators=(",", ":"))
    assert json.dumps(result_type.from_json(text).to_json(), separators=(",", ":")) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("nope", "not JSON"),
        ("[]", "the output is a list, not an object"),
        ('{"directories": ["a", 1]}', "`directories[1]` is a number, not a string"),
        ('{"directories": [], "extra": 1}', "the output has unknown keys ['extra']"),
        ("{}", "the output has no 'directories'"),
    ],
)
def test_output_of_the_wrong_shape_is_an_error_naming_the_command(text: str, problem: str) -> None:
    with pytest.raises(wire.ToolOutputError) as caught:
        wire.ImageDirsResult.from_json(text)
    assert str(caught.value).startswith("`pants-oci image dirs` printed output that is not")
    assert problem in str(caught.value)


def test_nested_and_typed_values_are_checked() -> None:
    layer = {"digest": "d", "diff_id": "i", "size": True, "media_type": "t"}
    output = {
        "manifest_digest": "m",
        "config_digest": "c",
        "media_type": "t",
        "layers": [layer],
        "tags": [],
        "base": {"reference": None, "manifest_digest": None},
    }
    with pytest.raises(wire.ToolOutputError, match=r"`layers\[0\].size` is a boolean, not an"):
        wire.ImageAssembleResult.from_json(json.dumps(output))
    output["base"] = {"reference": None}
    output["layers"] = []
    with pytest.raises(wire.ToolOutputError, match="`base` has no 'manifest_digest'"):
        wire.ImageAssembleResult.from_json(json.dumps(output))
    summary = {"reference": "r", "digest": "d", "media_type": "t", "platform": "linux/amd64"}
    with pytest.raises(wire.ToolOutputError, match="either 'manifests'"):
        wire.InspectResult.from_json(json.dumps(summary))
