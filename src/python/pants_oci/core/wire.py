"""The typed contract between the Pants backend and the `pants-oci` command line.

Each command the backend runs is a frozen dataclass whose `argv()` is that command line
(after the global options, `GlobalOptions`), and each command's stdout (one JSON object,
docs/cli.md) is a frozen dataclass: `from_json()` checks the output's shape, naming the command
in any error, and `to_json()` gives back the same object. The backend builds commands and reads
results only through these types (src/python/pants_oci/util_rules/tool_commands.py);
tests/core/test_wire.py holds them to the CLI's own argument parser and output.

The backend imports this module on Pants' Python 3.9: it uses only the standard library.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import (
    Any,
    ClassVar,
    Dict,
    Generic,
    List,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

# The command line's name, as its messages and errors spell it.
PROGRAM = "pants-oci"


class ToolOutputError(ValueError):
    """A command's stdout that is not the JSON object its result type describes."""

    def __init__(self, command: str, problem: str) -> None:
        super().__init__(
            f"`{PROGRAM} {command}` printed output that is not what it promises: {problem}. "
            "The image tool and the Pants backend should come from the same pants-oci release."
        )
        self.command = command
        self.problem = problem


# --- Results: each command's stdout --------------------------------------------------------------
#
# A result is a frozen dataclass whose field names are the JSON keys, read and written by its
# field types: str, int, bool, Optional[...], a nested result, Tuple[X, ...] for a JSON list,
# and Tuple[Tuple[str, str], ...] for a JSON object of strings (pairs, so results stay
# hashable). A field with a default (None) is a key the output may leave out, and leaves out
# when None; a field without one is always there (null for None).

ResultT = TypeVar("ResultT", bound="Result")
_STRING_MAP = Tuple[Tuple[str, str], ...]


class Result:
    """The stdout of a command (`COMMAND`, as errors name it)."""

    COMMAND: ClassVar[str] = ""

    @classmethod
    def from_json(cls: Type[ResultT], text: Union[str, bytes]) -> ResultT:
        try:
            value = json.loads(text)
        except ValueError as exc:
            shown = text[:200].decode(errors="replace") if isinstance(text, bytes) else text[:200]
            raise ToolOutputError(cls.COMMAND, f"not JSON ({exc}): {shown!r}") from None
        result: ResultT = _read(cls.COMMAND, cls, value, "")
        return result

    def to_json(self) -> Dict[str, Any]:
        document: Dict[str, Any] = _write(type(self), self)
        return document


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )


def _read(command: str, kind: Any, value: Any, path: str) -> Any:
    """`value` (from JSON) as the type `kind`, or an error naming `command` and the `path` of
    the value in its output (`layers[0].digest`; "" for the whole)."""

    def wrong(wanted: str) -> ToolOutputError:
        what = f"`{path}`" if path else "the output"
        return ToolOutputError(command, f"{what} is {_kind(value)}, not {wanted}")

    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise wrong("an object")
        return _read_object(command, kind, value, path)
    origin, args = get_origin(kind), get_args(kind)
    if origin is Union:  # Optional[X]
        return None if value is None else _read(command, args[0], value, path)
    if kind == _STRING_MAP:
        if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
            return tuple(value.items())
        raise wrong("an object of strings")
    if origin is tuple:
        if not isinstance(value, list):
            raise wrong("a list")
        return tuple(
            _read(command, args[0], item, f"{path}[{index}]") for index, item in enumerate(value)
        )
    # JSON's true is no number, though Python's bool is an int.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise wrong({str: "a string", int: "an integer", bool: "a boolean"}[kind])
    return value


def _read_object(command: str, kind: Any, value: Dict[str, Any], path: str) -> Any:
    where = f"`{path}`" if path else "the output"
    fields = dataclasses.fields(kind)
    unknown = sorted(set(value) - {field.name for field in fields})
    if unknown:
        raise ToolOutputError(command, f"{where} has unknown keys {unknown}")
    hints = get_type_hints(kind)
    values = {}
    for field in fields:
        if field.name in value:
            inner = f"{path}.{field.name}" if path else field.name
            values[field.name] = _read(command, hints[field.name], value[field.name], inner)
        elif field.default is dataclasses.MISSING:
            raise ToolOutputError(command, f"{where} has no {field.name!r}")
    return kind(**values)


