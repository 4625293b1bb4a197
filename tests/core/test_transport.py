"""Transport settings: schemes, proxies, Retry-After, backoff, and bounded concurrency."""

from __future__ import annotations

import email.utils
import threading

import httpx
import pytest

from pants_oci.core.registry import map_bounded, next_link
from pants_oci.core.transport import (
    TransportOptions,
    parse_retry_after,
    proxy_for,
    proxy_for_url,
    registry_base_url,
    uses_plain_http,
)


@pytest.mark.parametrize(
    ("registry", "url"),
    [
        ("ghcr.io", "https://ghcr.io"),
        ("docker.io", "https://registry-1.docker.io"),
        ("index.docker.io", "https://registry-1.docker.io"),
        ("registry.example.com:5000", "https://registry.example.com:5000"),
        ("localhost", "http://localhost"),
        ("localhost:5000", "http://localhost:5000"),
        ("127.0.0.1:5000", "http://127.0.0.1:5000"),
        ("127.1.2.3:80", "http://127.1.2.3:80"),
        ("[::1]:5000", "http://[::1]:5000"),
        ("10.0.0.1:5000", "https://10.0.0.1:5000"),  # private is not loopback
        ("128.0.0.1", "https://128.0.0.1"),
    ],
)
def test_registry_base_url(registry: str, url: str) -> None:
    assert registry_base_url(registry) == url


def test_insecure_and_https_registries_override_the_defaults() -> None:
    options = TransportOptions(
        insecure_registries=frozenset({"registry.lan:5000", "plain.lan"}),
        https_registries=frozenset({"127.0.0.1:5443"}),
    )
    assert registry_base_url("registry.lan:5000", options) == "http://registry.lan:5000"
    assert registry_base_url("plain.lan:8080", options) == "http://plain.lan:8080"  # by host
    assert registry_base_url("registry.lan:6000", options) == "https://registry.lan:6000"
    assert registry_base_url("127.0.0.1:5443", options) == "https://127.0.0.1:5443"
    assert uses_plain_http("127.0.0.1:5000", options)


def test_proxy_comes_from_options_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "internal.corp")
    assert proxy_for("ghcr.io") == "http://proxy.corp:3128"
    assert proxy_for("registry.internal.corp") is None
    assert proxy_for("localhost:5000") is None  # loopback never goes through a proxy
    assert proxy_for("ghcr.io", TransportOptions(proxy="http://other:8080")) == "http://other:8080"
    assert proxy_for("ghcr.io", TransportOptions(proxy="")) is None  # explicitly none


def test_proxy_for_reads_an_injected_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://from-os-environ:1")
    monkeypatch.setenv("NO_PROXY", "")
    env = {
        "HTTPS_PROXY": "http://upper:3128",
        "https_proxy": "http://lower:3128",  # lowercase wins, as in curl and urllib
        "HTTP_PROXY": "http://plain:3128",
        "NO_PROXY": "internal.corp, .example.com,exact.io:5000",
    }
    assert proxy_for("ghcr.io", env=env) == "http://lower:3128"
    insecure = TransportOptions(insecure_registries=frozenset({"registry.lan:5000"}))
    assert proxy_for("registry.lan:5000", insecure, env=env) == "http://plain:3128"
    assert proxy_for("registry.internal.corp", env=env) is None
    assert proxy_for("internal.corp", env=env) is None
    assert proxy_for("a.example.com", env=env) is None
    assert proxy_for("notexample.com", env=env) == "http://lower:3128"
    assert proxy_for("exact.io:5000", env=env) is None
    assert proxy_for("ghcr.io", env={}) is None  # not os.environ's HTTPS_PROXY
    assert proxy_for("ghcr.io", env={"ALL_PROXY": "http://all:1", "NO_PROXY": "*"}) is None
    assert proxy_for("ghcr.io", env={"ALL_PROXY": "http://all:1"}) == "http://all:1"
    assert proxy_for_url("https://oauth2.googleapis.com/token", env=env) == "http://lower:3128"
    assert proxy_for_url("http://127.0.0.1:9/token", env=env) is None


