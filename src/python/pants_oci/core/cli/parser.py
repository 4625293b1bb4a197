"""The ``pants-oci`` command line: its commands, their arguments, and the options every command
takes (how to reach registries, how to report); see docs/cli.md.

Each command's handler is a function of a command module (:mod:`~pants_oci.core.cli.layer_build`,
:mod:`~pants_oci.core.cli.image_assemble`, :mod:`~pants_oci.core.cli.registry_commands`,
:mod:`~pants_oci.core.cli.layout_commands`, :mod:`~pants_oci.core.cli.crane_commands`,
:mod:`~pants_oci.core.cli.mutate_commands`, :mod:`~pants_oci.core.cli.auth_commands`), which
imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from pants_oci.core._settings import CLI, PANTS, Setting, name_of
from pants_oci.core._transport_options import TransportOptions
from pants_oci.core.base_spec import SCRATCH
from pants_oci.core.cli.auth_commands import login_command, logout_command, validate_command
from pants_oci.core.cli.crane_commands import (
    blob_command,
    catalog_command,
    config_command,
    delete_command,
    digest_command,
    ls_command,
    manifest_command,
    pull_command,
    tag_command,
)
from pants_oci.core.cli.image_assemble import image_assemble_command
from pants_oci.core.cli.layer_build import layer_build_command
from pants_oci.core.cli.layout_commands import (
    image_dirs_command,
    image_index_command,
    image_pythons_command,
    run_command,
)
from pants_oci.core.cli.mutate_commands import (
    append_command,
    export_command,
    flatten_command,
    mutate_command,
    rebase_command,
)
from pants_oci.core.cli.output import PROGRAM
from pants_oci.core.cli.registry_commands import (
    base_pull_command,
    copy_command,
    inspect_command,
    push_command,
    referrers_command,
    sbom_command,
)
from pants_oci.core.errors import InputFileError

__all__ = ["Handler", "build_parser", "split_container_args", "transport_options"]

# A handler returns None for success, or (`run`) the exit status to end with.
Handler = Callable[[argparse.Namespace, TransportOptions], Optional[int]]
_DEFAULTS = TransportOptions()  # the flags' defaults are the library's

RUN_COMMAND = "run"
# The top-level command names (see build_parser), to tell `run`'s `--` from another command's.
COMMANDS = (
    "layer",
    "base",
    "image",
    "push",
    "pull",
    "copy",
    "inspect",
    "referrers",
    "sbom",
    "ls",
    "catalog",
    "digest",
    "manifest",
    "config",
    "blob",
    "tag",
    "delete",
    "append",
    "mutate",
    "flatten",
    "export",
    "rebase",
    "validate",
    "auth",
    RUN_COMMAND,
)


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options every command takes, before or after its name."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "--insecure-registry",
        action="append",
        metavar="HOST",
        default=default([]),
        help="reach this registry (host or host:port) over plain HTTP; repeatable",
    )
    parser.add_argument(
        "--https-registry",
        action="append",
        metavar="HOST",
        default=default([]),
        help="reach this loopback registry over HTTPS (loopback defaults to HTTP); repeatable",
    )
    parser.add_argument(
        "--ca-bundle",
        metavar="PATH",
        default=default(None),
        help="PEM file of extra certificate authorities to trust",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        metavar="N",
        default=default(4),
        help="blobs transferred in parallel (default 4)",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        metavar="SECONDS",
        default=default(_DEFAULTS.connect_timeout),
        help=f"how long to wait for a connection to a registry (default "
        f"{_DEFAULTS.connect_timeout:g})",
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        metavar="SECONDS",
        default=default(_DEFAULTS.read_timeout),
        help=f"how long a registry may send (or take) nothing before the attempt fails "
        f"(default {_DEFAULTS.read_timeout:g}); any byte starts it again, so a large "
        "transfer that keeps moving is never cut",
    )
    parser.add_argument(
        "--retries",
        type=int,
        metavar="N",
        default=default(_DEFAULTS.max_retries),
        help=f"how many times a failed request is tried again: resets, timeouts, 408, 429 "
        f"and 5xx answers (default {_DEFAULTS.max_retries})",
    )
    parser.add_argument(
        "--hints-for",
        choices=(CLI, PANTS),
        default=default(CLI),
        help="name settings in errors and hints as this front end spells them: the command "
        "line's flags (default), or the Pants options (e.g. [oci].ca_bundle) when Pants runs "
        "this",
    )
    parser.add_argument(
        "--progress",
        dest="progress_mode",
        choices=("auto", "always", "never"),
        default=default("auto"),
        help="progress lines for long transfers on stderr: auto (the default) when stderr is a "
        "terminal, as crane does, so that CI logs and captured output stay clean",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="no progress, and no log lines but warnings, on stderr (errors are still reported)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Build, pull, push and inspect OCI images without a container daemon.",
    )
    _global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    _layer_commands(commands, common)
    _base_commands(commands, common)
    _image_commands(commands, common)
    _registry_commands(commands, common)
    _crane_commands(commands, common)
    _mutate_commands(commands, common)
    _auth_commands(commands, common)
    _run_command(commands, common)
    return parser


def _command(
    common: argparse.ArgumentParser, parent: Any, name: str, handler: Handler, help_text: str
) -> argparse.ArgumentParser:
    """A command that takes the global options too (``common``), before or after its name."""
    sub: argparse.ArgumentParser = parent.add_parser(
        name, parents=[common], help=help_text, description=help_text
    )
    sub.set_defaults(handler=handler)
    return sub


def _layer_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    layer = commands.add_parser("layer", help="build layers")
    layer_commands = layer.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = _command(
        common, layer_commands, "build", layer_build_command, "build a layer blob from a JSON spec"
    )
    build.add_argument("--spec", required=True, metavar="SPEC.json")
    build.add_argument("--output", required=True, metavar="BLOB_PATH")


def _base_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    base = commands.add_parser("base", help="fetch base images")
    base_commands = base.add_subparsers(dest="action", required=True, metavar="ACTION")
    pull = _command(
        common,
        base_commands,
        "pull",
        base_pull_command,
        "write one platform of a registry image to a layout",
    )
    pull.add_argument("reference", metavar="REFERENCE")
    pull.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    pull.add_argument("--output", required=True, metavar="LAYOUT_DIR")
    pull.add_argument("--with-layers", action="store_true", help="also download the layers")
    pull.add_argument(
        "--blob-cache",
        metavar="DIR",
        help="keep blobs named by digest in DIR (verified on every read) and download only what "
        "it lacks: a base whose blobs are there needs no network",
    )


def _image_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    image = commands.add_parser("image", help="assemble images")
    image_commands = image.add_subparsers(dest="action", required=True, metavar="ACTION")
    _image_assemble_command(image_commands, common)
    index = _command(
        common,
        image_commands,
        "index",
        image_index_command,
        "combine per-platform layouts into an index",
    )
    index.add_argument("--image", action="append", required=True, metavar="LAYOUT_DIR")
    index.add_argument("--output", required=True, metavar="LAYOUT_DIR")
    index.add_argument("--tag", action="append", default=[], metavar="TAG")
    index.add_argument(
        "--omit-layers", action="store_true", help="write the documents only, no layer blobs"
    )
    pythons = _command(
        common,
        image_commands,
        "pythons",
        image_pythons_command,
        "list the Python interpreters of an image",
    )
    pythons.add_argument("--base", required=True, metavar="LAYOUT_DIR")
    dirs = _command(
        common,
        image_commands,
        "dirs",
        image_dirs_command,
        "list the directories (and symlinks) an image's layers leave, whiteouts applied",
    )
    dirs.add_argument("--base", required=True, metavar="LAYOUT_DIR")


def _image_assemble_command(image_commands: Any, common: argparse.ArgumentParser) -> None:
    assemble = _command(
        common,
        image_commands,
        "assemble",
        image_assemble_command,
        "assemble an image into an OCI layout",
    )
    assemble.add_argument("--base", required=True, metavar=f"{SCRATCH}|LAYOUT_DIR")
    assemble.add_argument(
        "--layer", action="append", default=[], metavar="BLOB_PATH=META_JSON_PATH"
    )
    assemble.add_argument("--config", required=True, metavar="CONFIG.json")
    assemble.add_argument("--output", required=True, metavar="LAYOUT_DIR")
    assemble.add_argument("--tag", action="append", default=[], metavar="TAG")
    assemble.add_argument("--docker-archive", metavar="TAR_PATH")
    assemble.add_argument(
        "--archive-name",
        action="append",
        default=[],
        metavar="NAME:TAG",
        help="a name the docker-archive gives the image (its RepoTags); repeatable",
    )
    assemble.add_argument("--source-date-epoch", type=int, metavar="N")
    assemble.add_argument("--base-reference", metavar="REF")
    assemble.add_argument(
        "--omit-layers",
        action="store_true",
        help="write the documents only, no layer blob; a --layer may then be its metadata alone",
    )
    assemble.add_argument(
        "--supply-chain",
        metavar="FACTS.json",
        help="attach an SBOM (SPDX, CycloneDX) and provenance, from these build facts",
    )


def _registry_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    push = _command(
        common,
        commands,
        "push",
        push_command,
        "push the image of an OCI layout (or docker-archive) to registries",
    )
    push.add_argument(
        "layout",
        metavar="LAYOUT_DIR|ARCHIVE.tar",
        help="an OCI layout (`image assemble`'s output), or a docker-archive tar of one image",
    )
    push.add_argument("--to", action="append", required=True, metavar="REF")
    push.add_argument("--base-reference", metavar="REF")
    push.add_argument(
        "--ledger",
        metavar="DIR",
        help="a push ledger: mount blobs from repositories of the registry pushed to before",
    )

    copy = _command(
        common,
        commands,
        "copy",
        copy_command,
        "copy an image (every platform, or one) between registries",
    )
    copy.add_argument("source", metavar="SRC_REF")
    copy.add_argument("destination", metavar="DST_REF")
    copy.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="copy only that platform's image of an index (the destination gets its manifest)",
    )

    inspect = _command(
        common, commands, "inspect", inspect_command, "print an image's manifest or config"
    )
    inspect.add_argument("reference", metavar="REF")
    inspect.add_argument("--raw", action="store_true", help="the exact bytes of the document")
    inspect.add_argument("--config", action="store_true", help="the image config")
    inspect.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")

    referrers = _command(
        common,
        commands,
        "referrers",
        referrers_command,
        "list the artifacts attached to an image (SBOMs, provenance)",
    )
    referrers.add_argument("reference", metavar="REF")
    referrers.add_argument("--artifact-type", metavar="MEDIA_TYPE")
    referrers.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    sbom = _command(common, commands, "sbom", sbom_command, "print the SBOM attached to an image")
    sbom.add_argument("reference", metavar="REF")
    sbom.add_argument("--format", choices=("spdx", "cyclonedx"), default="spdx")
    sbom.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")


_REF_HELP = "an image in a registry: host/repository:tag or host/repository@sha256:..."


def _crane_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """crane's everyday commands: plain output for people, ``--json`` for scripts."""

    def command(name: str, handler: Handler, help_text: str, json: bool = True) -> Any:
        sub = _command(common, commands, name, handler, help_text)
        if json:
            sub.add_argument("--json", action="store_true", help="print one JSON object")
        return sub

    command("ls", ls_command, "list the tags of a repository").add_argument(
        "repository", metavar="REPO"
    )
    command("catalog", catalog_command, "list the repositories of a registry").add_argument(
        "registry", metavar="REGISTRY"
    )
    for name, handler, help_text in (
        ("digest", digest_command, "print the digest of the manifest a reference names"),
        ("manifest", manifest_command, "print the exact bytes of the manifest"),
        ("config", config_command, "print the exact bytes of the image config"),
    ):
        sub = command(name, handler, help_text, json=name == "digest")
        sub.add_argument("reference", metavar="REF", help=_REF_HELP)
        sub.add_argument(
            "--platform", metavar="OS/ARCH[/VARIANT]", help="that platform's image, of an index"
        )
    pull = command("pull", pull_command, "write an image, with its layers, to a layout or tar")
    pull.add_argument("reference", metavar="REF")
    pull.add_argument("output", metavar="OUTPUT", help="a layout directory, or a tar file")
    pull.add_argument(
        "--format",
        choices=("oci", "docker-archive"),
        default="oci",
        help="oci: an OCI image layout (every platform of an index); docker-archive: a "
        "`docker load` tar of one image",
    )
    pull.add_argument(
        "--platform", metavar="OS/ARCH[/VARIANT]", help="that platform's image, of an index"
    )
    blob = command("blob", blob_command, "write a blob, verified, to stdout or a file")
    blob.add_argument("reference", metavar="REPO@DIGEST")
    blob.add_argument("-o", "--output", metavar="FILE", help="write it here (atomically)")
    tag = command("tag", tag_command, "put a manifest under another tag of its repository")
    tag.add_argument("reference", metavar="REF")
    tag.add_argument("tag", metavar="NEW_TAG")
    command("delete", delete_command, "delete a manifest (by digest, or its tag's)").add_argument(
        "reference", metavar="REF"
    )


