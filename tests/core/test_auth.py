"""RegistryAuth against real registries: basic and token modes, TLS, scopes, token caching."""

from __future__ import annotations

import asyncio
import secrets
import threading
from typing import Any

import httpx
import pytest

from pants_oci.core.auth import (
    ChainKeychain,
    Credential,
    RegistryAuth,
    StaticKeychain,
    repository_scope,
)
from pants_oci.core.errors import UnauthorizedError
from tests.core.auth_helpers import (
    FakeClock,
    client_for,
    digest_of,
    keychain_for,
    pull_blob,
    push_blob,
    scopes,
)
from tests.harness.fixtures import RegistryFactory
from tests.harness.registry import Registry, fetch_token


def token_requests(registry: Registry, repository: str) -> list[dict[str, Any]]:
    """The token service's log, for requests naming `repository` (session servers are shared)."""
    assert registry.token_service is not None
    return [
        entry
        for entry in registry.token_service.stats()
        if any(f":{repository}:" in scope for scope in entry["scopes"])
    ]


def granted_actions(entry: dict[str, Any], repository: str) -> set[str]:
    return {
        action
        for access in entry.get("granted") or []
        if access["name"] == repository
        for action in access["actions"]
    }


# --- basic mode -------------------------------------------------------------------------------
def test_basic_mode_push_and_pull_sends_basic_after_one_challenge(
    registry_basic: Registry, unique_repo: str
) -> None:
    seen: list[tuple[str, str, int]] = []
    data = secrets.token_bytes(2048)
    with client_for(registry_basic, RegistryAuth(keychain_for(registry_basic)), seen) as client:
        done = push_blob(client, unique_repo, data)
        assert done.status_code == 201, done.text
        got = pull_blob(client, unique_repo, digest_of(data))
        assert got.status_code == 200
        assert got.content == data
    # One 401 to learn the scheme; every later request carried Basic up front.
    assert [status for _, _, status in seen].count(401) == 1
    assert seen[0][2] == 401 and seen[1][2] == 202


def test_basic_mode_wrong_password_gets_the_final_401_after_one_retry(
    registry_basic: Registry, unique_repo: str
) -> None:
    seen: list[tuple[str, str, int]] = []
    keychain = StaticKeychain({registry_basic.host: {"username": "tester", "password": "wrong"}})
    with client_for(registry_basic, RegistryAuth(keychain), seen) as client:
        response = push_blob(client, unique_repo, b"x")
    assert response.status_code == 401
    assert [status for _, _, status in seen] == [401, 401]


def test_basic_mode_without_credentials_is_refused(
    registry_basic: Registry, unique_repo: str
) -> None:
    seen: list[tuple[str, str, int]] = []
    with client_for(registry_basic, RegistryAuth(ChainKeychain()), seen) as client:
        response = pull_blob(client, unique_repo, digest_of(b"x"))
    assert response.status_code == 401
    assert len(seen) == 1  # nothing to retry with


# --- token mode -------------------------------------------------------------------------------
def test_token_mode_push_and_pull(registry_token: Registry, unique_repo: str) -> None:
    data = secrets.token_bytes(4096)
    with client_for(registry_token, RegistryAuth(keychain_for(registry_token))) as client:
        done = push_blob(client, unique_repo, data)
        assert done.status_code == 201, done.text
        assert done.headers["Docker-Content-Digest"] == digest_of(data)
        got = pull_blob(client, unique_repo, digest_of(data))
        assert got.status_code == 200
        assert got.content == data
    fetches = token_requests(registry_token, unique_repo)
    assert fetches and all(f["method"] == "GET" and f["user"] == "tester" for f in fetches)
    assert granted_actions(fetches[0], unique_repo) == {"pull", "push"}
    # The pull+push token covers the later pull: one token for the whole exchange.
    assert len(fetches) == 1


def test_token_mode_scopes_implied_by_the_path_when_none_are_declared(
    registry_token: Registry, unique_repo: str
) -> None:
    data = secrets.token_bytes(512)
    with client_for(registry_token, RegistryAuth(keychain_for(registry_token))) as client:
        done = push_blob(client, unique_repo, data, declare=False)
        assert done.status_code == 201, done.text
    fetches = token_requests(registry_token, unique_repo)
    assert granted_actions(fetches[0], unique_repo) == {"pull", "push"}


def test_token_mode_wrong_password_raises_unauthorized_without_the_secret(
    registry_token: Registry, unique_repo: str
) -> None:
    password = "wrong-" + secrets.token_hex(8)
    keychain = StaticKeychain({registry_token.host: {"username": "tester", "password": password}})
    with (
        client_for(registry_token, RegistryAuth(keychain)) as client,
        pytest.raises(UnauthorizedError) as raised,
    ):
        push_blob(client, unique_repo, b"x")
    error = raised.value
    assert error.registry == registry_token.host
    assert error.repository == unique_repo
    assert error.status == 401
    assert "invalid credentials" in str(error)  # the token service's own message
    assert "'tester'" in str(error)
    assert password not in str(error) and password not in repr(error.args)


