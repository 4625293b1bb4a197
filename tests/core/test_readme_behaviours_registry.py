"""One test per behaviour the original library's README states (the npm package
container-image-builder, /work/shared/seed), continued from test_readme_behaviours.py: auth
(ImageOptions, GCRAuthOptions, credential helpers, the auth() function), the registry client
API, and the glossary's facts. Each docstring quotes the README; where docs/library.md says we
differ on purpose, the test asserts our documented behaviour and says so.

Registries are the session's loopback servers in each auth mode; Google registries, which a
loopback server cannot be, are reached through keychains and the fake Google token endpoint.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pants_oci.core import media_types
from pants_oci.core.auth import (
    CredentialKind,
    DockerConfigKeychain,
    RegistryAuth,
    StaticKeychain,
    default_keychain,
)
from pants_oci.core.digest import sha256_of_bytes
from pants_oci.core.errors import UnauthorizedError
from pants_oci.core.image import Image
from pants_oci.core.models import ImageConfig, OCIManifest
from pants_oci.core.registry import RegistryClient
from tests.core.registry_support import client_for, image_manifest, options_for, unique_config
from tests.harness import tools
from tests.harness.busybox import PushedImage
from tests.harness.google import GOOGLE_USERNAME, GoogleTokenEndpoint
from tests.harness.proxies import FaultProxy
from tests.harness.registry import Registry, fetch_token


@pytest.fixture
def google_endpoint() -> Iterator[GoogleTokenEndpoint]:
    with GoogleTokenEndpoint() as endpoint:
        yield endpoint


def _authorizations(proxy: FaultProxy, pattern: str) -> set[str]:
    """The schemes of the Authorization headers of the requests matching ``pattern``."""
    seen = proxy.seen(pattern=pattern)
    return {r.headers.get("authorization", "").partition(" ")[0] for r in seen}


# --- ImageOptions: {auth: {registry: {token} | {Username, Secret}}} -----------------------------


def test_auth_token_is_sent_as_bearer(
    busybox_image: PushedImage, registry_token: Registry, unique_repo: str
) -> None:
    """README: "{auth:{'my.registry.io':{token?:string}}}" and "if token is provided it will
    use Bearer header auth". Ours: StaticKeychain({registry: {"token": ...}})."""
    scope = f"repository:{unique_repo}:pull,push"
    token = fetch_token(registry_token, [scope])["token"]
    assert registry_token.token_service is not None
    with FaultProxy(registry_token.url) as proxy:
        keychain = StaticKeychain({proxy.host: {"token": token}})
        ref = f"{proxy.host}/{unique_repo}:v1"
        options = options_for(registry_token)
        with Image(busybox_image.tag_ref, ref, keychain=keychain, options=options) as image:
            image.save()
        assert _authorizations(proxy, r"/manifests/") == {"Bearer"}
    fetches = [e for e in registry_token.token_service.stats() if unique_repo in str(e["scopes"])]
    assert len(fetches) == 1  # ours, above: the image sent the token as it was given


def test_auth_username_and_secret_use_basic(
    busybox_image: PushedImage, registry_basic: Registry, unique_repo: str
) -> None:
    """README: "options[ any other registry ] = {Username:string,Secret:string} ... if
    username and secret is provided the client will attempt to use http basic auth". Ours:
    StaticKeychain({registry: {"username": ..., "password": ...}})."""
    assert registry_basic.password is not None
    with FaultProxy(registry_basic.url) as proxy:
        keychain = StaticKeychain(
            {proxy.host: {"username": "tester", "password": registry_basic.password}}
        )
        ref = f"{proxy.host}/{unique_repo}:v1"
        options = options_for(registry_basic)
        with Image(busybox_image.tag_ref, ref, keychain=keychain, options=options) as image:
            image.save()
        assert _authorizations(proxy, r"/manifests/") == {"Basic"}
    tags = tools.skopeo_list_tags(f"{registry_basic.host}/{unique_repo}", registry=registry_basic)
    assert tags == ["v1"]


