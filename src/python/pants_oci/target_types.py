"""The `oci_image` target and its fields.

Pants imports this module itself (on its own Python 3.9 in real repos), so it may import only
the standard library, Pants, and the stdlib-only parts of `pants_oci.core`.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional, Tuple

from pants.engine.addresses import Address
from pants.engine.target import (
    COMMON_TARGET_FIELDS,
    BoolField,
    Dependencies,
    DictStringToStringField,
    IntField,
    InvalidFieldException,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.strutil import help_text, softwrap

from pants_oci.core.reference import InvalidReferenceError, parse_reference

SCRATCH = "scratch"
OCI_LAYOUT_PREFIX = "oci-layout:"
DOCKER_ARCHIVE_PREFIX = "docker-archive:"

# POSIX-style environment variable names, as shells and `docker run -e` accept them.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PORT = re.compile(r"^[0-9]{1,5}(/(tcp|udp|sctp))?$")


def _absolute_path(alias: str, value: str, address: Address) -> str:
    if not value.startswith("/"):
        raise InvalidFieldException(
            softwrap(
                f"""
                The `{alias}` field in target {address} must be an absolute path, but was
                {value!r}. Use {"/" + value!r}.
                """
            )
        )
    return value


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
            `"{DOCKER_ARCHIVE_PREFIX}path/to/image.tar"`.

        The base's config (entrypoint, cmd, env, workdir, ...) is inherited; the fields of this
        target override it.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> str:
        value = super().compute_value(raw_value, address)
        assert value is not None  # the field has a default
        value = value.strip()
        if value == SCRATCH or value.startswith(
            (":", "//", OCI_LAYOUT_PREFIX, DOCKER_ARCHIVE_PREFIX)
        ):
            return value
        try:
            parse_reference(value)
        except InvalidReferenceError as e:
            raise InvalidFieldException(
                softwrap(
                    f"""
                    The `{cls.alias}` field in target {address} is not a valid image reference:
                    {e}. Use `"{SCRATCH}"`, a reference such as
                    `"registry.example.com/team/base@sha256:..."`, an `oci_image` address
                    starting with `:` or `//`, or an `{OCI_LAYOUT_PREFIX}`/`{DOCKER_ARCHIVE_PREFIX}`
                    path.
                    """
                )
            ) from e
        return value


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
            if not _ENV_NAME.match(name):
                raise InvalidFieldException(
                    softwrap(
                        f"""
                        The `{cls.alias}` field in target {address} has an invalid variable name
                        {name!r}: names are letters, digits and `_`, not starting with a digit.
                        """
                    )
                )
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
        return None if value is None else _absolute_path(cls.alias, value, address)


class OciImageUserField(StringField):
    alias = "user"
    help = help_text(
        """
        The user (and optionally group) the container's process runs as: a name or number,
        `"user"`, `"uid"`, `"user:group"` or `"uid:gid"`, as the image config's `User`.
        Unset means inherit the base image's (root for `scratch`).
        """
    )


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
            if not _PORT.match(port):
                raise InvalidFieldException(
                    softwrap(
                        f"""
                        The `{cls.alias}` field in target {address} has an invalid port
                        {port!r}: use a number with an optional protocol, like `"8080"`,
                        `"8080/tcp"` or `"53/udp"`.
                        """
                    )
                )
        return value


class OciImageVolumesField(StringSequenceField):
    alias = "volumes"
    help = help_text(
        """
        Absolute paths that the container runtime should mount a volume on, e.g. `["/data"]`.
        """
    )


_PLATFORM = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(/[a-z0-9]+)?$")


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
        for platform in value:
            if not _PLATFORM.match(platform):
                raise InvalidFieldException(
                    softwrap(
                        f"""
                        The `{cls.alias}` field in target {address} has {platform!r}, which is
                        not `os/architecture[/variant]`. Use e.g. `"linux/amd64"` or
                        `"linux/arm64/v8"`.
                        """
                    )
                )
        if len(set(value)) != len(value):
            raise InvalidFieldException(
                f"The `{cls.alias}` field in target {address} lists a platform twice: {value}."
            )
        return value


class OciImageTagsField(StringSequenceField):
    alias = "tags"
    default = ("latest",)
    help = help_text(
        """
        Tags to give the image, e.g. `["1.4.2", "latest"]`. They name the image in the OCI
        layout that `package` writes (`org.opencontainers.image.ref.name`), and `publish`
        pushes each one. May use the placeholders of `repository`, and `{hash}`: 12 hex
        digits that change exactly when the image's content (base, layers, config) changes,
        e.g. `tags=["{hash}"]` for immutable per-content tags.
        """
    )


def interpolate(
    template: str, address: Address, field_alias: str, content_hash: Optional[str] = None
) -> str:
    """Fill `{name}`, `{directory}`, `{parent_directory}` (and, in tags, `{hash}`)."""
    parts = address.spec_path.split("/") if address.spec_path else []
    values = {
        "name": address.target_name,
        "directory": parts[-1] if parts else "",
        "parent_directory": parts[-2] if len(parts) > 1 else "",
    }
    if content_hash is not None:
        values["hash"] = content_hash
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as e:
        raise InvalidFieldException(
            softwrap(
                f"""
                The `{field_alias}` field in target {address} has an unknown placeholder in
                {template!r} ({e}). Known placeholders: {", ".join("{" + k + "}" for k in values)}.
                """
            )
        ) from e


class OciImageOutputField(StringSequenceField):
    alias = "output"
    default = ("oci-layout",)
    valid_choices = ("oci-layout", "docker-archive")
    help = help_text(
        """
        What `package` writes: `"oci-layout"` (the default), an OCI image layout directory
        `dist/<path>/<name>/`; and/or `"docker-archive"`, a `dist/<path>/<name>.tar` that
        `docker load` and `podman load` accept, naming the image as `publish` pushes it:
        `registry/repository:tag` for each registry (`registries`, else
        `[oci].default_registries`) and tag, or `repository:tag` without registries.
        """
    )


class OciImageRepositoryField(StringField):
    alias = "repository"
    default = "{name}"
    help = help_text(
        """
        The repository the image is pushed to, within each of its `registries`, e.g.
        `"team/api"`. May use placeholders: `{name}` (the target name), `{directory}` (the
        BUILD file's directory name) and `{parent_directory}` (the one above it). Default:
        `"{name}"`.
        """
    )


class OciImageRegistriesField(StringSequenceField):
    alias = "registries"
    help = help_text(
        """
        The registries `pants publish` pushes the image to: hosts, with a port if needed, such
        as `["ghcr.io", "registry.example.com:5000"]`. Each tag is pushed to each registry.
        An image with no registries is not published.
        """
    )


class OciImageSkipPushField(BoolField):
    alias = "skip_push"
    default = False
    help = "If true, `pants publish` skips this image (`pants package` still builds it)."


class OciImageDependenciesField(Dependencies):
    help = help_text(
        """
        What to put in the image. Each `oci_layer` dependency becomes one layer, in the order
        of their addresses; all other dependencies (`files`, `resources`, and anything
        `package` builds, such as `pex_binary` or `archive`) go together into one final layer.
        Files keep their path relative to the build root, packages their output path.
        """
    )


class OciLayerDestinationField(StringField):
    alias = "destination"
    value: str
    default = "/"
    help = help_text(
        """
        The absolute directory in the image under which this layer's files go. A file
        `src/app/main.py` with destination `"/opt"` lands at `/opt/src/app/main.py`.
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> str:
        value = super().compute_value(raw_value, address)
        assert value is not None  # the field has a default
        return _absolute_path(cls.alias, value, address)


class OciLayerModeField(StringField):
    alias = "mode"
    help = help_text(
        """
        Permission bits for every file of this layer, as an octal string such as `"0644"` or
        `"0755"`. Unset: executables get 0755 and other files 0644, whatever the checkout's
        umask (directories are always 0755).
        """
    )

    @classmethod
    def compute_value(cls, raw_value: Optional[str], address: Address) -> Optional[str]:
        value = super().compute_value(raw_value, address)
        if value is not None and not re.fullmatch(r"0?[0-7]{3,4}", value):
            raise InvalidFieldException(
                softwrap(
                    f"""
                    The `{cls.alias}` field in target {address} must be octal permission bits
                    such as "0644" or "0755", but was {value!r}.
                    """
                )
            )
        return value


class OciLayerUidField(IntField):
    alias = "uid"
    help = "The owner (user id) of every file and directory of this layer. Unset: 0 (root)."


class OciLayerGidField(IntField):
    alias = "gid"
    help = "The group id of every file and directory of this layer. Unset: 0 (root)."


class OciLayerDependenciesField(Dependencies):
    help = help_text(
        """
        The files, resources and packages that make up this layer.
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
        OciImagePlatformsField,
        OciImageTagsField,
        OciImageRepositoryField,
        OciImageRegistriesField,
        OciImageSkipPushField,
        OciImageOutputField,
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


class OciLayerTarget(Target):
    alias = "oci_layer"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        OciLayerDependenciesField,
        OciLayerDestinationField,
        OciLayerModeField,
        OciLayerUidField,
        OciLayerGidField,
    )
    help = help_text(
        """
        One layer of an `oci_image`: a group of files, resources and packages placed under a
        destination directory.

        Split content into layers by how often it changes: an image pulled or pushed again
        after a change moves only the layers whose content changed. Put third-party
        dependencies in one layer and your own code in another.

        Example:

            oci_layer(name="assets", dependencies=[":static"], destination="/srv")
            oci_image(name="web", dependencies=[":assets", ":server"])
        """
    )


def target_types() -> list[type[Target]]:
    return [OciImageTarget, OciLayerTarget]