def _mutate_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """crane's commands that make images: the new digest for people, ``--json`` for scripts."""

    def command(name: str, handler: Handler, help_text: str, target: bool = True) -> Any:
        sub = _command(common, commands, name, handler, help_text)
        base_help = (
            "the base: " + _REF_HELP + ", scratch, oci-layout:DIR[:REF] or docker-archive:FILE"
        )
        sub.add_argument(
            "reference", metavar="REF", help=base_help if name == "append" else _REF_HELP
        )
        if target:
            sub.add_argument(
                "-t",
                "--tag",
                dest="target",
                required=name != "mutate",
                metavar="NEW_REF",
                help="where to push the new image (host/repository:tag)"
                + ("; default: REF itself" if name == "mutate" else ""),
            )
            sub.add_argument("--json", action="store_true", help="print one JSON object")
        sub.add_argument(
            "--platform", metavar="OS/ARCH[/VARIANT]", help="that platform's image, of an index"
        )
        return sub

    append = command(
        "append",
        append_command,
        "push a base (a registry image, scratch, oci-layout:DIR[:REF] or "
        "docker-archive:FILE) with layers (tar files, dirs) on top",
    )
    append.add_argument(
        "--new-layer",
        action="append",
        required=True,
        metavar="TAR_OR_DIR",
        help="a layer: a tar file (uncompressed, gzip or zstd) as it is, or a directory's "
        "contents at /; repeatable, lowest first",
    )
    mutate = command("mutate", mutate_command, "push an image with its config edited")
    mutate.add_argument("--entrypoint", metavar="JSON_OR_CSV", help='["a","b"] or a,b')
    mutate.add_argument("--cmd", metavar="JSON_OR_CSV", help='["a","b"] or a,b')
    for flag, what in (("--env", "variable"), ("--label", "label"), ("--annotation", "manifest")):
        mutate.add_argument(
            flag, action="append", default=[], metavar="NAME=VALUE", help=f"set a {what}"
        )
    mutate.add_argument("--user", metavar="USER[:GROUP]", help="the user to run as (name or id)")
    mutate.add_argument("--workdir", metavar="DIR", help="the working directory")
    command("flatten", flatten_command, "push an image with its layers squashed into one")
    export = command(
        "export", export_command, "write an image's filesystem as one tar", target=False
    )
    export.add_argument("output", metavar="OUTPUT.tar", help="written atomically; - for stdout")
    rebase = command("rebase", rebase_command, "push an image moved onto another base")
    rebase.add_argument(
        "--old-base", "--old_base", required=True, metavar="OLD_REF", help="the base REF is on"
    )
    rebase.add_argument(
        "--new-base", "--new_base", required=True, metavar="NEW_REF", help="the base to put it on"
    )


