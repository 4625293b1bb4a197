"""Image reference parsing and normalisation, checked against the distribution grammar.

Most cases come from github.com/distribution/reference's own tables (reference_test.go and
normalize_test.go), run through Docker's normalising parse (``ParseNormalizedNamed``), so
``test.com:5000`` is Docker Hub's ``library/test.com`` with tag ``5000``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pants_oci.core.digest import Digest
from pants_oci.core.errors import InvalidReferenceError, OCIError
from pants_oci.core.reference import (
    MAX_NAME_LENGTH,
    Reference,
    parse_reference,
    parse_repository,
    validate_tag,
)

SHA256_F = "sha256:" + "f" * 64
SHA512_F = "sha512:" + "f" * 128
REDIS_DIGEST = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c"
BUSYBOX_DIGEST = "sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
HEX64 = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a"

# (input, registry, repository, tag, digest)
VALID = [
    # reference_test.go: TestReferenceParse
    ("test_com", "docker.io", "library/test_com", None, None),
    ("test.com:tag", "docker.io", "library/test.com", "tag", None),
    ("test.com:5000", "docker.io", "library/test.com", "5000", None),
    ("test.com/repo:tag", "test.com", "repo", "tag", None),
    ("test:5000/repo", "test:5000", "repo", None, None),
    ("test:5000/repo:tag", "test:5000", "repo", "tag", None),
    (f"test:5000/repo@{SHA256_F}", "test:5000", "repo", None, SHA256_F),
    (f"test:5000/repo:tag@{SHA256_F}", "test:5000", "repo", "tag", SHA256_F),
    ("lowercase:Uppercase", "docker.io", "library/lowercase", "Uppercase", None),
    # An uppercase first component is taken for a host (distribution's own FIXME case).
    ("Uppercase/lowercase:tag", "Uppercase", "lowercase", "tag", None),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", None, None),
    (
        "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
        "sub-dom1.foo.com",
        "bar/baz/quux",
        "some-long-tag",
        None,
    ),
    (
        "b.gcr.io/test.example.com/my-app:test.example.com",
        "b.gcr.io",
        "test.example.com/my-app",
        "test.example.com",
        None,
    ),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None),
    (
        f"xn--7o8h.com/myimage:xn--7o8h.com@{SHA512_F}",
        "xn--7o8h.com",
        "myimage",
        "xn--7o8h.com",
        SHA512_F,
    ),
    ("foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", None),
    ("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", "8080", None),
    ("192.168.1.1", "docker.io", "library/192.168.1.1", None, None),
    ("192.168.1.1:tag", "docker.io", "library/192.168.1.1", "tag", None),
    ("192.168.1.1:5000", "docker.io", "library/192.168.1.1", "5000", None),
    ("192.168.1.1/repo", "192.168.1.1", "repo", None, None),
    ("192.168.1.1:5000/repo", "192.168.1.1:5000", "repo", None, None),
    ("192.168.1.1:5000/repo:5050", "192.168.1.1:5000", "repo", "5050", None),
    ("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None),
    ("[2001:db8:1:2:3:4:5:6]/repo:tag", "[2001:db8:1:2:3:4:5:6]", "repo", "tag", None),
    ("[2001:db8::1]:5000/repo", "[2001:db8::1]:5000", "repo", None, None),
    ("[2001:db8::1]:5000/repo:tag", "[2001:db8::1]:5000", "repo", "tag", None),
    (f"[2001:db8::1]:5000/repo@{SHA256_F}", "[2001:db8::1]:5000", "repo", None, SHA256_F),
    (f"[2001:db8::1]:5000/repo:tag@{SHA256_F}", "[2001:db8::1]:5000", "repo", "tag", SHA256_F),
    ("[2001:db8::]:5000/repo", "[2001:db8::]:5000", "repo", None, None),
    ("[::1]:5000/repo", "[::1]:5000", "repo", None, None),
    ("[::1]:5000/foo:bar", "[::1]:5000", "foo", "bar", None),
    # normalize_test.go: TestValidateReferenceName
    ("docker/docker", "docker.io", "docker/docker", None, None),
    ("library/debian", "docker.io", "library/debian", None, None),
    ("debian", "docker.io", "library/debian", None, None),
    ("docker.io/docker/docker", "docker.io", "docker/docker", None, None),
    ("docker.io/library/debian", "docker.io", "library/debian", None, None),
    ("docker.io/debian", "docker.io", "library/debian", None, None),
    ("index.docker.io/docker/docker", "docker.io", "docker/docker", None, None),
    ("index.docker.io/library/debian", "docker.io", "library/debian", None, None),
    ("index.docker.io/debian", "docker.io", "library/debian", None, None),
    ("127.0.0.1:5000/docker/docker", "127.0.0.1:5000", "docker/docker", None, None),
    ("127.0.0.1:5000/library/debian", "127.0.0.1:5000", "library/debian", None, None),
    # Only Docker Hub gets the library/ prefix.
    ("127.0.0.1:5000/debian", "127.0.0.1:5000", "debian", None, None),
    ("192.168.0.1", "docker.io", "library/192.168.0.1", None, None),
    ("192.168.0.1:80", "docker.io", "library/192.168.0.1", "80", None),
    ("192.168.0.1:8/debian", "192.168.0.1:8", "debian", None, None),
    ("192.168.0.2:25000/debian", "192.168.0.2:25000", "debian", None, None),
    (
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "docker.io",
        "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        None,
        None,
    ),
    ("[fc00::1]:5000/docker", "[fc00::1]:5000", "docker", None, None),
    ("[fc00::1]:5000/docker/docker", "[fc00::1]:5000", "docker/docker", None, None),
    (
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        "[fc00:1:2:3:4:5:6:7]:5000",
        "library/debian",
        None,
        None,
    ),
    # With a registry in front, 64 hex characters are a name rather than an image ID.
    (f"docker.io/{HEX64}", "docker.io", f"library/{HEX64}", None, None),
    ("Docker/docker", "Docker", "docker", None, None),
    ("DOCKER/docker", "DOCKER", "docker", None, None),
    # normalize_test.go: TestValidateRemoteName
    ("docker-rules/docker", "docker.io", "docker-rules/docker", None, None),
    ("docker---rules/docker", "docker.io", "docker---rules/docker", None, None),
    ("doc/docker", "docker.io", "doc/docker", None, None),
    ("d/docker", "docker.io", "d/docker", None, None),
    ("jess/t", "docker.io", "jess/t", None, None),
    ("dock__er/docker", "docker.io", "dock__er/docker", None, None),
    # normalize_test.go: TestParseAnyReference and TestNormalizedSplitHostname
    ("redis", "docker.io", "library/redis", None, None),
    ("redis:latest", "docker.io", "library/redis", "latest", None),
    ("docker.io/library/redis:latest", "docker.io", "library/redis", "latest", None),
    (f"redis@{REDIS_DIGEST}", "docker.io", "library/redis", None, REDIS_DIGEST),
    ("dmcgowan/myapp", "docker.io", "dmcgowan/myapp", None, None),
    ("dmcgowan/myapp:latest", "docker.io", "dmcgowan/myapp", "latest", None),
    (f"dmcgowan/myapp@{REDIS_DIGEST}", "docker.io", "dmcgowan/myapp", None, REDIS_DIGEST),
    (HEX64[:63], "docker.io", f"library/{HEX64[:63]}", None, None),
    ("dbcc1", "docker.io", "library/dbcc1", None, None),
    ("test.com/foo", "test.com", "foo", None, None),
    ("test_com/foo", "docker.io", "test_com/foo", None, None),
    ("docker/migrator", "docker.io", "docker/migrator", None, None),
    ("test.com:8080/foo", "test.com:8080", "foo", None, None),
    ("test-com:8080/foo", "test-com:8080", "foo", None, None),
    ("foo", "docker.io", "library/foo", None, None),
    ("xn--n3h.com/foo", "xn--n3h.com", "foo", None, None),
    ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo", None, None),
    ("docker.io/foo", "docker.io", "library/foo", None, None),
    ("docker.io/library/foo", "docker.io", "library/foo", None, None),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", None, None),
    ("ubuntu-12.04-base", "docker.io", "library/ubuntu-12.04-base", None, None),
    # normalize_test.go: TestParseReferenceWithTagAndDigest
    (
        f"busybox:latest@{BUSYBOX_DIGEST}",
        "docker.io",
        "library/busybox",
        "latest",
        BUSYBOX_DIGEST,
    ),
    # localhost is always a registry, with or without a port...
    ("localhost/foo", "localhost", "foo", None, None),
    ("localhost:5000/foo", "localhost:5000", "foo", None, None),
    (f"localhost:5000/foo@{SHA256_F}", "localhost:5000", "foo", None, SHA256_F),
    ("localhost:5000/a/b/c:v1.2.3", "localhost:5000", "a/b/c", "v1.2.3", None),
    # ...but a single component is a Docker Hub name, however host-like (normalize.go FIXME).
    ("localhost", "docker.io", "library/localhost", None, None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),
    ("example.com", "docker.io", "library/example.com", None, None),
    # registry-1.docker.io is Docker Hub's API host; the identity is docker.io.
    ("registry-1.docker.io/foo", "docker.io", "library/foo", None, None),
    ("registry-1.docker.io/library/foo:1", "docker.io", "library/foo", "1", None),
    ("a/a", "docker.io", "a/a", None, None),
    ("a", "docker.io", "library/a", None, None),
    ("ghcr.io/owner/app:sha-1234abc", "ghcr.io", "owner/app", "sha-1234abc", None),
    # Tags: word characters, '.', '-'; up to 128, not starting with '.' or '-'.
    ("foo:_underscore-start", "docker.io", "library/foo", "_underscore-start", None),
    ("foo:" + "t" * 128, "docker.io", "library/foo", "t" * 128, None),
    ("foo:1.0.0-rc.1_build.5", "docker.io", "library/foo", "1.0.0-rc.1_build.5", None),
    # Separators: '.', '_', '__' and runs of '-' between alphanumerics.
    ("ab_c__d---e/f.g-h", "docker.io", "ab_c__d---e/f.g-h", None, None),
    # Names up to 255 characters, counted on the fully qualified name.
    ("a" * 237, "docker.io", "library/" + "a" * 237, None, None),
    ("a.com/" + "a/" * 124 + "a", "a.com", "a/" * 124 + "a", None, None),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), VALID, ids=repr)
def test_valid_references(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    reference = parse_reference(text)
    assert (reference.registry, reference.repository, reference.tag, reference.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    # The fully qualified form, and the familiar form, parse back to the same reference.
    assert parse_reference(str(reference)) == reference
    if reference.familiar == HEX64:
        # Shortened, a 64-hex name reads as an image ID, as in Docker.
        with pytest.raises(InvalidReferenceError, match="64-byte hexadecimal"):
            parse_reference(reference.familiar)
    else:
        assert parse_reference(reference.familiar) == reference
    assert Reference.parse(text) == reference


# (input, a fragment the error message must contain)
INVALID = [
    ("", "repository name must have at least one component"),
    (":justtag", "has an empty component"),
    (f"@{SHA256_F}", "has an empty component"),
    ("repo@sha256:" + "f" * 34, "sha256 digests must be exactly 64 lowercase hexadecimal"),
    ("Uppercase:tag", "repository name must be lowercase (got 'library/Uppercase')"),
    ("test:5000/Uppercase/lowercase:tag", "repository name must be lowercase"),
    ("a/" * 128 + "a:tag", "repository name must not be more than 255 characters"),
    ("aa/asdf$$^/aa", "repository path 'aa/asdf$$^/aa' is not valid"),
    ("[2001:db8::1]", "IPv6 registry address must be followed by '/'"),
    ("[2001:db8::1]:5000", "IPv6 registry address must be followed by '/'"),
    ("[2001:db8::1]:tag", "IPv6 registry address must be followed by '/'"),
    ("[fe80::1%eth0]:5000/repo", "registry '[fe80::1%eth0]:5000' is not a valid host"),
    ("[fe80::1%@invalidzone]:5000/repo", "is not a valid host"),
    # Zone identifiers are excluded even when they look like hex.
    ("[fe80::1%1]:5000/repo", "registry '[fe80::1%1]:5000' is not a valid host"),
    ("[fe80::1]:port/repo", "registry '[fe80::1]:port' is not a valid host"),
    # normalize_test.go: TestValidateReferenceName (invalid)
    ("https://github.com/docker/docker", "registry 'https:' is not a valid host"),
    ("docker/Docker", "repository name must be lowercase"),
    ("-docker", "repository path 'library/-docker' is not valid"),
    ("-docker/docker", "repository path '-docker/docker' is not valid"),
    ("-docker.io/docker/docker", "registry '-docker.io' is not a valid host"),
    ("docker///docker", "has an empty component"),
    ("docker.io/docker/Docker", "repository name must be lowercase"),
    ("docker.io/docker///docker", "has an empty component"),
    ("[fc00::1]", "IPv6 registry address must be followed by '/'"),
    ("[fc00::1]:5000", "IPv6 registry address must be followed by '/'"),
    ("fc00::1:5000/debian", "registry 'fc00::1:5000' is not a valid host"),
    ("[fe80::1%eth0]:5000/debian", "is not a valid host"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "is not a valid host"),
    (HEX64, "cannot specify 64-byte hexadecimal strings"),
    # normalize_test.go: TestValidateRemoteName (invalid)
    ("docker-/docker", "repository path 'docker-/docker' is not valid"),
    ("-docker-/docker", "is not valid"),
    ("____/____", "repository path '____/____' is not valid"),
    ("_docker/_docker", "is not valid"),
    ("dock..er/docker", "registry 'dock..er' is not a valid host"),
    ("dock_.er/docker", "registry 'dock_.er' is not a valid host"),
    ("dock-.er/docker", "registry 'dock-.er' is not a valid host"),
    ("docker/", "has an empty component"),
    (
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_"
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
        "repository name must not be more than 255 characters",
    ),
    ("-foo", "is not valid"),
    # Registries must be real host names.
    ("test_com:5000/foo", "registry 'test_com:5000' is not a valid host"),
    # distribution accepts this as a registry-less name; there is nothing to pull it from.
    ("foo_bar.com/baz", "registry 'foo_bar.com' is not a valid host"),
    ("Foo_Bar/baz", "repository name must be lowercase"),
    # Tags.
    ("foo:.tag", "tag '.tag' must be 1 to 128"),
    ("foo:-tag", "tag '-tag' must be 1 to 128"),
    ("foo:" + "t" * 129, "must be 1 to 128"),
    ("foo:tag:tag2", "tag 'tag:tag2' must be"),
    ("foo:t@g", "digest 'g' must be 'algorithm:hex'"),
    # A '.' makes the first component a registry, which '_' then makes invalid.
    ("a.b_c/f", "registry 'a.b_c' is not a valid host"),
    # Digests.
    ("foo@sha256:" + "F" * 64, "not all lowercase hex"),
    ("foo@sha256:" + "f" * 63, "got 63 characters"),
    ("foo@sha512:" + "f" * 64, "sha512 digests must be exactly 128"),
    ("foo@sha256", "digest 'sha256' must be 'algorithm:hex'"),
    ("foo@sha256:" + "g" * 64, "must be 'algorithm:hex' with at least 32 hexadecimal"),
    ("foo@md5:" + "f" * 31, "with at least 32 hexadecimal"),
    ("foo@SHA256:" + "f" * 64, "algorithm 'SHA256' must be lowercase"),
    # Lengths: the fully qualified name is limited to 255 characters.
    ("a" * 238, "repository name must not be more than 255 characters"),
    ("a.com/" + "a/" * 125 + "a", "repository name must not be more than 255 characters"),
    # Not a reference at all.
    ("foo bar", "is not valid"),
    ("foo/bar\n", "is not valid"),
    ("fóo", "is not valid"),
    ("foo:tág", "tag 'tág' must be"),
]


@pytest.mark.parametrize(("text", "message"), INVALID, ids=repr)
def test_invalid_references(text: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        parse_reference(text)
    assert message in str(caught.value)
    # The message names the input so a user can find it in their BUILD file.
    assert str(caught.value).startswith(f"invalid image reference {text!r}: ")


def test_errors_are_value_errors_and_oci_errors() -> None:
    with pytest.raises(ValueError, match="must be lowercase"):
        parse_reference("Uppercase:tag")
    with pytest.raises(OCIError):
        parse_reference("")


def test_non_string_input_is_rejected() -> None:
    with pytest.raises(InvalidReferenceError, match="a reference must be a string"):
        parse_reference(b"busybox")  # type: ignore[arg-type]


def test_name_length_limit_is_exactly_255() -> None:
    registry = "r.io/"
    fits = registry + "a" * (MAX_NAME_LENGTH - len(registry))
    assert len(parse_reference(fits + ":tag").name) == MAX_NAME_LENGTH
    with pytest.raises(InvalidReferenceError, match="not be more than 255 characters"):
        parse_reference(fits + "a")


# (input, familiar, fully qualified): normalize_test.go's TestParseRepositoryInfo and more.
FAMILIAR = [
    ("fooo/bar", "fooo/bar", "docker.io/fooo/bar"),
    ("index.docker.io/fooo/bar", "fooo/bar", "docker.io/fooo/bar"),
    ("library/ubuntu", "ubuntu", "docker.io/library/ubuntu"),
    ("docker.io/library/ubuntu", "ubuntu", "docker.io/library/ubuntu"),
    ("nonlibrary/ubuntu", "nonlibrary/ubuntu", "docker.io/nonlibrary/ubuntu"),
    ("other/library", "other/library", "docker.io/other/library"),
    (
        "127.0.0.1:8000/private/moonbase",
        "127.0.0.1:8000/private/moonbase",
        "127.0.0.1:8000/private/moonbase",
    ),
    ("127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase", "127.0.0.1:8000/privatebase"),
    (
        "example.com/private/moonbase",
        "example.com/private/moonbase",
        "example.com/private/moonbase",
    ),
    (
        "example.com:8000/privatebasee",
        "example.com:8000/privatebasee",
        "example.com:8000/privatebasee",
    ),
    ("ubuntu-12.04-base", "ubuntu-12.04-base", "docker.io/library/ubuntu-12.04-base"),
    ("docker.io/foo", "foo", "docker.io/library/foo"),
    # Nested names under library/ are not shortened.
    ("library/foo/bar", "library/foo/bar", "docker.io/library/foo/bar"),
    ("store/foo/bar", "store/foo/bar", "docker.io/store/foo/bar"),
    ("Foo/bar", "Foo/bar", "Foo/bar"),
    ("FOO/bar", "FOO/bar", "FOO/bar"),
    ("busybox:latest", "busybox:latest", "docker.io/library/busybox:latest"),
    (
        f"busybox:latest@{BUSYBOX_DIGEST}",
        f"busybox:latest@{BUSYBOX_DIGEST}",
        f"docker.io/library/busybox:latest@{BUSYBOX_DIGEST}",
    ),
    (
        f"registry-1.docker.io/user/app@{REDIS_DIGEST}",
        f"user/app@{REDIS_DIGEST}",
        f"docker.io/user/app@{REDIS_DIGEST}",
    ),
    ("localhost/foo:1", "localhost/foo:1", "localhost/foo:1"),
]


@pytest.mark.parametrize(("text", "familiar", "full"), FAMILIAR, ids=repr)
def test_familiar_and_fully_qualified_forms(text: str, familiar: str, full: str) -> None:
    reference = parse_reference(text)
    assert reference.familiar == familiar
    assert str(reference) == full


def test_docker_hub_aliases_have_one_identity_and_the_api_host() -> None:
    spellings = [
        "busybox",
        "library/busybox",
        "docker.io/busybox",
        "docker.io/library/busybox",
        "index.docker.io/busybox",
        "index.docker.io/library/busybox",
        "registry-1.docker.io/busybox",
        "registry-1.docker.io/library/busybox",
    ]
    references = {parse_reference(spelling) for spelling in spellings}
    assert references == {Reference("docker.io", "library/busybox")}
    (reference,) = references
    assert reference.api_host == "registry-1.docker.io"
    assert reference.name == "docker.io/library/busybox"
    assert reference.familiar_name == "busybox"


@pytest.mark.parametrize(
    ("text", "api_host"),
    [
        ("ghcr.io/o/app", "ghcr.io"),
        ("localhost:5000/app", "localhost:5000"),
        ("[::1]:5000/app", "[::1]:5000"),
        ("user/app", "registry-1.docker.io"),
    ],
)
def test_api_host(text: str, api_host: str) -> None:
    assert parse_reference(text).api_host == api_host


@pytest.mark.parametrize(
    ("text", "identifier"),
    [
        ("busybox", "latest"),
        ("busybox:1.36", "1.36"),
        (f"busybox@{BUSYBOX_DIGEST}", BUSYBOX_DIGEST),
        # The digest wins: it pins the content whatever the tag now points at.
        (f"busybox:1.36@{BUSYBOX_DIGEST}", BUSYBOX_DIGEST),
    ],
)
def test_identifier(text: str, identifier: str) -> None:
    assert parse_reference(text).identifier == identifier


def test_with_tag_and_with_digest_keep_the_other_part() -> None:
    base = parse_reference("test.com:8000/foo")
    tagged = base.with_tag("TAG5")
    assert str(tagged) == "test.com:8000/foo:TAG5"
    both = tagged.with_digest(Digest.parse(SHA256_F))
    assert str(both) == f"test.com:8000/foo:TAG5@{SHA256_F}"
    assert str(both.with_tag("v2")) == f"test.com:8000/foo:v2@{SHA256_F}"
    assert str(base.with_digest(SHA256_F).with_tag("t")) == f"test.com:8000/foo:t@{SHA256_F}"
    # The original is untouched: references are values.
    assert base.tag is None and base.digest is None


def test_with_tag_and_with_digest_validate() -> None:
    busybox = parse_reference("busybox")
    with pytest.raises(InvalidReferenceError, match="invalid tag '-foo'"):
        busybox.with_tag("-foo")
    with pytest.raises(InvalidReferenceError, match="expected 'algorithm:encoded'"):
        busybox.with_digest("foo")
    with pytest.raises(InvalidReferenceError, match="64 lowercase hexadecimal"):
        busybox.with_digest("sha256:abc")


def test_validate_tag() -> None:
    assert validate_tag("v1.0") == "v1.0"
    for bad in ["", ".v1", "-v1", "a" * 129, "has space", "a/b", "a:b"]:
        with pytest.raises(InvalidReferenceError):
            validate_tag(bad)


def test_parsed_digest() -> None:
    reference = parse_reference(f"busybox@{BUSYBOX_DIGEST}")
    assert reference.parsed_digest == Digest("sha256", BUSYBOX_DIGEST.split(":")[1])
    assert parse_reference("busybox").parsed_digest is None


def test_unregistered_digest_algorithms_follow_the_oci_grammar() -> None:
    # distribution only accepts the algorithms go-digest registers; the OCI spec asks
    # implementations to let unknown but well-formed algorithms through.
    reference = parse_reference("validname@invaliddigest:" + "f" * 64)
    assert reference.digest == "invaliddigest:" + "f" * 64
    assert parse_reference("foo@md5:" + "f" * 32).digest == "md5:" + "f" * 32
    assert parse_reference("foo@sha384:" + "a" * 96).digest == "sha384:" + "a" * 96


class TestConstruction:
    def test_construction_normalises_like_parsing(self) -> None:
        assert Reference("docker.io", "busybox") == parse_reference("busybox")
        assert Reference("index.docker.io", "user/app", "1") == parse_reference("user/app:1")
        assert Reference("registry-1.docker.io", "x").registry == "docker.io"
        assert Reference("ghcr.io", "app").repository == "app"

    def test_construction_accepts_a_digest_value(self) -> None:
        digest = Digest.parse(SHA256_F)
        reference = Reference("ghcr.io", "o/app", digest=digest)  # type: ignore[arg-type]
        assert reference.digest == SHA256_F

    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            (("bad_host.com", "app"), "registry 'bad_host.com' is not a valid host"),
            (("ghcr.io", "App"), "repository name must be lowercase"),
            (("ghcr.io", "a//b"), "repository path 'a//b' is not valid"),
            (("ghcr.io", "app", ".tag"), "tag '.tag' must be"),
            (("ghcr.io", "app", None, "sha256:abc"), "64 lowercase hexadecimal"),
            (("ghcr.io", "a" * 250), "must not be more than 255 characters"),
        ],
    )
    def test_construction_validates(self, fields: tuple[str | None, ...], message: str) -> None:
        with pytest.raises(InvalidReferenceError, match=message):
            Reference(*fields)  # type: ignore[arg-type]

    def test_references_are_frozen_hashable_values(self) -> None:
        reference = parse_reference("busybox:1")
        with pytest.raises(dataclasses.FrozenInstanceError):
            reference.tag = "2"  # type: ignore[misc]
        assert {reference: 1}[parse_reference("docker.io/library/busybox:1")] == 1
        assert dataclasses.replace(reference, tag=None) == parse_reference("busybox")


def test_parse_repository() -> None:
    assert parse_repository("ghcr.io/o/app") == Reference("ghcr.io", "o/app")
    assert parse_repository("busybox").name == "docker.io/library/busybox"
    with pytest.raises(InvalidReferenceError, match=r"without a tag or digest.*tag '1'"):
        parse_repository("ghcr.io/o/app:1")
    with pytest.raises(InvalidReferenceError, match=r"without a tag or digest.*digest"):
        parse_repository(f"ghcr.io/o/app@{SHA256_F}")
    with pytest.raises(InvalidReferenceError, match="must be lowercase"):
        parse_repository("ghcr.io/o/App")


def test_pathological_input_is_rejected_quickly() -> None:
    # The grammar's nested repetitions must not backtrack exponentially.
    import time

    started = time.monotonic()
    for text in ["a-" * 5000 + "!", "x.com/" + "a__" * 3000 + "_", "a." * 5000 + "/b!"]:
        with pytest.raises(InvalidReferenceError):
            parse_reference(text)
    assert time.monotonic() - started < 2


def test_stdlib_modules_import_without_pydantic() -> None:
    # The Pants backend imports these on Python 3.9 where pydantic is not installed.
    src = Path(__file__).resolve().parents[2] / "src/python"
    script = (
        "import sys; sys.modules['pydantic'] = None\n"
        "import pants_oci.core as core\n"
        "import pants_oci.core.reference, pants_oci.core.digest, pants_oci.core.media_types\n"
        "assert core.parse_reference('busybox').familiar == 'busybox'\n"
        "assert core.Digest.parse('sha256:' + 'a' * 64).hex == 'a' * 64\n"
        "print(sorted(m for m in sys.modules if m.startswith('pants_oci')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={"PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pants_oci.core.models" not in result.stdout
