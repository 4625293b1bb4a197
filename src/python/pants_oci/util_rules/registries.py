"""Where an image goes: `[oci].registries` (by alias, as `[docker].registries` in Pants' docker
backend), `[oci].default_registries`, the target's `registries`; and the image's full names there.

`image_names` is the one computation of an image's full names (`registry/repository:tag`): the
build records them in `image-info.json`, names the docker-archive with them, and `publish`
pushes what `image-info.json` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from pants.engine.addresses import Address
from pants.engine.rules import Rule, collect_rules, rule
from pants.engine.target import (
    FieldSet,
    InvalidFieldException,
    Target,
    ValidatedDependencies,
    ValidateDependenciesRequest,
)
from pants.engine.unions import UnionRule
from pants.option.parser import Parser
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from pants_oci.core.errors import InvalidReferenceError
from pants_oci.core.reference import parse_reference, parse_repository, validate_tag
from pants_oci.placeholders import TagVars, interpolate
from pants_oci.subsystems.oci import OciSubsystem
from pants_oci.target_types import (
    REGISTRY_ALIAS_PREFIX,
    OciImageRegistriesField,
    OciImageRepositoryField,
    OciImageTagsField,
    registry_problem,
)

_KEYS = ("address", "default", "repository", "extra_image_tags", "skip_push")
# Values for placeholders where options are checked, before any target is known.
_STAND_IN = Address("directory/of/target", target_name="name")
# The placeholders a registry's `repository` may use besides a target's.
_TARGET_REPOSITORY = "target_repository"
_DEFAULT_REPOSITORY = "default_repository"


class OciRegistriesOptionError(ValueError):
    """A bad `[oci].registries` or `[oci].default_registries` value."""


@dataclass(frozen=True)
class OciRegistry:
    """One registry: an entry of `[oci].registries`, or an address alone."""

    address: str
    alias: str = ""
    default: bool = False
    skip_push: bool = False
    extra_image_tags: Tuple[str, ...] = ()
    repository: Optional[str] = None

    @property
    def option(self) -> str:
        """Where it is configured, as errors and hints name it."""
        return f"`[oci].registries` entry {self.alias!r}"

    @classmethod
    def from_option(cls, alias: str, value: Any) -> OciRegistry:
        where = f"`[oci].registries` entry {alias!r}"
        if not isinstance(value, Mapping):
            raise OciRegistriesOptionError(
                f'{where} is {value!r}: write a table, e.g. {{"address": "ghcr.io/acme"}}.'
            )
        unknown = sorted(set(value) - set(_KEYS))
        if unknown:
            extra = (
                " (`use_local_alias` tags an image in a local Docker daemon, which pants_oci "
                "does not use)"
                if "use_local_alias" in unknown
                else ""
            )
            raise OciRegistriesOptionError(
                f"{where} has unknown keys {', '.join(unknown)}{extra}. Known keys: "
                f"{', '.join(_KEYS)}."
            )
        address = value.get("address")
        if not isinstance(address, str):
            raise OciRegistriesOptionError(
                f'{where} has no `address` (a string such as "ghcr.io/acme" or '
                f'"registry.example.com:5000"): {dict(value)!r}.'
            )
        problem = registry_problem(address)
        if problem:
            raise OciRegistriesOptionError(f"{where} has the address {address!r}, which {problem}")
        tags = value.get("extra_image_tags", ())
        if isinstance(tags, str) or not all(isinstance(tag, str) for tag in tags):
            raise OciRegistriesOptionError(
                f'{where} has `extra_image_tags` {tags!r}: write a list of tags, e.g. ["stable"].'
            )
        repository = value.get("repository")
        if repository is not None and not isinstance(repository, str):
            raise OciRegistriesOptionError(
                f'{where} has `repository` {repository!r}: write a string, e.g. "team/{{name}}".'
            )
        try:
            registry = cls(
                address=address,
                alias=alias,
                default=Parser.ensure_bool(value.get("default", alias == "default")),
                skip_push=Parser.ensure_bool(value.get("skip_push", False)),
                extra_image_tags=tuple(tags),
                repository=repository,
            )
        except Exception as e:  # Parser.ensure_bool: a value that is no boolean
            raise OciRegistriesOptionError(f"{where}: {e}") from e
        registry._check_templates()
        return registry

    def _check_templates(self) -> None:
        """Placeholders and syntax, with stand-in values (names are checked again, whole, for
        each image)."""
        try:
            for tag in self.extra_image_tags:
                resolved = interpolate(
                    tag,
                    _STAND_IN,
                    "extra_image_tags",
                    content_hash="0" * 12,
                    tag_vars=None,
                    where=f"The `extra_image_tags` of {self.option}",
                )
                try:
                    validate_tag(resolved)
                except InvalidReferenceError as e:
                    raise OciRegistriesOptionError(
                        f"The `extra_image_tags` of {self.option} has {tag!r}, which is not a "
                        f"valid tag: {e}."
                    ) from e
            if self.repository is not None:
                resolved = self.repository_for(_STAND_IN, "name")
                try:
                    parse_repository(f"registry.invalid/{resolved}")
                except InvalidReferenceError as e:
                    reason = str(e).split(": ", 1)[-1]
                    raise OciRegistriesOptionError(
                        f"The `repository` of {self.option} is {self.repository!r}, which is "
                        f"not a valid repository: {reason}. Use lowercase path components such "
                        'as "team/{name}".'
                    ) from e
        except InvalidFieldException as e:
            raise OciRegistriesOptionError(str(e)) from e

    def repository_for(self, address: Address, target_repository: str) -> str:
        """This registry's `repository` for the target at `address` (whose own repository,
        placeholders filled, is `target_repository`)."""
        assert self.repository is not None
        return interpolate(
            self.repository,
            address,
            "repository",
            extra={
                _TARGET_REPOSITORY: target_repository,
                _DEFAULT_REPOSITORY: address.target_name,
            },
            where=f"The `repository` of {self.option} (for target {address})",
        )

    def to_json(self) -> Dict[str, Any]:
        return {"alias": self.alias or None, "address": self.address}


@dataclass(frozen=True)
class OciRegistries:
    """`[oci].registries` and `[oci].default_registries`, read and checked."""

    default: Tuple[OciRegistry, ...]
    # By `@alias` and by address.
    registries: FrozenDict[str, OciRegistry]

    @classmethod
    def from_options(
        cls, registries: Mapping[str, Any], default_registries: Sequence[str]
    ) -> OciRegistries:
        by_name: Dict[str, OciRegistry] = {}
        for alias, value in registries.items():
            registry = OciRegistry.from_option(alias, value)
            by_name[f"{REGISTRY_ALIAS_PREFIX}{alias}"] = registry
            by_name.setdefault(registry.address, registry)
        default = {r.address: r for r in by_name.values() if r.default}
        for address in default_registries:
            problem = registry_problem(address)
            if problem:
                raise OciRegistriesOptionError(
                    f"`[oci].default_registries` has {address!r}, which {problem}"
                )
            default.setdefault(address, by_name.get(address, OciRegistry(address, default=True)))
        # By address, as the docker backend orders them: the same however the options merge.
        return cls(tuple(default[a] for a in sorted(default)), FrozenDict(by_name))

    @property
    def aliases(self) -> Tuple[str, ...]:
        return tuple(
            sorted(name for name in self.registries if name.startswith(REGISTRY_ALIAS_PREFIX))
        )

    def for_target(
        self, address: Address, registries: Optional[Sequence[str]]
    ) -> Tuple[OciRegistry, ...]:
        """The registries of the target at `address` whose `registries` field is `registries`:
        the defaults when unset; each `@alias` or address as configured, else the address
        alone. An unknown alias is an error naming the target, the field and the aliases."""
        if registries is None:
            return self.default
        found: List[OciRegistry] = []
        for name in registries:
            if name in self.registries:
                registry = self.registries[name]
            elif name.startswith(REGISTRY_ALIAS_PREFIX):
                known = ", ".join(self.aliases) or "none"
                alias = name[len(REGISTRY_ALIAS_PREFIX) :]
                raise InvalidFieldException(
                    softwrap(
                        f"""
                        The `{OciImageRegistriesField.alias}` field in target {address} has
                        {name!r}, which is not a registry alias of `[oci].registries` (its
                        aliases: {known}). Use one of them, a registry address such as
                        "ghcr.io/acme", or configure it: `[oci.registries.{alias}]` with
                        `address = "..."` in pants.toml.
                        """
                    )
                )
            else:
                registry = OciRegistry(name)
            if registry not in found:
                found.append(registry)
        return tuple(found)


@rule(desc="Read `[oci].registries`")
async def oci_registries(oci: OciSubsystem) -> OciRegistries:
    return OciRegistries.from_options(oci.registries, oci.default_registries)


@dataclass(frozen=True)
class RegistryNames:
    """The image's names in one registry (none: the image has no registry)."""

    registry: Optional[OciRegistry]
    repository: str
    tags: Tuple[str, ...]

    @property
    def references(self) -> Tuple[str, ...]:
        prefix = f"{self.registry.address}/" if self.registry else ""
        return tuple(f"{prefix}{self.repository}:{tag}" for tag in self.tags)

    @property
    def skip_push(self) -> bool:
        """Whether `publish` only lists these names (the registry's `skip_push`)."""
        return self.registry is not None and self.registry.skip_push

    def to_json(self) -> Dict[str, Any]:
        """As `image-info.json` records it (only for a registry), and `publish` reads it."""
        assert self.registry is not None
        return {
            **self.registry.to_json(),
            "repository": self.repository,
            "tags": list(self.tags),
            "references": list(self.references),
            "skip_push": self.registry.skip_push,
        }