def _write(kind: Any, value: Any) -> Any:
    """`value`, of the type `kind`, as JSON."""
    if value is None:
        return None
    if dataclasses.is_dataclass(kind):
        hints = get_type_hints(kind)
        return {
            field.name: _write(hints[field.name], getattr(value, field.name))
            for field in dataclasses.fields(kind)
            if field.default is dataclasses.MISSING or getattr(value, field.name) is not None
        }
    if get_origin(kind) is Union:  # Optional[X]
        return _write(get_args(kind)[0], value)
    if kind == _STRING_MAP:
        return dict(value)
    if get_origin(kind) is tuple:
        return [_write(get_args(kind)[0], item) for item in value]
    return value


@dataclass(frozen=True)
class LayerDistribution(Result):
    """A Python distribution a layer unpacked, as its metadata (`METADATA`) names it."""

    name: str
    version: str
    license_expression: Optional[str] = None  # `License-Expression`: an SPDX expression
    license: Optional[str] = None  # `License`: free text


@dataclass(frozen=True)
class LayerBuildResult(Result):
    """`layer build`: the blob written (also the `META_JSON` that `image assemble` takes),
    and the Python distributions its `installed-wheel` entries unpacked."""

    COMMAND: ClassVar[str] = "layer build"

    digest: str
    diff_id: str
    size: int
    media_type: str
    uncompressed_size: int
    distributions: Optional[Tuple[LayerDistribution, ...]] = None


@dataclass(frozen=True)
class BlobDescriptor(Result):
    """A layer as a manifest lists it."""

    digest: str
    size: int
    media_type: str


@dataclass(frozen=True)
class BasePullResult(Result):
    """`base pull`: the platform's image, written to the output layout."""

    COMMAND: ClassVar[str] = "base pull"

    reference: str
    index_digest: Optional[str]  # the index resolved to the platform, if the reference was one
    manifest_digest: str
    config_digest: str
    platform: str
    layers: Tuple[BlobDescriptor, ...]


@dataclass(frozen=True)
class AssembledLayer(Result):
    """A layer of an assembled image, bottom first: base layers, then its own."""

    digest: str
    diff_id: str
    size: int
    media_type: str


@dataclass(frozen=True)
class AssembledBase(Result):
    """The registry image a base came from, pinned by digest (None for scratch, a local base)."""

    reference: Optional[str]
    manifest_digest: Optional[str]


@dataclass(frozen=True)
class AttachedReferrer(Result):
    """An artifact attached to an image (its subject) as an OCI 1.1 referrer: an SBOM or a
    provenance statement."""

    digest: str  # of the artifact's manifest
    artifact_type: str
    subject: str  # the image manifest's digest


@dataclass(frozen=True)
class ImageAssembleResult(Result):
    """`image assemble`: the image written to the output layout (its "image info"), and the
    artifacts attached to it there (`--supply-chain`)."""

    COMMAND: ClassVar[str] = "image assemble"

    manifest_digest: str
    config_digest: str
    media_type: str
    layers: Tuple[AssembledLayer, ...]
    tags: Tuple[str, ...]
    base: AssembledBase
    referrers: Optional[Tuple[AttachedReferrer, ...]] = None


@dataclass(frozen=True)
class ImageIndexResult(Result):
    """`image index`: the index written to the output layout, its images by platform, and
    the artifacts attached to them (carried over from the images' layouts)."""

    COMMAND: ClassVar[str] = "image index"

    manifest_digest: str
    media_type: str
    tags: Tuple[str, ...]
    platforms: Tuple[Tuple[str, str], ...]  # (platform, manifest digest), in index order
    referrers: Optional[Tuple[AttachedReferrer, ...]] = None


@dataclass(frozen=True)
class PythonInterpreter(Result):
    path: str  # in the image
    version: str  # major.minor


