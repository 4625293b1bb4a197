"""Run ``docker-credential-<name> get``, the docker credential helper protocol.

The helper reads the registry's server URL on stdin and prints
``{"ServerURL": ..., "Username": ..., "Secret": ...}``. A ``Username`` of ``<token>`` means
the secret is an identity token. Helpers report a missing entry with "credentials not found"
(usually on stdout, with a non-zero exit); that is not an error, just no credential.

Secrets never go on argv, and helper output is never copied into error messages when it could
hold a secret (that is, when the helper succeeded).

Private: used by :class:`pants_oci.core.auth.DockerConfigKeychain`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping

from pants_oci.core._credentials import IDENTITY_TOKEN_USERNAME, Credential
from pants_oci.core.errors import CredentialHelperError

DEFAULT_HELPER_TIMEOUT = 30.0
_NOT_FOUND_MARKER = "credentials not found"
_MAX_MESSAGE_CHARS = 300


def helper_binary(name: str) -> str:
    return f"docker-credential-{name}"


def helper_installed(helper: str, env: Mapping[str, str]) -> bool:
    """Whether ``docker-credential-<helper>`` is on ``env``'s PATH."""
    return shutil.which(helper_binary(helper), path=env.get("PATH", os.defpath)) is not None


def get_credential(
    helper: str,
    server_url: str,
    *,
    registry: str,
    env: Mapping[str, str],
    timeout: float = DEFAULT_HELPER_TIMEOUT,
) -> Credential | None:
    """Ask credential helper ``helper`` for ``server_url``'s credential; None if it has none.

    Raises CredentialHelperError if the helper is not on ``env``'s PATH, fails, prints
    something other than the protocol's JSON, or runs longer than ``timeout`` seconds.
    """
    binary = helper_binary(helper)
    where = f"credential helper {binary!r} for registry {registry!r}"
    executable = shutil.which(binary, path=env.get("PATH", os.defpath))
    if executable is None:
        raise CredentialHelperError(f"{where}: {binary} is not installed (not found on PATH)")

    try:
        process = subprocess.Popen(
            [executable, "get"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            # Its own process group, so a timeout kills anything the helper started too.
            start_new_session=True,
        )
    except OSError as e:
        raise CredentialHelperError(f"{where}: could not run it: {e.strerror or e}") from None
    try:
        stdout_bytes, stderr_bytes = process.communicate(server_url.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise CredentialHelperError(
            f"{where}: timed out after {timeout:g} seconds (is it waiting for a password "
            "prompt or an unlocked keyring?)"
        ) from None
    stdout = stdout_bytes.decode("utf-8", "replace")
    stderr = stderr_bytes.decode("utf-8", "replace")

    if process.returncode != 0:
        message = (stdout.strip() or stderr.strip())[:_MAX_MESSAGE_CHARS]
        if _NOT_FOUND_MARKER in (stdout + stderr).lower():
            return None
        raise CredentialHelperError(
            f"{where}: exited with status {process.returncode}: {message or '(no output)'}"
        )
    try:
        answer = json.loads(stdout)
    except ValueError:
        # The output may hold a secret in some other format: do not echo it.
        raise CredentialHelperError(f"{where}: printed something that is not JSON") from None
    if not isinstance(answer, dict):
        raise CredentialHelperError(f"{where}: printed JSON that is not an object")
    username, secret = answer.get("Username"), answer.get("Secret")
    if not isinstance(username, (str, type(None))) or not isinstance(secret, (str, type(None))):
        raise CredentialHelperError(f"{where}: Username and Secret must be strings")
    if not secret:
        return None
    source = f"credential helper {binary}"
    if username == IDENTITY_TOKEN_USERNAME:
        return Credential.identity_token(secret, username=username, source=source)
    return Credential.basic(username or "", secret, source=source)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    # Reap it; the pipes close with the group gone, so this cannot hang.
    process.communicate()