def test_token_mode_without_credentials_cannot_push(
    registry_token: Registry, unique_repo: str
) -> None:
    with client_for(registry_token, RegistryAuth()) as client:
        response = push_blob(client, unique_repo, b"x")
    # An anonymous token with no access: the registry's final word is 401.
    assert response.status_code == 401
    fetches = token_requests(registry_token, unique_repo)
    assert fetches and all(f["user"] is None for f in fetches)
    assert all(not granted_actions(f, unique_repo) for f in fetches)


def test_token_mode_reader_cannot_push_and_the_token_is_refreshed_only_once(
    registry_token: Registry, unique_repo: str
) -> None:
    seen: list[tuple[str, str, int]] = []
    auth = RegistryAuth(keychain_for(registry_token, "reader"))
    with client_for(registry_token, auth, seen) as client:
        first = push_blob(client, unique_repo, b"x")
        assert first.status_code == 401
        assert len(token_requests(registry_token, unique_repo)) == 1
        # The pull-only token that was refused is not cached: the next push asks again, once.
        second = push_blob(client, unique_repo, b"x")
        assert second.status_code == 401
    fetches = token_requests(registry_token, unique_repo)
    assert len(fetches) == 2
    assert all(granted_actions(f, unique_repo) == {"pull"} for f in fetches)
    assert [status for _, path, status in seen if path == "/token"] == [200, 200]
    assert [status for _, path, status in seen if path != "/token"] == [401] * 4


def test_anonymous_pull_of_public_repository(registry_token: Registry) -> None:
    repository = f"public/{secrets.token_hex(4)}"
    data = secrets.token_bytes(1024)
    with client_for(registry_token, RegistryAuth(keychain_for(registry_token))) as client:
        assert push_blob(client, repository, data).status_code == 201
    with client_for(registry_token, RegistryAuth()) as anonymous:
        got = pull_blob(anonymous, repository, digest_of(data))
        assert got.status_code == 200
        assert got.content == data
        assert push_blob(anonymous, repository, b"y").status_code == 401
    anonymous_fetches = [f for f in token_requests(registry_token, repository) if f["user"] is None]
    assert granted_actions(anonymous_fetches[0], repository) == {"pull"}


def test_token_reused_for_requests_of_the_same_scope(registry_factory: RegistryFactory) -> None:
    registry = registry_factory("token")
    assert registry.token_service is not None
    repository = "team/reuse"
    data = secrets.token_bytes(256)
    with client_for(registry, RegistryAuth(keychain_for(registry))) as client:
        assert push_blob(client, repository, data).status_code == 201
        registry.token_service.reset_stats()
        for _ in range(5):
            assert pull_blob(client, repository, digest_of(data)).status_code == 200
    # The push token (pull+push) covers every pull: no new fetch at all.
    assert registry.token_service.stats() == []

    with client_for(registry, RegistryAuth(keychain_for(registry))) as client:
        for _ in range(5):
            assert pull_blob(client, repository, digest_of(data)).status_code == 200
    stats = registry.token_service.stats()
    assert len(stats) == 1
    assert stats[0]["scopes"] == [f"repository:{repository}:pull"]


def test_token_refetched_after_expiry_with_an_injected_clock(
    registry_factory: RegistryFactory,
) -> None:
    registry = registry_factory("token", token_expires_in=30)
    assert registry.token_service is not None
    clock = FakeClock()
    repository = "team/expiry"
    data = secrets.token_bytes(256)
    with client_for(registry, RegistryAuth(keychain_for(registry), clock=clock)) as client:
        assert push_blob(client, repository, data).status_code == 201
        registry.token_service.reset_stats()
        clock.offset = 20  # well within the 30 s lifetime
        assert pull_blob(client, repository, digest_of(data)).status_code == 200
        assert registry.token_service.stats() == []
        clock.offset = 29  # inside the safety margin before expiry
        assert pull_blob(client, repository, digest_of(data)).status_code == 200
        assert len(registry.token_service.stats()) == 1
        clock.offset = 30  # the new token is fresh again
        assert pull_blob(client, repository, digest_of(data)).status_code == 200
        assert len(registry.token_service.stats()) == 1


def test_mount_declares_two_repositories_and_gets_one_token_for_both(
    registry_token: Registry, unique_repo: str
) -> None:
    source, target = f"{unique_repo}-source", f"{unique_repo}-target"
    data = secrets.token_bytes(1024)
    with client_for(registry_token, RegistryAuth(keychain_for(registry_token))) as client:
        assert push_blob(client, source, data).status_code == 201
    with client_for(registry_token, RegistryAuth(keychain_for(registry_token))) as client:
        mounted = client.post(
            f"/v2/{target}/blobs/uploads/",
            params={"mount": digest_of(data), "from": source},
            extensions=scopes(
                repository_scope(target, "pull", "push"), repository_scope(source, "pull")
            ),
        )
        assert mounted.status_code == 201, mounted.text  # mounted, not a new upload session
        assert pull_blob(client, target, digest_of(data)).content == data
    mount_fetches = token_requests(registry_token, target)
    assert len(mount_fetches) == 1
    assert granted_actions(mount_fetches[0], target) == {"pull", "push"}
    assert granted_actions(mount_fetches[0], source) == {"pull"}


