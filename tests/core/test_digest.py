"""Digest parsing and validation, and the streaming hashing helpers."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from pants_oci.core.digest import (
    Digest,
    HashingReader,
    HashingWriter,
    UnsupportedAlgorithmError,
    new_hasher,
    sha256_of_bytes,
    sha256_of_file,
    verify_bytes,
)
from pants_oci.core.errors import DigestMismatchError, InvalidDigestError, OCIError

EMPTY_SHA256 = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
HELLO_SHA256 = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


@pytest.mark.parametrize(
    ("text", "algorithm", "encoded"),
    [
        (EMPTY_SHA256, "sha256", EMPTY_SHA256[7:]),
        ("sha512:" + "0" * 128, "sha512", "0" * 128),
        ("sha384:" + "a" * 96, "sha384", "a" * 96),
        # Unregistered algorithms need only match the OCI grammar.
        (
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
            "multihash+base58",
            "QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        ),
        (
            "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
            "sha256+b64u",
            "LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
        ),
        ("md5:d41d8cd98f00b204e9800998ecf8427e", "md5", "d41d8cd98f00b204e9800998ecf8427e"),
        ("a.b-c_d:x=", "a.b-c_d", "x="),
    ],
)
def test_valid_digests(text: str, algorithm: str, encoded: str) -> None:
    digest = Digest.parse(text)
    assert (digest.algorithm, digest.hex, digest.encoded) == (algorithm, encoded, encoded)
    assert str(digest) == text
    assert Digest(algorithm, encoded) == digest


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "found no ':'"),
        ("sha256", "found no ':'"),
        (EMPTY_SHA256[7:], "found no ':'"),
        (":" + "a" * 64, "algorithm '' must be lowercase"),
        ("sha256:", "encoded value '' may only contain"),
        ("SHA256:" + "a" * 64, "algorithm 'SHA256' must be lowercase"),
        ("sha256:" + "A" * 64, "not all lowercase hex"),
        ("sha256:" + "a" * 63, "exactly 64 lowercase hexadecimal characters, got 63"),
        ("sha256:" + "a" * 65, "got 65"),
        ("sha256:" + "g" * 64, "not all lowercase hex"),
        ("sha512:" + "a" * 64, "sha512 digests must be exactly 128"),
        ("sha+:" + "a" * 64, "algorithm 'sha+' must be"),
        ("+sha:" + "a" * 64, "algorithm '+sha' must be"),
        ("sha..256:abc", "algorithm 'sha..256' must be"),
        ("sha256:abc def", "may only contain"),
        ("md5:abc/def", "may only contain"),
        ("md5:abc:def", "may only contain"),
    ],
)
def test_invalid_digests(text: str, message: str) -> None:
    with pytest.raises(InvalidDigestError) as caught:
        Digest.parse(text)
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"invalid digest {text!r}")


def test_invalid_digest_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        Digest.parse("nope")
    with pytest.raises(OCIError):
        Digest.parse("nope")


def test_construction_validates() -> None:
    with pytest.raises(InvalidDigestError, match="exactly 64"):
        Digest("sha256", "abc")


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidDigestError, match="must be a string"):
        Digest.parse(b"sha256:" + b"a" * 64)  # type: ignore[arg-type]


def test_digests_are_ordered_hashable_values() -> None:
    a = Digest.parse("sha256:" + "a" * 64)
    b = Digest.parse("sha256:" + "b" * 64)
    assert sorted([b, a]) == [a, b]
    assert {a: 1}[Digest.parse(str(a))] == 1
    assert a.short == "a" * 12
    assert Digest.coerce(str(a)) == a and Digest.coerce(a) is a


def test_sha256_of_bytes() -> None:
    assert str(sha256_of_bytes(b"")) == EMPTY_SHA256
    assert str(sha256_of_bytes(b"hello")) == HELLO_SHA256


@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_sha256_of_file(tmp_path: Path, chunk: int) -> None:
    content = bytes(range(256)) * 1000 + b"tail"
    path = tmp_path / "blob"
    path.write_bytes(content)
    digest, size = sha256_of_file(path, chunk=chunk)
    assert size == len(content)
    assert digest == Digest("sha256", hashlib.sha256(content).hexdigest())
    assert sha256_of_file(str(path), chunk=chunk) == (digest, size)


def test_sha256_of_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert sha256_of_file(path) == (Digest.parse(EMPTY_SHA256), 0)


def test_sha256_of_file_rejects_bad_chunk(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match="chunk size must be positive"):
        sha256_of_file(path, chunk=0)


def test_verify_bytes() -> None:
    verify_bytes(b"hello", HELLO_SHA256)
    verify_bytes(b"hello", Digest.parse(HELLO_SHA256))
    sha512 = "sha512:" + hashlib.sha512(b"hello").hexdigest()
    verify_bytes(b"hello", sha512)
    with pytest.raises(DigestMismatchError) as caught:
        verify_bytes(b"hello!", HELLO_SHA256, subject="blob")
    message = str(caught.value)
    # Both digests are named, so the user can tell which content was wrong.
    assert HELLO_SHA256 in message
    assert str(sha256_of_bytes(b"hello!")) in message
    assert "for blob" in message
    assert caught.value.expected == HELLO_SHA256
    assert caught.value.actual == str(sha256_of_bytes(b"hello!"))


def test_verify_with_an_algorithm_we_cannot_compute() -> None:
    with pytest.raises(UnsupportedAlgorithmError, match="cannot compute 'md5'"):
        verify_bytes(b"", "md5:d41d8cd98f00b204e9800998ecf8427e")
    with pytest.raises(UnsupportedAlgorithmError):
        new_hasher("blake3")


class TestHashingReader:
    def test_hashes_and_counts_what_is_read(self) -> None:
        content = b"0123456789" * 1000
        reader = HashingReader(io.BytesIO(content))
        pieces = [reader.read(7), reader.read(100), reader.read()]
        assert b"".join(pieces) == content
        assert reader.read(10) == b""
        assert reader.size == len(content)
        assert reader.digest() == sha256_of_bytes(content)
        assert reader.readable()
        reader.verify(sha256_of_bytes(content), expected_size=len(content))

    def test_digest_covers_only_what_was_read(self) -> None:
        reader = HashingReader(io.BytesIO(b"hello world"))
        assert reader.read(5) == b"hello"
        assert reader.size == 5
        assert str(reader.digest()) == HELLO_SHA256

    def test_verify_raises_naming_both_digests(self) -> None:
        reader = HashingReader(io.BytesIO(b"tampered"))
        reader.read()
        with pytest.raises(DigestMismatchError) as caught:
            reader.verify(HELLO_SHA256, subject="layer")
        assert HELLO_SHA256 in str(caught.value)
        assert str(sha256_of_bytes(b"tampered")) in str(caught.value)

    def test_verify_checks_the_size(self) -> None:
        reader = HashingReader(io.BytesIO(b"hello"))
        reader.read()
        with pytest.raises(DigestMismatchError, match="expected 6 bytes, got 5"):
            reader.verify(HELLO_SHA256, expected_size=6)

    def test_other_algorithms(self) -> None:
        reader = HashingReader(io.BytesIO(b"hello"), algorithm="sha512")
        reader.read()
        assert reader.digest() == Digest("sha512", hashlib.sha512(b"hello").hexdigest())
        with pytest.raises(ValueError, match="this stream computes sha512 digests"):
            reader.verify(HELLO_SHA256)

    def test_works_with_copyfileobj(self) -> None:
        import shutil

        content = b"x" * 100_000
        reader = HashingReader(io.BytesIO(content))
        sink = io.BytesIO()
        shutil.copyfileobj(reader, sink, 4096)
        assert sink.getvalue() == content
        assert reader.digest() == sha256_of_bytes(content)


class TestHashingWriter:
    def test_forwards_hashes_and_counts(self) -> None:
        sink = io.BytesIO()
        writer = HashingWriter(sink)
        assert writer.write(b"hel") == 3
        assert writer.write(memoryview(b"lo")) == 2
        writer.flush()
        assert sink.getvalue() == b"hello"
        assert writer.size == 5
        assert str(writer.digest()) == HELLO_SHA256
        assert writer.writable()
        writer.verify(HELLO_SHA256, expected_size=5)

    def test_without_a_sink_only_hashes(self) -> None:
        writer = HashingWriter()
        writer.write(b"hello")
        writer.flush()
        assert str(writer.digest()) == HELLO_SHA256
        assert writer.size == 5

    def test_empty(self) -> None:
        assert str(HashingWriter().digest()) == EMPTY_SHA256

    def test_verify_mismatch(self) -> None:
        writer = HashingWriter()
        writer.write(b"hello")
        with pytest.raises(
            DigestMismatchError, match=f"expected {EMPTY_SHA256}, got {HELLO_SHA256}"
        ):
            writer.verify(EMPTY_SHA256)

    def test_works_as_a_gzip_target(self) -> None:
        import gzip

        sink = io.BytesIO()
        writer = HashingWriter(sink)
        with gzip.GzipFile(fileobj=writer, mode="wb", mtime=0) as compressed:
            compressed.write(b"layer contents")
        assert writer.size == len(sink.getvalue())
        assert writer.digest() == sha256_of_bytes(sink.getvalue())
        assert gzip.decompress(sink.getvalue()) == b"layer contents"
