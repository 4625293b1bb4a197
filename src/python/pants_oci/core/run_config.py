"""The editable run configuration of an image (:class:`RunConfig`): the ``config`` part of its
image config, how a container of it runs, as plain Python values; and the live, checked views
of its lists and labels that :class:`~pants_oci.core.image.Image` hands out
(:class:`ConfigList`, :class:`ConfigLabels`).
"""

from __future__ import annotations

from collections.abc import (
    Callable,
    Iterable,
    Iterator,
    Mapping,
    MutableMapping,
    MutableSequence,
)
from dataclasses import dataclass, field
from typing import Any, overload

from pants_oci.core.errors import ImageBuildError, InvalidValueError
from pants_oci.core.models import ContainerConfig
from pants_oci.core.validation import (
    check_absolute_path,
    check_env_name,
    check_list,
    check_port,
    check_stop_signal,
    check_string_map,
    check_type,
    check_user,
)

__all__ = ["ConfigLabels", "ConfigList", "RunConfig", "RunConfigProperties", "port_key"]

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


# --- Live views -------------------------------------------------------------------------------

# How a new item of a list is checked: given the item and the list it joins, the item to store.
# Items the list already has (a base's, as the base wrote them) are kept as they are: an image
# is not refused for what it inherits.
ItemCheck = Callable[[Any, list[str]], str]


def _env_item(item: Any, items: list[str]) -> str:
    text = check_type(item, str, "Image.env item", "a 'NAME=value' string")
    if text not in items:
        name, equals, _ = text.partition("=")
        check_env_name(name)
        if not equals:
            raise InvalidValueError("environment variable", text, "has no `=`: write NAME=value.")
    return str(text)


def _port_item(item: Any, items: list[str]) -> str:
    check_type(item, (str, int), "Image.exposed_ports item", "a port (int or str)")
    known = {port_key(port) for port in items}
    return port_key(item) if port_key(item) in known else check_port(item)


def _volume_item(item: Any, items: list[str]) -> str:
    check_type(item, str, "Image.volumes item", "an absolute path str")
    return str(item) if item in items else check_absolute_path(item, "volume")


def _argv_item(item: Any, items: list[str]) -> str:
    return str(check_type(item, str, "Image.cmd/entrypoint item", "a str"))


ITEM_CHECKS: dict[str, ItemCheck] = {
    "env": _env_item,
    "exposed_ports": _port_item,
    "volumes": _volume_item,
    "cmd": _argv_item,
    "entrypoint": _argv_item,
}


def replaced_list(config: RunConfig, name: str, value: Any) -> list[str]:
    """What ``Image.<name> = value`` stores: its items, checked as :class:`ConfigList` checks
    them (those the list has are kept as they are); ports and volumes without repeats."""
    current = list(getattr(config, name) or ())
    items = [ITEM_CHECKS[name](item, current) for item in check_list(value, f"Image.{name}")]
    return list(dict.fromkeys(items)) if name in ("exposed_ports", "volumes") else items


class ConfigList(MutableSequence[str]):
    """A live view of one list of a :class:`RunConfig` (``env``, ``cmd``, ``volumes``...):
    reads show the config's list as it is now, and edits (``append``, ``+=``, ``[i] = ``,
    ``del``, ``remove``...) change it, each new item checked first as the setter checks it.
    Compares equal to a list with the same items."""

    def __init__(self, config: RunConfig, name: str) -> None:
        self._config, self._name, self._check = config, name, ITEM_CHECKS[name]

    def _items(self, create: bool = False) -> list[str]:
        items: list[str] | None = getattr(self._config, self._name)
        if items is None:  # cmd / entrypoint unset
            items = []
            if create:
                setattr(self._config, self._name, items)
        return items

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        return self._items()[index]

    @overload
    def __setitem__(self, index: int, value: str) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[str]) -> None: ...
    def __setitem__(self, index: int | slice, value: Any) -> None:
        items = self._items(create=True)
        if isinstance(index, slice):
            new = check_list(value, f"Image.{self._name}[{index.start}:{index.stop}]")
            items[index] = [self._check(item, items) for item in new]
        else:
            items[index] = self._check(value, items)

    def __delitem__(self, index: int | slice) -> None:
        del self._items(create=True)[index]

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items()))

    def insert(self, index: int, value: str) -> None:
        items = self._items(create=True)
        items.insert(index, self._check(value, items))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ConfigList):
            other = list(other)
        return list(self) == other if isinstance(other, list) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list is

    def __repr__(self) -> str:
        return repr(self._items())