@dataclass(frozen=True)
class ImagePythonsResult(Result):
    """`image pythons`: the image's Python interpreters, preferred first."""

    COMMAND: ClassVar[str] = "image pythons"

    interpreters: Tuple[PythonInterpreter, ...]


@dataclass(frozen=True)
class ImageDirsResult(Result):
    """`image dirs`: the directories (and symlinks) the image's layers leave."""

    COMMAND: ClassVar[str] = "image dirs"

    directories: Tuple[str, ...]  # relative, no leading `/`


@dataclass(frozen=True)
class IndexEntry(Result):
    """An image of an index, as `inspect` summarises it."""

    digest: str
    media_type: str
    size: int
    platform: Optional[str]


@dataclass(frozen=True)
class InspectResult(Result):
    """`inspect` (no `--raw`, no `--config`): an index's entries (`manifests`), or an image's
    `config_digest`, `platform` and `layers`."""

    COMMAND: ClassVar[str] = "inspect"

    reference: str
    digest: str
    media_type: str
    manifests: Optional[Tuple[IndexEntry, ...]] = None
    config_digest: Optional[str] = None
    platform: Optional[str] = None
    layers: Optional[Tuple[BlobDescriptor, ...]] = None

    def __post_init__(self) -> None:
        image = (self.config_digest, self.platform, self.layers)
        if (self.manifests is None) == (None in image):
            raise ToolOutputError(
                self.COMMAND,
                "a summary has either 'manifests' (an index) or 'config_digest', 'platform' "
                "and 'layers' (an image)",
            )


@dataclass(frozen=True)
class PushedReference(Result):
    reference: str  # with its tag (`latest` when none was given)
    digest: str


@dataclass(frozen=True)
class PushResult(Result):
    """`push`: each reference pushed. A push that failed part way (exit 1) prints, instead,
    which references moved (`updated`) and which did not (`not_updated`)."""

    COMMAND: ClassVar[str] = "push"

    pushed: Tuple[PushedReference, ...]
    updated: Optional[Tuple[str, ...]] = None
    not_updated: Optional[Tuple[str, ...]] = None


# --- Inputs: documents the backend writes for a command ---------------------------------------
#
# Read and written as results are; a wrong one is the backend's error, reported by the command
# as a bad input file.


@dataclass(frozen=True)
class FactsDistribution(Result):
    """A third-party Python distribution in the image, as the resolve installed it."""

    name: str
    version: str
    archive: Optional[str] = None  # the wheel file it was installed from
    sha256: Optional[str] = None  # of that file (or the sdist it was built from): the lockfile's


@dataclass(frozen=True)
class FactsPython(Result):
    """The image's `pex_binary`: who runs it, and what it was resolved from."""

    pex_binary: str  # its address
    version: str  # the base's Python, major.minor
    interpreter: Optional[str] = None  # its path in the image
    resolve: Optional[str] = None
    lockfile: Optional[str] = None  # the resolve's lockfile, relative to the build root
    lockfile_sha256: Optional[str] = None
    sources_layer: Optional[str] = None  # the digest of the layer with the first-party code
    distributions: Tuple[FactsDistribution, ...] = ()


@dataclass(frozen=True)
class BuildFacts(Result):
    """`image assemble --supply-chain FACTS`: what the build knows of the image, beyond what
    assembly sees itself (layers, base digest, platform), for its SBOM and provenance."""

    COMMAND: ClassVar[str] = "image assemble --supply-chain"

    image: str  # the oci_image's address
    targets: Tuple[str, ...]  # the addresses its layers come from, the image's first
    pants_version: str
    base: Optional[str] = None  # the `base` field, as written
    base_lockfile: Optional[str] = None  # the lockfile that pinned it, if one did
    python: Optional[FactsPython] = None


# --- Commands: what the backend runs -------------------------------------------------------------


class Command:
    """A command line of the tool, after its global options; paths are relative to the
    process's working directory (the Pants sandbox)."""

    def argv(self) -> Tuple[str, ...]:
        raise NotImplementedError


