"""Save and forget a registry's credentials where docker keeps them: ``docker login`` and
``docker logout`` without docker.

The config is ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json`` (see
:func:`~pants_oci.core.auth._docker_config.docker_config_path`). When it names a credential
helper for the registry (its ``credHelpers`` entry, else ``credsStore``), the secret goes to
``docker-credential-<name> store`` on stdin and the file is left alone; otherwise the
registry's ``auths`` entry gets ``auth``: base64 of ``user:password``. The file is rewritten
whole or not at all, readable by its owner only (0600), with every other key kept as it was.

Checking the credentials against the registry first is the caller's job (``pants-oci auth
login`` does it), so that this module needs no network.

Private: used by :mod:`pants_oci.core.cli.auth_commands`.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pants_oci.core import outputs
from pants_oci.core.auth._credential_helpers import (
    erase_credential,
    helper_binary,
    store_credential,
)
from pants_oci.core.auth._credentials import helper_server_url, normalize_registry
from pants_oci.core.auth._docker_config import config_helper, docker_config_path, read_docker_config
from pants_oci.core.errors import CredentialError

__all__ = ["SavedLogin", "docker_login", "docker_logout"]

_CONFIG_MODE = 0o600  # it may hold secrets: the owner's alone, as docker leaves it


@dataclass(frozen=True)
class SavedLogin:
    """Where a login went (or was removed from): the config file, or a credential helper."""

    registry: str
    config: Path
    helper: str | None  # docker-credential-<name>, when the secret is (was) the helper's
    changed: bool = True  # logout: whether there was anything to remove

    @property
    def store(self) -> str:
        return self.helper or str(self.config)


def _config_path(env: Mapping[str, str]) -> Path:
    path = docker_config_path(env)
    if path is None:
        raise CredentialError(
            "no docker config to save credentials in: set DOCKER_CONFIG (or HOME) to say where"
        )
    return path


def _write(path: Path, config: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = json.dumps(config, indent="\t").encode() + b"\n"
    outputs.atomic_write(path, data, _CONFIG_MODE)


def _without(auths: Mapping[str, Any], registry: str) -> dict[str, Any]:
    """``auths`` less every entry for ``registry`` (``localhost:5000`` and
    ``http://localhost:5000`` are one registry)."""
    wanted = normalize_registry(registry)
    return {key: value for key, value in auths.items() if normalize_registry(key) != wanted}


def docker_login(
    registry: str, username: str, password: str, *, env: Mapping[str, str] | None = None
) -> SavedLogin:
    """Save ``username`` and ``password`` for ``registry``, as ``docker login`` does.
    CredentialError (CredentialHelperError) when the config cannot be read or written, or
    the helper refuses; the secret is never in a message."""
    environment = dict(os.environ if env is None else env)
    path = _config_path(environment)
    config = read_docker_config(path)
    server_url = helper_server_url(registry)
    helper = config_helper(config, registry)
    if helper is not None:
        store_credential(helper, server_url, username, password, registry=registry, env=environment)
        return SavedLogin(registry, path, helper_binary(helper))
    auths = config.get("auths")
    if auths is not None and not isinstance(auths, dict):
        raise CredentialError(f"docker config {path}: `auths` is not a JSON object")
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    entries = _without(auths or {}, registry)
    entries[server_url] = {"auth": encoded}
    _write(path, {**config, "auths": entries})
    return SavedLogin(registry, path, None)


def docker_logout(registry: str, *, env: Mapping[str, str] | None = None) -> SavedLogin:
    """Forget ``registry``'s credentials, as ``docker logout`` does: erase them from its
    credential helper, if the config names one, and remove its ``auths`` entries. ``changed``
    is False when there was nothing to forget."""
    environment = dict(os.environ if env is None else env)
    path = _config_path(environment)
    config = read_docker_config(path)
    helper = config_helper(config, registry)
    erased = False
    if helper is not None:
        erased = erase_credential(
            helper, helper_server_url(registry), registry=registry, env=environment
        )
    auths = config.get("auths")
    removed = False
    if isinstance(auths, dict):
        entries = _without(auths, registry)
        removed = len(entries) != len(auths)
        if removed:
            _write(path, {**config, "auths": entries})
    return SavedLogin(
        registry, path, helper_binary(helper) if helper else None, changed=erased or removed
    )
