"""Credential, StaticKeychain, DockerConfigKeychain and real docker-credential-* helper scripts."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import secrets
import sys
from pathlib import Path

import pytest

from pants_oci.core.auth import (
    ChainKeychain,
    Credential,
    CredentialKind,
    DockerConfigKeychain,
    RegistryAuth,
    StaticKeychain,
    default_keychain,
    normalize_registry,
)
from pants_oci.core.errors import CredentialError, CredentialHelperError
from tests.core.auth_helpers import client_for, digest_of, pull_blob, push_blob
from tests.harness.registry import Registry

SECRET = "s3cr3t-" + secrets.token_hex(8)


# --- Credential -------------------------------------------------------------------------------
def test_credential_kinds_and_no_secret_in_repr() -> None:
    basic = Credential.basic("me", SECRET, source="somewhere")
    identity = Credential.identity_token(SECRET)
    registry_token = Credential.registry_token(SECRET)
    assert (basic.kind, basic.username, basic.password) == (CredentialKind.BASIC, "me", SECRET)
    assert identity.kind is CredentialKind.IDENTITY_TOKEN and identity.secret == SECRET
    assert registry_token.kind is CredentialKind.REGISTRY_TOKEN and registry_token.username is None
    for credential in (basic, identity, registry_token):
        for text in (repr(credential), str(credential), f"{credential}", credential.describe()):
            assert SECRET not in text
    assert "'me'" in repr(basic) and "somewhere" in basic.describe()
    with pytest.raises(dataclasses.FrozenInstanceError):
        basic.secret = "other"  # type: ignore[misc]
    # Where a credential came from does not make it a different credential.
    assert basic == Credential.basic("me", SECRET, source="elsewhere")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("http://localhost:5000", "localhost:5000"),
        ("https://GHCR.io/", "ghcr.io"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("europe-docker.pkg.dev", "europe-docker.pkg.dev"),
    ],
)
def test_normalize_registry(text: str, expected: str) -> None:
    assert normalize_registry(text) == expected


# --- StaticKeychain ---------------------------------------------------------------------------
STATIC = StaticKeychain(
    {
        "ghcr.io": {"username": "org", "password": "p-org"},
        "ghcr.io/team": {"username": "team", "password": "p-team"},
        "ghcr.io/team/app/": {"token": "t-app"},
        "docker.io/library": {"username": "hub-official", "password": "p-lib"},
        "index.docker.io": {"username": "hub", "password": "p-hub"},
        "localhost:5000/ci": {"identitytoken": "i-ci"},
    }
)


@pytest.mark.parametrize(
    ("registry", "repository", "expected"),
    [
        ("ghcr.io", "other/app", ("org", "p-org")),
        ("ghcr.io", "team", ("team", "p-team")),
        ("ghcr.io", "team/tool", ("team", "p-team")),
        ("ghcr.io", "teamwork/app", ("org", "p-org")),  # "team" only at a "/" boundary
        ("ghcr.io", "team/app", (None, "t-app")),
        ("ghcr.io", "team/app/sub", (None, "t-app")),
        ("ghcr.io", "team/application", ("team", "p-team")),
        ("ghcr.io", None, ("org", "p-org")),
        ("GHCR.IO", "team/x", ("team", "p-team")),
        ("docker.io", "library/busybox", ("hub-official", "p-lib")),
        ("registry-1.docker.io", "library/busybox", ("hub-official", "p-lib")),
        ("registry-1.docker.io", "someone/app", ("hub", "p-hub")),
        ("docker.io", "someone/app", ("hub", "p-hub")),
        ("localhost:5000", "ci/app", (None, "i-ci")),
        ("localhost:5000", "cid/app", None),
        ("localhost:5001", "ci/app", None),
        ("quay.io", "team/app", None),
    ],
)
def test_static_keychain_longest_prefix(
    registry: str, repository: str | None, expected: tuple[str | None, str] | None
) -> None:
    credential = STATIC.resolve(registry, repository)
    if expected is None:
        assert credential is None
    else:
        assert credential is not None
        assert (credential.username, credential.secret) == expected


def test_static_keychain_kinds() -> None:
    token = STATIC.resolve("ghcr.io", "team/app")
    identity = STATIC.resolve("localhost:5000", "ci/x")
    assert token is not None and token.kind is CredentialKind.REGISTRY_TOKEN
    assert identity is not None and identity.kind is CredentialKind.IDENTITY_TOKEN
    given = Credential.basic("u", SECRET)
    assert StaticKeychain({"quay.io": given}).resolve("quay.io", "a/b") is given


def test_static_keychain_rejects_bad_options_without_echoing_them() -> None:
    with pytest.raises(CredentialError, match=r"'ghcr\.io/team'") as raised:
        StaticKeychain({"ghcr.io/team": {"user": "me", "pass": SECRET}})
    assert SECRET not in str(raised.value)
    with pytest.raises(CredentialError, match="strings"):
        StaticKeychain({"ghcr.io": {"username": "me", "password": 42}})


def test_chain_keychain_first_answer_wins() -> None:
    first = StaticKeychain({"a.io": {"username": "first", "password": "1"}})
    second = StaticKeychain(
        {
            "a.io": {"username": "second", "password": "2"},
            "b.io": {"username": "b", "password": "3"},
        }
    )
    chain = ChainKeychain(first, second)
    assert [
        getattr(chain.resolve(r, "x/y"), "username", None) for r in ("a.io", "b.io", "c.io")
    ] == [
        "first",
        "b",
        None,
    ]


# --- docker config ----------------------------------------------------------------------------
def write_config(directory: Path, config: object) -> dict[str, str]:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config))
    return {"DOCKER_CONFIG": str(directory), "PATH": os.environ.get("PATH", os.defpath)}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_docker_config_auths_entries(tmp_path: Path) -> None:
    env = write_config(
        tmp_path,
        {
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64(f"hubuser:{SECRET}:with-colon")},
                "http://localhost:5000": {"username": "local", "password": "pw"},
                "ghcr.io": {"identitytoken": "refresh-me", "auth": b64("ghuser:")},
                "quay.io": {"registrytoken": "bearer-me"},
                "empty.io": {},
            }
        },
    )
    keychain = DockerConfigKeychain(env)
    for hub in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        credential = keychain.resolve(hub, "library/busybox")
        assert credential is not None
        # The password keeps every ':' after the first.
        assert (credential.username, credential.password) == ("hubuser", f"{SECRET}:with-colon")
        assert str(tmp_path / "config.json") in credential.source
    local = keychain.resolve("localhost:5000", "a")
    assert local is not None and (local.username, local.password) == ("local", "pw")
    identity = keychain.resolve("ghcr.io", "a/b")
    assert identity is not None and identity.kind is CredentialKind.IDENTITY_TOKEN
    assert (identity.username, identity.secret) == ("ghuser", "refresh-me")
    registry_token = keychain.resolve("quay.io", "a/b")
    assert registry_token is not None and registry_token.kind is CredentialKind.REGISTRY_TOKEN
    assert registry_token.secret == "bearer-me"
    assert keychain.resolve("empty.io", "a") is None
    assert keychain.resolve("other.io", "a") is None


def test_docker_config_found_through_home_when_docker_config_is_unset(tmp_path: Path) -> None:
    write_config(tmp_path / ".docker", {"auths": {"a.io": {"auth": b64("u:p")}}})
    credential = DockerConfigKeychain({"HOME": str(tmp_path)}).resolve("a.io")
    assert credential is not None and credential.username == "u"


def test_docker_config_missing_file_means_no_credentials(tmp_path: Path) -> None:
    keychain = DockerConfigKeychain({"DOCKER_CONFIG": str(tmp_path / "nowhere")})
    assert keychain.resolve("docker.io", "library/busybox") is None


def test_docker_config_malformed_json_names_the_file_not_the_content(tmp_path: Path) -> None:
    tmp_path.joinpath("config.json").write_text('{"auths": {"a.io": {"auth": "' + SECRET)
    keychain = DockerConfigKeychain({"DOCKER_CONFIG": str(tmp_path)})
    with pytest.raises(CredentialError) as raised:
        keychain.resolve("a.io")
    assert str(tmp_path / "config.json") in str(raised.value)
    assert "not valid JSON" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_docker_config_bad_base64_auth(tmp_path: Path) -> None:
    env = write_config(tmp_path, {"auths": {"a.io": {"auth": "%%%" + SECRET}}})
    with pytest.raises(CredentialError, match=r"'a\.io'") as raised:
        DockerConfigKeychain(env).resolve("a.io")
    assert SECRET not in str(raised.value)


# --- credential helpers -----------------------------------------------------------------------
HELPER_SCRIPT = """#!{python}
# A docker credential helper for tests: answers from a JSON table keyed by server URL.
import json, os, sys, time
state = {state!r}
with open(os.path.join(state, "calls"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
server = sys.stdin.read().strip()
table = json.load(open(os.path.join(state, "table.json")))
answer = table.get(server, table.get("*", "notfound"))
if answer == "notfound":
    print("credentials not found in native keychain")
    sys.exit(1)
if answer == "fail":
    sys.stderr.write("keychain is locked\\n")
    sys.exit(1)
if answer == "leak":
    sys.stderr.write("cannot unlock the keychain; debug: Secret={secret} user ci-bot\\n")
    sys.stderr.write("retrying with " + {secret!r} + " " + "word " * 200 + "\\n")
    sys.exit(1)
if answer == "leak-json":
    # The protocol's answer on stdout, yet a failure; stderr repeats the (plain-word) secret.
    print(json.dumps({{"Username": "ci-bot-user", "Secret": "correct-horse"}}))
    sys.stderr.write("refusing to hand out correct-horse for ci-bot-user\\n")
    sys.exit(2)
if answer == "garbage":
    print("user={secret}")
    sys.exit(0)
if answer == "sleep":
    time.sleep(60)
print(json.dumps({{"ServerURL": server, "Username": answer[0], "Secret": answer[1]}}))
"""


class Helper:
    """A real docker-credential-<name> executable in a temp dir, with an answer table."""

    def __init__(self, directory: Path, name: str) -> None:
        self.bin = directory / "bin"
        self.state = directory / f"state-{name}"
        self.bin.mkdir(parents=True, exist_ok=True)
        self.state.mkdir()
        script = self.bin / f"docker-credential-{name}"
        script.write_text(
            HELPER_SCRIPT.format(python=sys.executable, state=str(self.state), secret=SECRET)
        )
        script.chmod(0o755)
        self.answers({})

    def answers(self, table: dict[str, object]) -> None:
        (self.state / "table.json").write_text(json.dumps(table))

    def calls(self) -> list[list[str]]:
        log = self.state / "calls"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def helper_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    config_dir = tmp_path / "docker"
    env = {"DOCKER_CONFIG": str(config_dir), "PATH": f"{tmp_path / 'bin'}:{os.defpath}"}
    return config_dir, env


def test_helper_success_gets_the_server_url_on_stdin_and_nothing_on_argv(
    tmp_path: Path, helper_env: tuple[Path, dict[str, str]]
) -> None:
    config_dir, env = helper_env
    helper = Helper(tmp_path, "test")
    helper.answers(
        {
            "https://index.docker.io/v1/": ["hub", SECRET],
            "127.0.0.1:5000": ["local", "pw"],
        }
    )
    write_config(config_dir, {"credsStore": "test"})
    keychain = DockerConfigKeychain(env)
    hub = keychain.resolve("registry-1.docker.io", "library/busybox")
    assert hub is not None and (hub.username, hub.password) == ("hub", SECRET)
    assert hub.kind is CredentialKind.BASIC and "docker-credential-test" in hub.source
    local = keychain.resolve("127.0.0.1:5000", "a")
    assert local is not None and local.username == "local"
    assert helper.calls() == [["get"], ["get"]]


def test_helper_token_username_means_identity_token(
    tmp_path: Path, helper_env: tuple[Path, dict[str, str]]
) -> None:
    config_dir, env = helper_env
    Helper(tmp_path, "test").answers({"*": ["<token>", SECRET]})
    write_config(config_dir, {"credsStore": "test"})
    credential = DockerConfigKeychain(env).resolve("ghcr.io", "a/b")
    assert credential is not None
    assert credential.kind is CredentialKind.IDENTITY_TOKEN and credential.secret == SECRET


def test_helper_not_found_is_no_credential_and_auths_are_not_consulted(
    tmp_path: Path, helper_env: tuple[Path, dict[str, str]]
) -> None:
    config_dir, env = helper_env
    helper = Helper(tmp_path, "test")
    write_config(config_dir, {"credsStore": "test", "auths": {"a.io": {"auth": b64("file:store")}}})
    # As docker does: the helper in charge of a registry has the final word.
    assert DockerConfigKeychain(env).resolve("a.io", "x") is None
    assert helper.calls() == [["get"]]


def test_cred_helpers_beat_creds_store_beats_auths(
    tmp_path: Path, helper_env: tuple[Path, dict[str, str]]
) -> None:
    config_dir, env = helper_env
    per_registry = Helper(tmp_path, "perreg")
    default = Helper(tmp_path, "default")
    per_registry.answers({"*": ["from-cred-helpers", "1"]})
    default.answers({"*": ["from-creds-store", "2"]})
    write_config(
        config_dir,
        {
            "auths": {"a.io": {"auth": b64("from-auths:3")}, "b.io": {"auth": b64("from-auths:4")}},
            "credsStore": "default",
            "credHelpers": {"https://a.io": "perreg"},
        },
    )
    keychain = DockerConfigKeychain(env)
    a, b = keychain.resolve("a.io"), keychain.resolve("b.io")
    assert a is not None and a.username == "from-cred-helpers"
    assert b is not None and b.username == "from-creds-store"

    write_config(config_dir, {"auths": {"b.io": {"auth": b64("from-auths:4")}}})
    only_auths = DockerConfigKeychain(env).resolve("b.io")
    assert only_auths is not None and only_auths.username == "from-auths"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("fail", r"exited with status 1: keychain is locked"),
        ("garbage", r"printed something that is not JSON"),
    ],
)
def test_helper_failures_name_helper_and_registry_never_the_secret(
    tmp_path: Path, helper_env: tuple[Path, dict[str, str]], answer: str, expected: str
) -> None:
    config_dir, env = helper_env
    Helper(tmp_path, "test").answers({"*": answer})
    write_config(config_dir, {"credHelpers": {"a.io": "test"}})
    with pytest.raises(CredentialHelperError, match=expected) as raised:
        DockerConfigKeychain(env).resolve("a.io", "x")
    message = str(raised.value)
    assert "docker-credential-test" in message and "'a.io'" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("answer", "said", "secrets_printed"),
    [
        ("leak", "1: cannot unlock the keychain; debug: Secret=*** user ci-bot", [SECRET]),
        ("leak-json", "2: refusing to hand out *** for ***", ["correct-horse", "ci-bot-user"]),
    ],
)
def test_a_failing_helper_is_shown_redacted_and_bounded(
    tmp_path: Path,
    helper_env: tuple[Path, dict[str, str]],
    answer: str,
    said: str,
    secrets_printed: list[str],
) -> None:
    """A helper that prints its secret on the way out must not put it in a CI log: the error
    names the helper, the registry and the exit status, with a short redacted excerpt."""
    config_dir, env = helper_env
    Helper(tmp_path, "test").answers({"*": answer})
    write_config(config_dir, {"credHelpers": {"a.io": "test"}})
    with pytest.raises(CredentialHelperError) as raised:
        DockerConfigKeychain(env).resolve("a.io", "x")
    message = str(raised.value)
    prefix = "credential helper 'docker-credential-test' for registry 'a.io': exited with status "
    status, _, excerpt = message.removeprefix(prefix).partition(": ")
    said_status, _, said = said.partition(": ")
    assert message.startswith(prefix)
    assert status == said_status
    assert excerpt.startswith(said)
    assert len(excerpt) <= 200 and "\n" not in excerpt
    for secret in secrets_printed:
        assert secret not in message


def test_helper_timeout(tmp_path: Path, helper_env: tuple[Path, dict[str, str]]) -> None:
    config_dir, env = helper_env
    Helper(tmp_path, "test").answers({"*": "sleep"})
    write_config(config_dir, {"credsStore": "test"})
    keychain = DockerConfigKeychain(env, helper_timeout=0.5)
    with pytest.raises(CredentialHelperError, match=r"timed out after 0.5 seconds") as raised:
        keychain.resolve("a.io")
    assert "docker-credential-test" in str(raised.value)


def test_missing_default_store_means_no_credentials_with_one_warning(
    tmp_path: Path, helper_env: tuple[Path, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    # A config copied from a Docker Desktop machine: public pulls must still work.
    config_dir, env = helper_env
    write_config(config_dir, {"credsStore": "nonexistent", "auths": {"a.io": {}}})
    keychain = DockerConfigKeychain(env)
    with caplog.at_level(logging.WARNING, logger="pants_oci.core.auth._docker_config"):
        assert [keychain.resolve(r, "x/y") for r in ("a.io", "b.io", "docker.io")] == [None] * 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "docker-credential-nonexistent" in warnings[0] and "not installed" in warnings[0]


def test_missing_helper_named_for_the_registry_is_an_error(
    tmp_path: Path, helper_env: tuple[Path, dict[str, str]]
) -> None:
    config_dir, env = helper_env
    write_config(config_dir, {"credsStore": "nonexistent", "credHelpers": {"a.io": "alsomissing"}})
    keychain = DockerConfigKeychain(env)
    with pytest.raises(
        CredentialHelperError, match=r"docker-credential-alsomissing.*not installed"
    ):
        keychain.resolve("a.io")
    assert keychain.resolve("b.io") is None  # the default store: degraded, not an error


def test_no_docker_config_without_docker_config_or_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Path.home() would find this one (through the real HOME): it must not be read.
    write_config(tmp_path / ".docker", {"auths": {"a.io": {"auth": b64("u:p")}}})
    monkeypatch.setenv("HOME", str(tmp_path))
    keychain = DockerConfigKeychain({"PATH": os.defpath})
    assert keychain.path is None
    assert keychain.resolve("a.io") is None
    assert "path=None" in repr(keychain)


# --- end to end: docker config and helpers driving the real handshake -------------------------
def test_docker_config_credentials_push_to_the_token_registry(
    registry_token: Registry, unique_repo: str, tmp_path: Path
) -> None:
    env = write_config(tmp_path, registry_token.auth_json())
    data = secrets.token_bytes(100)
    with client_for(registry_token, RegistryAuth(default_keychain(env=env))) as client:
        assert push_blob(client, unique_repo, data).status_code == 201
        assert pull_blob(client, unique_repo, digest_of(data)).content == data


def test_helper_credentials_are_looked_up_once_per_repository(
    registry_basic: Registry,
    unique_repo: str,
    tmp_path: Path,
    helper_env: tuple[Path, dict[str, str]],
) -> None:
    config_dir, env = helper_env
    helper = Helper(tmp_path, "test")
    helper.answers({registry_basic.host: ["tester", registry_basic.password]})
    write_config(config_dir, {"credHelpers": {registry_basic.host: "test"}})
    data = secrets.token_bytes(100)
    with client_for(registry_basic, RegistryAuth(DockerConfigKeychain(env))) as client:
        assert push_blob(client, unique_repo, data).status_code == 201
        for _ in range(3):
            assert pull_blob(client, unique_repo, digest_of(data)).content == data
    assert helper.calls() == [["get"]]
