"""Run ``docker-credential-<name> get`` (and ``store``, ``erase``), the docker credential
helper protocol.

The helper reads the registry's server URL on stdin and prints
``{"ServerURL": ..., "Username": ..., "Secret": ...}``. A ``Username`` of ``<token>`` means
the secret is an identity token. Helpers report a missing entry with "credentials not found"
(usually on stdout, with a non-zero exit); that is not an error, just no credential.

Secrets never go on argv, and helper output is never copied into error messages when it could
hold a secret (that is, when the helper succeeded). When a helper fails, its message is shown
as a short excerpt (at most ``_MAX_EXCERPT_CHARS`` characters, on one line) with anything
that looks like a secret replaced by ``***``: the Username and Secret the helper printed, if
any, and every long token-like run (base64, hex, JWT pieces): a helper that prints its secret
on the way out must not put it in a CI log.

Private: used by :class:`pants_oci.core.auth.DockerConfigKeychain`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping

from pants_oci.core.auth._credentials import IDENTITY_TOKEN_USERNAME, Credential
from pants_oci.core.errors import CredentialHelperError

DEFAULT_HELPER_TIMEOUT = 30.0
_NOT_FOUND_MARKER = "credentials not found"
_MAX_EXCERPT_CHARS = 200
_REDACTED = "***"
# A run of base64/base64url/hex characters long enough to be a key or token, and the values of
# "key": "value" / key=value pairs whose key names a secret.
_TOKEN_RE = re.compile(r"[A-Za-z0-9+/_\-]{16,}={0,2}")
_JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-.]*")
# A printed value this short cannot be told apart in the text: no excerpt at all then.
_MIN_REPLACEABLE_CHARS = 4
_SECRET_FIELD_RE = re.compile(
    r"""(?ix)
    ( \b(?:secret|password|passwd|pass|token|identitytoken|auth|apikey|api_key)["']?\s*[:=]\s*
    | \b(?:bearer|basic)\s+ )
    (?:"(?:[^"\\]|\\.)*"|'[^']*'|\S+)
    """
)


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
    where = _where(helper, registry)
    returncode, stdout, stderr = _run(
        helper, "get", server_url.encode(), where=where, env=env, timeout=timeout
    )

    if returncode != 0:
        if _NOT_FOUND_MARKER in (stdout + stderr).lower():
            return None
        printed = _printed_secrets(stdout)
        # Helpers say why on stdout (docker's own do) or stderr; stdout that is the protocol's
        # answer is no message.
        message = stderr if printed else (stdout.strip() or stderr)
        raise _failed(where, returncode, message, printed)
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
    source = f"credential helper {helper_binary(helper)}"
    if username == IDENTITY_TOKEN_USERNAME:
        return Credential.identity_token(secret, username=username, source=source)
    return Credential.basic(username or "", secret, source=source)


def store_credential(
    helper: str,
    server_url: str,
    username: str,
    secret: str,
    *,
    registry: str,
    env: Mapping[str, str],
) -> None:
    """``docker-credential-<helper> store``: keep ``username`` and ``secret`` for
    ``server_url``; the JSON goes on stdin, as docker sends it (never on argv). Raises
    CredentialHelperError as :func:`get_credential` does, its message free of the secret."""
    where = _where(helper, registry)
    payload = {"ServerURL": server_url, "Username": username, "Secret": secret}
    returncode, stdout, stderr = _run(
        helper,
        "store",
        json.dumps(payload).encode(),
        where=where,
        env=env,
        timeout=DEFAULT_HELPER_TIMEOUT,
    )
    if returncode != 0:
        raise _failed(where, returncode, stdout.strip() or stderr, [secret, username])


def erase_credential(
    helper: str, server_url: str, *, registry: str, env: Mapping[str, str]
) -> bool:
    """``docker-credential-<helper> erase``: forget ``server_url``'s credential; False when
    the helper had none."""
    where = _where(helper, registry)
    returncode, stdout, stderr = _run(
        helper, "erase", server_url.encode(), where=where, env=env, timeout=DEFAULT_HELPER_TIMEOUT
    )
    if returncode == 0:
        return True
    if _NOT_FOUND_MARKER in (stdout + stderr).lower():
        return False
    raise _failed(where, returncode, stdout.strip() or stderr, [])


def _where(helper: str, registry: str) -> str:
    return f"credential helper {helper_binary(helper)!r} for registry {registry!r}"


def _failed(where: str, returncode: int, message: str, secrets: list[str]) -> CredentialHelperError:
    excerpt = _redacted_excerpt(message.strip(), secrets)
    return CredentialHelperError(
        f"{where}: exited with status {returncode}: {excerpt or '(no output)'}"
    )


def _run(
    helper: str,
    action: str,
    stdin: bytes,
    *,
    where: str,
    env: Mapping[str, str],
    timeout: float,
) -> tuple[int, str, str]:
    """Run ``docker-credential-<helper> <action>`` with ``stdin``: its exit status, stdout
    and stderr."""
    binary = helper_binary(helper)
    executable = shutil.which(binary, path=env.get("PATH", os.defpath))
    if executable is None:
        raise CredentialHelperError(f"{where}: {binary} is not installed (not found on PATH)")

    try:
        process = subprocess.Popen(
            [executable, action],
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
        stdout_bytes, stderr_bytes = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        raise CredentialHelperError(
            f"{where}: timed out after {timeout:g} seconds (is it waiting for a password "
            "prompt or an unlocked keyring?)"
        ) from None
    stdout = stdout_bytes.decode("utf-8", "replace")
    stderr = stderr_bytes.decode("utf-8", "replace")
    return process.returncode, stdout, stderr


def _printed_secrets(stdout: str) -> list[str]:
    """The Username and Secret values a helper printed (as the protocol's JSON), if any."""
    try:
        answer = json.loads(stdout)
    except ValueError:
        return []
    if not isinstance(answer, dict):
        return []
    values = (answer.get(key) for key in ("Secret", "Username"))
    return [value for value in values if isinstance(value, str) and value]


def _redacted_excerpt(text: str, secrets: list[str]) -> str:
    """``text`` on one line, secrets and token-like runs replaced by ``***``, then bounded.

    Redacted before it is cut, so that no cut can leave part of a secret too short to look
    like one."""
    if any(len(secret) < _MIN_REPLACEABLE_CHARS and secret in text for secret in secrets):
        return "(output not shown: it holds the credential the helper printed)"
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
    text = _JWT_RE.sub(_REDACTED, text)
    text = _SECRET_FIELD_RE.sub(lambda match: match.group(1) + _REDACTED, text)
    text = _TOKEN_RE.sub(_redact_token, text)
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    if len(text) > _MAX_EXCERPT_CHARS:
        text = text[: _MAX_EXCERPT_CHARS - 3].rstrip() + "..."
    return text


def _redact_token(match: re.Match[str]) -> str:
    """A long run with a digit and a letter in it, or one of 32 characters or more, is taken
    for a token; a long plain word (``docker-credential-pass``) is not."""
    run = match.group(0)
    has_digit = any(c.isdigit() for c in run)
    has_letter = any(c.isalpha() for c in run)
    return _REDACTED if (has_digit and has_letter) or len(run) >= 32 else run


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    # Reap it; the pipes close with the group gone, so this cannot hang.
    process.communicate()
