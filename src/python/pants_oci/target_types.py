"""The `oci_image` target and its fields; and `oci_layer` (layer_target_types.py).

Pants imports this module itself (on its own Python 3.9 in real repos), so it may import only
the standard library, Pants, and the stdlib-only parts of `pants_oci.core`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Tuple

from pants.core.goals.package import OutputPathField
from pants.core.goals.run import RestartableField
from pants.engine.addresses import Address
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    BoolField,
    Dependencies,
    DictStringToStringField,
    IntField,
    StringField,
    StringSequenceField,
    Target,
    TriBoolField,
)
from pants.util.strutil import help_text

from pants_oci.core.base_spec import (
    DOCKER_ARCHIVE_PREFIX,
    OCI_LAYOUT_PREFIX,
    SCRATCH,
    BaseKind,
    BaseSpec,
    parse_base,
)
from pants_oci.core.platforms import check_platform
from pants_oci.core.reference import (
    InvalidReferenceError,
    parse_repository,
    validate_tag,
)
from pants_oci.core.validation import (
    check_env_name,
    check_port,
    check_stop_signal,
    check_user,
)
from pants_oci.field_checks import absolute_path, checked, field_error
from pants_oci.layer_target_types import OciLayerTarget
from pants_oci.placeholders import interpolate


class OciImageBaseField(StringField):
    alias = "base"
    value: str
    default = SCRATCH
    help = help_text(
        f"""
        The image this one is built on. One of:

          * `"{SCRATCH}"` (the default): an empty image; the image holds only its own layers.
          * A registry reference, as you would pass to `docker pull`. Names without a
            registry mean Docker Hub (`busybox` is `docker.io/library/busybox`), as with
            every container tool. Either a tag, e.g. `"python:3.11-slim"`, pinned by the
            base-image lockfile (`[oci].lockfile`, written by `pants generate-oci-lockfile`:
            builds never look tags up), or pinned by digest in place, e.g.
            `"ghcr.io/acme/base@sha256:<64 hex digits>"`.
          * The address of another `oci_image` target, written with a leading `:` or `//`
            (`":base"`, `"//images/base:base"`), to build on an image from this repo.
          * A local image file in the repo, with a transport prefix as `skopeo` spells it:
            `"{OCI_LAYOUT_PREFIX}path/to/layout-dir"` or
            `"{DOCKER_ARCHIVE_PREFIX}path/to/image.tar"`. Its files must be owned by a
            target, e.g. `files(name="base", sources=["layout-dir/**"])`.

        The base is a dependency of this target (inferred): `pants dependencies`,
        `dependents` and `--changed-since --changed-dependents=transitive` see the image, or
        the files, it is built on.

        The base's config (entrypoint, cmd, env, workdir, ...) is inherited; the fields of this
        target override it.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> str:
        value = super().compute_value(raw_value, address)
        assert value is not None  # the field has a default
        value = value.strip()
        try:
            base = ImageBase.parse(value)
        except InvalidReferenceError as e:
            raise field_error(
                cls.alias,
                address,
                value,
                f'is not a base image: {e}. Use `"{SCRATCH}"`, a reference such as '
                '`"registry.example.com/team/base@sha256:..."`, an `oci_image` address starting '
                f"with `:` or `//`, or an `{OCI_LAYOUT_PREFIX}`/`{DOCKER_ARCHIVE_PREFIX}` path "
                f'relative to the build root, e.g. `"{OCI_LAYOUT_PREFIX}images/base"`.',
            ) from e
        if base.local_path is not None:
            path = base.local_path
            if path.startswith("/") or ".." in path.split("/"):
                raise field_error(
                    cls.alias,
                    address,
                    value,
                    "needs a path relative to the build root after its prefix, inside the "
                    f'repo, e.g. "{OCI_LAYOUT_PREFIX}images/base".',
                )
        return value

    def image_base(self) -> ImageBase:
        return ImageBase.parse(self.value)


