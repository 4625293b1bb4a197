"""Content digests (``algorithm:encoded``) and streaming hashing helpers.

A digest names a blob by its hash, as the OCI image spec defines it::

    digest     ::= algorithm ":" encoded
    algorithm  ::= component (separator component)*     component ::= [a-z0-9]+
    separator  ::= [+._-]
    encoded    ::= [a-zA-Z0-9=_-]+

Registered algorithms are held to their exact form (``sha256`` is 64 lowercase hex
characters, ``sha512`` is 128); others only have to match the grammar, as the spec asks of
implementations that meet an algorithm they do not know.

Stdlib only, and valid on Python 3.9: the Pants backend imports this module.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Optional, Protocol, Tuple, Union

from pants_oci.core.errors import DigestMismatchError, InvalidDigestError, OCIError

__all__ = [
    "DEFAULT_ALGORITHM",
    "Digest",
    "DigestMismatchError",
    "HashingReader",
    "HashingWriter",
    "InvalidDigestError",
    "UnsupportedAlgorithmError",
    "new_hasher",
    "sha256_of_bytes",
    "sha256_of_file",
    "verify_bytes",
]

DEFAULT_ALGORITHM = "sha256"

_ALGORITHM_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*")
_ENCODED_RE = re.compile(r"[a-zA-Z0-9=_-]+")
_LOWER_HEX_RE = re.compile(r"[a-f0-9]+")

# Algorithms whose encoded form is fixed: lowercase hex of the hash's full length.
# sha384 is not registered by OCI but go-digest (and so every registry) accepts it;
# blake3 is registered by image-spec 1.1 though hashlib cannot compute it.
_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128, "blake3": 64}

# Algorithms we can actually compute (and so verify content against).
_HASHLIB_ALGORITHMS = ("sha256", "sha384", "sha512")


class UnsupportedAlgorithmError(OCIError, ValueError):
    """Content cannot be hashed with the algorithm asked for."""

    def __init__(self, algorithm: str) -> None:
        supported = ", ".join(_HASHLIB_ALGORITHMS)
        super().__init__(
            f"cannot compute {algorithm!r} digests; supported algorithms are {supported}"
        )
        self.algorithm = algorithm


def _invalid_digest(text: str, reason: str) -> InvalidDigestError:
    return InvalidDigestError(f"invalid digest {text!r}: {reason}")


def _mismatch(
    expected: Digest,
    actual: Digest,
    *,
    expected_size: Optional[int] = None,
    actual_size: Optional[int] = None,
    subject: Optional[str] = None,
) -> DigestMismatchError:
    what = f" for {subject}" if subject else ""
    message = f"digest mismatch{what}: expected {expected}, got {actual}"
    if expected_size is not None and expected_size != actual_size:
        message += f" (expected {expected_size} bytes, got {actual_size})"
    return DigestMismatchError(message, expected=str(expected), actual=str(actual))


def _validation_error(algorithm: str, encoded: str) -> Optional[str]:
    """Say what is wrong with a digest's two parts, or return None if nothing is."""
    if not _ALGORITHM_RE.fullmatch(algorithm):
        return (
            f"algorithm {algorithm!r} must be lowercase letters and digits, "
            "optionally joined by one of '+._-'"
        )
    if not _ENCODED_RE.fullmatch(encoded):
        return f"encoded value {encoded!r} may only contain letters, digits, '=', '_' and '-'"
    expected_length = _HEX_LENGTHS.get(algorithm)
    if expected_length is not None and (
        len(encoded) != expected_length or not _LOWER_HEX_RE.fullmatch(encoded)
    ):
        return (
            f"{algorithm} digests must be exactly {expected_length} lowercase hexadecimal "
            f"characters, got {len(encoded)} characters"
            + ("" if _LOWER_HEX_RE.fullmatch(encoded) else " that are not all lowercase hex")
        )
    return None


