"""Credentials for Google's registries (Container Registry and Artifact Registry), via google-auth.

Google registries accept HTTP Basic (or Basic to their token service) with the username
``oauth2accesstoken`` and a Google OAuth2 access token as the password; no
``docker-credential-gcloud`` is needed. The access token comes from:

- application default credentials: the key file named by GOOGLE_APPLICATION_CREDENTIALS, else
  whatever ``google.auth.default()`` finds (gcloud's ADC file, the GCE metadata server — the
  latter needs the ``requests`` package, as google-auth requires);
- or, in StaticKeychain options for a Google registry, one of
  ``{"service_account_info": {...}}`` (a parsed key file), ``{"service_account_file": PATH}``
  or ``{"token": ACCESS_TOKEN}`` (a ready access token, used as is).

Access tokens are refreshed when google-auth says they are about to expire; each credential
returned carries ``expires_at`` so that holders re-resolve in time. Token requests go through
httpx with the TransportOptions given to the keychain (``ca_bundle``, ``proxy``, timeouts);
the environment's HTTPS_PROXY / NO_PROXY are read from the keychain's ``env``.

The environment. With an ``env`` given to :class:`GoogleKeychain`, only that mapping is read:
GOOGLE_APPLICATION_CREDENTIALS, then gcloud's ADC file (``$CLOUDSDK_CONFIG`` or
``$HOME/.config/gcloud``). Without one (the default), ``google.auth.default()`` searches as
always, which reads ``os.environ`` (GOOGLE_APPLICATION_CREDENTIALS, CLOUDSDK_CONFIG,
GCE_METADATA_HOST, ...) and also asks the GCE metadata server; that search is skipped for an
injected ``env`` because it cannot be pointed at another environment.

Private: import GoogleKeychain from :mod:`pants_oci.core.auth`.
"""

from __future__ import annotations

import datetime
import os
import threading
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import google.auth
import google.auth.exceptions
import google.auth.transport
import google.oauth2.service_account
import httpx

from pants_oci.core.auth._credentials import Credential, is_google_registry
from pants_oci.core.errors import CredentialError
from pants_oci.core.transport import TransportOptions, proxy_for_url, tls_context

GOOGLE_USERNAME = "oauth2accesstoken"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_OPTION_KEYS = frozenset({"service_account_info", "service_account_file", "token"})
_HTTP_TIMEOUT = 30.0

# google-auth's functions are untyped; these typed handles keep mypy --strict content.
_load_any_file: Callable[..., tuple[Any, Any]] = google.auth.load_credentials_from_file
_service_account_from_info: Callable[..., Any] = (
    google.oauth2.service_account.Credentials.from_service_account_info
)
_service_account_from_file: Callable[..., Any] = (
    google.oauth2.service_account.Credentials.from_service_account_file
)
_find_default: Callable[..., tuple[Any, Any]] = google.auth.default
_GoogleTransportError: Callable[..., Exception] = google.auth.exceptions.TransportError