@dataclass(frozen=True)
class ImageBase:
    """A `base` field's value, read by the one grammar of bases (`pants_oci.core.base_spec`)
    plus the backend's own kind: the address of another `oci_image` target."""

    text: str
    # What the image tool reads: scratch, a local image, a registry image. None for an address.
    spec: Optional[BaseSpec]

    @classmethod
    def parse(cls, text: str) -> ImageBase:
        """Raises InvalidReferenceError (saying why) for text that is no base."""
        if text.startswith((":", "//")):
            return cls(text, None)
        return cls(text, parse_base(text))

    @property
    def address(self) -> Optional[str]:
        """The address of the `oci_image` this base names, as written."""
        return self.text if self.spec is None else None

    @property
    def local_path(self) -> Optional[str]:
        """The build-root-relative path of a local image (OCI layout or docker-archive)."""
        if self.spec is None or not self.spec.is_local:
            return None
        return self.spec.location.rstrip("/")

    @property
    def is_docker_archive(self) -> bool:
        return self.spec is not None and self.spec.kind is BaseKind.DOCKER_ARCHIVE


class OciImageEntrypointField(StringSequenceField):
    alias = "entrypoint"
    help = help_text(
        """
        The executable and leading arguments the container runs, in exec form (a list, no shell),
        as the image config's `Entrypoint`, e.g. `["/app/server", "--port=8080"]`.

        Unset means inherit the base image's entrypoint. Set to `[]` to clear it. As with
        `docker`, setting the entrypoint also clears an inherited `cmd` unless this target sets
        `cmd` too.
        """
    )


class OciImageCmdField(StringSequenceField):
    alias = "cmd"
    help = help_text(
        """
        The default arguments of the container, in exec form, as the image config's `Cmd`.
        They follow the entrypoint, or are the command itself when there is no entrypoint;
        `docker run IMAGE args...` (or `runc`/`podman`) replaces them.

        Unset means inherit the base image's cmd. Set to `[]` to clear it.
        """
    )