def _auth_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    """crane's ``validate`` and ``auth``: plain output for people, ``--json`` for scripts."""
    what = "check an image's blobs, media types, diff IDs and platforms (exit 1 if any is wrong)"
    validate = _command(common, commands, "validate", validate_command, what)
    validate.add_argument(
        "reference", metavar="REF|oci-layout:DIR[:REF]|LAYOUT_DIR|[docker-archive:]ARCHIVE.tar"
    )
    validate.add_argument(
        "--platform", metavar="OS/ARCH[/VARIANT]", help="only that platform's image, of an index"
    )
    validate.add_argument("--json", action="store_true", help="print one JSON object")
    auth = commands.add_parser("auth", help="save or forget registry credentials (docker's)")
    auth_commands = auth.add_subparsers(dest="action", required=True, metavar="ACTION")
    what = "check a user and password against a registry, then save them in docker's config"
    login = _command(common, auth_commands, "login", login_command, what)
    logout = _command(
        common, auth_commands, "logout", logout_command, "forget a registry's credentials"
    )
    for sub in (login, logout):
        sub.add_argument("registry", metavar="REGISTRY")
        sub.add_argument("--json", action="store_true", help="print one JSON object")
    login.add_argument("-u", "--username", required=True, metavar="USER")
    password = login.add_mutually_exclusive_group(required=True)
    password.add_argument("-p", "--password", metavar="PASSWORD", help="(prefer stdin)")
    password.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin"
    )


