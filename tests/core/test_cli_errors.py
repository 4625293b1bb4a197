"""How `pants-oci` reports a registry it cannot reach: one attempt when nothing listens there
(a refused connection, a name that does not resolve), retries when the connection broke off,
one line per thing worth saying, and hints in the words of the front end that ran it: the
command line's flags, or the `[oci]` options under Pants (`--hints-for pants`)."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pants_oci.core import cli
from pants_oci.core._settings import CLI, HINTS_FOR, PANTS, Setting, how_to_set, name_of
from pants_oci.core.cli.report import report
from pants_oci.core.errors import TransportError
from pants_oci.core.registry import RegistryClient
from pants_oci.core.transport import TransportOptions
from tests.core.registry_support import RecordedSleeps, hermetic_cli_environment

LOOPBACK = "127.0.0.1"


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No host credentials and no proxy: every connection goes where the test says."""
    hermetic_cli_environment(monkeypatch, tmp_path)


@pytest.fixture
def refusing_host() -> Iterator[str]:
    """`127.0.0.1:PORT` where nothing listens: a bound socket that never listens holds the
    port, so every connection to it is refused (and no other process can take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind((LOOPBACK, 0))
        yield f"{LOOPBACK}:{held.getsockname()[1]}"


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every connection httpx opens, counted (then made as usual)."""
    made: list[tuple[Any, ...]] = []
    real = socket.create_connection

    def counting(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        made.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counting)
    return made