class OciImageEnvField(DictStringToStringField):
    alias = "env"
    help = help_text(
        """
        Environment variables of the container, e.g. `{"PORT": "8080", "LANG": "C.UTF-8"}`.

        They are added to the base image's environment; a variable the base already sets is
        replaced in place. Values are literal: `$OTHER` is not expanded.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[dict[str, Any]], address: Address) -> Optional[Any]:
        value = super().compute_value(raw_value, address)
        for name in value or ():
            checked(cls.alias, address, check_env_name, name)
        return value


class OciImageWorkdirField(StringField):
    alias = "workdir"
    help = help_text(
        """
        The working directory of the container's process, an absolute path such as `"/app"`,
        as the image config's `WorkingDir`. Unset means inherit the base image's.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        return None if value is None else absolute_path(cls.alias, value, address)


class OciImageUserField(StringField):
    alias = "user"
    help = help_text(
        """
        The user (and optionally group) the container's process runs as: a name or number,
        `"user"`, `"uid"`, `"user:group"` or `"uid:gid"`, as the image config's `User`.
        Unset means inherit the base image's (root for `scratch`).
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        return None if value is None else checked(cls.alias, address, check_user, value)


class OciImageLabelsField(DictStringToStringField):
    alias = "labels"
    help = help_text(
        """
        Labels of the image config (`docker inspect` shows them), added to the base image's,
        e.g. `{"org.opencontainers.image.source": "https://github.com/acme/app"}`.
        """
    )


class OciImageAnnotationsField(DictStringToStringField):
    alias = "annotations"
    help = help_text(
        """
        Annotations of the image manifest (not the config), e.g.
        `{"org.opencontainers.image.description": "The API server"}`.
        """
    )


class OciImageExposedPortsField(StringSequenceField):
    alias = "exposed_ports"
    help = help_text(
        """
        Ports the container listens on, as `"8080"`, `"8080/tcp"` or `"53/udp"`
        (documentation for runtimes; nothing is published by it).
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        for port in value or ():
            checked(cls.alias, address, check_port, port)
        return value


class OciImageVolumesField(StringSequenceField):
    alias = "volumes"
    help = help_text(
        """
        Absolute paths that the container runtime should mount a volume on, e.g. `["/data"]`.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        for path in value or ():
            absolute_path(cls.alias, path, address)
        return value


class OciImageStopSignalField(StringField):
    alias = "stop_signal"
    help = help_text(
        """
        The signal that stops a container of this image (the config's `StopSignal`), e.g.
        `"SIGQUIT"` for nginx's graceful shutdown: what `docker stop`, Kubernetes and
        `pants run` (on Ctrl-C, or when a `restartable` image restarts) send before SIGKILL.
        Unset means inherit the base's (SIGTERM when none sets one).
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        return None if value is None else checked(cls.alias, address, check_stop_signal, value)


class OciImagePlatformsField(StringSequenceField):
    alias = "platforms"
    help = help_text(
        """
        The platforms to build the image for, each `os/architecture[/variant]`, e.g.
        `["linux/amd64", "linux/arm64"]`. Each platform's image is built on that platform's
        manifest of the base; with more than one platform the image is an OCI image index
        (one manifest per platform) that `pants publish` pushes as one reference. Defaults to
        `[oci].default_platform`.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        if value is None:
            return None
        # Canonical spellings (`linux/x86_64` is `linux/amd64`), so that each is listed once.
        value = tuple(
            "/".join(filter(None, checked(cls.alias, address, check_platform, platform)))
            for platform in value
        )
        twice = sorted({p for p in value if value.count(p) > 1})
        if twice:
            raise field_error(
                cls.alias, address, twice[0], "is listed twice: list each platform once."
            )
        return value


class OciImageTagsField(StringSequenceField):
    alias = "image_tags"
    default = ("latest",)
    help = help_text(
        """
        Tags to give the image, e.g. `["1.4.2", "latest"]`. They name the image in the OCI
        layout that `package` writes (`org.opencontainers.image.ref.name`), and `publish`
        pushes each one. (Pants' own `tags` field, as on every target, groups targets for
        `--tag` filters; it does not tag the image.)

        May use the placeholders of `repository`; `{hash}` (or `{pants.hash}`, as in Pants'
        docker backend): 12 hex digits that change exactly when the image's content (base,
        layers, config) changes, e.g. `image_tags=["{hash}"]` for immutable per-content tags;
        and `{tag_vars.NAME}`: a value declared in `[oci].tag_vars`, such as a CI's commit
        SHA (`image_tags=["{tag_vars.GIT_COMMIT}"]`).
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        for tag in value or ():
            # Values known only at build time stand in as valid tag characters here.
            resolved = interpolate(tag, address, cls.alias, content_hash="0" * 12, tag_vars=None)
            try:
                validate_tag(resolved)
            except InvalidReferenceError as e:
                raise field_error(cls.alias, address, tag, f"is not a valid tag: {e}.") from e
        return value


class OciImageFormatsField(StringSequenceField):
    alias = "formats"
    default = ("oci-layout",)
    valid_choices = ("oci-layout", "sparse-oci-layout", "docker-archive")
    help = help_text(
        """
        What `package` writes at the target's `output_path` (default: `<path.with.dots>/<name>`
        under `dist/`): an OCI image layout directory with its `image-info.json`, and:

        `"oci-layout"` (the default): the layout holds every blob; any OCI tool reads it.

        `"sparse-oci-layout"`, for images bound for a registry: the layout leaves out a
        registry base's layers (its `index.json` names the base). With the base's facts in
        the lockfile (`pants generate-oci-lockfile` records them), `package` downloads the
        base's manifest and config only; `publish` mounts the layers within the base's
        registry or copies them registry to registry; `pants run` builds the whole image.

        `"docker-archive"`: also a `<output_path>.tar` for `docker load`/`podman load`, with
        every layer, naming the image as `publish` pushes it (`registry/repository:tag` for
        each registry and tag, `extra_image_tags` included; `repository:tag` without).
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        if value and {"oci-layout", "sparse-oci-layout"} <= set(value):
            raise field_error(
                cls.alias,
                address,
                list(value),
                'asks for both "oci-layout" and "sparse-oci-layout", but `package` writes one '
                'layout: keep "oci-layout" for a layout with every blob, or "sparse-oci-layout" '
                "for one without the base's layers.",
            )
        return value


def image_output_path(output_path: OutputPathField) -> str:
    """Where `package` writes an image under `dist/`: its layout directory (with
    `image-info.json`), and `<that>.tar` for a docker-archive."""
    return output_path.value_or_default(file_ending=None)


class OciImageRepositoryField(StringField):
    alias = "repository"
    default = "{name}"
    help = help_text(
        """
        The repository the image is pushed to, within each of its `registries`, e.g.
        `"team/api"`. May use placeholders: `{name}` (the target name), `{directory}` (the
        BUILD file's directory name) and `{parent_directory}` (the one above it). Default:
        `"{name}"`.

        A registry of `[oci].registries` with a `repository` of its own uses that instead, as
        in Pants' docker backend; it may include this one as `{target_repository}`.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        assert value is not None  # the field has a default
        resolved = interpolate(value, address, cls.alias)
        try:
            # Under a placeholder registry, so that the first component is never a host.
            parse_repository(f"registry.invalid/{resolved}")
        except InvalidReferenceError as e:
            reason = str(e).split(": ", 1)[-1]
            raise field_error(
                cls.alias,
                address,
                value,
                f"gives the repository {resolved!r}, which is not valid: {reason}. Use "
                'lowercase path components such as "team/api".',
            ) from e
        return value


class OciImageRegistriesField(StringSequenceField):
    alias = "registries"
    help = help_text(
        """
        The registries `pants publish` pushes the image to, as in Pants' docker backend:
        addresses (a host, with a port and a path if needed), such as
        `["ghcr.io/acme", "registry.example.com:5000"]`, and aliases of registries configured
        in `[oci].registries`, written with a leading `@`, such as `["@ghcr"]`. Each tag is
        pushed to each registry, as `registry/repository:tag`.

        Unset: the registries configured as default (`"default": true` in
        `[oci].registries`, and those of `[oci].default_registries`). `[]`: none. An image
        with no registry is not published (`pants publish` lists it as skipped, saying why).

        A configured registry, named by alias or by its address, brings its options: its own
        `repository`, `extra_image_tags` for it alone, and `skip_push`. An unknown alias is an
        error in every goal that reads the target's dependencies (`peek`, `dependencies`,
        `package`, `publish`, ...), naming the aliases `[oci].registries` has.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Iterable[str]], address: Address
    ) -> Optional[Tuple[str, ...]]:
        value = super().compute_value(raw_value, address)
        for registry in value or ():
            if registry.startswith(REGISTRY_ALIAS_PREFIX):
                # Whether `[oci].registries` has it is checked with the options (registries.py).
                problem = registry_alias_problem(registry[len(REGISTRY_ALIAS_PREFIX) :])
            else:
                problem = registry_problem(registry)
            if problem:
                raise field_error(cls.alias, address, registry, problem)
        return value


# `registries=["@name"]` names a registry of `[oci].registries` by its alias.
REGISTRY_ALIAS_PREFIX = "@"


def registry_alias_problem(alias: str) -> Optional[str]:
    """Why `alias` (after the `@`) cannot be a key of `[oci].registries`, or None."""
    if not alias or alias != alias.strip() or "/" in alias:
        return (
            'is not a registry alias: write `@` and a key of `[oci].registries`, such as "@ghcr".'
        )
    return None


def registry_problem(registry: str) -> Optional[str]:
    """Why `registry` (`host[:port][/path]`, as in `registries`) is not one, or None."""
    if "://" in registry:
        host = registry.split("://", 1)[1]
        return f"has a URL scheme: write the host alone, {host!r}."
    host = registry.split("/", 1)[0]
    if not ("." in host or ":" in host or host == "localhost"):
        return (
            "is not a registry host: a registry name has a dot or a port, like "
            '"ghcr.io", "registry.example.com:5000" or "localhost:5000".'
        )
    try:
        parsed = parse_repository(f"{registry}/image")
    except InvalidReferenceError as e:
        return f"is not a registry: {str(e).split(': ', 1)[-1]}."
    if parsed.tag or parsed.digest:
        return "has a tag or digest: registries are hosts, with an optional path."
    return None


class OciImageSkipPushField(BoolField):
    alias = "skip_push"
    default = False
    help = help_text(
        """
        If true, `pants publish` skips this image (`pants package` still builds it). To skip
        one registry for every image, set `skip_push` on it in `[oci].registries`.
        """
    )


class OciImagePythonLayoutField(StringField):
    alias = "python_layout"
    default = "venv"
    valid_choices = ("venv", "pex")
    help = help_text(
        """
        How the image holds its `pex_binary` dependency.

        `"venv"` (the default): a virtual environment at `/opt/venv` that the base's Python
        runs with no PEX bootstrap at start-up. Its layers: the venv itself (`pyvenv.cfg`,
        `bin/python` linked to the base's interpreter), then the third-party distributions,
        one layer each or in stable groups under `python_layer_budget`, then the first-party
        code in site-packages. The same distribution gives the same layer in every image, so a
        registry stores it once; bumping one requirement changes only its layer.

        `"pex"`: the packed PEX at its output path, in two layers (its requirements with the
        PEX runtime, then its code), run by the base's Python through the PEX bootstrap.
        """
    )


class OciImagePythonLayerBudgetField(IntField):
    alias = "python_layer_budget"
    help = help_text(
        """
        The most layers a `pex_binary`'s third-party distributions take with
        `python_layout="venv"` (default: `[oci].python_layer_budget`). Up to that many
        distributions get a layer each; beyond, the largest half of the budget keep a layer
        each and the rest share the other half, grouped by a hash of their names, so each
        group changes only when one of its members does. See docs/python.md.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[int], address: Address) -> Optional[int]:
        value = super().compute_value(raw_value, address)
        if value is not None and not 1 <= value <= 100:
            raise field_error(
                cls.alias,
                address,
                value,
                "is out of range: give 1 to 100 (registries and runtimes refuse images of "
                "more than about 127 layers, and the base and the image's other layers count).",
            )
        return value


class OciImageSupplyChainField(TriBoolField):
    alias = "supply_chain"
    help = help_text(
        """
        Whether to attach an SBOM (SPDX 2.3 and CycloneDX 1.6) and SLSA provenance to the image
        (default: `[oci].supply_chain`, on). They are made from what the build knows: the base
        by digest, each third-party Python distribution with its lockfile hash and declared
        license, the first-party code, the interpreter, the layers. `pants package` writes
        them into the OCI layout beside the image; `pants publish` pushes them as OCI 1.1
        referrers (the referrers API, or the fallback tag on registries without it). See
        docs/supply-chain.md.
        """
    )


class OciImageDependenciesField(Dependencies):
    help = help_text(
        """
        What to put in the image, as layers on top of the base's, in this order:

          * each `oci_layer` dependency: one layer, in the order of their addresses;
          * a `pex_binary` dependency: a venv with its third-party distributions, one layer
            each or in groups (`python_layer_budget`), and then its own code, so a code change
            rebuilds and re-pushes only the small top layer (`python_layout` says how); the
            entrypoint runs it with the base's Python unless `entrypoint` is set;
          * all other dependencies together, in one final layer: sources (`files`,
            `resources`, `python_sources`, `shell_sources`, ...) and what `pants package`
            builds of other targets (`archive`, ...).

        Sources keep the path Pants gives them elsewhere (within their source root for Python
        code and `resources`, from the build root for `files` and `shell_sources`), packages
        their output path. A dependency with nothing to put in a layer (`python_requirement`,
        a bare `target`) is an error. An `oci_image` named in `base` is the base, not content.
        """
    )


class OciImageTarget(Target):
    alias = "oci_image"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        OciImageBaseField,
        OciImageDependenciesField,
        OciImageEntrypointField,
        OciImageCmdField,
        OciImageEnvField,
        OciImageWorkdirField,
        OciImageUserField,
        OciImageLabelsField,
        OciImageAnnotationsField,
        OciImageExposedPortsField,
        OciImageVolumesField,
        OciImageStopSignalField,
        OciImagePlatformsField,
        OciImageTagsField,
        OciImageRepositoryField,
        OciImageRegistriesField,
        OciImageSkipPushField,
        OciImageFormatsField,
        OciImagePythonLayoutField,
        OciImagePythonLayerBudgetField,
        OciImageSupplyChainField,
        OutputPathField,
        RestartableField,
    )
    help = help_text(
        """
        A container image in the OCI format, built without a Docker daemon.

        The image is its `base` plus layers made from its dependencies, with the config set by
        the fields below. Builds are reproducible: the same sources give byte-identical layers,
        config and manifest on any machine.

        Example:

            oci_image(
                name="server",
                base="python:3.11-slim@sha256:<digest>",
                dependencies=[":app"],
                entrypoint=["/usr/local/bin/python", "/app/server.py"],
                env={"PORT": "8080"},
                workdir="/app",
            )
        """
    )


def target_types() -> list[type[Target]]:
    return [OciImageTarget, OciLayerTarget]
