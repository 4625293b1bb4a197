"""An image's `pex_binary` as layers, for one platform, and the entrypoint that runs it.

`python_layout="venv"` (the default): a venv at `/opt/venv` run by the base's Python, no PEX
bootstrap at start-up. Bottom first:

  * the venv's own files: `pyvenv.cfg`, `bin/python` linked to the base's interpreter, and
    the launcher of a `module:function` entry point;
  * the third-party distributions, unpacked from the packed PEX's installed-wheel archives
    into site-packages: one layer each, or grouped under the layer budget (python_layers.py);
  * the first-party code (the PEX's loose sources), in site-packages.

`python_layout="pex"`: the packed PEX at its output path, as two layers (its `.bootstrap` and
`.deps`, then its code), run by the base's Python.

Either way the PEX is resolved for the platform and the base's Python (python.py).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from pants.engine.addresses import Address
from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestSubset,
    FileContent,
    PathGlobs,
    RemovePrefix,
    Snapshot,
)
from pants.engine.rules import Get, MultiGet, Rule, collect_rules, rule
from pants.engine.target import InvalidFieldException
from pants.util.frozendict import FrozenDict
from pants.util.strutil import softwrap

from pants_oci.core import python_venv, wire
from pants_oci.target_types import (
    OciImageBaseField,
    OciImageEntrypointField,
    OciImagePythonLayoutField,
)
from pants_oci.util_rules.base_images import (
    BaseInterpreters,
    BaseInterpretersRequest,
    ResolvedBase,
)
from pants_oci.util_rules.layer_plan import LayerSource
from pants_oci.util_rules.layers import BuildLayerRequest, VenvContent
from pants_oci.util_rules.python import (
    PackedPex,
    PackedPexRequest,
    PexPython,
    PexPythonRequest,
    choose_interpreter,
)
from pants_oci.util_rules.python_layers import plan_distribution_layers

VENV = python_venv.DEFAULT_VENV
# What a packed PEX's loose files hold besides the code: the PEX's own machinery.
_PEX_MACHINERY = ("__main__.py", "PEX-INFO", "__pex__/**")


@dataclass(frozen=True)
class PythonLayersRequest:
    image: Address
    pexes: Tuple[Address, ...]
    platform: str
    base: ResolvedBase
    base_text: str  # the image's `base` field, as written
    layout: str  # `python_layout`: "venv" or "pex"
    budget: int
    entrypoint_set: bool  # the image sets its own `entrypoint`


@dataclass(frozen=True)
class PythonFacts:
    """What the image's SBOM and provenance say of its one pex_binary."""

    pex: PackedPex
    interpreter: Optional[wire.PythonInterpreter]
    code_layer: Optional[BuildLayerRequest]  # the layer of its first-party code


@dataclass(frozen=True)
class PythonLayers:
    """The layers of each pex_binary (bottom first, keyed by what the layer plan calls them),
    and the entrypoint and environment that run the image's one pex_binary."""

    layers: Tuple[Tuple[Address, LayerSource, Tuple[BuildLayerRequest, ...]], ...]
    entrypoint: Optional[Tuple[str, ...]]
    env: FrozenDict[str, str]
    facts: Optional[PythonFacts] = None

    def layers_by_source(self) -> Dict[Tuple[Address, LayerSource], List[BuildLayerRequest]]:
        return {(owner, source): list(requests) for owner, source, requests in self.layers}


def _one_pex(request: PythonLayersRequest) -> Address:
    if len(request.pexes) > 1 and (request.layout == "venv" or not request.entrypoint_set):
        why = (
            "its venv can hold one"
            if request.layout == "venv"
            else "it cannot tell which one to run"
        )
        raise InvalidFieldException(
            softwrap(
                f"""
                Target {request.image} depends on several pex_binary targets
                ({", ".join(str(a) for a in request.pexes)}), but {why}. Depend on one, or
                set `{OciImagePythonLayoutField.alias}="pex"` and the
                `{OciImageEntrypointField.alias}` field.
                """
            )
        )
    return request.pexes[0]


async def _interpreter(request: PythonLayersRequest) -> Optional[wire.PythonInterpreter]:
    """The base's Python that runs the PEX; None when the image sets its own entrypoint to a
    PEX and the base's Python cannot be known."""
    pex = _one_pex(request)
    base = request.base
    if base.is_docker_archive or base.path is None:
        if request.layout == "pex" and request.entrypoint_set:
            return None
        if base.is_docker_archive:
            raise InvalidFieldException(
                softwrap(
                    f"""
                    Target {request.image} runs the pex_binary {pex} on the
                    `{OciImageBaseField.alias}` {request.base_text!r}, whose Python cannot be
                    looked up in a docker-archive. Use the base as an `oci-layout:` directory
                    or from a registry, or set `{OciImagePythonLayoutField.alias}="pex"` and
                    the `{OciImageEntrypointField.alias}` field.
                    """
                )
            )
    python, found = await MultiGet(
        Get(PexPython, PexPythonRequest(pex)),
        Get(BaseInterpreters, BaseInterpretersRequest(base)),
    )
    if not found.interpreters and request.layout == "pex" and request.entrypoint_set:
        return None
    return choose_interpreter(
        request.image,
        request.base_text,
        python,
        found.interpreters,
        venv=request.layout == "venv",
    )