def _run_command(commands: Any, common: argparse.ArgumentParser) -> None:
    run = _command(
        common,
        commands,
        RUN_COMMAND,
        run_command,
        "run an OCI layout's image in the foreground (runc or podman)",
    )
    run.usage = (
        f"{PROGRAM} {RUN_COMMAND} LAYOUT_DIR [--ref NAME] [--env NAME=VALUE]... "
        "[--mount SOURCE:DEST]... [--workdir DIR] [--user USER[:GROUP]] "
        "[--runtime auto|runc|podman] [-- ARGS...]"
    )
    run.add_argument("layout", metavar="LAYOUT_DIR")
    run.add_argument("--ref", metavar="NAME", help="the image's ref name or digest in the layout")
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="set (NAME alone: pass this process's value through, if set); repeatable",
    )
    run.add_argument(
        "--pass-env-prefix",
        metavar="PREFIX",
        help="read the value of `--env NAME` from PREFIX+NAME in this process's environment, so "
        "that what is meant for the container (PYTHONPATH, say) never changes this process",
    )
    run.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="SOURCE:DEST",
        help="bind-mount a host file or directory read-only at DEST; repeatable",
    )
    run.add_argument("--workdir", metavar="DIR", help="the working directory, over the image's")
    run.add_argument("--user", metavar="USER[:GROUP]", help="the user, over the image's")
    run.add_argument(
        "--max-unpacked-size",
        type=int,
        metavar="BYTES",
        help="refuse an image whose files unpack to more (default: the free space of the "
        "temporary directory's file system, less 1 GiB)",
    )
    run.add_argument(
        "--runtime",
        choices=("auto", "runc", "podman"),
        default="auto",
        help="auto: runc when on PATH and root, else podman",
    )
    run.set_defaults(container_args=[])  # ARGS after `--`: see split_container_args