class JsonCommand(Command, Generic[ResultT]):
    """A command whose stdout is one JSON object: the result type it is declared with
    (`class LayerBuild(JsonCommand[LayerBuildResult])`)."""

    _result_type: ClassVar[Type[Result]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is JsonCommand:
                cls._result_type = get_args(base)[0]

    def parse_output(self, stdout: Union[str, bytes]) -> ResultT:
        return cast(ResultT, self._result_type.from_json(stdout))


def _repeated(flag: str, values: Tuple[str, ...]) -> List[str]:
    return [word for value in values for word in (flag, value)]


def _optional(flag: str, value: Optional[object]) -> List[str]:
    return [] if value is None else [flag, str(value)]


def _switch(flag: str, on: bool) -> List[str]:
    return [flag] if on else []


@dataclass(frozen=True)
class GlobalOptions:
    """The options every command takes, before its name. How to reach registries (timeouts,
    retries, plain-HTTP hosts, a CA bundle) matters only to commands that do."""

    hints_for: str = "cli"  # or "pants": name settings as `[oci]` options in errors and hints
    concurrency: Optional[int] = None
    connect_timeout: Optional[float] = None
    read_timeout: Optional[float] = None
    retries: Optional[int] = None
    insecure_registries: Tuple[str, ...] = ()
    ca_bundle: Optional[str] = None

    def argv(self) -> Tuple[str, ...]:
        return (
            "--hints-for",
            self.hints_for,
            *_optional("--concurrency", self.concurrency),
            *_optional("--connect-timeout", self.connect_timeout),
            *_optional("--read-timeout", self.read_timeout),
            *_optional("--retries", self.retries),
            *_repeated("--insecure-registry", self.insecure_registries),
            *_optional("--ca-bundle", self.ca_bundle),
        )


@dataclass(frozen=True)
class LayerBuild(JsonCommand[LayerBuildResult]):
    """`layer build`: a layer blob at `output` from the JSON spec at `spec`."""

    spec: str
    output: str

    def argv(self) -> Tuple[str, ...]:
        return ("layer", "build", "--spec", self.spec, "--output", self.output)


@dataclass(frozen=True)
class BasePull(JsonCommand[BasePullResult]):
    """`base pull`: one platform of a registry image into the layout directory `output`,
    its layers too with `with_layers`; through the blob cache directory `blob_cache`."""

    reference: str
    output: str
    platform: Optional[str] = None  # default: the machine's Linux
    blob_cache: Optional[str] = None
    with_layers: bool = False

    def argv(self) -> Tuple[str, ...]:
        return (
            "base",
            "pull",
            self.reference,
            *_optional("--platform", self.platform),
            "--output",
            self.output,
            *_optional("--blob-cache", self.blob_cache),
            *_switch("--with-layers", self.with_layers),
        )


@dataclass(frozen=True)
class LayerInput:
    """A layer for `image assemble`: the `layer build` output describing it, and its blob
    (none with `omit_layers`, when the blob is neither read nor written)."""

    blob: Optional[str]
    metadata: str

    def arg(self) -> str:
        return self.metadata if self.blob is None else f"{self.blob}={self.metadata}"


@dataclass(frozen=True)
class ImageAssemble(JsonCommand[ImageAssembleResult]):
    """`image assemble`: `base` ("scratch" or a layout directory) plus `layers` (bottom
    first) and the config file `config`, as an OCI layout at `output` tagged `tags` (the
    tool's default, `latest`, when none), with its documents only when `omit_layers`; a
    docker-archive too at `docker_archive` (with every blob), naming the image
    `archive_names`."""

    base: str
    config: str
    output: str
    layers: Tuple[LayerInput, ...] = ()
    source_date_epoch: Optional[int] = None
    tags: Tuple[str, ...] = ()
    base_reference: Optional[str] = None
    omit_layers: bool = False
    docker_archive: Optional[str] = None
    archive_names: Tuple[str, ...] = ()
    supply_chain: Optional[str] = None  # a BuildFacts file: attach an SBOM and provenance

    def argv(self) -> Tuple[str, ...]:
        return (
            "image",
            "assemble",
            "--base",
            self.base,
            *_repeated("--layer", tuple(layer.arg() for layer in self.layers)),
            "--config",
            self.config,
            "--output",
            self.output,
            *_optional("--source-date-epoch", self.source_date_epoch),
            *_repeated("--tag", self.tags),
            *_optional("--base-reference", self.base_reference),
            *_switch("--omit-layers", self.omit_layers),
            *_optional("--docker-archive", self.docker_archive),
            *_repeated("--archive-name", self.archive_names),
            *_optional("--supply-chain", self.supply_chain),
        )


@dataclass(frozen=True)
class ImageIndex(JsonCommand[ImageIndexResult]):
    """`image index`: the single-image layouts `images` as one index in the layout at
    `output`, tagged `tags`; with `omit_layers`, its documents only."""

    images: Tuple[str, ...]
    output: str
    tags: Tuple[str, ...] = ()
    omit_layers: bool = False

    def argv(self) -> Tuple[str, ...]:
        return (
            "image",
            "index",
            *_switch("--omit-layers", self.omit_layers),
            "--output",
            self.output,
            *_repeated("--image", self.images),
            *_repeated("--tag", self.tags),
        )


@dataclass(frozen=True)
class ImagePythons(JsonCommand[ImagePythonsResult]):
    """`image pythons`: the Python interpreters of the image in the layout `base`."""

    base: str

    def argv(self) -> Tuple[str, ...]:
        return ("image", "pythons", "--base", self.base)


@dataclass(frozen=True)
class ImageDirs(JsonCommand[ImageDirsResult]):
    """`image dirs`: the directories of the image in the layout `base`."""

    base: str

    def argv(self) -> Tuple[str, ...]:
        return ("image", "dirs", "--base", self.base)


@dataclass(frozen=True)
class Inspect(JsonCommand[InspectResult]):
    """`inspect`: a summary of the registry image `reference` (resolved to `platform`, if
    given). (`--raw` and `--config` print documents, not a summary: no part of the contract.)"""

    reference: str
    platform: Optional[str] = None

    def argv(self) -> Tuple[str, ...]:
        return ("inspect", self.reference, *_optional("--platform", self.platform))


@dataclass(frozen=True)
class Push(JsonCommand[PushResult]):
    """`push`: the image (or index) of the layout `layout` to each of `to`."""

    layout: str
    to: Tuple[str, ...]
    base_reference: Optional[str] = None
    # A push ledger directory (`--ledger`): mount what other repositories received before.
    ledger: Optional[str] = None

    def argv(self) -> Tuple[str, ...]:
        return (
            "push",
            self.layout,
            *_repeated("--to", self.to),
            *_optional("--base-reference", self.base_reference),
            *_optional("--ledger", self.ledger),
        )


@dataclass(frozen=True)
class Run(Command):
    """`run`: the image `ref` of the layout `layout`, in the foreground (no JSON: the
    container's output and exit status are the command's). `env`: `NAME=VALUE`, or `NAME`
    to pass through the value of `pass_env_prefix` + NAME. `container_args`: None for the
    image's cmd; else `--` and these (Pants appends `pants run ... -- ARGS` after it)."""

    layout: str
    ref: Optional[str] = None
    runtime: Optional[str] = None  # "auto" (the tool's default), "runc" or "podman"
    pass_env_prefix: Optional[str] = None
    mounts: Tuple[str, ...] = ()  # SOURCE:DEST
    workdir: Optional[str] = None
    user: Optional[str] = None
    max_unpacked_size: Optional[int] = None
    env: Tuple[str, ...] = ()
    container_args: Optional[Tuple[str, ...]] = None

    def argv(self) -> Tuple[str, ...]:
        return (
            "run",
            self.layout,
            *_optional("--ref", self.ref),
            *_optional("--runtime", self.runtime),
            *_optional("--pass-env-prefix", self.pass_env_prefix),
            *_repeated("--mount", self.mounts),
            *_optional("--workdir", self.workdir),
            *_optional("--user", self.user),
            *_optional("--max-unpacked-size", self.max_unpacked_size),
            *_repeated("--env", self.env),
            *(() if self.container_args is None else ("--", *self.container_args)),
        )