def test_identity_token_uses_the_refresh_token_grant(registry_token: Registry) -> None:
    assert registry_token.token_service is not None
    offline = httpx.post(
        registry_token.token_service.realm,
        data={
            "grant_type": "password",
            "username": "tester",
            "password": registry_token.users["tester"],
            "access_type": "offline",
            "service": registry_token.token_service.service,
            "client_id": "test",
        },
    )
    refresh_token = offline.json()["refresh_token"]
    repository = f"team/identity-{secrets.token_hex(3)}"
    keychain = StaticKeychain({registry_token.host: Credential.identity_token(refresh_token)})
    data = secrets.token_bytes(300)
    with client_for(registry_token, RegistryAuth(keychain)) as client:
        assert push_blob(client, repository, data).status_code == 201
        assert pull_blob(client, repository, digest_of(data)).content == data
    (fetch,) = token_requests(registry_token, repository)
    assert fetch["method"] == "POST" and fetch["grant_type"] == "refresh_token"
    assert fetch["user"] == "tester"
    assert granted_actions(fetch, repository) == {"pull", "push"}


def test_registry_token_is_sent_as_is(registry_token: Registry, unique_repo: str) -> None:
    token = fetch_token(registry_token, [repository_scope(unique_repo, "pull", "push")])["token"]
    assert registry_token.token_service is not None
    keychain = StaticKeychain({registry_token.host: {"token": token}})
    before = len(token_requests(registry_token, unique_repo))
    data = secrets.token_bytes(128)
    with client_for(registry_token, RegistryAuth(keychain)) as client:
        assert push_blob(client, unique_repo, data).status_code == 201
        assert pull_blob(client, unique_repo, digest_of(data)).status_code == 200
    assert len(token_requests(registry_token, unique_repo)) == before  # no exchange


def test_tls_registry_with_token_auth(registry_factory: RegistryFactory) -> None:
    registry = registry_factory("token", tls=True)
    assert registry.url.startswith("https://")
    data = secrets.token_bytes(2048)
    with client_for(registry, RegistryAuth(keychain_for(registry))) as client:
        assert push_blob(client, "team/tls", data).status_code == 201
        assert pull_blob(client, "team/tls", digest_of(data)).content == data
    assert registry.token_service is not None
    assert [s["user"] for s in registry.token_service.stats()] == ["tester"]


def test_concurrent_uploads_share_one_client(registry_factory: RegistryFactory) -> None:
    registry = registry_factory("token")
    assert registry.token_service is not None
    blobs = [secrets.token_bytes(1024) for _ in range(8)]
    results: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(blobs))
    with client_for(registry, RegistryAuth(keychain_for(registry))) as client:

        def upload(data: bytes) -> None:
            try:
                start.wait()
                results.append(push_blob(client, "team/parallel", data).status_code)
            except BaseException as e:  # surfaced by the assertion below
                errors.append(e)

        threads = [threading.Thread(target=upload, args=(blob,)) for blob in blobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert results == [201] * len(blobs)
        registry.token_service.reset_stats()
        for blob in blobs:
            assert pull_blob(client, "team/parallel", digest_of(blob)).content == blob
    assert registry.token_service.stats() == []  # the cached token served every pull


def test_auth_repr_shows_no_secret(registry_token: Registry) -> None:
    password = registry_token.users["tester"]
    auth = RegistryAuth(keychain_for(registry_token))
    credential = keychain_for(registry_token).resolve(registry_token.host)
    assert credential is not None
    for text in (repr(auth), str(auth), repr(credential), str(credential)):
        assert password not in text


def test_async_client_token_handshake(registry_token: Registry, unique_repo: str) -> None:
    data = secrets.token_bytes(256)
    with client_for(registry_token, RegistryAuth(keychain_for(registry_token))) as client:
        assert push_blob(client, unique_repo, data).status_code == 201

    async def pull() -> httpx.Response:
        async with httpx.AsyncClient(
            base_url=registry_token.url, auth=RegistryAuth(keychain_for(registry_token))
        ) as client:
            return await client.get(
                f"/v2/{unique_repo}/blobs/{digest_of(data)}",
                extensions=scopes(repository_scope(unique_repo, "pull")),
            )

    response = asyncio.run(pull())
    assert response.status_code == 200 and response.content == data
    assert len(token_requests(registry_token, unique_repo)) == 2  # push's and the async pull's
