"""Parse ``WWW-Authenticate`` headers (RFC 9110 section 11.6.1) into challenges.

A header may hold several challenges, and a response several headers::

    Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull,push",
    Basic realm="registry"

Quoted values may contain commas, spaces and backslash escapes. Scheme and parameter names
are case-insensitive; they come back lowercased.

Private: used by :mod:`pants_oci.core.auth`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_SCHEME_RE = re.compile(rf"[\s,]*({_TCHARS})")
_PARAM_RE = re.compile(rf"\s*({_TCHARS})\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|({_TCHARS}))\s*")
# token68 (RFC 9110): e.g. `Negotiate abc123==`; kept so the parser can step over it.
_TOKEN68_RE = re.compile(r"\s+[A-Za-z0-9\-._~+/]+=*\s*(?=,|$)")
_QUOTED_PAIR_RE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "bearer", "basic", ...
    params: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.params.get(name.lower())


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    challenges: list[Challenge] = []
    for header in headers:
        challenges += _parse_header(header)
    return challenges


def _parse_header(text: str) -> list[Challenge]:
    challenges: list[Challenge] = []
    position = 0
    while position < len(text):
        scheme = _SCHEME_RE.match(text, position)
        if scheme is None:
            break  # trailing whitespace/commas, or garbage we cannot read
        position = scheme.end()
        params: dict[str, str] = {}
        token68 = _TOKEN68_RE.match(text, position)
        if token68 is not None and _PARAM_RE.match(text, position) is None:
            position = token68.end()
        while True:
            param = _PARAM_RE.match(text, position)
            if param is None:
                break
            name, quoted, plain = param.groups()
            params[name.lower()] = (
                _QUOTED_PAIR_RE.sub(r"\1", quoted) if quoted is not None else plain
            )
            position = param.end()
            if position < len(text) and text[position] == ",":
                position += 1
        challenges.append(Challenge(scheme.group(1).lower(), params))
    return challenges