def _fails(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    """Run the command line in this process; it must fail with exit 1: its stderr lines."""
    assert cli.main(["-q", *argv]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


def test_a_refused_connection_is_one_attempt_and_one_message(
    refusing_host: str, connections: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    lines = _fails(capsys, "inspect", f"{refusing_host}/app:1.0")
    assert len(connections) == 1  # not retried: nothing listens there
    assert lines[0] == (
        f"pants-oci: error: cannot reach registry {refusing_host} at http://{refusing_host}: "
        "[Errno 111] Connection refused"
    )
    # httpx's error, httpcore's and the OSError all say "Connection refused": said once.
    assert [line for line in lines if "Connection refused" in line] == lines[:1]
    assert not any("caused by" in line or "retrying" in line for line in lines)
    assert len(lines) == 2 and lines[1].startswith("pants-oci: hint: check that ")


def test_a_name_that_does_not_resolve_is_one_attempt(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lookups: list[str] = []

    def no_such_name(host: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    lines = _fails(capsys, "inspect", "registry.invalid/app:1.0")
    assert lookups == ["registry.invalid"]
    assert lines[0] == (
        "pants-oci: error: cannot reach registry registry.invalid at https://registry.invalid: "
        "[Errno -2] Name or service not known"
    )
    assert len(lines) == 2 and "hint" in lines[1]


class _Server:
    """A loopback TCP server that hands every connection it accepts to ``answer``, and counts
    them."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.accepted = 0
        self._answer = answer
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((LOOPBACK, 0))
        self._socket.listen(8)
        self._socket.settimeout(0.1)
        self.host = f"{LOOPBACK}:{self._socket.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            with connection:
                self._answer(connection)

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


def _reset(connection: socket.socket) -> None:
    """Close with a RST: a connection that breaks off."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _answer_in_plain_http(connection: socket.socket) -> None:
    """Answer a TLS handshake in plain HTTP: a TLS failure, without any certificates."""
    connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def test_a_connection_that_breaks_off_is_still_retried() -> None:
    sleeps = RecordedSleeps()
    options = TransportOptions(sleep=sleeps, max_retries=2)
    with _Server(_reset) as server:
        client = RegistryClient(server.host, "app", auth=httpx.Auth(), options=options)
        with client, pytest.raises(TransportError) as error:
            client.get_manifest("1.0")
    assert server.accepted == 3  # the first try and max_retries more
    assert len(sleeps.calls) == 2
    assert error.value.registry == server.host and not error.value.tls


def test_hints_name_the_pants_options_under_pants(
    refusing_host: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_such_name(host: str, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    host = "registry.invalid"
    pants = " ".join(_fails(capsys, "--hints-for", PANTS, "inspect", f"{host}/app:1"))
    assert f'add "{host}" to `[oci].insecure_registries`' in pants
    assert "set `[oci].ca_bundle` to the CA's PEM file" in pants
    assert "--insecure-registry" not in pants and "--ca-bundle" not in pants

    # The command line's own users read its flags.
    standalone = " ".join(_fails(capsys, "inspect", f"{host}/app:1"))
    assert f"pass --insecure-registry {host}" in standalone
    assert "pass --ca-bundle PATH" in standalone
    assert "[oci]" not in standalone
    monkeypatch.undo()

    # A loopback registry is plain HTTP already: neither setting would help.
    loopback = " ".join(_fails(capsys, "inspect", f"{refusing_host}/app:1"))
    assert f"hint: check that {refusing_host} is up and listening" in loopback
    assert "--insecure-registry" not in loopback and "--ca-bundle" not in loopback


def test_option_errors_name_the_pants_option_under_pants(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = _fails(capsys, "--hints-for", PANTS, "--concurrency", "0", "inspect", "r.io/app:1")
    assert lines == ["pants-oci: error: `[oci].concurrency` must be at least 1, got 0"]
    lines = _fails(capsys, "--concurrency", "0", "inspect", "r.io/app:1")
    assert lines == ["pants-oci: error: --concurrency must be at least 1, got 0"]


@pytest.mark.parametrize(
    ("hints_for", "expected", "unexpected"),
    [
        (CLI, ["pass --ca-bundle PATH", "pass --insecure-registry"], ["[oci]"]),
        (PANTS, ["`[oci].ca_bundle`", "`[oci].insecure_registries`"], ["--ca-bundle"]),
    ],
)
def test_a_tls_failure_says_how_to_fix_it_once_in_the_front_ends_words(
    hints_for: str,
    expected: list[str],
    unexpected: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with _Server(_answer_in_plain_http) as server:
        argv = ["--hints-for", hints_for, "--https-registry", server.host]
        lines = _fails(capsys, *argv, "inspect", f"{server.host}/app:1")
    assert server.accepted == 1  # a certificate does not become valid by asking again
    assert lines[0].startswith(f"pants-oci: error: TLS failure talking to registry {server.host}")
    text = " ".join(lines)
    assert all(words in lines[0] for words in expected), lines
    assert not any(words in text for words in unexpected), lines
    assert not any(line.startswith("pants-oci: hint:") for line in lines)  # said in the error


def test_a_cause_with_something_new_to_say_is_still_reported() -> None:
    low = OSError("disk full")
    middle = ValueError("writing blob sha256:ab failed: disk full")
    middle.__cause__ = low
    error = TransportError("pushing app failed", registry="r.io")
    error.__cause__ = middle
    stream = io.StringIO()
    report(error, None, stream)
    assert stream.getvalue().splitlines() == [
        "pants-oci: error: pushing app failed",
        "pants-oci: caused by: writing blob sha256:ab failed: disk full",  # "disk full": once
        "pants-oci: hint: check that r.io is up and reachable; for a registry that only speaks "
        "plain HTTP pass --insecure-registry r.io, for a private CA pass --ca-bundle PATH (the "
        "CA's PEM file)",
    ]


@pytest.mark.parametrize("setting", list(Setting))
def test_every_setting_has_words_for_every_front_end(setting: Setting) -> None:
    words = {(name_of(setting, f), how_to_set(setting, f, "VALUE")) for f in HINTS_FOR}
    assert len(words) == len(HINTS_FOR)  # each front end its own
    assert name_of(setting, CLI).startswith("--")
    assert "[oci]." in how_to_set(setting, PANTS, "VALUE")
    assert "--" not in name_of(setting, PANTS) + how_to_set(setting, PANTS, "VALUE")
    with pytest.raises(ValueError, match="hints_for"):
        name_of(setting, "docker")


# --- A registry that stops answering --------------------------------------------------------


@pytest.fixture
def stalled_host() -> Iterator[str]:
    """`127.0.0.1:PORT` of a registry that accepts connections and never answers: a listening
    socket nobody reads from (the kernel completes every handshake into its backlog)."""
    with socket.create_server((LOOPBACK, 0), backlog=16) as server:
        yield f"{LOOPBACK}:{server.getsockname()[1]}"


def _timed_failure(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[list[str], float]:
    started = time.monotonic()
    lines = _fails(capsys, *argv)
    return lines, time.monotonic() - started


@pytest.mark.parametrize(
    ("hints_for", "raise_it"),
    [(CLI, "pass --read-timeout 0.75"), (PANTS, "set `[oci].read_timeout` to 0.75")],
)
def test_a_registry_that_never_answers_fails_within_its_bound_naming_the_option(
    stalled_host: str,
    connections: list[tuple[Any, ...]],
    capsys: pytest.CaptureFixture[str],
    hints_for: str,
    raise_it: str,
) -> None:
    flags = ["--hints-for", hints_for, "--read-timeout", "0.25", "--retries", "2"]
    lines, elapsed = _timed_failure(capsys, *flags, "inspect", f"{stalled_host}/app:1")
    bound = TransportOptions(read_timeout=0.25, max_retries=2).stall_limit  # 3 x 0.25 + 1.5
    assert elapsed <= bound + 1.0, (elapsed, bound)  # + process and loopback overhead
    assert len(connections) == 3  # the first try and 2 retries, each waiting 0.25 s
    assert lines[0] == (
        f"pants-oci: error: timed out talking to registry {stalled_host} at "
        f"http://{stalled_host}: it did not answer within 0.25 s (ReadTimeout, 3 attempts); "
        f"if it is only slow, {raise_it} to wait longer"
    )
    assert lines[-1] == f"pants-oci: hint: check that {stalled_host} is up and answering requests"


def test_a_registry_that_never_accepts_names_the_connect_timeout(
    connections: list[tuple[Any, ...]], capsys: pytest.CaptureFixture[str]
) -> None:
    # A backlog of 0 that one connection fills: the kernel drops every later SYN.
    with socket.create_server((LOOPBACK, 0), backlog=0) as server:
        host = f"{LOOPBACK}:{server.getsockname()[1]}"
        with socket.socket() as filler:  # not socket.create_connection: not counted
            filler.connect(server.getsockname())
            flags = ["--connect-timeout", "0.25", "--retries", "1"]
            lines, elapsed = _timed_failure(capsys, *flags, "inspect", f"{host}/app:1")
    assert elapsed <= TransportOptions(connect_timeout=0.25, max_retries=1).stall_limit + 1.0
    assert len(connections) == 2
    assert "it did not connect within 0.25 s (ConnectTimeout, 2 attempts)" in lines[0]
    assert "pass --connect-timeout 0.75 to wait longer" in lines[0]


@pytest.mark.parametrize(
    ("flag", "value", "pants_name", "rule"),
    [
        ("--read-timeout", "0", "read_timeout", "a number of seconds above 0"),
        ("--connect-timeout", "-1", "connect_timeout", "a number of seconds above 0"),
        ("--retries", "-1", "retries", "at least 0"),
    ],
)
def test_timeout_and_retry_flags_are_checked_in_the_front_ends_words(
    capsys: pytest.CaptureFixture[str], flag: str, value: str, pants_name: str, rule: str
) -> None:
    shown = f"{float(value):g}" if "timeout" in flag else value
    assert _fails(capsys, flag, value, "inspect", "r.io/app:1") == [
        f"pants-oci: error: {flag} must be {rule}, got {shown}"
    ]
    assert _fails(capsys, "--hints-for", PANTS, flag, value, "inspect", "r.io/app:1") == [
        f"pants-oci: error: `[oci].{pants_name}` must be {rule}, got {shown}"
    ]