class ConfigLabels(MutableMapping[str, str]):
    """A live view of a :class:`RunConfig`'s labels: ``labels["a"] = "b"``, ``update`` and
    ``del`` change them, each new label checked (non-empty string key, string value)."""

    def __init__(self, config: RunConfig) -> None:
        self._config = config

    def __getitem__(self, key: str) -> str:
        return self._config.labels[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._config.labels.update(check_string_map({key: value}, "labels"))

    def __delitem__(self, key: str) -> None:
        del self._config.labels[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._config.labels))

    def __len__(self) -> int:
        return len(self._config.labels)

    def __repr__(self) -> str:
        return repr(self._config.labels)


class RunConfigProperties:
    """The run configuration as properties of :class:`~pants_oci.core.image.Image`
    (``image.cmd``, ``image.env``, ...), over its :class:`RunConfig`: lists and labels are
    live, checked views; assigning replaces (``env``: sets each variable)."""

    _config: RunConfig
    _cmd_set: bool  # a cmd set on this image survives a new entrypoint

    @property
    def cmd(self) -> ConfigList | None:
        return None if self._config.cmd is None else ConfigList(self._config, "cmd")

    @cmd.setter
    def cmd(self, value: Iterable[str] | None) -> None:
        self._config.cmd = None if value is None else replaced_list(self._config, "cmd", value)
        self._cmd_set = True

    @property
    def entrypoint(self) -> ConfigList | None:
        return None if self._config.entrypoint is None else ConfigList(self._config, "entrypoint")

    @entrypoint.setter
    def entrypoint(self, value: Iterable[str] | None) -> None:
        """As in a Dockerfile, a new entrypoint drops the cmd inherited from the base (a cmd
        set on this image, before or after, stays)."""
        self._config.entrypoint = (
            None if value is None else replaced_list(self._config, "entrypoint", value)
        )
        if not self._cmd_set:
            self._config.cmd = None

    @property
    def env(self) -> ConfigList:
        """``NAME=value`` items, live. Assigning a list sets each item: replacing a
        variable in place when already set, appending otherwise (the base's others stay)."""
        return ConfigList(self._config, "env")

    @env.setter
    def env(self, items: Iterable[str]) -> None:
        for item in check_list(items, "Image.env"):
            check_type(item, str, "Image.env item", "a 'NAME=value' string")
            name, _, value = item.partition("=")
            self._config.set_env(name, value)

    def set_env(self, name: str, value: str) -> None:
        self._config.set_env(name, value)

    def unset_env(self, name: str) -> None:
        self._config.unset_env(name)

    @property
    def workdir(self) -> str | None:
        return self._config.workdir

    @workdir.setter
    def workdir(self, value: str | None) -> None:
        self._config.workdir = None if value is None else check_absolute_path(value, "workdir")

    @property
    def user(self) -> str | None:
        return self._config.user

    @user.setter
    def user(self, value: str | None) -> None:
        self._config.user = None if value is None else check_user(value)

    @property
    def labels(self) -> ConfigLabels:
        """The labels, live: ``image.labels["a"] = "b"`` and ``.update(...)`` are saved."""
        return ConfigLabels(self._config)

    @labels.setter
    def labels(self, value: Mapping[str, str]) -> None:
        self._config.labels = check_string_map(value, "labels")

    @property
    def exposed_ports(self) -> ConfigList:
        """``N/protocol`` items, live; ``8080`` means ``8080/tcp``."""
        return ConfigList(self._config, "exposed_ports")

    @exposed_ports.setter
    def exposed_ports(self, ports: Iterable[str | int]) -> None:
        self._config.exposed_ports = replaced_list(self._config, "exposed_ports", ports)

    def expose(self, *ports: str | int) -> None:
        """Add exposed ports (``8080`` means ``8080/tcp``) to those of the base."""
        self.exposed_ports = [*self.exposed_ports, *ports]

    @property
    def volumes(self) -> ConfigList:
        return ConfigList(self._config, "volumes")

    @volumes.setter
    def volumes(self, paths: Iterable[str]) -> None:
        self._config.volumes = replaced_list(self._config, "volumes", paths)

    @property
    def stop_signal(self) -> str | None:
        return self._config.stop_signal

    @stop_signal.setter
    def stop_signal(self, value: str | None) -> None:
        self._config.stop_signal = None if value is None else check_stop_signal(value)
