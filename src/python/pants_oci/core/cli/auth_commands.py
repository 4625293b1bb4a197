"""The ``pants-oci`` commands of crane's everyday set about trust: ``validate`` (is an image
whole, and does it say true things about itself) and ``auth login`` / ``auth logout`` (save
or forget a registry's credentials where docker keeps them), each a library call or two:
:mod:`pants_oci.core.image_check`, and the docker config writer of :mod:`pants_oci.core.auth`.

They print for people, as crane does; ``--json`` prints one JSON object instead, for scripts.
A password is read from ``-p`` or stdin (``--password-stdin``), and never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pants_oci.core._transport_options import TransportOptions
from pants_oci.core.cli.inputs import platform_argument, reference_argument, registry_argument
from pants_oci.core.cli.output import print_result
from pants_oci.core.errors import CredentialError, InputFileError

if TYPE_CHECKING:
    from pants_oci.core.image_check import Problem

__all__ = ["login_command", "logout_command", "validate_command"]

_LAYOUT_MARKER = "oci-layout"  # the file that makes a directory an OCI image layout


def _layout_target(text: str) -> tuple[Path, str | None] | None:
    """``oci-layout:DIR[:REF]`` (the grammar of a ``base``), or a directory holding an
    ``oci-layout`` file: the layout and the ref named; None for a registry reference."""
    from pants_oci.core.base_spec import BaseKind, parse_base

    if (Path(text) / _LAYOUT_MARKER).is_file():
        return Path(text), None
    spec = parse_base(text)
    if spec.kind is BaseKind.OCI_LAYOUT:
        if os.path.isdir(spec.location):
            return Path(spec.location), None
        directory, colon, ref = spec.location.rpartition(":")
        if colon and ref and os.path.isdir(directory):
            return Path(directory), ref
        raise InputFileError(f"{text}: {spec.location} is not a directory")
    if spec.kind is BaseKind.DOCKER_ARCHIVE:
        raise InputFileError(
            f"{text}: {spec.location} is not a file; validate checks a docker-archive tar "
            "(docker-archive:FILE, or FILE), an OCI layout (oci-layout:DIR) or an image in a "
            "registry"
        )
    if spec.kind is not BaseKind.REGISTRY:
        raise InputFileError(
            f"{text}: validate checks an image in a registry, an OCI layout (oci-layout:DIR) "
            f"or a docker-archive tar, not a {spec.kind.value}"
        )
    return None


def _archive_target(text: str) -> Path | None:
    """A docker-archive tar: ``docker-archive:FILE``, or a file; None for anything else."""
    from pants_oci.core.base_spec import BaseKind, parse_base

    if os.path.isfile(text):
        return Path(text)
    if text.startswith(f"{BaseKind.DOCKER_ARCHIVE.value}:"):
        spec = parse_base(text)
        if spec.kind is BaseKind.DOCKER_ARCHIVE and os.path.isfile(spec.location):
            return Path(spec.location)
    return None


def validate_command(args: argparse.Namespace, options: TransportOptions) -> int | None:
    """Check every blob (digest, size), media type, diff ID and platform of an image or
    index (in a registry, an OCI layout or a docker-archive tar); exit 1 when anything is
    wrong."""
    from pants_oci.core.image_check import check_docker_archive, check_layout, check_remote

    platform = platform_argument(args.platform)
    archive = _archive_target(args.reference)
    layout = _layout_target(args.reference) if archive is None else None
    problems: list[Problem]
    if archive is not None:
        problems = check_docker_archive(archive)
    elif layout is not None:
        directory, ref = layout
        problems = check_layout(directory, ref, platform=platform)
    else:
        reference = reference_argument(args.reference)
        problems = check_remote(reference, platform=platform, options=options)
    lines = [str(problem) for problem in problems] or [f"OK {args.reference}"]
    print_result(
        args,
        lines,
        {
            "reference": args.reference,
            "ok": not problems,
            "problems": [problem.to_json() for problem in problems],
        },
    )
    return 1 if problems else None


def _password(args: argparse.Namespace) -> str:
    """``-p``, or stdin with ``--password-stdin`` (its final newline dropped)."""
    password = sys.stdin.read().rstrip("\r\n") if args.password_stdin else args.password
    if not password:
        raise InputFileError("auth login: the password is empty")
    return str(password)


def login_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """Check a user and password against a registry (``GET /v2/`` with them), then save them
    in docker's config (or its credential helper)."""
    from pants_oci.core.auth import RegistryAuth, StaticKeychain
    from pants_oci.core.auth._docker_login import docker_login
    from pants_oci.core.errors import DeniedError, UnauthorizedError
    from pants_oci.core.registry import RegistryClient

    registry = registry_argument(args.registry)
    password = _password(args)
    keychain = StaticKeychain({registry: {"username": args.username, "password": password}})
    auth = RegistryAuth(keychain)
    # The repository is never asked for: GET /v2/ is the registry's.
    with RegistryClient(registry, "login", auth=auth, options=options) as client:
        try:
            client.ping()
        except (UnauthorizedError, DeniedError) as error:
            answer = f"HTTP {error.status} {error.code}" if error.code else f"HTTP {error.status}"
            raise CredentialError(
                f"{registry} refused the credentials of user {args.username!r} ({answer}): "
                "nothing saved"
            ) from None
    saved = docker_login(registry, args.username, password)
    print_result(
        args,
        [f"logged in to {registry} (saved in {saved.store})"],
        {"registry": registry, "username": args.username, "saved_in": saved.store},
    )


def logout_command(args: argparse.Namespace, options: TransportOptions) -> None:
    """Forget a registry's credentials: its docker config entry, or its credential helper's."""
    from pants_oci.core.auth._docker_login import docker_logout

    registry = registry_argument(args.registry)
    removed = docker_logout(registry)
    line = (
        f"logged out of {registry} (removed from {removed.store})"
        if removed.changed
        else f"not logged in to {registry}"
    )
    print_result(
        args, [line], {"registry": registry, "removed": removed.changed, "from": removed.store}
    )