def test_httpx_log_records_lose_their_query_strings() -> None:
    import logging

    from pants_oci.core.transport import install_log_redaction

    install_log_redaction()
    install_log_redaction()  # idempotent
    logger = logging.getLogger("httpx")
    assert len([f for f in logger.filters if type(f).__name__ == "_RedactQueries"]) == 1
    url = httpx.URL("https://s3.example.com/bucket/blob?X-Amz-Signature=secret&X-Amz-Date=1")
    record = logger.makeRecord(
        "httpx", logging.INFO, __file__, 1, 'HTTP Request: %s %s "%s %d %s"',
        ("GET", url, "HTTP/1.1", 200, "OK"), None,
    )  # fmt: skip
    for log_filter in logger.filters:
        log_filter.filter(record)
    assert record.getMessage() == (
        'HTTP Request: GET https://s3.example.com/bucket/blob "HTTP/1.1 200 OK"'
    )
    text = logger.makeRecord(
        "httpx", logging.INFO, __file__, 1, "see https://h/p?token=secret now", (), None
    )
    for log_filter in logger.filters:
        log_filter.filter(text)
    assert text.getMessage() == "see https://h/p now"


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(email.utils.formatdate(now + 45, usegmt=True), now=now) == 45.0
    assert parse_retry_after(email.utils.formatdate(now - 45, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_grows_and_is_capped() -> None:
    options = TransportOptions(backoff_base=0.5, max_retry_wait=3.0)
    for attempt, ceiling in enumerate([0.5, 1.0, 2.0, 3.0, 3.0]):
        waits = [options.backoff(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)
        assert len(set(waits)) > 1  # jittered


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        TransportOptions(max_concurrency=0)
    with pytest.raises(ValueError, match="max_retries"):
        TransportOptions(max_retries=-1)
    with pytest.raises(ValueError, match="read_timeout"):
        TransportOptions(read_timeout=0)
    with pytest.raises(ValueError, match="connect_timeout"):
        TransportOptions(connect_timeout=-1.0)


# --- How long a registry that stops answering can keep us -----------------------------------


def test_the_defaults_fail_a_registry_that_never_answers_within_a_minute() -> None:
    """Computed from the configuration: a real stall at the defaults would take the minute
    (tests/core/test_cli_errors.py fails a real one, fast, with small timeouts)."""
    options = TransportOptions()
    attempts = options.max_retries + 1
    # Every attempt waits its whole timeout (a connection that never comes, or an answer),
    # and every backoff its ceiling (half of it fixed, half jitter).
    per_attempt = max(options.connect_timeout, options.read_timeout)
    backoffs = [
        min(options.backoff_base * 2**n, options.max_retry_wait) for n in range(attempts - 1)
    ]
    for attempt, ceiling in enumerate(backoffs):
        assert max(options.backoff(attempt) for _ in range(200)) <= ceiling
    worst = attempts * per_attempt + sum(backoffs)
    assert worst <= 60, worst
    assert options.stall_limit == worst
    # Still retries, and waits long enough for a registry that is merely slow.
    assert options.max_retries >= 3 and options.read_timeout >= 10 and options.connect_timeout >= 5
    # The timeouts are per socket operation (a stall), never a limit on a whole transfer.
    timeout = options.timeout
    assert (timeout.connect, timeout.read, timeout.write) == (
        options.connect_timeout, options.read_timeout, options.read_timeout
    )  # fmt: skip


def test_the_command_line_defaults_are_the_librarys() -> None:
    from pants_oci.core.cli.parser import build_parser, transport_options

    args = build_parser().parse_args(["inspect", "r.io/app:1"])
    options, defaults = transport_options(args), TransportOptions()
    assert (options.connect_timeout, options.read_timeout, options.max_retries) == (
        defaults.connect_timeout, defaults.read_timeout, defaults.max_retries
    )  # fmt: skip
    flags = ["--connect-timeout", "2", "--read-timeout", "3.5", "--retries", "0", "inspect", "x"]
    options = transport_options(build_parser().parse_args(flags))
    assert (options.connect_timeout, options.read_timeout, options.max_retries) == (2, 3.5, 0)


def test_the_answer_that_commits_an_upload_may_take_longer_the_larger_the_blob() -> None:
    options = TransportOptions(read_timeout=10)
    assert options.commit_timeout(0).read == 10
    assert options.commit_timeout(2 * 1024**3).read == 10 + 64  # 2 GiB: a second per 32 MiB
    assert options.commit_timeout(2 * 1024**3).connect == options.connect_timeout


def test_retry_wait_honours_retry_after_up_to_the_cap() -> None:
    options = TransportOptions(max_retry_wait=60.0)
    assert options.retry_wait(0, 7.0) == 7.0
    assert options.retry_wait(3, 0.0) == 0.0
    assert options.retry_wait(0, 3600.0) == 60.0  # capped: documented as max_retry_wait
    assert 0.25 <= options.retry_wait(0) <= 0.5  # none asked for: the backoff


def test_map_bounded_runs_in_parallel_up_to_the_limit() -> None:
    limit = 3
    barrier = threading.Barrier(limit, timeout=10)  # breaks unless `limit` calls overlap
    lock = threading.Lock()
    active, peak = 0, 0

    def work(item: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        if item < limit:
            barrier.wait()
        with lock:
            active -= 1
        return item * 2

    assert map_bounded(work, range(10), limit) == [i * 2 for i in range(10)]
    assert peak == limit


def test_map_bounded_raises_the_first_failure() -> None:
    def work(item: int) -> int:
        if item in (2, 5):
            raise ValueError(f"item {item}")
        return item

    with pytest.raises(ValueError, match="item 2"):
        map_bounded(work, range(8), 4)


@pytest.mark.parametrize(
    ("header", "target"),
    [
        ('</v2/app/tags/list?last=b&n=2>; rel="next"', "/v2/app/tags/list?last=b&n=2"),
        (
            "<https://r.example/v2/_catalog?last=x>; rel=next",
            "https://r.example/v2/_catalog?last=x",
        ),
        ('<a>; rel="prev", <b>; rel="next"', "b"),
        ('<a>; rel="prev"', None),
        (None, None),
    ],
)
def test_next_link(header: str | None, target: str | None) -> None:
    assert next_link(header) == target
