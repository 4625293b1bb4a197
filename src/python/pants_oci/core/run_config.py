"""The editable run configuration of an image (:class:`RunConfig`): the ``config`` part of its
image config, how a container of it runs, as plain Python values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pants_oci.core.errors import ImageBuildError, InvalidValueError
from pants_oci.core.models import ContainerConfig
from pants_oci.core.validation import check_env_name

__all__ = ["RunConfig", "port_key"]

# ContainerConfig's JSON names that RunConfig has fields for; any other key is kept as read.
_RUN_CONFIG_KEYS = frozenset(
    {
        "Entrypoint",
        "Cmd",
        "Env",
        "WorkingDir",
        "User",
        "Labels",
        "ExposedPorts",
        "Volumes",
        "StopSignal",
    }
)


def port_key(port: str | int) -> str:
    """A port as the config keys it: ``80`` means ``80/tcp``, as Docker's EXPOSE reads it
    (values set through :class:`Image` are checked; a base's are kept as they are)."""
    text = str(port)
    return text if "/" in text else f"{text}/tcp"


@dataclass
class RunConfig:
    """How a container of the image runs: the ``config`` part of the image config.

    :meth:`Image.get_image_config` returns the image's own instance: change it in place and
    :meth:`Image.save` (or a writer) uses the changes. Fields are plain Python values; keys
    of the base image's config that have no field here (``Healthcheck``, ``Shell``,
    ``OnBuild``...) are kept in ``extra`` as they were read.
    """

    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=list)  # "NAME=value"
    workdir: str | None = None
    user: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: list[str] = field(default_factory=list)  # "80/tcp"
    volumes: list[str] = field(default_factory=list)
    stop_signal: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_container_config(cls, config: ContainerConfig | None) -> RunConfig:
        data: dict[str, Any] = (
            config.model_dump(mode="json", by_alias=True, exclude_none=True) if config else {}
        )
        return cls(
            entrypoint=data.get("Entrypoint"),
            cmd=data.get("Cmd"),
            env=list(data.get("Env") or ()),
            workdir=data.get("WorkingDir"),
            user=data.get("User"),
            labels=dict(data.get("Labels") or {}),
            exposed_ports=list(data.get("ExposedPorts") or {}),
            volumes=list(data.get("Volumes") or {}),
            stop_signal=data.get("StopSignal"),
            extra={key: value for key, value in data.items() if key not in _RUN_CONFIG_KEYS},
        )

    def to_container_config(self) -> ContainerConfig:
        data: dict[str, Any] = dict(self.extra)
        values: dict[str, Any] = {
            "User": self.user,
            "ExposedPorts": {port_key(port): {} for port in self.exposed_ports} or None,
            "Env": list(self.env) or None,
            "Entrypoint": None if self.entrypoint is None else list(self.entrypoint),
            "Cmd": None if self.cmd is None else list(self.cmd),
            "Volumes": {volume: {} for volume in self.volumes} or None,
            "WorkingDir": self.workdir or None,
            "Labels": dict(self.labels) or None,
            "StopSignal": self.stop_signal,
        }
        data.update({key: value for key, value in values.items() if value is not None})
        try:
            return ContainerConfig.model_validate(data)
        except ValueError as exc:
            raise ImageBuildError(f"the image's run configuration is not valid: {exc}") from None

    def get_env(self, name: str) -> str | None:
        """The value of environment variable ``name``, or None when it is not set."""
        prefix = f"{name}="
        return next((item[len(prefix) :] for item in self.env if item.startswith(prefix)), None)

    def set_env(self, name: str, value: str) -> None:
        """Set ``name``: in place when it is already set (keeping the order), else appended."""
        check_env_name(name)
        if not isinstance(value, str):
            raise InvalidValueError(f"environment variable {name}", value, "is not a string.")
        prefix, item = f"{name}=", f"{name}={value}"
        for index, existing in enumerate(self.env):
            if existing.startswith(prefix) or existing == name:
                self.env[index] = item
                return
        self.env.append(item)

    def unset_env(self, name: str) -> None:
        prefix = f"{name}="
        self.env = [item for item in self.env if not item.startswith(prefix) and item != name]
