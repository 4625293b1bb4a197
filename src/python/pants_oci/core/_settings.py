"""How a message names a setting the user can change: each front end spells it its own way.

The same core runs as a library, as the ``pants-oci`` command line, and under Pants (which
runs the command line with ``--hints-for pants``). An error or a hint that tells the user to
change a setting takes the words from here, so that a Pants user reads `[oci].ca_bundle`
where a command-line user reads ``--ca-bundle PATH`` and a library user reads
``TransportOptions(ca_bundle=...)``. Which front end is asking travels as
``TransportOptions.hints_for``.

The standard library only, Python 3.9-compatible: the command line imports it for every
command.
"""

from __future__ import annotations

from enum import Enum

__all__ = ["CLI", "HINTS_FOR", "LIBRARY", "PANTS", "Setting", "how_to_set", "name_of"]

LIBRARY = "library"
CLI = "cli"
PANTS = "pants"
HINTS_FOR = (LIBRARY, CLI, PANTS)


class Setting(Enum):
    """A setting that an error or a hint may tell the user to change."""

    INSECURE_REGISTRY = "insecure_registry"
    CA_BUNDLE = "ca_bundle"
    CONCURRENCY = "concurrency"
    CONNECT_TIMEOUT = "connect_timeout"
    READ_TIMEOUT = "read_timeout"
    RETRIES = "retries"
    PLATFORM = "platform"
    RUNTIME = "runtime"
    MAX_UNPACKED_SIZE = "max_unpacked_size"


# For each setting and front end: (its name, how to set it to `{value}`).
_SPELLINGS: dict[Setting, dict[str, tuple[str, str]]] = {
    Setting.INSECURE_REGISTRY: {
        LIBRARY: (
            "TransportOptions(insecure_registries=...)",
            "list {value} in TransportOptions(insecure_registries=...)",
        ),
        CLI: ("--insecure-registry", "pass --insecure-registry {value}"),
        PANTS: ("`[oci].insecure_registries`", 'add "{value}" to `[oci].insecure_registries`'),
    },
    Setting.CA_BUNDLE: {  # no value: the CA's PEM file, wherever the user keeps it
        LIBRARY: (
            "TransportOptions(ca_bundle=...)",
            "set TransportOptions(ca_bundle=...) to the CA's PEM file",
        ),
        CLI: ("--ca-bundle", "pass --ca-bundle PATH (the CA's PEM file)"),
        PANTS: (
            "`[oci].ca_bundle`",
            "set `[oci].ca_bundle` to the CA's PEM file (relative to the build root)",
        ),
    },
    Setting.CONCURRENCY: {
        LIBRARY: (
            "TransportOptions(max_concurrency=...)",
            "set TransportOptions(max_concurrency={value})",
        ),
        CLI: ("--concurrency", "pass --concurrency {value}"),
        PANTS: ("`[oci].concurrency`", "set `[oci].concurrency` to {value}"),
    },
    Setting.CONNECT_TIMEOUT: {
        LIBRARY: (
            "TransportOptions(connect_timeout=...)",
            "set TransportOptions(connect_timeout={value})",
        ),
        CLI: ("--connect-timeout", "pass --connect-timeout {value}"),
        PANTS: ("`[oci].connect_timeout`", "set `[oci].connect_timeout` to {value}"),
    },
    Setting.READ_TIMEOUT: {
        LIBRARY: (
            "TransportOptions(read_timeout=...)",
            "set TransportOptions(read_timeout={value})",
        ),
        CLI: ("--read-timeout", "pass --read-timeout {value}"),
        PANTS: ("`[oci].read_timeout`", "set `[oci].read_timeout` to {value}"),
    },
    Setting.RETRIES: {
        LIBRARY: ("TransportOptions(max_retries=...)", "set TransportOptions(max_retries={value})"),
        CLI: ("--retries", "pass --retries {value}"),
        PANTS: ("`[oci].retries`", "set `[oci].retries` to {value}"),
    },
    Setting.PLATFORM: {
        LIBRARY: ("the platform argument", "pass platform={value}"),
        CLI: ("--platform (or the image config's platform)", "pass --platform {value}"),
        PANTS: (
            "the target's `platforms` field (or `[oci].default_platform`, for a target that "
            "sets none)",
            "set the target's `platforms` field (or `[oci].default_platform`) to {value}",
        ),
    },
    Setting.RUNTIME: {
        LIBRARY: ("the runtime argument", 'pass runtime="{value}"'),
        CLI: ("--runtime", "pass --runtime {value}"),
        PANTS: ("`[oci].runtime`", 'set `[oci].runtime` to "{value}"'),
    },
    Setting.MAX_UNPACKED_SIZE: {
        LIBRARY: (
            "RunSettings(max_unpacked_size=...)",
            "set RunSettings(max_unpacked_size={value})",
        ),
        CLI: ("--max-unpacked-size", "pass --max-unpacked-size {value}"),
        PANTS: ("`[oci].run_max_unpacked_size`", "set `[oci].run_max_unpacked_size` to {value}"),
    },
}


def _spelling(setting: Setting, hints_for: str) -> tuple[str, str]:
    if hints_for not in HINTS_FOR:
        raise ValueError(f"hints_for must be one of {', '.join(HINTS_FOR)}, got {hints_for!r}")
    return _SPELLINGS[setting][hints_for]


def name_of(setting: Setting, hints_for: str) -> str:
    """What ``hints_for``'s user calls ``setting``: ``--concurrency``, `[oci].concurrency`."""
    return _spelling(setting, hints_for)[0]


def how_to_set(setting: Setting, hints_for: str, value: str = "") -> str:
    """An instruction to set ``setting`` to ``value``, in ``hints_for``'s words, e.g.
    ``pass --insecure-registry r:5000`` or ``add "r:5000" to `[oci].insecure_registries```
    (the CA bundle takes no value: it is always "the CA's PEM file")."""
    return _spelling(setting, hints_for)[1].format(value=value)
