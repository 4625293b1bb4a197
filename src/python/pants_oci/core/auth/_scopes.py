"""Token scopes: what a request needs (``repository:team/app:pull,push``), declared by the
registry client or implied by the request's ``/v2/`` path and method, and the scope sets that
tokens are asked for and cached under.

Private: import SCOPES_EXTENSION and repository_scope from :mod:`pants_oci.core.auth`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

SCOPES_EXTENSION = "pants_oci.scopes"
"""``request.extensions`` key: a tuple of scope strings the request needs."""

# /v2/<name>/<endpoint>: greedy name, so "a/blobs/b/manifests/x" is repository "a/blobs/b".
_API_PATH_RE = re.compile(
    r"/v2/(?P<name>.+)/(?:blobs/uploads/.*|blobs/[^/]+|manifests/[^/]+|tags/list|referrers/[^/]+)"
)


def repository_scope(repository: str, *actions: str) -> str:
    """``repository:<name>:<actions>``, e.g. ``repository_scope("team/app", "pull", "push")``."""
    if not actions:
        raise ValueError("repository_scope needs at least one action, e.g. 'pull'")
    return f"repository:{repository}:{','.join(actions)}"


# --- Scope sets: {(resource type, name): actions} ----------------------------------------
Scopes = dict[tuple[str, str], frozenset[str]]


def parse_scopes(texts: Iterable[str]) -> Scopes:
    scopes: Scopes = {}
    for text in texts:
        for scope in text.split():
            resource_type, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if not resource_type or not name:
                # Not type:name:actions; keep it verbatim so it is still asked for.
                key, parsed = (scope, ""), frozenset[str]()
            else:
                key, parsed = (resource_type, name), frozenset(a for a in actions.split(",") if a)
            scopes[key] = scopes.get(key, frozenset()) | parsed
    return scopes


def merge_scopes(a: Scopes, b: Scopes) -> Scopes:
    merged = dict(a)
    for key, actions in b.items():
        merged[key] = merged.get(key, frozenset()) | actions
    return merged


def covers(granted: Scopes, needed: Scopes) -> bool:
    return all(key in granted and actions <= granted[key] for key, actions in needed.items())


def render_scopes(scopes: Scopes) -> list[str]:
    return sorted(
        f"{kind}:{name}:{','.join(sorted(actions))}" if name else kind
        for (kind, name), actions in scopes.items()
    )


def implied_scopes(request: httpx.Request) -> Scopes:
    """The scopes a request that declares none needs, from its ``/v2/`` path and method."""
    path = request.url.path
    if path == "/v2/_catalog":
        return {("registry", "catalog"): frozenset({"*"})}
    match = _API_PATH_RE.fullmatch(path)
    if match is None:
        return {}
    if request.method in ("GET", "HEAD"):
        actions = {"pull"}
    elif request.method == "DELETE":
        actions = {"delete"}
    else:
        actions = {"pull", "push"}
    return {("repository", match.group("name")): frozenset(actions)}


def repository_of(request: httpx.Request, needed: Scopes) -> str | None:
    """The repository a request is for: its ``/v2/`` path's, else its first repository scope."""
    match = _API_PATH_RE.fullmatch(request.url.path)
    if match is not None:
        return match.group("name")
    return next((name for (kind, name) in needed if kind == "repository"), None)