class _HttpxResponse(google.auth.transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class HttpxGoogleRequest(google.auth.transport.Request):
    """google-auth's transport interface over httpx (google-auth's own needs ``requests``).

    Honours ``options`` (CA bundle, proxy, connect timeout) and the proxy variables of
    ``env`` (default ``os.environ``).
    """

    def __init__(
        self, options: TransportOptions | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.options = options or TransportOptions()
        self.env = env

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _HttpxResponse:
        options = self.options
        try:
            with httpx.Client(
                verify=tls_context(options.ca_bundle),
                proxy=proxy_for_url(url, options, self.env),
                timeout=httpx.Timeout(timeout or _HTTP_TIMEOUT, connect=options.connect_timeout),
                headers={"User-Agent": options.user_agent},
                trust_env=False,  # the proxy is decided above
            ) as client:
                response = client.request(method, url, content=body, headers=headers)
                response.read()
        except httpx.HTTPError as e:
            raise _GoogleTransportError(f"{type(e).__name__} calling {url}") from e
        return _HttpxResponse(response)


class GoogleTokenSource:
    """A google-auth credentials object, refreshed under a lock when its token runs out."""

    def __init__(
        self, credentials: Any, source: str, request: HttpxGoogleRequest | None = None
    ) -> None:
        self._credentials: Any = credentials
        self.source = source
        self._request = request or HttpxGoogleRequest()
        self._lock = threading.Lock()

    def credential(self, registry: str) -> Credential:
        with self._lock:
            if not self._credentials.valid:
                try:
                    self._credentials.refresh(self._request)
                except google.auth.exceptions.GoogleAuthError as e:
                    raise CredentialError(
                        f"could not get a Google access token for {registry} "
                        f"from {self.source}: {_short(e)}"
                    ) from None
            token: str = self._credentials.token
            expiry: datetime.datetime | None = self._credentials.expiry
        expires_at = None
        if expiry is not None:
            # google-auth keeps expiry as a naive UTC datetime.
            expires_at = expiry.replace(tzinfo=datetime.timezone.utc).timestamp()
        return Credential.basic(GOOGLE_USERNAME, token, source=self.source, expires_at=expires_at)


def token_source_from_options(
    options: Mapping[str, Any], where: str, request: HttpxGoogleRequest | None = None
) -> GoogleTokenSource | str:
    """Parse StaticKeychain's Google options: a token source, or a ready access token.

    ``request`` is how its tokens are fetched (default: TransportOptions() defaults)."""
    if len(options) != 1 or next(iter(options)) not in GOOGLE_OPTION_KEYS:
        raise CredentialError(
            f"{where}: Google options take exactly one of "
            f"{', '.join(sorted(GOOGLE_OPTION_KEYS))} (got {', '.join(sorted(options))})"
        )
    ((key, value),) = options.items()
    if key == "token":
        if not isinstance(value, str) or not value:
            raise CredentialError(f"{where}: `token` must be a non-empty string")
        return value
    try:
        if key == "service_account_info":
            if not isinstance(value, Mapping):
                raise CredentialError(f"{where}: `service_account_info` must be a dict")
            credentials = _service_account_from_info(dict(value), scopes=[CLOUD_PLATFORM_SCOPE])
            return GoogleTokenSource(credentials, f"Google credentials given for {where}", request)
        path = os.fspath(value)
        credentials = _service_account_from_file(path, scopes=[CLOUD_PLATFORM_SCOPE])
        return GoogleTokenSource(credentials, f"Google key file {path}", request)
    except OSError as e:
        raise CredentialError(
            f"{where}: unusable Google credentials: cannot read {value}: {e.strerror or e}"
        ) from None
    except (google.auth.exceptions.GoogleAuthError, ValueError) as e:
        raise CredentialError(f"{where}: unusable Google credentials: {_short(e)}") from None


class GoogleKeychain:
    """Application default credentials for Google registries; None for every other registry.

    With GOOGLE_APPLICATION_CREDENTIALS in ``env`` (default ``os.environ``) that key file is
    used; otherwise, with an ``env`` given, gcloud's ADC file under that environment's
    CLOUDSDK_CONFIG or HOME, and without one ``google.auth.default()``'s whole search (which
    reads ``os.environ``; see the module docstring). When that finds nothing, this keychain
    answers None, so a chain goes on to the next keychain. Token requests honour
    ``options`` (CA bundle, proxy, timeouts).
    """

    def __init__(
        self, env: Mapping[str, str] | None = None, *, options: TransportOptions | None = None
    ) -> None:
        self._env_given = env is not None
        self._env: Mapping[str, str] = dict(os.environ if env is None else env)
        self._request = HttpxGoogleRequest(options, env)
        self._lock = threading.Lock()
        self._looked_up = False
        self._source: GoogleTokenSource | None = None

    def __repr__(self) -> str:
        return "GoogleKeychain()"

    def resolve(self, registry: str, repository: str | None = None) -> Credential | None:
        if not is_google_registry(registry):
            return None
        source = self._token_source()
        return None if source is None else source.credential(registry)

    def _token_source(self) -> GoogleTokenSource | None:
        with self._lock:
            if not self._looked_up:
                self._source = self._find_default_credentials()
                self._looked_up = True
            return self._source

    def _find_default_credentials(self) -> GoogleTokenSource | None:
        key_file = self._env.get("GOOGLE_APPLICATION_CREDENTIALS")
        where = f"GOOGLE_APPLICATION_CREDENTIALS file {key_file}"
        if not key_file and self._env_given:
            gcloud_file = _gcloud_adc_file(self._env)
            if gcloud_file is None or not gcloud_file.is_file():
                return None
            key_file, where = (
                str(gcloud_file),
                f"gcloud application default credentials {gcloud_file}",
            )
        try:
            if key_file:
                return GoogleTokenSource(_load_key_file(key_file), where, self._request)
            credentials, _ = _find_default(scopes=[CLOUD_PLATFORM_SCOPE], request=self._request)
        except google.auth.exceptions.DefaultCredentialsError as e:
            if key_file:
                raise CredentialError(f"{where} is unusable: {_short(e)}") from None
            return None
        return GoogleTokenSource(
            credentials, "Google application default credentials", self._request
        )


def _gcloud_adc_file(env: Mapping[str, str]) -> Path | None:
    """Where ``gcloud auth application-default login`` writes, in ``env``."""
    config = env.get("CLOUDSDK_CONFIG")
    if not config:
        if os.name == "nt":
            appdata = env.get("APPDATA")
            config = os.path.join(appdata, "gcloud") if appdata else None
        else:
            home = env.get("HOME")
            config = os.path.join(home, ".config", "gcloud") if home else None
    return Path(config) / "application_default_credentials.json" if config else None


def _load_key_file(path: str) -> Any:
    """Any key file ADC accepts (service account, authorized user, external account)."""
    with warnings.catch_warnings():
        # google-auth warns that generic loading may load any credential type; that is what
        # ADC does by design, and the file is the user's own GOOGLE_APPLICATION_CREDENTIALS.
        warnings.simplefilter("ignore", DeprecationWarning)
        credentials, _ = _load_any_file(path, scopes=[CLOUD_PLATFORM_SCOPE])
    return credentials


def _short(error: Exception) -> str:
    # google-auth errors carry the token endpoint's answer; keep the first line of it.
    text = str(error.args[0]) if error.args else type(error).__name__
    return text.splitlines()[0][:300] if text else type(error).__name__
