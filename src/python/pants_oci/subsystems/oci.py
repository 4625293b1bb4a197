"""The `[oci]` options: how images are built and pushed, for every `oci_image` in the repo."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pants.option.option_types import (
    BoolOption,
    DictOption,
    EnumOption,
    FloatOption,
    IntOption,
    ShellStrListOption,
    StrListOption,
    StrOption,
)
from pants.option.subsystem import Subsystem
from pants.util.docutil import bin_name
from pants.util.strutil import softwrap


class LayerCompression(Enum):
    gzip = "gzip"
    zstd = "zstd"
    none = "none"


class Runtime(Enum):
    auto = "auto"
    runc = "runc"
    podman = "podman"


class OciSubsystem(Subsystem):
    options_scope = "oci"
    help = "Options for building and pushing OCI container images without a Docker daemon."

    insecure_registries = StrListOption(
        help=softwrap(
            """
            Registries (`host` or `host:port`) to talk to over plain HTTP. Loopback registries
            (`localhost`, `127.0.0.1`) always use plain HTTP; everything else uses HTTPS.
            """
        ),
    )
    registries = DictOption[Any](
        help=softwrap(
            """
            Registries by alias, as `[docker].registries` in Pants' docker backend:

                [oci.registries.ghcr]
                address = "ghcr.io/acme"     # required: a host, with a port and path if needed
                default = true               # for targets that set no `registries`
                repository = "{target_repository}"  # instead of the target's `repository`
                extra_image_tags = ["{tag_vars.GIT_COMMIT}"]  # tags for this registry only
                skip_push = false            # true: `pants publish` skips this registry

            A target names a registry by alias with a leading `@` (`registries=["@ghcr"]`) or
            by its address; either way it gets the registry's options. Targets that set no
            `registries` go to every registry with `default = true` (an alias `default` is one
            unless it says otherwise).

            `repository`, when set, replaces the target's `repository` in this registry; it
            may use `{name}`, `{directory}`, `{parent_directory}`, `{target_repository}` (the
            target's repository) and `{default_repository}` (`{name}`). `extra_image_tags`
            are tags pushed to this registry only, on top of the target's `image_tags`, with
            the same placeholders (`{hash}`, `{tag_vars.NAME}`, ...), resolved with the same
            values. `skip_push = true` keeps `pants publish` from pushing to this registry
            (it lists those names as skipped); the image is still named there in
            `image-info.json` and docker-archives.
            """
        ),
    )
    default_registries = StrListOption(
        help=softwrap(
            """
            Registries that `pants publish` pushes images to when their target sets no
            `registries`, e.g. `["ghcr.io/acme"]`: the short form of a registry with
            `default = true` in `[oci].registries`, whose options apply if it is configured
            there too. Both may be used together.
            """
        ),
    )
    ca_bundle = StrOption(
        default=None,
        help=softwrap(
            """
            A PEM file of extra certificate authorities to trust for registries with private
            certificates, as a path relative to the build root. The system's authorities are
            always trusted.
            """
        ),
    )
    concurrency = IntOption(
        default=4,
        help="How many blobs to upload or download at once, per image.",
    )
    # The defaults are the core library's (TransportOptions; a test holds them equal).
    connect_timeout = FloatOption(
        default=10.0,
        help="Seconds to wait for a connection to a registry (and its TLS handshake).",
        advanced=True,
    )
    read_timeout = FloatOption(
        default=10.0,
        help=softwrap(
            """
            Seconds a registry may send nothing (or take nothing we send) before the attempt
            fails. It is not a limit on a whole transfer: every byte that moves starts it
            again, so a large layer on a slow link is never cut, while a registry that stops
            answering fails a request after `[oci].retries` + 1 attempts (57.5 s at most with
            the defaults: 5 attempts of 10 s and the backoff between them). The answer to
            the request that completes a blob upload may take a second more per 32 MiB
            uploaded, the time a registry takes to verify and store it.
            """
        ),
    )
    retries = IntOption(
        default=4,
        help=softwrap(
            """
            How many times a failed registry request is tried again (connection resets,
            timeouts, HTTP 408, 429 and 5xx; with backoff, or the wait the registry asks for
            in `Retry-After`, up to 60 s). A refused connection or a host name that does not
            resolve fails at once. 0 disables retries.
            """
        ),
        advanced=True,
    )
    compression = EnumOption(
        default=LayerCompression.gzip,
        help=softwrap(
            """
            How layers are compressed. `gzip` works with every registry and runtime; `zstd`
            gives smaller, faster layers for runtimes that support it (containerd 1.5+,
            podman); `none` stores plain tar. Changing it changes every layer digest.
            """
        ),
    )
    compression_level = IntOption(
        default=1,
        help=softwrap(
            """
            The compression level (gzip with python-isal: 0-3; zstd: 1-19). Changing it
            changes layer digests.
            """
        ),
        advanced=True,
    )
    python_layer_budget = IntOption(
        default=40,
        help=softwrap(
            """
            The most layers a `pex_binary`'s third-party distributions take in an image with
            `python_layout="venv"`, unless its `python_layer_budget` field says otherwise.
            Changing it regroups the distributions of images over the budget.
            """
        ),
    )
    supply_chain = BoolOption(
        default=True,
        help=softwrap(
            """
            Attach an SBOM (SPDX 2.3 and CycloneDX 1.6 JSON) and SLSA v1 provenance (an in-toto
            statement) to every image, unless its `supply_chain` field says otherwise: written
            into the OCI layout by `package`, pushed as OCI 1.1 referrers by `publish`. They
            are byte-reproducible (their only time is `[oci].source_date_epoch`).
            """
        ),
    )
    default_platform = StrOption(
        default="linux/amd64",
        help=softwrap(
            """
            The platform (`os/architecture[/variant]`) of images whose target sets no
            `platforms`: it picks the base image's manifest from a multi-platform index.
            A fixed default, rather than the host's, keeps builds identical across machines.
            """
        ),
    )
    lockfile = StrOption(
        default="oci.lock.json",
        help=softwrap(
            """
            The base-image lockfile, relative to the build root: every `base` written as a tag
            (`python:3.11-slim`), pinned to its index digest and each platform's manifest
            digest. `pants generate-oci-lockfile` writes it (check it in);
            `pants generate-oci-lockfile --check` reports bases whose tags moved upstream.
            Builds read only this file, never the tags.
            """
        ),
    )
    runtime = EnumOption(
        default=Runtime.auto,
        help=softwrap(
            """
            What `pants run` runs images with: `runc` (needs root), `podman`, or `auto`: runc
            when it is installed and Pants runs as root, else podman. No Docker daemon either
            way: the image is unpacked from its OCI layout.
            """
        ),
    )
    env_vars = StrListOption(
        default=[],
        help=softwrap(
            """
            Environment variables for the processes that talk to registries (`pants publish`'s
            push, base image pulls, `generate-oci-lockfile`'s tag look-ups), besides the ones
            they always get (`HOME`, `PATH`, `DOCKER_CONFIG`, `GOOGLE_APPLICATION_CREDENTIALS`,
            `CLOUDSDK_CONFIG` and the proxy variables), as `[docker].env_vars`: `NAME` to pass
            the value from Pants' environment (when set), or `NAME=value`. E.g. what a
            credential helper reads: `["AWS_PROFILE", "AWS_REGION"]` for
            docker-credential-ecr-login, or the `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, ...
            variables of an ACR helper. These processes are never cached; no cached process
            (layers, assembly) ever gets these variables.
            """
        ),
        advanced=True,
    )
    run_env_vars = StrListOption(
        default=[],
        help=softwrap(
            """
            Environment variables `pants run` sets in the container, over the image's own:
            `NAME=value`, or `NAME` to pass the value from Pants' environment (when set), as
            `docker run -e` does.
            """
        ),
    )
    run_args = ShellStrListOption(
        default=[],
        help=softwrap(
            f"""
            Options for the container that `pants run` starts, as `docker run` spells them:
            `--mount=SOURCE:DESTINATION` (a host file or directory, relative to the build root
            or absolute, mounted read-only), `--workdir=DIR`, `--user=USER[:GROUP]` (over the
            image's) and `--env=NAME[=VALUE]` (as `[oci].run_env_vars`). For example:
            `{bin_name()} run --oci-run-args="--mount=config:/etc/app --user=1000"
            app:image`.
            """
        ),
    )
    run_max_unpacked_size = IntOption(
        default=None,
        help=softwrap(
            """
            The most bytes of files an image may unpack to for `pants run` (with runc): a
            larger one is refused from its tar headers, before the disk fills (a few KiB of
            gzip can expand to gigabytes). Default: the free space of the temporary
            directory's file system, less 1 GiB.
            """
        ),
        advanced=True,
    )
    tag_vars = StrListOption(
        default=[],
        help=softwrap(
            """
            Values that `image_tags` may use as `{tag_vars.NAME}`: `NAME=value`, or `NAME` to
            read the value from Pants' environment, e.g. `["GIT_COMMIT"]` in CI for
            `image_tags=["{tag_vars.GIT_COMMIT}"]` (as `[docker].build_args` feed the docker
            backend's `{build_args.NAME}`). What feeds a tag is declared here, and a tag is
            part of its image's build: a new value re-runs only the image's assembly.
            """
        ),
    )
    source_date_epoch = IntOption(
        default=0,
        help=softwrap(
            """
            The timestamp (seconds since 1970) written as every layer entry's mtime and as the
            image's `created` time, as in the reproducible-builds convention SOURCE_DATE_EPOCH.
            The default, 0, makes images independent of when they were built.
            """
        ),
        advanced=True,
    )
    interpreter_constraints = StrListOption(
        default=["CPython>=3.9.2,<3.14"],
        help=softwrap(
            """
            The Python versions the image tool (the pants_oci core library, which builds
            layers and talks to registries) may run on. Supported: CPython 3.9 to 3.13, the
            default (3.9.2 or later: the pinned cryptography refuses 3.9.0 and 3.9.1). One of
            them must be installed where Pants looks for interpreters:
            `[python-bootstrap].search_path` (by default `PATH` and pyenv's).
            Pants 2.17's own pex (v2.1.137) cannot run Python 3.12 or later: for those, set
            `[pex-cli].version` to a pex that can, such as v2.1.148 (tested).

            Pants runs the tool on the lowest version that matches. Every supported version
            builds byte-identical layers and images, but the tool's process cache keys differ
            between interpreters, so machines that share a remote cache should narrow this to
            one version they all have, e.g. `["CPython==3.11.*"]`.
            """
        ),
        advanced=True,
    )
    requirements = StrListOption(
        default=[
            "httpx==0.28.1",
            'pydantic==2.14.4; python_version >= "3.10"',
            'pydantic==2.13.5; python_version < "3.10"',
            "pathspec==1.1.1",
            "isal==1.9.1",
            "zstandard==0.25.0",
            'google-auth==2.63.0; python_version >= "3.10"',
            'google-auth==2.50.0; python_version < "3.10"',
        ],
        help=softwrap(
            """
            The requirements of the image tool. They are pinned because they decide layer
            bytes (compression) and protocol behaviour: change them only together. On Python
            3.9, which newer pydantic and google-auth releases no longer support, the tool
            uses the last releases that do.
            """
        ),
        advanced=True,
    )
