"""DockerConfigKeychain: the credentials ``docker login`` saved.

Reads ``$DOCKER_CONFIG/config.json``, or ``$HOME/.docker/config.json`` when DOCKER_CONFIG is
not set (with neither set, there is no docker config: no credentials), and answers as docker
itself would:

1. ``credHelpers`` names a helper for this registry: ask ``docker-credential-<name>``;
2. else ``credsStore`` names a default helper: ask it;
3. else the ``auths`` entry for the registry: ``registrytoken``, then ``identitytoken``, then
   ``auth`` (base64 of ``user:password``) or ``username``/``password``.

When a helper applies, its answer is final, as in docker: a helper that has no entry means no
credentials, even if ``auths`` has one. One exception: when the default ``credsStore`` helper
is not installed (a config copied from a machine with Docker Desktop, say), that means no
credentials for every registry, with one warning, rather than an error for every pull of a
public image. A helper named for the registry in ``credHelpers`` that is not installed is an
error (CredentialHelperError). Keys may be host names, ``host:port``, or URLs such as
``https://index.docker.io/v1/`` (Docker Hub's legacy key) and ``http://localhost:5000``;
Docker Hub's names all match each other.

A missing config file means no credentials; a file that is not valid JSON raises
CredentialError naming the file. The file is read once, at the first look-up.

Private: import DockerConfigKeychain from :mod:`pants_oci.core.auth`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pants_oci.core.auth._credential_helpers import (
    DEFAULT_HELPER_TIMEOUT,
    get_credential,
    helper_binary,
    helper_installed,
)
from pants_oci.core.auth._credentials import Credential, helper_server_url, normalize_registry
from pants_oci.core.errors import CredentialError

_log = logging.getLogger(__name__)


def docker_config_path(env: Mapping[str, str]) -> Path | None:
    """Where docker keeps config.json for this environment (None: neither DOCKER_CONFIG nor
    HOME is set, so there is none; the password database's home is not guessed at)."""
    directory = env.get("DOCKER_CONFIG")
    if directory:
        return Path(directory) / "config.json"
    home = env.get("HOME")
    return Path(home) / ".docker" / "config.json" if home else None


def read_docker_config(path: Path) -> dict[str, Any]:
    """The JSON object in docker config ``path`` ({} when there is no such file); a file
    that cannot be read, or is not a JSON object, raises CredentialError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise CredentialError(f"cannot read docker config {path}: {e.strerror or e}") from None
    try:
        config = json.loads(text)
    except ValueError as e:
        # Only the position: the text around it may be a secret.
        raise CredentialError(
            f"docker config {path} is not valid JSON "
            f"(line {getattr(e, 'lineno', '?')}, column {getattr(e, 'colno', '?')})"
        ) from None
    if not isinstance(config, dict):
        raise CredentialError(f"docker config {path} is not a JSON object")
    return config


def config_helper(config: Mapping[str, Any], registry: str) -> str | None:
    """The credential helper docker uses for ``registry``: its ``credHelpers`` entry, else
    the ``credsStore``; None when neither names one (the ``auths`` entries hold it)."""
    for helper in (
        lookup(config.get("credHelpers"), normalize_registry(registry)),
        config.get("credsStore"),
    ):
        if isinstance(helper, str) and helper:
            return helper
    return None


class DockerConfigKeychain:
    """Credentials from docker's config.json and the credential helpers it names."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        helper_timeout: float = DEFAULT_HELPER_TIMEOUT,
    ) -> None:
        """``env`` (default ``os.environ``) supplies DOCKER_CONFIG, HOME and the PATH that
        helpers are looked up on; ``path`` names a config.json explicitly instead. ``path``
        is None when the environment names no config (no DOCKER_CONFIG, no HOME)."""
        self._env: Mapping[str, str] = dict(os.environ if env is None else env)
        self.path = Path(path) if path is not None else docker_config_path(self._env)
        self.helper_timeout = helper_timeout
        self._lock = threading.Lock()
        self._config: dict[str, Any] | None = None
        self._missing_store_warned = False

    def __repr__(self) -> str:
        return f"DockerConfigKeychain(path={None if self.path is None else str(self.path)!r})"

    def resolve(self, registry: str, repository: str | None = None) -> Credential | None:
        config = self._load()
        wanted = normalize_registry(registry)
        helper = lookup(config.get("credHelpers"), wanted)
        if not (isinstance(helper, str) and helper):
            helper = config.get("credsStore")
            if isinstance(helper, str) and helper and not self._store_installed(helper):
                return None
        if isinstance(helper, str) and helper:
            return get_credential(
                helper,
                helper_server_url(registry),
                registry=registry,
                env=self._env,
                timeout=self.helper_timeout,
            )
        auths = config.get("auths")
        if not isinstance(auths, dict):
            return None
        for key, entry in auths.items():
            if normalize_registry(key) == wanted and isinstance(entry, dict):
                credential = self._credential_from_entry(key, entry)
                if credential is not None:
                    return credential
        return None

    def _store_installed(self, helper: str) -> bool:
        """Whether the default credsStore helper is installed; warns once when it is not."""
        if helper_installed(helper, self._env):
            return True
        with self._lock:
            warn, self._missing_store_warned = not self._missing_store_warned, True
        if warn:
            _log.warning(
                "docker config %s names the credential store %r, but %s is not installed "
                "(not found on PATH): going on without its credentials",
                self.path,
                helper,
                helper_binary(helper),
            )
        return False

    def _load(self) -> dict[str, Any]:
        with self._lock:
            if self._config is None:
                self._config = self._read()
            return self._config

    def _read(self) -> dict[str, Any]:
        return {} if self.path is None else read_docker_config(self.path)

    def _credential_from_entry(self, key: str, entry: dict[str, Any]) -> Credential | None:
        source = f"docker config {self.path}"
        registry_token = entry.get("registrytoken")
        if isinstance(registry_token, str) and registry_token:
            return Credential.registry_token(registry_token, source=source)

        username, password = _username_password(entry, key, self.path)
        identity_token = entry.get("identitytoken")
        if isinstance(identity_token, str) and identity_token:
            return Credential.identity_token(
                identity_token, username=username or None, source=source
            )
        if username or password:
            return Credential.basic(username or "", password or "", source=source)
        return None


def lookup(table: Any, wanted: str) -> Any:
    """The value in a {registry key: value} table whose key names the ``wanted`` registry."""
    if not isinstance(table, dict):
        return None
    for key, value in table.items():
        if normalize_registry(key) == wanted:
            return value
    return None


def _username_password(entry: dict[str, Any], key: str, path: Path | None) -> tuple[str, str]:
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialError(
                f"docker config {path}: the `auth` of {key!r} is not base64 of 'user:password'"
            ) from None
        username, colon, password = decoded.partition(":")
        if not colon:
            raise CredentialError(
                f"docker config {path}: the `auth` of {key!r} has no ':' between user and password"
            )
        return username, password
    fields = (entry.get("username"), entry.get("password"))
    user, pw = (value if isinstance(value, str) else "" for value in fields)
    return user, pw