def _pex_layer(pex: PackedPex, source: LayerSource) -> BuildLayerRequest:
    content = pex.requirements if source is LayerSource.PEX_REQUIREMENTS else pex.sources
    return BuildLayerRequest(pex.address, content, label=str(source.value))


def _launcher_name(pex: PackedPex) -> str:
    name = posixpath.basename(pex.pex_path)
    return name[: -len(".pex")] if name.endswith(".pex") else name


def _venv_entrypoint(pex: PackedPex) -> Tuple[str, ...]:
    python = f"{VENV}/bin/python"
    entry = pex.entry
    if entry.module and entry.function:
        argv: Tuple[str, ...] = (python, f"{VENV}/bin/{_launcher_name(pex)}")
    elif entry.module:
        argv = (python, "-m", entry.module)
    elif entry.script:
        argv = (python, f"{VENV}/bin/{entry.script}")
    else:
        argv = (python,)
    return (*argv, *pex.args)


async def _venv_layers(
    pex: PackedPex, interpreter: wire.PythonInterpreter, budget: int
) -> Dict[LayerSource, Tuple[BuildLayerRequest, ...]]:
    version = interpreter.version
    entry = pex.entry
    launcher: Sequence[FileContent] = ()
    if entry.module and entry.function:
        launcher = [
            FileContent(
                f"{VENV.lstrip('/')}/bin/{_launcher_name(pex)}",
                python_venv.launcher_script(VENV, entry.module, entry.function),
                is_executable=True,
            )
        ]
    groups = plan_distribution_layers(pex.distributions, budget)
    deps = f"{pex.pex_path}/.deps"
    own, wheel_files, code = await MultiGet(
        Get(Snapshot, CreateDigest(launcher)),
        Get(Digest, DigestSubset(pex.requirements.digest, PathGlobs([f"{deps}/*.whl"]))),
        Get(
            Snapshot,
            DigestSubset(
                pex.sources.digest,
                PathGlobs(
                    [
                        f"{pex.pex_path}/**",
                        *(f"!{pex.pex_path}/{part}" for part in _PEX_MACHINERY),
                    ]
                ),
            ),
        ),
    )
    wheels = await Get(Snapshot, RemovePrefix(wheel_files, deps))
    group_contents = await MultiGet(
        Get(
            Snapshot,
            DigestSubset(
                wheels.digest,
                PathGlobs([posixpath.relpath(d.path, deps) for d in group.distributions]),
            ),
        )
        for group in groups
    )
    code = await Get(Snapshot, RemovePrefix(code.digest, pex.pex_path))
    venv_layer = BuildLayerRequest(
        pex.address,
        own,
        label="venv",
        venv=VenvContent(VENV, version, interpreter=interpreter.path),
    )
    distribution_layers = tuple(
        BuildLayerRequest(
            pex.address,
            content,
            label=group.label,
            venv=VenvContent(VENV, version, wheels=tuple(content.files)),
        )
        for group, content in zip(groups, group_contents)
    )
    code_layer = BuildLayerRequest(
        pex.address,
        code,
        destination=python_venv.site_packages(VENV, version),
        label="sources",
    )
    return {
        LayerSource.PEX_REQUIREMENTS: (venv_layer, *distribution_layers),
        LayerSource.PEX_SOURCES: (code_layer,) if code.files else (),
    }


@rule(desc="Lay out a pex_binary as OCI layers")
async def python_layers(request: PythonLayersRequest) -> PythonLayers:
    interpreter = await _interpreter(request)
    pexes = await MultiGet(
        Get(
            PackedPex,
            PackedPexRequest(
                address,
                request.image,
                request.platform if interpreter else None,
                interpreter.version if interpreter else None,
            ),
        )
        for address in request.pexes
    )
    if request.layout == "pex":
        layers = tuple(
            (pex.address, source, (_pex_layer(pex, source),))
            for pex in pexes
            for source in (LayerSource.PEX_REQUIREMENTS, LayerSource.PEX_SOURCES)
        )
        return PythonLayers(
            layers,
            None if interpreter is None else (interpreter.path, "/" + pexes[0].pex_path),
            FrozenDict(),
            # Of one pex_binary only: an SBOM lists the distributions of the image's one venv.
            PythonFacts(pexes[0], interpreter, layers[1][2][0]) if len(pexes) == 1 else None,
        )
    assert interpreter is not None
    [pex] = pexes
    venv = await _venv_layers(pex, interpreter, request.budget)
    code = venv[LayerSource.PEX_SOURCES]
    return PythonLayers(
        tuple((pex.address, source, layers) for source, layers in venv.items()),
        _venv_entrypoint(pex),
        pex.env,
        PythonFacts(pex, interpreter, code[0] if code else None),
    )


def rules() -> Iterable[Rule]:
    return collect_rules()