def image_names(
    target: Target,
    registries: OciRegistries,
    tags: Sequence[str],
    content_hash: str,
    tag_vars: TagVars,
) -> Tuple[RegistryNames, ...]:
    """The image's full names, as the docker-archive and `publish` name it: for each of its
    registries (`OciRegistries.for_target`), `registry/repository:tag` for each of `tags` (its
    `image_tags`, as the build resolved them) and of the registry's `extra_image_tags`. Those
    are resolved here with the build's `{hash}` (`content_hash`) and `tag_vars`, so that a tag
    means the same in both lists. The repository is the registry's `repository`, else the
    target's. Without registries, one entry of `repository:tag` names (no registry).
    Every name is checked: an error names the target, its fields and the option."""
    address = target.address
    target_repository = interpolate(
        target[OciImageRepositoryField].value or "{name}", address, OciImageRepositoryField.alias
    )
    names: List[RegistryNames] = []
    for registry in registries.for_target(address, target[OciImageRegistriesField].value) or (
        None,
    ):
        repository = target_repository
        extra_tags: Tuple[str, ...] = ()
        if registry is not None:
            if registry.repository is not None:
                repository = registry.repository_for(address, target_repository)
            extra_tags = tuple(
                interpolate(
                    tag,
                    address,
                    "extra_image_tags",
                    content_hash,
                    tag_vars,
                    where=f"The `extra_image_tags` of {registry.option} (for target {address})",
                )
                for tag in registry.extra_image_tags
            )
        all_tags = tuple(dict.fromkeys((*tags, *extra_tags)))
        names.append(RegistryNames(registry, repository, all_tags))
    for entry in names:
        for name in entry.references:
            _check_name(target, entry.registry, name)
    return tuple(names)