HELPER = """#!{python}
import json, sys
server = sys.stdin.read().strip()
if sys.argv[1:] != ["get"] or server != {host!r}:
    print("credentials not found in native keychain")
    sys.exit(1)
print(json.dumps({{"ServerURL": server, "Username": "tester", "Secret": {password!r}}}))
"""


def test_docker_credential_helpers_are_called(
    busybox_image: PushedImage, registry_basic: Registry, unique_repo: str, tmp_path: Path
) -> None:
    """README: "if you have a docker credential helper installed on the system, and in your
    docker config that matches the registry we'll call it before giving up". Ours:
    default_keychain() ends with DockerConfigKeychain (docs/library.md)."""
    (tmp_path / "bin").mkdir()
    helper = tmp_path / "bin/docker-credential-readme"
    helper.write_text(
        HELPER.format(
            python=sys.executable, host=registry_basic.host, password=registry_basic.password
        )
    )
    helper.chmod(0o755)
    (tmp_path / "config.json").write_text(
        json.dumps({"credHelpers": {registry_basic.host: "readme"}})
    )
    keychain = default_keychain(env={"DOCKER_CONFIG": str(tmp_path), "PATH": str(tmp_path / "bin")})
    ref = registry_basic.ref(unique_repo, "v1")
    options = options_for(registry_basic)
    with Image(busybox_image.tag_ref, ref, keychain=keychain, options=options) as image:
        digest = image.save()
    assert tools.skopeo_inspect(ref, registry=registry_basic)["Digest"] == str(digest)


def test_docker_config_auths_are_read_too(tmp_path: Path) -> None:
    """README: "this library does not attempt to read base64 or credentials from a secret
    service/keychain on the host". Ours does more on purpose (docs/library.md:
    DockerConfigKeychain reads docker's config.json): its base64 `auths`, as docker does."""
    auth = base64.b64encode(b"ci:secret").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"r.example": {"auth": auth}}}))
    credential = DockerConfigKeychain({"DOCKER_CONFIG": str(tmp_path)}).resolve("r.example", "a")
    assert credential is not None and (credential.username, credential.password) == ("ci", "secret")


