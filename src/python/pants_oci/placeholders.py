"""Placeholders in BUILD-file values: `{name}`, `{directory}`, `{parent_directory}` in
repositories and tags, and in tags also `{hash}` (`{pants.hash}`) and `{tag_vars.NAME}`
(`[oci].tag_vars`), as the docker backend fills `{pants.hash}` and `{build_args.NAME}`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from pants.engine.addresses import Address
from pants.engine.target import InvalidFieldException
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap


@dataclass(frozen=True)
class TagVars:
    """The values of `[oci].tag_vars`, for `{tag_vars.NAME}` in `image_tags`; `unset` are
    those to read from an environment that lacks them (an error only where a tag uses one)."""

    values: FrozenDict[str, str]
    unset: Tuple[str, ...] = ()

    def known(self) -> str:
        names = ", ".join(sorted(self.values)) or "none"
        return f"`[oci].tag_vars` declares: {names}"


class TagVarNotSetError(Exception):
    """A tag uses a `[oci].tag_vars` entry to read from the environment, where it is not set."""


class _TagVarsNamespace:
    """What `{tag_vars.NAME}` reads (attribute access, as in the docker backend's
    `{build_args.NAME}`); `any_value` stands in for every name where values are not known."""

    def __init__(
        self,
        values: Mapping[str, str],
        any_value: Optional[str] = None,
        unset: Tuple[str, ...] = (),
    ) -> None:
        self._values = values
        self._any_value = any_value
        self._unset = unset

    def __getattr__(self, name: str) -> str:
        if name.startswith("__"):
            raise AttributeError(name)
        if self._any_value is not None:
            return self._any_value
        if name in self._unset:
            raise TagVarNotSetError(
                f"`[oci].tag_vars` reads {name} from the environment, but it is not set. "
                f"Set it, or write `{name}=value` in `[oci].tag_vars`."
            )
        if name not in self._values:
            raise KeyError(f"tag_vars.{name}")
        return self._values[name]


class _PantsValues:
    """`{pants.hash}`: the docker backend's spelling of `{hash}`."""

    def __init__(self, content_hash: str) -> None:
        self.hash = content_hash


def interpolate(
    template: str,
    address: Address,
    field_alias: str,
    content_hash: Optional[str] = None,
    tag_vars: Optional[TagVars] = None,
    *,
    extra: Optional[Mapping[str, str]] = None,
    where: Optional[str] = None,
) -> str:
    """Fill `{name}`, `{directory}`, `{parent_directory}` (and, in tags, `{hash}`,
    `{pants.hash}` and `{tag_vars.NAME}`; and the `extra` placeholders). Errors say the template
    is in `where` (default: the field `field_alias` of the target at `address`)."""
    parts = address.spec_path.split("/") if address.spec_path else []
    values: Dict[str, Any] = {
        "name": address.target_name,
        "directory": parts[-1] if parts else "",
        "parent_directory": parts[-2] if len(parts) > 1 else "",
        **(extra or {}),
    }
    if content_hash is not None:
        values["hash"] = content_hash
        values["pants"] = _PantsValues(content_hash)
    if content_hash is not None:  # a tag: `{tag_vars.NAME}` too (any name until build time)
        values["tag_vars"] = (
            _TagVarsNamespace(tag_vars.values, unset=tag_vars.unset)
            if tag_vars
            else _TagVarsNamespace({}, "x")
        )
    try:
        return template.format(**values)
    except (KeyError, AttributeError, IndexError, ValueError) as e:
        known = ", ".join(
            "{" + k + "}"
            for k in ("name", "directory", "parent_directory", *(extra or {}), "hash", "pants.hash")
            if k.split(".")[0] in values
        )
        if content_hash is not None:
            known += ", {tag_vars.NAME}"
        if str(e).startswith("'tag_vars.") and tag_vars is not None:
            problem = f"uses {e}, which is not declared ({tag_vars.known()})"
            fix = "Add it to `[oci].tag_vars` (`NAME` to read it from the environment)."
        else:
            problem = f"has an unknown placeholder ({e})"
            fix = f"Known placeholders: {known}."
        where = where or f"The `{field_alias}` field in target {address}"
        raise InvalidFieldException(
            softwrap(
                f"""
                {where} {problem} in {template!r}. {fix}
                """
            )
        ) from e
