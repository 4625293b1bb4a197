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
    content = rule_runner.request(LayerContent, [LayerContentRequest(addresses)])
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
