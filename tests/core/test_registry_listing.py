"""Tag and repository listing, following `Link: <...>; rel="next"` pagination."""

from __future__ import annotations

import json
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from pants_oci.core import media_types
from pants_oci.core.registry import RegistryClient
from tests.core.registry_support import client_for, image_manifest
from tests.harness.fixtures import RegistryFactory
from tests.harness.proxies import FaultProxy
from tests.harness.registry import Registry


def _push_tags(client: RegistryClient, tags: list[str]) -> None:
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "n": secrets.token_hex(8)}
    ).encode()
    client.upload_blob(config)
    raw = image_manifest(config, [], media_types.OCI_MANIFEST)
    for tag in tags:
        client.put_manifest(raw, tag=tag)


@pytest.mark.parametrize("absolute", [False, True], ids=["relative-link", "absolute-link"])
def test_list_tags_follows_pages(
    registry_anonymous: Registry, unique_repo: str, absolute: bool
) -> None:
    tags = [f"v{i:03d}" for i in range(120)]
    with FaultProxy(registry_anonymous.url) as proxy:
        # distribution 2.8 answers every tag at once; the proxy pages them as newer registries
        # (distribution 3, GHCR, Harbor) do: sorted, `n` per page, `last` to continue after.
        def paginate(path: str, body: bytes) -> tuple[bytes, dict[str, str]]:
            query = parse_qs(urlsplit(path).query)
            size = int(query["n"][0])
            last = query.get("last", [""])[0]
            remaining = [t for t in sorted(json.loads(body)["tags"]) if t > last]
            page = remaining[:size]
            headers = {}
            if len(remaining) > size:
                target = f"/v2/{unique_repo}/tags/list?{urlencode({'n': size, 'last': page[-1]})}"
                if absolute:
                    target = proxy.url + target
                headers["Link"] = f'<{target}>; rel="next"'
            return json.dumps({"name": unique_repo, "tags": page}).encode(), headers

        with client_for(registry_anonymous, unique_repo, host=proxy.host) as client:
            _push_tags(client, tags)
            proxy.rewrite_body("GET", r"/tags/list", paginate)
            assert client.list_tags(page_size=50) == tags
        pages = proxy.seen("GET", r"/tags/list")
    assert [parse_qs(urlsplit(r.path).query).get("last") for r in pages] == [
        None,
        ["v049"],
        ["v099"],
    ]
    assert all(parse_qs(urlsplit(r.path).query)["n"] == ["50"] for r in pages)


def test_list_tags_without_paging(registry_token: Registry, unique_repo: str) -> None:
    tags = [f"t{i}" for i in range(30)]
    with client_for(registry_token, unique_repo) as client:
        _push_tags(client, tags)
        assert sorted(client.list_tags()) == sorted(tags)


@pytest.mark.parametrize("mode", ["anonymous", "token"])
def test_catalog_follows_the_registry_pages(registry_factory: RegistryFactory, mode: str) -> None:
    registry = registry_factory(mode)
    repositories = sorted(f"team/app-{i}" for i in range(7))
    for repository in repositories:
        with client_for(registry, repository) as client:
            client.upload_blob(secrets.token_bytes(100))
            _push_tags(client, ["latest"])
    with FaultProxy(registry.url) as proxy:
        with client_for(registry, repositories[0], host=proxy.host) as client:
            assert client.catalog(page_size=3) == repositories
            assert client.catalog() == repositories
        pages = proxy.seen("GET", r"/v2/_catalog")
    # Real distribution pages: 3 + 3 + 1 (a 401 round trip in token mode repeats a path).
    assert len({r.path for r in pages if "n=3" in r.path}) == 3
