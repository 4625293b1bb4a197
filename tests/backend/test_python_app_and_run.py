"""The python-app example as an image (requirements and code as separate layers, run with the
base's Python) and `pants run` of images, with real `./pants`, runc or podman and a Python base
image built from the host's interpreter."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.harness.busybox import ImageBlobs, PushedImage, write_oci_layout
from tests.harness.podman import Podman
from tests.harness.tools import runc_run, umoci_unpack
from tests.pants_runs import REPO, make_pants_repo, run_pants

pytestmark = pytest.mark.slow

APP = "examples/python-app"


def _example_files(example: str, replace: dict[str, str]) -> dict[str, str]:
    files = {}
    for path in sorted((REPO / example).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            text = path.read_text()
            for old, new in replace.items():
                text = text.replace(old, new)
            files[str(path.relative_to(REPO))] = text
    return files


def _info(repo: Path, target: str) -> dict[str, Any]:
    path, name = target.split(":")
    # Pants' default output_path: the BUILD file's path, dotted, then the target name.
    return dict(
        json.loads((repo / "dist" / path.replace("/", ".") / name / "image-info.json").read_text())
    )


def _blob(layout: Path, digest: str) -> bytes:
    return (layout / "blobs/sha256" / digest.split(":", 1)[1]).read_bytes()


def _layer_names(layout: Path, digest: str) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(_blob(layout, digest)))) as tar:
        return tar.getnames()


def test_python_app_image_layers_entrypoint_and_run(
    tmp_path: Path, python_base_image: PushedImage, busybox_image: PushedImage
) -> None:
    files = _example_files(APP, {'base="python:3.11-slim"': f'base="{python_base_image.ref}"'})
    files[f"{APP}/BUILD"] += (
        f'\noci_image(name="no-python", base="{busybox_image.ref}", dependencies=[":bin"])\n'
        # The same image as a sparse layout, on the same base by tag: its Python comes from
        # the lockfile's facts, its layers are not downloaded.
        f'oci_image(name="sparse", base="{python_base_image.tag_ref}", dependencies=[":bin"],'
        ' env={"GREETER_NAME": "a daemonless image"}, formats=["sparse-oci-layout"])\n'
        f'oci_image(name="as-pex", base="{python_base_image.ref}", dependencies=[":bin"],'
        ' env={"GREETER_NAME": "a daemonless image"}, python_layout="pex")\n'
    )
    repo = make_pants_repo(
        tmp_path / "repo",
        files,
        extra_toml=f'[source]\nroot_patterns = ["/{APP}"]\n',
    )
    target = f"{APP}:python-app"
    run_pants("package", target, f"{APP}:as-pex", cwd=repo)
    info = _info(repo, target)
    layout = repo / "dist" / APP.replace("/", ".") / "python-app"
    base_layer, venv, requirements, sources = (layer["digest"] for layer in info["layers"])
    assert base_layer == python_base_image.layer_digest
    # A venv run by the base's Python; each third-party distribution in a layer of its own,
    # the app's code in another; no PEX machinery anywhere.
    site = "opt/venv/lib/python3.11/site-packages"
    assert {"opt/venv/pyvenv.cfg", "opt/venv/bin/python", "opt/venv/bin/bin"} <= set(
        _layer_names(layout, venv)
    )
    required = _layer_names(layout, requirements)
    assert f"{site}/humanize/__init__.py" in required
    assert f"{site}/humanize-4.9.0.dist-info/METADATA" in required
    code = _layer_names(layout, sources)
    assert f"{site}/greeter/main.py" in code
    everything = [*required, *code, *_layer_names(layout, venv)]
    assert not any(".bootstrap" in name or "PEX-INFO" in name for name in everything)
    config = json.loads(_blob(layout, info["config_digest"]))
    # The venv's Python runs the entry point; the base's cmd (`python3`) is not inherited.
    assert config["config"]["Entrypoint"] == ["/opt/venv/bin/python", "/opt/venv/bin/bin"]
    assert "Cmd" not in config["config"]

    # `python_layout="pex"`: the packed PEX in two layers, run by the base's Python.
    pex_layout = repo / "dist" / APP.replace("/", ".") / "as-pex"
    pex_info = _info(repo, f"{APP}:as-pex")
    pex_requirements, pex_sources = (layer["digest"] for layer in pex_info["layers"][1:])
    pex = "examples.python-app/bin.pex"
    assert f"{pex}/.deps/humanize-4.9.0-py3-none-any.whl" in _layer_names(
        pex_layout, pex_requirements
    )
    assert f"{pex}/greeter/main.py" in _layer_names(pex_layout, pex_sources)
    pex_config = json.loads(_blob(pex_layout, pex_info["config_digest"]))
    assert pex_config["config"]["Entrypoint"] == ["/usr/bin/python3.11", f"/{pex}"]
    umoci_unpack(pex_layout, "latest", tmp_path / "pex-bundle")
    ran_pex = runc_run(tmp_path / "pex-bundle", None)
    assert ran_pex.stdout == "Hello from a daemonless image: 1500000 bytes is 1.5 MB.\n"

    bundle = tmp_path / "bundle"
    umoci_unpack(layout, "latest", bundle)
    result = runc_run(bundle, None)
    assert result.stdout == "Hello from a daemonless image: 1500000 bytes is 1.5 MB.\n"

    # `pants run` builds, unpacks and runs it; arguments after `--` reach the app.
    ran = run_pants("run", target, "--", "4096", cwd=repo)
    assert ran.stdout == "Hello from a daemonless image: 4096 bytes is 4.1 kB.\n"

    # A source edit changes only the code layer; the requirements layer keeps its digest.
    main = repo / APP / "greeter/main.py"
    main.write_text(main.read_text().replace("Hello from", "Hi from"))
    run_pants("package", target, cwd=repo)
    after = [layer["digest"] for layer in _info(repo, target)["layers"]]
    assert after[:3] == [base_layer, venv, requirements] and after[3] != sources

    # Sparse, on the same base by tag: the entrypoint from the lockfile's facts, the same
    # image without the base's layer.
    run_pants("generate-oci-lockfile", cwd=repo)
    facts = json.loads((repo / "oci.lock.json").read_text())["images"]
    assert facts[python_base_image.manifest_digest]["pythons"][0] == {
        "path": "/usr/bin/python3.11",
        "version": "3.11",
    }
    run_pants("package", target, f"{APP}:sparse", cwd=repo)
    sparse = _info(repo, f"{APP}:sparse")
    assert sparse["manifest_digest"] == _info(repo, target)["manifest_digest"]
    sparse_blobs = repo / "dist" / APP.replace("/", ".") / "sparse/blobs/sha256"
    assert not (sparse_blobs / base_layer.split(":", 1)[1]).exists()

    # A base without a matching Python: the error names the image, the PEX and the fix.
    failed = run_pants("package", f"{APP}:no-python", cwd=repo, check=False)
    assert failed.returncode != 0
    assert f"{APP}:no-python" in failed.stderr and f"{APP}:bin" in failed.stderr
    assert "no Python interpreter" in failed.stderr and "3.11" in failed.stderr
    assert 'python_layout="pex"' in failed.stderr


def test_run_hello_example_with_arguments_and_environment(
    tmp_path: Path, busybox_image: PushedImage
) -> None:
    # The example on a base with a shell (on scratch there is nothing to run).
    files = _example_files("examples/hello", {'base="scratch"': f'base="{busybox_image.ref}"'})
    repo = make_pants_repo(tmp_path / "repo", files)
    (repo / "config").mkdir()
    (repo / "config/app.conf").write_text("mounted from the repo\n")
    ran = run_pants(
        "--oci-run-env-vars=['FROM_PANTS', 'MODE=demo']",
        # docker run's options: a read-only mount (relative to the build root), user, env.
        "--oci-run-args=--mount=config:/etc/app --user=1000:1000 --env=EXTRA=x",
        "run",
        "examples/hello:hello",
        "--",
        "sh",
        "-c",
        'echo "$(pwd) $MODE $FROM_PANTS $EXTRA $(id -u)"; cat "$GREETING_FILE" /etc/app/app.conf;'
        " touch /etc/app/new 2>/dev/null || echo read-only; exit 3",
        cwd=repo,
        env={"FROM_PANTS": "passed-through"},
        check=False,
    )
    assert ran.returncode == 3, ran.stderr
    assert ran.stdout == (
        "/examples/hello demo passed-through x 1000\nHello from a daemonless image.\n"
        "mounted from the repo\nread-only\n"
    )
    refused = run_pants(
        "--oci-run-args=--privileged", "run", "examples/hello:hello", cwd=repo, check=False
    )
    assert refused.returncode != 0
    assert "`[oci].run_args` has '--privileged', which `pants run` cannot honour" in refused.stderr
    # An image too large to unpack is refused before it fills the disk, naming the option.
    too_big = run_pants(
        "--oci-run-max-unpacked-size=1000", "run", "examples/hello:hello", cwd=repo, check=False
    )
    assert too_big.returncode != 0
    assert "over its limit of 1000 bytes" in too_big.stderr, too_big.stderr[-2000:]
    assert "`[oci].run_max_unpacked_size`" in too_big.stderr


def test_run_hello_example_under_podman(
    tmp_path: Path, busybox_image: PushedImage, busybox_image_blobs: ImageBlobs, podman: Podman
) -> None:
    """`[oci].runtime = "podman"`: podman runs the image, configured for this machine through
    the environment of the Pants process, which `pants run` passes on to the image tool."""
    podman.require_containers(write_oci_layout(busybox_image_blobs, tmp_path / "probe"))
    podman.clean()
    files = _example_files("examples/hello", {'base="scratch"': f'base="{busybox_image.ref}"'})
    repo = make_pants_repo(tmp_path / "repo", files, extra_toml='[oci]\nruntime = "podman"\n')
    ran = run_pants(
        "--oci-run-env-vars=['MODE=demo']",
        "--oci-run-args=--workdir=/tmp",
        "run",
        "examples/hello:hello",
        "--",
        "sh",
        "-c",
        'echo "$(pwd) $MODE"; cat "$GREETING_FILE"; exit 3',
        cwd=repo,
        env=podman.env,
        check=False,
    )
    assert ran.returncode == 3, ran.stderr
    assert ran.stdout == "/tmp demo\nHello from a daemonless image.\n"
    # podman ran it (runc would not have): its storage now holds the image, by the name the
    # image tool's link to the layout gives it.
    assert podman.image_names() == ["localhost/pants-oci-run:latest"], ran.stderr
