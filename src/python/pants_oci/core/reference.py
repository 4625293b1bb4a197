"""Image references (``registry/repository:tag@digest``), parsed and normalised like Docker.

The grammar and the normalisation follow github.com/distribution/reference (the package
Docker, containerd and the registry itself use)::

    reference   := name [ ":" tag ] [ "@" digest ]
    name        := [domain "/"] path
    domain      := host [":" port]
    host        := domain-name | "[" IPv6 "]"
    path        := path-component ["/" path-component]*
    path-component := [a-z0-9]+ (separator [a-z0-9]+)*     separator := [._] | "__" | "-"+
    tag         := [\\w][\\w.-]{0,127}
    digest      := algorithm ":" hex{32,}

Normalisation, as ``ParseNormalizedNamed`` does it: the first ``/``-separated component
names a registry only if it contains ``.`` or ``:``, is ``localhost``, or has uppercase
letters; otherwise the registry is Docker Hub (``docker.io``), where a single-component
path gets the ``library/`` prefix of official images. ``index.docker.io`` and
``registry-1.docker.io`` are aliases of ``docker.io``.

Stdlib only, and valid on Python 3.9: the Pants backend imports this module.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from pants_oci.core.digest import Digest
from pants_oci.core.errors import InvalidDigestError, InvalidReferenceError

__all__ = [
    "DEFAULT_REGISTRY",
    "DEFAULT_TAG",
    "DOCKER_HUB_API_HOST",
    "MAX_NAME_LENGTH",
    "InvalidReferenceError",
    "Reference",
    "parse_reference",
    "parse_repository",
    "validate_tag",
]

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
# The host Docker Hub's registry API is actually served from.
DOCKER_HUB_API_HOST = "registry-1.docker.io"
OFFICIAL_REPOSITORY_PREFIX = "library/"
MAX_NAME_LENGTH = 255

# Names that all mean Docker Hub; they normalise to DEFAULT_REGISTRY.
_DOCKER_HUB_ALIASES = frozenset({"index.docker.io", DOCKER_HUB_API_HOST})

# --- The grammar, built the way regexp.go builds it. -------------------------------------
_ALPHANUMERIC = r"[a-z0-9]+"
# One period, one or two underscores, or any number of dashes.
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_NAME_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_OPTIONAL_PORT = r"(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
# Compressed or full IPv6 in brackets; zone identifiers and IPv4-mapped forms are excluded.
_IPV6_ADDRESS = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = _DOMAIN_NAME_COMPONENT + r"(?:\." + _DOMAIN_NAME_COMPONENT + r")*"
_HOST = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6_ADDRESS + r")"
_DOMAIN_AND_PORT = _HOST + _OPTIONAL_PORT
_PATH_COMPONENT = _ALPHANUMERIC + r"(?:" + _SEPARATOR + _ALPHANUMERIC + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_NAME = r"(?:" + _DOMAIN_AND_PORT + r"/)?" + _REMOTE_NAME

# re.ASCII: Go's \w is ASCII-only, Python's is Unicode by default. Every use below is a
# fullmatch, since Python's `$` would also match before a trailing newline.
_REFERENCE_RE = re.compile(
    r"(" + _NAME + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?", re.ASCII
)
_NAME_PARTS_RE = re.compile(r"(?:(" + _DOMAIN_AND_PORT + r")/)?(" + _REMOTE_NAME + r")", re.ASCII)
_DOMAIN_RE = re.compile(_DOMAIN_AND_PORT, re.ASCII)
_REMOTE_NAME_RE = re.compile(_REMOTE_NAME, re.ASCII)
_TAG_RE = re.compile(_TAG, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)
# A bare 64-hex string is an image ID, which Docker refuses to read as a repository name.
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)

_TAG_RULES = "must be 1 to 128 letters, digits, '_', '.' or '-', and must not start with '.' or '-'"
_PATH_RULES = (
    "each '/'-separated component must be lowercase letters and digits, optionally "
    "separated by '.', '_', '__' or dashes"
)


def _invalid(reference: str, reason: str) -> InvalidReferenceError:
    return InvalidReferenceError(f"invalid image reference {reference!r}: {reason}")


def _split_docker_domain(text: str) -> Tuple[str, str]:
    """Split ``text`` into (registry, rest), normalising Docker Hub names.

    Mirrors ``splitDockerDomain`` in normalize.go, plus the ``registry-1.docker.io`` alias.
    """
    maybe_domain, slash, maybe_rest = text.partition("/")
    if not slash:
        # A single component ("ubuntu", "ubuntu:22.04") is an official Docker Hub image,
        # even when it looks like a host ("localhost", "example.com:5000").
        return DEFAULT_REGISTRY, OFFICIAL_REPOSITORY_PREFIX + text

    if maybe_domain == "localhost":
        domain, rest = maybe_domain, maybe_rest
    elif maybe_domain in _DOCKER_HUB_ALIASES:
        domain, rest = DEFAULT_REGISTRY, maybe_rest
    elif "." in maybe_domain or ":" in maybe_domain:
        domain, rest = maybe_domain, maybe_rest
    elif maybe_domain.lower() != maybe_domain:
        # Uppercase is never valid in a path, so an uppercase first component must be a host.
        domain, rest = maybe_domain, maybe_rest
    else:
        domain, rest = DEFAULT_REGISTRY, text

    if domain == DEFAULT_REGISTRY and "/" not in rest:
        rest = OFFICIAL_REPOSITORY_PREFIX + rest
    return domain, rest


def _path_of(rest: str) -> str:
    """The repository path at the front of ``path[:tag][@digest]``."""
    return rest.partition("@")[0].partition(":")[0]


def _explain_format_error(text: str, domain: str, rest: str) -> str:
    """Say which part of a reference that failed the grammar is at fault.

    Only the message depends on this; whether the reference is valid is decided by the
    full regular expression alone.
    """
    if "/" not in text and text.startswith("["):
        return "an IPv6 registry address must be followed by '/' and a repository path"
    name_and_tag, at, digest = rest.partition("@")
    if at and not _DIGEST_RE.fullmatch(digest):
        return f"digest {digest!r} must be 'algorithm:hex' with at least 32 hexadecimal characters"
    path, colon, tag = name_and_tag.partition(":")
    if colon and not _TAG_RE.fullmatch(tag):
        return f"tag {tag!r} {_TAG_RULES}"
    if not _DOMAIN_RE.fullmatch(domain):
        return f"registry {domain!r} is not a valid host name, IPv4 or bracketed IPv6 address"
    if "" in path.split("/"):
        return f"repository path {path!r} has an empty component"
    return f"repository path {path!r} is not valid: {_PATH_RULES}"


def validate_tag(tag: str) -> str:
    """Return ``tag`` if it is a valid tag, else raise InvalidReferenceError."""
    if not isinstance(tag, str) or not _TAG_RE.fullmatch(tag):
        raise InvalidReferenceError(f"invalid tag {tag!r}: a tag {_TAG_RULES}")
    return tag


@dataclass(frozen=True)
class Reference:
    """A normalised image reference.

    ``registry`` is the registry's identity (``docker.io`` for Docker Hub under any of its
    names); ``repository`` is the path within it (``library/busybox``). Either or both of
    ``tag`` and ``digest`` may be set. Construction validates every part and applies the
    same Docker Hub normalisation as parsing, so ``Reference("docker.io", "busybox")`` is
    ``docker.io/library/busybox``.
    """

    registry: str
    repository: str
    tag: Optional[str] = None
    digest: Optional[str] = None

    def __post_init__(self) -> None:
        registry, repository = self.registry, self.repository
        if registry in _DOCKER_HUB_ALIASES:
            registry = DEFAULT_REGISTRY
        if registry == DEFAULT_REGISTRY and "/" not in repository:
            repository = OFFICIAL_REPOSITORY_PREFIX + repository
        digest = self.digest
        if isinstance(digest, Digest):
            digest = str(digest)
        # Frozen: normalised values have to be written past the dataclass's __setattr__.
        object.__setattr__(self, "registry", registry)
        object.__setattr__(self, "repository", repository)
        object.__setattr__(self, "digest", digest)

        text = str(self)
        if not isinstance(registry, str) or not _DOMAIN_RE.fullmatch(registry):
            raise _invalid(
                text,
                f"registry {registry!r} is not a valid host name, IPv4 or bracketed IPv6 address",
            )
        if not isinstance(repository, str) or not _REMOTE_NAME_RE.fullmatch(repository):
            if isinstance(repository, str) and _REMOTE_NAME_RE.fullmatch(repository.lower()):
                raise _invalid(text, "repository name must be lowercase")
            raise _invalid(text, f"repository path {repository!r} is not valid: {_PATH_RULES}")
        if len(self.name) > MAX_NAME_LENGTH:
            raise _invalid(
                text,
                f"repository name must not be more than {MAX_NAME_LENGTH} characters "
                f"({self.name!r} has {len(self.name)})",
            )
        if self.tag is not None and (
            not isinstance(self.tag, str) or not _TAG_RE.fullmatch(self.tag)
        ):
            raise _invalid(text, f"tag {self.tag!r} {_TAG_RULES}")
        if digest is not None:
            try:
                Digest.parse(digest)
            except InvalidDigestError as exc:
                raise _invalid(text, str(exc)) from None

    @classmethod
    def parse(cls, text: str) -> Reference:
        """Parse ``text`` as Docker does; see :func:`parse_reference`."""
        return parse_reference(text)

    @property
    def name(self) -> str:
        """``registry/repository``, with neither tag nor digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The name as ``docker`` prints it: ``busybox``, ``user/app``, ``ghcr.io/o/app``."""
        if self.registry != DEFAULT_REGISTRY:
            return self.name
        official = self.repository[len(OFFICIAL_REPOSITORY_PREFIX) :]
        # Only a single component under library/ is shortened, as familiarizeName does.
        if self.repository.startswith(OFFICIAL_REPOSITORY_PREFIX) and "/" not in official:
            return official
        return self.repository

    @property
    def familiar(self) -> str:
        """The short form ``docker`` prints: ``busybox:1.36``, ``user/app@sha256:...``."""
        return self.familiar_name + self._suffix()

    @property
    def api_host(self) -> str:
        """The host to send registry API requests to (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API_HOST if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def identifier(self) -> str:
        """What to ask the registry's manifest endpoint for: digest, else tag, else latest."""
        if self.digest is not None:
            return self.digest
        if self.tag is not None:
            return self.tag
        return DEFAULT_TAG

    @property
    def parsed_digest(self) -> Optional[Digest]:
        """The digest as a :class:`Digest`, when there is one."""
        return None if self.digest is None else Digest.parse(self.digest)

    def with_tag(self, tag: str) -> Reference:
        """This reference with ``tag`` (any digest is kept)."""
        return dataclasses.replace(self, tag=validate_tag(tag))

    def with_digest(self, digest: Union[Digest, str]) -> Reference:
        """This reference with ``digest`` (any tag is kept)."""
        try:
            parsed = Digest.coerce(digest)
        except InvalidDigestError as exc:
            raise _invalid(f"{self.name}@{digest}", str(exc)) from None
        return dataclasses.replace(self, digest=str(parsed))

    def _suffix(self) -> str:
        tag = f":{self.tag}" if self.tag is not None else ""
        digest = f"@{self.digest}" if self.digest is not None else ""
        return tag + digest

    def __str__(self) -> str:
        """The fully qualified form, e.g. ``docker.io/library/busybox:latest``."""
        return self.name + self._suffix()


def parse_reference(text: str) -> Reference:
    """Parse and normalise an image reference exactly as ``docker pull`` reads one.

    Raises InvalidReferenceError naming the input and what is wrong with it.
    """
    if not isinstance(text, str):
        raise _invalid(repr(text), "a reference must be a string")
    if text == "":
        raise _invalid(text, "repository name must have at least one component")
    if _IDENTIFIER_RE.fullmatch(text):
        raise _invalid(
            text,
            "cannot specify 64-byte hexadecimal strings as a repository name "
            "(this looks like an image ID; use 'name@sha256:<hex>' for a digest)",
        )

    domain, rest = _split_docker_domain(text)
    path = _path_of(rest)
    if path.lower() != path:
        raise _invalid(text, f"repository name must be lowercase (got {path!r})")

    candidate = f"{domain}/{rest}"
    match = _REFERENCE_RE.fullmatch(candidate)
    if match is None:
        lowered = candidate.lower()
        if lowered != candidate and _REFERENCE_RE.fullmatch(lowered):
            raise _invalid(text, "repository name must be lowercase")
        raise _invalid(text, _explain_format_error(text, domain, rest))

    name, tag, digest_text = match.groups()
    if len(name) > MAX_NAME_LENGTH:
        raise _invalid(
            text,
            f"repository name must not be more than {MAX_NAME_LENGTH} characters "
            f"({name!r} has {len(name)})",
        )

    name_parts = _NAME_PARTS_RE.fullmatch(name)
    registry = name_parts.group(1) if name_parts else None
    if name_parts is None or registry is None:
        # distribution would accept e.g. "my_host.com/app" as a registry-less name; there
        # is no registry to pull that from, so say why instead.
        raise _invalid(
            text, f"registry {domain!r} is not a valid host name, IPv4 or bracketed IPv6 address"
        )

    digest: Optional[str] = None
    if digest_text is not None:
        try:
            digest = str(Digest.parse(digest_text))
        except InvalidDigestError as exc:
            raise _invalid(text, str(exc)) from None

    return Reference(registry, name_parts.group(2), tag, digest)


def parse_repository(text: str) -> Reference:
    """Parse a repository name that must have neither tag nor digest (``ghcr.io/o/app``)."""
    reference = parse_reference(text)
    if reference.tag is not None or reference.digest is not None:
        raise _invalid(
            text,
            "expected a repository name without a tag or digest "
            f"(parsed as repository {reference.name!r}"
            + (f", tag {reference.tag!r}" if reference.tag is not None else "")
            + (f", digest {reference.digest!r}" if reference.digest is not None else "")
            + ")",
        )
    return reference
