"""Errors as ``pants-oci`` reports them on stderr: the error, each cause that says something new,
and a hint at the fix, naming settings as the front end spells them (``--hints-for``)."""

from __future__ import annotations

import argparse
from typing import IO

from pants_oci.core._settings import CLI, Setting, how_to_set, name_of
from pants_oci.core.cli.output import PROGRAM
from pants_oci.core.errors import (
    CredentialError,
    DeniedError,
    ImageArchiveError,
    InsecureTokenServiceError,
    NotFoundError,
    PlatformNotFoundError,
    RegistryError,
    TransportError,
    UnauthorizedError,
)

__all__ = ["hint", "report"]

_MOST_ENTRIES = 20  # lines for the entries of one registry error JSON

_CREDENTIAL_SOURCES = (
    "pants-oci reads credentials only from $DOCKER_CONFIG/config.json (default "
    "~/.docker/config.json), its credential helpers, and Google application default credentials"
)


def hint(error: BaseException, args: argparse.Namespace | None) -> str | None:
    hints_for = getattr(args, "hints_for", CLI)
    if isinstance(error, InsecureTokenServiceError):
        return None  # its message names the fix: logging in again would not help
    command = getattr(args, "command", None)
    if isinstance(error, UnauthorizedError):
        login = f"`docker login {error.registry}`"
        if hints_for == CLI:
            login = f"`{PROGRAM} auth login {error.registry} -u USER --password-stdin` or {login}"
        return f"log in to {error.registry} (e.g. {login}); {_CREDENTIAL_SOURCES}"
    if isinstance(error, DeniedError):
        where = f"{error.registry}/{error.repository}" if error.repository else error.registry
        return f"the credentials used for {where} lack permission for this; {_CREDENTIAL_SOURCES}"
    if isinstance(error, NotFoundError):
        where = f"{error.registry}/{error.repository}" if error.repository else error.registry
        return f"check the reference: does {where} exist, with that tag or digest?"
    if isinstance(error, TransportError):
        return _transport_hint(error, hints_for)
    if isinstance(error, PlatformNotFoundError):
        setting = name_of(Setting.PLATFORM, hints_for)
        if len(error.available) == 1:  # an image, not an index: there is nothing to choose
            return f"the image is for {error.available[0]} only: give that with {setting}"
        return f"choose one of the available platforms with {setting}"
    if isinstance(error, CredentialError) and command == "auth":
        return "check the user name and the password (or access token) for this registry"
    if isinstance(error, CredentialError):
        return _CREDENTIAL_SOURCES
    if isinstance(error, ImageArchiveError) and args is not None and args.command == "push":
        return (
            "push takes the output directory of `image assemble` (an OCI layout), or a "
            "docker-archive tar of one image"
        )
    if isinstance(error, RegistryError) and error.status == 405 and command == "delete":
        return (
            f"{error.registry} does not allow deleting manifests (a docker-registry needs "
            "REGISTRY_STORAGE_DELETE_ENABLED=true)"
        )
    return None


def _registry_entries(error: BaseException) -> list[str]:
    """A line per entry of a registry's error JSON, when it sent more than one."""
    if not isinstance(error, RegistryError) or len(error.errors) < 2:
        return []
    lines = []
    for entry in error.errors[:_MOST_ENTRIES]:
        parts = [part for part in (entry.code, entry.message) if part]
        if isinstance(entry.detail, str) and entry.detail:
            parts.append(entry.detail[:200])
        lines.append(f"{PROGRAM}: registry error: {': '.join(parts)}")
    if len(error.errors) > _MOST_ENTRIES:
        lines.append(f"{PROGRAM}: registry error: and {len(error.errors) - _MOST_ENTRIES} more")
    return lines


def report(error: BaseException, args: argparse.Namespace | None, stream: IO[str]) -> None:
    doing = getattr(args, "doing", None)  # what the command was doing, when it says
    lines = [f"{PROGRAM}: error: {doing}: {error}" if doing else f"{PROGRAM}: error: {error}"]
    said = [" ".join(str(error).split())]
    lines.extend(_registry_entries(error))
    cause = error.__cause__
    while cause is not None:
        # A cause says something new, or nothing: httpx wraps httpcore's error, which wraps
        # the OSError, all three "[Errno 111] Connection refused", already in the message.
        text = " ".join(str(cause).split())
        if text and not any(text in earlier for earlier in said):
            lines.append(f"{PROGRAM}: caused by: {text}")
            said.append(text)
        cause = cause.__cause__
    advice = hint(error, args)
    if advice:
        lines.append(f"{PROGRAM}: hint: {advice}")
    stream.write("\n".join(" ".join(line.split()) for line in lines) + "\n")
    stream.flush()


def _transport_hint(error: TransportError, hints_for: str) -> str | None:
    """What to check when a registry could not be reached, or stopped answering."""
    if error.tls:  # its message says how to trust the CA, or to use plain HTTP
        return None
    if error.timeout:  # its message names the setting that waits longer
        return f"check that {error.registry} is up and answering requests"
    if error.dropped:  # it was reached: neither plain HTTP nor a CA would help
        return (
            f"{error.registry} was reached, then cut the connection: check that it is up "
            "and healthy, and whether a proxy or load balancer between cuts long "
            "transfers; running the command again resumes where it can"
        )
    from pants_oci.core.transport import is_loopback_registry

    if is_loopback_registry(error.registry):  # plain HTTP already: no setting would help
        return f"check that {error.registry} is up and listening"
    return (
        f"check that {error.registry} is up and reachable; for a registry that only speaks "
        f"plain HTTP {how_to_set(Setting.INSECURE_REGISTRY, hints_for, error.registry)}, "
        f"for a private CA {how_to_set(Setting.CA_BUNDLE, hints_for)}"
    )