def _check_name(target: Target, registry: Optional[OciRegistry], name: str) -> None:
    sources = (
        f"from its `{OciImageRegistriesField.alias}`, `{OciImageRepositoryField.alias}` and "
        f"`{OciImageTagsField.alias}` fields"
    )
    if registry is not None and registry.alias:
        sources += f" and {registry.option}"
    elif registry is not None and registry.default:
        sources += " and `[oci].default_registries`"
    try:
        reference = parse_reference(name)
    except InvalidReferenceError as e:
        problem = f"that is not a valid image name: {e}"
    else:
        if reference.digest is None and reference.tag is not None:
            return
        problem = "that is not `name:tag`"
    raise InvalidFieldException(
        softwrap(
            f"""
            Target {target.address} names the image {name!r} ({sources}), but {problem}.
            """
        )
    )


@dataclass(frozen=True)
class OciImageRegistriesFieldSet(FieldSet):
    required_fields = (OciImageRegistriesField,)

    registries: OciImageRegistriesField


class ValidateOciImageRegistriesRequest(ValidateDependenciesRequest):  # type: ignore[type-arg]
    field_set_type = OciImageRegistriesFieldSet


@rule
async def validate_registry_aliases(
    request: ValidateOciImageRegistriesRequest, registries: OciRegistries
) -> ValidatedDependencies:
    """`registries=["@alias"]` against `[oci].registries`: a field cannot see options where it
    is parsed, and this is the first step with options that every goal reading the target's
    dependencies takes (as the Python backend checks `interpreter_constraints` here)."""
    field_set = request.field_set
    assert isinstance(field_set, OciImageRegistriesFieldSet)
    registries.for_target(field_set.address, field_set.registries.value)
    return ValidatedDependencies()


def rules() -> Iterable[Union[Rule, UnionRule]]:
    return [
        *collect_rules(),
        UnionRule(ValidateDependenciesRequest, ValidateOciImageRegistriesRequest),
    ]
