"""Google registries: google-auth's real service-account flow against a loopback token endpoint."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from pants_oci.core.auth import (
    Credential,
    CredentialKind,
    GoogleKeychain,
    RegistryAuth,
    StaticKeychain,
    default_keychain,
    is_google_registry,
)
from pants_oci.core.errors import CredentialError
from pants_oci.core.registry import RegistryClient
from pants_oci.core.transport import TransportOptions
from tests.core.registry_support import options_for
from tests.harness.fixtures import RegistryFactory
from tests.harness.google import CLOUD_PLATFORM, JWT_BEARER, GoogleTokenEndpoint
from tests.harness.proxies import FaultProxy

GOOGLE_HOSTS = ("gcr.io", "eu.gcr.io", "europe-docker.pkg.dev")


@pytest.fixture
def google_endpoint() -> Iterator[GoogleTokenEndpoint]:
    endpoint = GoogleTokenEndpoint()
    yield endpoint
    endpoint.stop()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("gcr.io", True),
        ("eu.gcr.io", True),
        ("us.gcr.io", True),
        ("europe-docker.pkg.dev", True),
        ("us-central1-docker.pkg.dev", True),
        ("GCR.IO", True),
        ("https://gcr.io/v2/", True),
        ("notgcr.io", False),
        ("gcr.io.evil.com", False),
        ("pkg.dev.example.com", False),
        ("ghcr.io", False),
        ("docker.io", False),
    ],
)
def test_is_google_registry(host: str, expected: bool) -> None:
    assert is_google_registry(host) is expected


def test_application_default_credentials_from_google_application_credentials(
    google_endpoint: GoogleTokenEndpoint, tmp_path: Path
) -> None:
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(google_endpoint.key_file(tmp_path))}
    keychain = GoogleKeychain(env)
    credentials = [keychain.resolve(host, "project/app") for host in GOOGLE_HOSTS]
    for credential in credentials:
        assert credential is not None
        assert credential.kind is CredentialKind.BASIC
        assert credential.username == "oauth2accesstoken"
        assert credential.password == google_endpoint.issued[0]
        assert credential.expires_at is not None
        assert "GOOGLE_APPLICATION_CREDENTIALS" in credential.source
        assert credential.password not in repr(credential)
    # One grant: the access token is reused until it nears expiry.
    assert len(google_endpoint.grants) == 1
    grant = google_endpoint.grants[0]
    assert grant["grant_type"] == JWT_BEARER
    assert grant["iss"] == "builder@pants-oci-test.iam.gserviceaccount.com"
    assert grant["aud"].endswith("/token")
    assert CLOUD_PLATFORM in grant["scope"].split()
    assert keychain.resolve("ghcr.io", "a/b") is None


def test_expired_access_token_is_refreshed(
    google_endpoint: GoogleTokenEndpoint, tmp_path: Path
) -> None:
    # google-auth treats a token this close to expiry as expired: every look-up refreshes.
    google_endpoint.expires_in = 60
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(google_endpoint.key_file(tmp_path))}
    keychain = GoogleKeychain(env)
    first, second = keychain.resolve("gcr.io"), keychain.resolve("gcr.io")
    assert first is not None and second is not None
    assert len(google_endpoint.grants) == 2
    assert (first.password, second.password) == tuple(google_endpoint.issued)


def test_static_google_options(google_endpoint: GoogleTokenEndpoint, tmp_path: Path) -> None:
    keychain = StaticKeychain(
        {
            "gcr.io": {"service_account_info": google_endpoint.service_account_info()},
            "eu.gcr.io": {"service_account_file": str(google_endpoint.key_file(tmp_path))},
            "europe-docker.pkg.dev/project/repo": {"token": "ya29.given"},
            "europe-docker.pkg.dev": {"username": "oauth2accesstoken", "password": "explicit"},
        }
    )
    from_info = keychain.resolve("gcr.io", "project/app")
    from_file = keychain.resolve("eu.gcr.io", "project/app")
    plain = keychain.resolve("europe-docker.pkg.dev", "project/repo/app")
    explicit = keychain.resolve("europe-docker.pkg.dev", "other/app")
    assert from_info is not None and from_file is not None
    assert plain is not None and explicit is not None
    assert [c.username for c in (from_info, from_file, plain)] == ["oauth2accesstoken"] * 3
    assert [from_info.password, from_file.password] == google_endpoint.issued
    assert plain.password == "ya29.given" and plain.kind is CredentialKind.BASIC
    assert explicit.password == "explicit"


def test_static_google_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(CredentialError, match="exactly one of"):
        StaticKeychain({"gcr.io": {"token": "a", "service_account_file": "b"}})
    with pytest.raises(CredentialError, match="unusable Google credentials"):
        StaticKeychain({"gcr.io": {"service_account_file": str(tmp_path / "missing.json")}})


def test_token_endpoint_refusal_is_a_credential_error_without_the_key(
    google_endpoint: GoogleTokenEndpoint, tmp_path: Path
) -> None:
    google_endpoint.fail_with = (400, {"error": "invalid_grant", "error_description": "bad JWT"})
    info = google_endpoint.service_account_info()
    keychain = StaticKeychain({"gcr.io": {"service_account_info": info}})
    with pytest.raises(CredentialError, match="invalid_grant") as raised:
        keychain.resolve("gcr.io", "project/app")
    message = str(raised.value)
    assert "gcr.io" in message
    assert "PRIVATE KEY" not in message and info["private_key"][40:80] not in message


def test_default_keychain_order(google_endpoint: GoogleTokenEndpoint, tmp_path: Path) -> None:
    config_dir = tmp_path / "docker"
    config_dir.mkdir()
    auth = base64.b64encode(b"docker-user:docker-pw").decode()
    (config_dir / "config.json").write_text(
        json.dumps({"auths": {"gcr.io": {"auth": auth}, "ghcr.io": {"auth": auth}}})
    )
    env = {
        "DOCKER_CONFIG": str(config_dir),
        "GOOGLE_APPLICATION_CREDENTIALS": str(google_endpoint.key_file(tmp_path)),
    }
    chain = default_keychain(env=env)
    google = chain.resolve("gcr.io", "p/app")
    docker = chain.resolve("ghcr.io", "o/app")
    assert google is not None and google.username == "oauth2accesstoken"
    assert docker is not None and docker.username == "docker-user"
    explicit = default_keychain({"gcr.io": {"token": "ya29.explicit"}}, env=env)
    first = explicit.resolve("gcr.io", "p/app")
    assert first is not None and first.password == "ya29.explicit"


def test_token_requests_honour_the_transport_options(
    google_endpoint: GoogleTokenEndpoint, tmp_path: Path
) -> None:
    """The keychain's TransportOptions (here: a proxy) apply to Google's token endpoint too."""
    endpoint_base = google_endpoint.token_uri.removesuffix("/token")
    with FaultProxy(endpoint_base) as proxy:
        options = TransportOptions(proxy=proxy.url)
        info = google_endpoint.service_account_info()
        static = StaticKeychain({"gcr.io": {"service_account_info": info}}, options=options)
        credential = static.resolve("gcr.io", "p/app")
        env = {"GOOGLE_APPLICATION_CREDENTIALS": str(google_endpoint.key_file(tmp_path))}
        adc = GoogleKeychain(env, options=options).resolve("eu.gcr.io", "p/app")
    assert credential is not None and adc is not None
    assert [credential.password, adc.password] == google_endpoint.issued
    assert [r.method for r in proxy.seen(pattern=r"/token")] == ["POST", "POST"]


def test_an_injected_environment_is_the_only_one_read(
    google_endpoint: GoogleTokenEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The process environment points at a usable key file: an injected env must not see it.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(google_endpoint.key_file(tmp_path)))
    assert GoogleKeychain({}).resolve("gcr.io", "p/app") is None
    assert google_endpoint.grants == []
    # gcloud's ADC file, found through the injected HOME (or CLOUDSDK_CONFIG).
    home = tmp_path / "home"
    gcloud = home / ".config" / "gcloud"
    gcloud.mkdir(parents=True)
    (gcloud / "application_default_credentials.json").write_text(
        json.dumps(google_endpoint.service_account_info())
    )
    credential = GoogleKeychain({"HOME": str(home)}).resolve("gcr.io", "p/app")
    assert credential is not None and credential.password == google_endpoint.issued[0]
    assert "gcloud" in credential.source
    elsewhere = GoogleKeychain({"HOME": str(home), "CLOUDSDK_CONFIG": str(tmp_path / "none")})
    assert elsewhere.resolve("gcr.io", "p/app") is None


def test_a_registry_request_authenticated_with_a_google_credential(
    google_endpoint: GoogleTokenEndpoint, registry_factory: RegistryFactory, unique_repo: str
) -> None:
    """Basic `oauth2accesstoken:<access token>`, as Google registries take it, accepted by a
    basic-auth registry that has that account."""
    access_token = f"ya29.{secrets.token_urlsafe(24)}"
    google_endpoint.token_value = access_token
    registry = registry_factory("basic", extra_users={"oauth2accesstoken": access_token})
    info = google_endpoint.service_account_info()
    google = StaticKeychain({"gcr.io": {"service_account_info": info}})

    class AsIfGcr:
        """The loopback registry gets the credentials Google options give for gcr.io."""

        def resolve(self, registry: str, repository: str | None = None) -> Credential | None:
            return google.resolve("gcr.io", repository)

    data = secrets.token_bytes(1000)
    with RegistryClient(
        registry.host, unique_repo, auth=RegistryAuth(AsIfGcr()), options=options_for(registry)
    ) as client:
        digest, _ = client.upload_blob(data)
        assert b"".join(client.iter_blob(digest)) == data
        client.ping()
    assert len(google_endpoint.grants) == 1  # one access token, reused