def transport_options(args: argparse.Namespace) -> TransportOptions:
    def invalid(setting: Setting, rule: str, value: object) -> InputFileError:
        return InputFileError(f"{name_of(setting, args.hints_for)} must be {rule}, got {value}")

    if args.concurrency < 1:
        raise invalid(Setting.CONCURRENCY, "at least 1", args.concurrency)
    for setting, seconds in (
        (Setting.CONNECT_TIMEOUT, args.connect_timeout),
        (Setting.READ_TIMEOUT, args.read_timeout),
    ):
        if not 0 < seconds < math.inf:
            raise invalid(setting, "a number of seconds above 0", f"{seconds:g}")
    if args.retries < 0:
        raise invalid(Setting.RETRIES, "at least 0", args.retries)
    return TransportOptions(
        ca_bundle=Path(args.ca_bundle) if args.ca_bundle else None,
        insecure_registries=frozenset(args.insecure_registry),
        https_registries=frozenset(args.https_registry),
        max_concurrency=args.concurrency,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        max_retries=args.retries,
        hints_for=args.hints_for,
    )


def split_container_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """``run ... -- ARGS``: everything after the first ``--`` is the container's, untouched.
    (argparse cannot take a ``--`` list after options that follow a positional argument.)"""
    if "--" in argv:
        cut = argv.index("--")
        commands = [word for word in argv[:cut] if word in COMMANDS]
        if commands and commands[0] == RUN_COMMAND:
            return argv[:cut], argv[cut + 1 :]
    return argv, []
