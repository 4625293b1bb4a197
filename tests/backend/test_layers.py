"""Layers built by the image tool in a Pants process: content-addressed and reproducible."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest
from pants.core.target_types import FilesGeneratorTarget, FileTarget
from pants.core.target_types import rules as core_target_types_rules
from pants.core.util_rules import source_files
from pants.engine.addresses import Address, Addresses
from pants.engine.fs import DigestContents
from pants.engine.internals.scheduler import ExecutionError
from pants.engine.rules import QueryRule
from pants.engine.target import DependenciesRequest
from pants.testutil.rule_runner import RuleRunner

from pants_oci.target_types import OciImageDependenciesField, OciImageTarget
from pants_oci.util_rules import layers, tool
from pants_oci.util_rules.layers import (
    BuildLayerRequest,
    BuiltLayer,
    LayerContent,
    LayerContentRequest,
)
from tests.backend.rule_runners import configure

pytestmark = pytest.mark.slow


@pytest.fixture
def rule_runner() -> RuleRunner:
    runner = RuleRunner(
        rules=[
            *tool.rules(),
            *layers.rules(),
            *source_files.rules(),
            *core_target_types_rules(),
            QueryRule(Addresses, [DependenciesRequest]),
            QueryRule(LayerContent, [LayerContentRequest]),
            QueryRule(BuiltLayer, [BuildLayerRequest]),
            QueryRule(DigestContents, [tool.Digest]),
        ],
        target_types=[OciImageTarget, FilesGeneratorTarget, FileTarget],
    )
    return configure(runner)


def _layer(rule_runner: RuleRunner) -> BuiltLayer:
    target = rule_runner.get_target(Address("app", target_name="img"))
    addresses = rule_runner.request(
        Addresses, [DependenciesRequest(target[OciImageDependenciesField])]
    )
    content = rule_runner.request(LayerContent, [LayerContentRequest(addresses, target.address)])
    return rule_runner.request(
        BuiltLayer, [BuildLayerRequest(target.address, content.snapshot, "/srv")]
    )


def _tar_members(rule_runner: RuleRunner, layer: BuiltLayer) -> dict[str, tarfile.TarInfo]:
    [blob] = rule_runner.request(DigestContents, [layer.blob])
    assert blob.path == BuiltLayer.BLOB_PATH
    assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == layer.digest
    raw = gzip.decompress(blob.content)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == layer.diff_id
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_layer_holds_dependency_files_under_destination(rule_runner: RuleRunner) -> None:
    rule_runner.write_files(
        {
            "app/BUILD": "files(name='files', sources=['*.txt', 'run.sh'])\n"
            "oci_image(name='img', dependencies=[':files'])",
            "app/a.txt": "alpha\n",
            "app/b.txt": "beta\n",
            "app/run.sh": "#!/bin/sh\necho hi\n",
        }
    )
    layer = _layer(rule_runner)
    members = _tar_members(rule_runner, layer)
    assert layer.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert {"srv/app/a.txt", "srv/app/b.txt", "srv/app/run.sh"} <= set(members)
    assert members["srv/app/a.txt"].mtime == 0 and members["srv/app/a.txt"].uid == 0


def test_same_content_same_layer_digest_and_change_gives_new_digest(
    rule_runner: RuleRunner,
) -> None:
    files = {
        "app/BUILD": (
            "files(name='files', sources=['*.txt'])\noci_image(name='img', dependencies=[':files'])"
        ),
        "app/a.txt": "alpha\n",
    }
    rule_runner.write_files(files)
    first = _layer(rule_runner)
    rule_runner.write_files({"app/a.txt": "alpha\n"})  # rewritten: new mtime, same bytes
    assert _layer(rule_runner).digest == first.digest
    rule_runner.write_files({"app/a.txt": "ALPHA\n"})
    assert _layer(rule_runner).digest != first.digest


# --- every kind of dependency is packaged or refused -------------------------------------------


@pytest.fixture
def kinds_runner() -> RuleRunner:
    from pants.backend.python.target_types import (
        PythonRequirementTarget,
        PythonSourcesGeneratorTarget,
        PythonSourceTarget,
    )
    from pants.backend.python.target_types_rules import rules as python_target_types_rules
    from pants.backend.shell.target_types import ShellSourcesGeneratorTarget, ShellSourceTarget
    from pants.backend.shell.target_types import rules as shell_target_types_rules
    from pants.core.target_types import (
        ArchiveTarget,
        GenericTarget,
        RelocatedFiles,
        ResourcesGeneratorTarget,
        ResourceTarget,
    )
    from pants.core.util_rules import stripped_source_files
    from pants.source.source_root import rules as source_root_rules

    runner = RuleRunner(
        rules=[
            *tool.rules(),
            *layers.rules(),
            *source_files.rules(),
            *stripped_source_files.rules(),
            *source_root_rules(),
            *core_target_types_rules(),
            *python_target_types_rules(),
            *shell_target_types_rules(),
            QueryRule(Addresses, [DependenciesRequest]),
            QueryRule(LayerContent, [LayerContentRequest]),
        ],
        target_types=[
            OciImageTarget,
            FilesGeneratorTarget,
            FileTarget,
            ResourcesGeneratorTarget,
            ResourceTarget,
            RelocatedFiles,
            ArchiveTarget,
            GenericTarget,
            PythonSourcesGeneratorTarget,
            PythonSourceTarget,
            PythonRequirementTarget,
            ShellSourcesGeneratorTarget,
            ShellSourceTarget,
        ],
    )
    return configure(runner, "--source-root-patterns=['src/python', 'src/sh']")


KIND_FILES = {
    "src/python/app/BUILD": "python_sources(name='py')\nresources(name='res', sources=['*.json'])",
    "src/python/app/main.py": "print('hi')\n",
    "src/python/app/data.json": "{}\n",
    "src/sh/tools/BUILD": "shell_sources(name='sh')",
    "src/sh/tools/run.sh": "echo hi\n",
    "assets/BUILD": "files(name='files', sources=['logo.txt'])\n"
    "relocated_files(name='moved', files_targets=[':files'], src='assets', dest='static')\n"
    "archive(name='zip', format='zip', files=[':files'])\n"
    "python_requirement(name='req', requirements=['humanize==4.9.0'])\n"
    "target(name='bare')",
    "assets/logo.txt": "logo\n",
}


def _image_content(kinds_runner: RuleRunner, dependency: str) -> LayerContent:
    """What an image depending on `dependency` alone puts in its last layer."""
    kinds_runner.write_files(
        {**KIND_FILES, "img/BUILD": f"oci_image(name='img', dependencies=['{dependency}'])"}
    )
    target = kinds_runner.get_target(Address("img", target_name="img"))
    addresses = kinds_runner.request(
        Addresses, [DependenciesRequest(target[OciImageDependenciesField])]
    )
    return kinds_runner.request(LayerContent, [LayerContentRequest(addresses, target.address)])


@pytest.mark.parametrize(
    ("dependency", "expected"),
    [
        ("//assets:files", {"assets/logo.txt"}),
        ("//assets:moved", {"static/logo.txt"}),
        ("//assets:zip", {"assets/zip.zip"}),
        ("//src/python/app:res", {"app/data.json"}),
        ("//src/python/app:py", {"app/main.py"}),
        # Pants' shell backend uses no source roots: scripts keep their path, as `pants run` has it.
        ("//src/sh/tools:sh", {"src/sh/tools/run.sh"}),
    ],
)
def test_each_kind_of_dependency_puts_its_files_in_the_layer(
    kinds_runner: RuleRunner, dependency: str, expected: set[str]
) -> None:
    assert set(_image_content(kinds_runner, dependency).snapshot.files) == expected


@pytest.mark.parametrize(
    ("dependency", "kind"),
    [("//assets:req", "python_requirement"), ("//assets:bare", "target")],
)
def test_a_dependency_with_nothing_to_put_in_a_layer_is_an_error(
    kinds_runner: RuleRunner, dependency: str, kind: str
) -> None:
    with pytest.raises(ExecutionError) as error:
        _image_content(kinds_runner, dependency)
    message = " ".join(str(error.value).split())
    assert f"img:img depends on {dependency.lstrip('/')}, a `{kind}` target" in message, message
    assert "pex_binary" in message and "Remove" in message