def test_docker_hub_is_known_by_all_its_names(tmp_path: Path) -> None:
    """README: "default support for docker.io and google container registry (gcr.io) are
    built in" and "options['docker.io'] = {...}"."""
    explicit = StaticKeychain({"docker.io": {"username": "hub", "password": "pw"}})
    for name in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        credential = explicit.resolve(name, "library/node")
        assert credential is not None and credential.username == "hub"
    auth = base64.b64encode(b"hub:pw").decode()
    config = {"auths": {"https://index.docker.io/v1/": {"auth": auth}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    from_config = DockerConfigKeychain({"DOCKER_CONFIG": str(tmp_path)}).resolve("docker.io")
    assert from_config is not None and from_config.username == "hub"


# --- GCRAuthOptions ---------------------------------------------------------------------------


def test_gcr_credentials_from_a_service_account_dict(google_endpoint: GoogleTokenEndpoint) -> None:
    """README: "GCRAuthOptions {credentials?:{private_key:string,client_email:string}, ...}".
    Ours: {"service_account_info": {...}} (docs/library.md)."""
    info = google_endpoint.service_account_info()
    credential = StaticKeychain({"gcr.io": {"service_account_info": info}}).resolve("gcr.io", "p/a")
    assert credential is not None and credential.username == GOOGLE_USERNAME
    assert credential.password == google_endpoint.issued[0]


def test_gcr_credentials_from_a_key_file(
    google_endpoint: GoogleTokenEndpoint, tmp_path: Path
) -> None:
    """README: "keyFilename?:string". Ours: {"service_account_file": path}."""
    key_file = str(google_endpoint.key_file(tmp_path))
    keychain = StaticKeychain({"eu.gcr.io": {"service_account_file": key_file}})
    credential = keychain.resolve("eu.gcr.io", "p/a")
    assert credential is not None and credential.password == google_endpoint.issued[0]


def test_gcr_token_is_sent_as_the_oauth2_access_token() -> None:
    """README: "token?:string" (GCRAuthOptions). Google registries take an access token as the
    password of user oauth2accesstoken."""
    credential = StaticKeychain({"gcr.io": {"token": "ya29.given"}}).resolve("gcr.io", "p/a")
    assert credential is not None and credential.kind is CredentialKind.BASIC
    assert (credential.username, credential.password) == (GOOGLE_USERNAME, "ya29.given")


def test_gcr_falls_back_to_google_application_credentials(
    google_endpoint: GoogleTokenEndpoint, tmp_path: Path
) -> None:
    """README: "if no options are provided it falls back to using
    GOOGLE_APPLICATION_CREDENTIALS to provide the keyFilename"."""
    env = {"GOOGLE_APPLICATION_CREDENTIALS": str(google_endpoint.key_file(tmp_path))}
    credential = default_keychain(env=env).resolve("us.gcr.io", "project/app")
    assert credential is not None and credential.username == GOOGLE_USERNAME
    assert credential.password == google_endpoint.issued[0]
    assert default_keychain(env=env).resolve("ghcr.io", "project/app") is None  # Google's only


def test_several_gcr_projects_each_with_its_credentials(
    google_endpoint: GoogleTokenEndpoint,
) -> None:
    """README, "Authenticating to multiple GCR projects": auth {'us.gcr.io/project2':
    {credentials:creds1}, 'gcr.io/project1':{credentials:creds2}}."""
    creds1 = {**google_endpoint.service_account_info(), "client_email": "one@p.iam"}
    creds2 = {**google_endpoint.service_account_info(), "client_email": "two@p.iam"}
    keychain = StaticKeychain(
        {
            "us.gcr.io/project2": {"service_account_info": creds1},
            "gcr.io/project1": {"service_account_info": creds2},
        }
    )
    assert keychain.resolve("gcr.io", "project1/image") is not None
    assert keychain.resolve("us.gcr.io", "project2/image") is not None
    assert keychain.resolve("gcr.io", "project2/image") is None
    assert [grant["iss"] for grant in google_endpoint.grants] == ["two@p.iam", "one@p.iam"]


# --- auth(imageSpecifier, scope, options) -----------------------------------------------------


def test_auth_resolves_credentials_and_scopes_are_asked_per_request(
    registry_token: Registry, unique_repo: str
) -> None:
    """README: "auth(imageSpecifier,scope,options) Promise<{Secret?,Username?,token?}> ...
    scope, string "push" or "push,pull"". Ours (docs/library.md): keychain.resolve(registry,
    repository) answers the credential, and RegistryAuth asks for each request's scope, so
    there is no scope argument."""
    assert registry_token.password is not None and registry_token.token_service is not None
    explicit = {registry_token.host: {"username": "tester", "password": registry_token.password}}
    keychain = default_keychain(explicit, env={})
    credential = keychain.resolve(registry_token.host, unique_repo)
    assert credential is not None and credential.username == "tester"
    data = secrets.token_bytes(64)
    auth, options = RegistryAuth(keychain), options_for(registry_token)
    with RegistryClient(registry_token.host, unique_repo, auth=auth, options=options) as client:
        assert client.blob_exists(sha256_of_bytes(data)) is False  # a read: pull
        client.upload_blob(data)  # a write: pull and push
    scopes = [
        e["scopes"] for e in registry_token.token_service.stats() if unique_repo in str(e["scopes"])
    ]
    assert scopes == [[f"repository:{unique_repo}:pull"], [f"repository:{unique_repo}:pull,push"]]


# --- the registry client -----------------------------------------------------------------------


@pytest.fixture
def client(registry_basic: Registry, unique_repo: str) -> Iterator[RegistryClient]:
    """RegistryClient(registry, repository, auth) on the basic-auth registry."""
    assert registry_basic.password is not None
    keychain = StaticKeychain(
        {registry_basic.host: {"username": "tester", "password": registry_basic.password}}
    )
    with RegistryClient(
        registry_basic.host,
        unique_repo,
        auth=RegistryAuth(keychain),
        options=options_for(registry_basic),
    ) as made:
        yield made


def _push_manifest(client: RegistryClient, tag: str | None) -> tuple[bytes, str]:
    config = unique_config()
    client.upload_blob(config)
    raw = image_manifest(config, [], media_types.OCI_MANIFEST)
    return raw, str(client.put_manifest(raw, tag=tag))


def test_registry_client_takes_registry_repository_and_auth(
    client: RegistryClient, registry_basic: Registry, unique_repo: str
) -> None:
    """README: "client = new RegistryClient(registry, repository, auth) ... repository ...
    the image name including any namespace portion ... auth required"."""
    assert (client.registry, client.repository) == (registry_basic.host, unique_repo)
    digest, size = client.upload_blob(b"authenticated")
    assert client.blob_size(digest) == size
    with (
        client_for(registry_basic, unique_repo, credentials=None) as anonymous,
        pytest.raises(UnauthorizedError),
    ):
        anonymous.blob_exists(digest)


def test_manifest_by_tag_or_by_digest(client: RegistryClient) -> None:
    """README: "client.manifest(tag) ... this can be a tag name or a digest for manifests
    without tags"."""
    raw, digest = _push_manifest(client, "v1")
    untagged_raw, untagged = _push_manifest(client, None)
    assert client.get_manifest("v1").to_bytes() == raw
    assert client.get_manifest(digest).to_bytes() == raw
    assert client.get_manifest(untagged).to_bytes() == untagged_raw


def test_tags_lists_the_repository_tags(client: RegistryClient) -> None:
    """README: "client.tags() ... list all tags associated with the image (repository)". Ours
    (docs/library.md): list_tags(), the list of tags, every page followed."""
    for tag in ("b", "a", "c"):
        _push_manifest(client, tag)
    assert sorted(client.list_tags()) == ["a", "b", "c"]
    assert sorted(client.list_tags(page_size=1)) == ["a", "b", "c"]


def test_manifest_upload_without_a_tag_is_untagged(client: RegistryClient) -> None:
    """README: "client.manifestUpload(tag: string|false, manifest) ... if ! tag manifest will
    be uploaded untagged". Ours: put_manifest(manifest, tag=None)."""
    _push_manifest(client, "kept")
    _, digest = _push_manifest(client, None)
    assert client.list_tags() == ["kept"]
    assert client.head_manifest(digest) is not None


def test_manifest_upload_sends_bytes_as_they_are(client: RegistryClient) -> None:
    """README: "if manifest is a buffer it'll be uploaded as is"."""
    config = unique_config()
    client.upload_blob(config)
    document = json.loads(image_manifest(config, [], media_types.OCI_MANIFEST))
    raw = json.dumps(document, indent=3).encode()  # not the canonical form
    digest = client.put_manifest(raw, tag="pretty")
    assert digest == sha256_of_bytes(raw)
    assert client.get_manifest("pretty").to_bytes() == raw


def test_manifest_upload_serialises_an_object(client: RegistryClient) -> None:
    """README: "if manifest is an object it'll be json.stringified and uploaded". Ours: a
    manifest model (OCIManifest...) is sent as its bytes."""
    config = unique_config()
    client.upload_blob(config)
    manifest = OCIManifest.from_bytes(image_manifest(config, [], media_types.OCI_MANIFEST))
    digest = client.put_manifest(manifest, tag="object")
    assert digest == sha256_of_bytes(manifest.to_bytes())
    assert client.get_manifest("object").to_bytes() == manifest.to_bytes()


def test_blob_exists_is_a_bool(client: RegistryClient) -> None:
    """README: "client.blobExists(digest) Promise<boolean> ... both layers and image configs
    are stored as blobs"."""
    digest, _ = client.upload_blob(b"")
    assert client.blob_exists(digest) is True  # even an empty blob
    assert client.blob_exists("sha256:" + "0" * 64) is False


def test_blob_downloads_as_bytes_or_as_a_stream(client: RegistryClient) -> None:
    """README: "client.blob(digest, stream) ... download a blob as a buffer or stream". Ours
    (docs/library.md): read_blob (bytes), iter_blob (a stream of chunks), get_blob (a file)."""
    data = secrets.token_bytes(5000)
    digest, _ = client.upload_blob(data)
    assert client.read_blob(digest) == data
    assert b"".join(client.iter_blob(digest)) == data
    out = io.BytesIO()
    assert client.get_blob(digest, out) == len(data) and out.getvalue() == data


def test_upload_computes_digest_and_length_when_not_given(
    registry_anonymous: Registry, unique_repo: str
) -> None:
    """README: "client.upload(blob, contentLength, digest) ... you do not need to know the
    content length and digest before hand. if they're not provided they'll be calculated on
    the fly and a 2 step upload will be performed"."""
    data = secrets.token_bytes(3000)
    expected = (sha256_of_bytes(data), len(data))
    with (
        FaultProxy(registry_anonymous.url) as proxy,
        client_for(registry_anonymous, unique_repo, host=proxy.host) as client,
    ):
        assert client.upload_blob(io.BytesIO(data)) == expected  # a stream, nothing known
        streamed = [r.method for r in proxy.seen(pattern=r"/blobs/uploads/")]
        other = data[::-1]
        known = (sha256_of_bytes(other), len(other))
        assert client.upload_blob(io.BytesIO(other), digest=known[0], size=known[1]) == known
        whole = [r.method for r in proxy.seen(pattern=r"/blobs/uploads/")][len(streamed) :]
    assert streamed == ["POST", "PATCH", "PUT"]  # hashed on the fly, then the digest
    assert whole == ["POST", "PUT"]  # known beforehand: one PUT carries it all


def test_mount_links_a_blob_from_another_repository(client: RegistryClient) -> None:
    """README: "client.mount(digest: string, fromRepository: string) ... this is much faster
    than alternatives if it works"."""
    source = client.for_repository(f"{client.repository}-source")
    digest, _ = source.upload_blob(secrets.token_bytes(100))
    assert client.blob_exists(digest) is False
    assert client.mount_blob(digest, source.repository) is True
    assert client.blob_exists(digest) is True
    assert client.mount_blob("sha256:" + "0" * 64, source.repository) is False


# --- the glossary -----------------------------------------------------------------------------


def test_a_digest_is_sha256_hex_prefixed_with_sha256(client: RegistryClient) -> None:
    """README glossary: "digest - sha256 sum encoded as hex prefixed with "sha256:""."""
    data = b"any blob"
    digest, _ = client.upload_blob(data)
    assert str(digest) == "sha256:" + hashlib.sha256(data).hexdigest()


def test_diff_ids_are_the_digests_of_the_uncompressed_layers(
    busybox_image: PushedImage, registry_anonymous: Registry
) -> None:
    """README glossary: the config "holds an array of the shasums of every layer in a property
    called diff_ids ... the shasum of the layer before it's gzipped"; the manifest names each
    layer blob (compressed) by digest."""
    with client_for(registry_anonymous, busybox_image.repository) as client:
        manifest = client.get_image_manifest(busybox_image.tag)
        config = ImageConfig.from_bytes(client.read_blob(manifest.config.digest))
        (layer,) = manifest.layers
        blob = client.read_blob(layer.digest)
    assert str(layer.digest) == "sha256:" + hashlib.sha256(blob).hexdigest()
    uncompressed = "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert [str(d) for d in config.rootfs.diff_ids] == [uncompressed]
    assert uncompressed != str(layer.digest)
