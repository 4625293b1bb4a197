"""``pants-oci`` (``python -m pants_oci.core``): the command line the Pants backend runs.

Every command prints one JSON object on stdout (crane's set: lines, unless given ``--json``),
and progress for long transfers on stderr when it is a terminal (``--progress``; ``-q``
silences it). Credentials come only from the
environment: docker's config (``$DOCKER_CONFIG/config.json``, default
``~/.docker/config.json``) and its credential helpers, and Google application default
credentials; never from the command line (but for ``auth login``, which saves them there).
Exit status is 0 on success, 1 for an error (explained on stderr, one line per cause, with a
hint), 2 for a command line that does not parse. See docs/cli.md for the full contract.

``run`` is the exception: it runs an image in the foreground, and the container's output and
exit status are the command's (errors before the container starts are reported as above).

The package, one job per module: :mod:`~pants_oci.core.cli.parser` (the command line),
:mod:`~pants_oci.core.cli.inputs` (reading and checking what commands are given),
:mod:`~pants_oci.core.cli.output` (what they print), :mod:`~pants_oci.core.cli.report` (errors
and hints), and the commands: :mod:`~pants_oci.core.cli.layer_build`,
:mod:`~pants_oci.core.cli.image_assemble`, :mod:`~pants_oci.core.cli.registry_commands`,
:mod:`~pants_oci.core.cli.layout_commands`, :mod:`~pants_oci.core.cli.crane_commands`,
:mod:`~pants_oci.core.cli.mutate_commands` and :mod:`~pants_oci.core.cli.auth_commands`
(crane's everyday set). Every command imports
what it needs when it runs, so that a process pays only for its own command: e.g. `layer
build` imports neither pydantic nor httpx nor google-auth (tests/core/test_cli_imports.py
checks that they stay out).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from pants_oci.core._transport_options import ProgressCallback
from pants_oci.core.cli.output import PROGRAM, Progress
from pants_oci.core.cli.parser import build_parser, split_container_args, transport_options
from pants_oci.core.cli.report import report
from pants_oci.core.errors import OCIError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the process exit status."""
    words, container_args = split_container_args(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(words)  # exits 2 on a bad command line
    if container_args:
        args.container_args = container_args
    stderr = sys.stderr
    handler = logging.StreamHandler(stderr)
    handler.setFormatter(logging.Formatter(f"{PROGRAM}: %(message)s"))
    package_log = logging.getLogger("pants_oci")
    package_log.addHandler(handler)
    package_log.setLevel(logging.WARNING if args.quiet else logging.INFO)

    shows_progress = not args.quiet and (
        args.progress_mode == "always" or (args.progress_mode == "auto" and stderr.isatty())
    )

    def progress(label: str) -> ProgressCallback | None:
        return Progress(label, stderr) if shows_progress else None

    args.progress = progress
    try:
        status = args.handler(args, transport_options(args))
    except OCIError as error:
        report(error, args, stderr)
        return 1
    except OSError as error:  # an input or output path that cannot be used
        report(error, args, stderr)
        return 1
    except KeyboardInterrupt:
        stderr.write(f"{PROGRAM}: interrupted\n")
        return 130
    finally:
        package_log.removeHandler(handler)
    return 0 if status is None else status