@dataclass(frozen=True, order=True)
class Digest:
    """A validated digest such as ``sha256:e3b0c442...``.

    ``hex`` is the encoded part after the colon; for every algorithm we can compute it
    is lowercase hexadecimal.
    """

    algorithm: str
    hex: str

    def __post_init__(self) -> None:
        problem = _validation_error(self.algorithm, self.hex)
        if problem is not None:
            raise _invalid_digest(f"{self.algorithm}:{self.hex}", problem)

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and validate ``algorithm:encoded``."""
        if not isinstance(text, str):
            raise _invalid_digest(repr(text), "a digest must be a string")
        algorithm, colon, encoded = text.partition(":")
        if not colon:
            raise _invalid_digest(text, "expected 'algorithm:encoded', found no ':'")
        problem = _validation_error(algorithm, encoded)
        if problem is not None:
            raise _invalid_digest(text, problem)
        return cls(algorithm, encoded)

    @classmethod
    def coerce(cls, value: Union[Digest, str]) -> Digest:
        """Return ``value`` as a Digest, parsing it when it is a string."""
        return value if isinstance(value, Digest) else cls.parse(value)

    @property
    def encoded(self) -> str:
        """The part after the colon (the OCI spec's name for ``hex``)."""
        return self.hex

    @property
    def short(self) -> str:
        """The first 12 characters of the encoded value, as `docker images` shows ids."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class _Hasher(Protocol):
    def update(self, data: Union[bytes, memoryview], /) -> None: ...

    def hexdigest(self) -> str: ...


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


def new_hasher(algorithm: str = DEFAULT_ALGORITHM) -> _Hasher:
    """Return a fresh hashlib object for ``algorithm``."""
    if algorithm not in _HASHLIB_ALGORITHMS:
        raise UnsupportedAlgorithmError(algorithm)
    return hashlib.new(algorithm)


def _digest_of_bytes(data: bytes, algorithm: str) -> Digest:
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return Digest(algorithm, hasher.hexdigest())


def sha256_of_bytes(data: bytes) -> Digest:
    """The sha256 digest of ``data``."""
    return Digest("sha256", hashlib.sha256(data).hexdigest())


def sha256_of_file(path: Union[str, os.PathLike[str]], chunk: int = 1 << 20) -> Tuple[Digest, int]:
    """Hash a file in ``chunk``-sized reads; return its sha256 digest and size in bytes."""
    if chunk <= 0:
        raise ValueError(f"chunk size must be positive, got {chunk}")
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            hasher.update(block)
            size += len(block)
    return Digest("sha256", hasher.hexdigest()), size


def verify_bytes(data: bytes, expected: Union[Digest, str], subject: Optional[str] = None) -> None:
    """Raise DigestMismatchError unless ``data`` hashes to ``expected``."""
    expected_digest = Digest.coerce(expected)
    actual = _digest_of_bytes(data, expected_digest.algorithm)
    if actual != expected_digest:
        raise _mismatch(expected_digest, actual, subject=subject)


class _HashingStream:
    """What the reader and writer share: a running hash and byte count."""

    def __init__(self, algorithm: str) -> None:
        self._algorithm = algorithm
        self._hasher = new_hasher(algorithm)
        self._size = 0

    def _account(self, data: bytes) -> None:
        self._hasher.update(data)
        self._size += len(data)

    @property
    def size(self) -> int:
        """How many bytes have passed through so far."""
        return self._size

    def digest(self) -> Digest:
        """The digest of every byte that has passed through so far."""
        return Digest(self._algorithm, self._hasher.hexdigest())

    def verify(
        self,
        expected: Union[Digest, str],
        expected_size: Optional[int] = None,
        subject: Optional[str] = None,
    ) -> None:
        """Raise DigestMismatchError unless what passed through matches ``expected``."""
        expected_digest = Digest.coerce(expected)
        if expected_digest.algorithm != self._algorithm:
            raise ValueError(
                f"cannot verify {expected_digest}: this stream computes {self._algorithm} digests"
            )
        actual = self.digest()
        size_differs = expected_size is not None and expected_size != self._size
        if actual != expected_digest or size_differs:
            raise _mismatch(
                expected_digest,
                actual,
                expected_size=expected_size,
                actual_size=self._size,
                subject=subject,
            )


class HashingReader(_HashingStream):
    """Wrap a binary file-like object; hash and count every byte read through it."""

    def __init__(self, source: _Readable, algorithm: str = DEFAULT_ALGORITHM) -> None:
        super().__init__(algorithm)
        self._source = source

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._account(data)
        return data

    def readable(self) -> bool:
        return True


class HashingWriter(_HashingStream):
    """Hash and count every byte written; pass it on to ``sink`` when one is given."""

    def __init__(
        self, sink: Optional[_Writable] = None, algorithm: str = DEFAULT_ALGORITHM
    ) -> None:
        super().__init__(algorithm)
        self._sink = sink

    def write(self, data: Union[bytes, bytearray, memoryview]) -> int:
        chunk = bytes(data)
        if self._sink is not None:
            self._sink.write(chunk)
        self._account(chunk)
        return len(chunk)

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        flush = getattr(self._sink, "flush", None)
        if flush is not None:
            flush()
