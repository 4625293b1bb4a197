"""Every process the backend runs to build an image is remote-executable: its input root alone,
its argv and its declared environment make its output, on a machine that has only the tool's
interpreter (what a remote-execution worker image provides).

One `pants package` (with `-ldebug` and `--keep-sandboxes=always`) builds a Python app on a
registry base (base pull, base directories, the base's Pythons, PEX layers, assembly) and a
two-platform image (layers, assemblies, index). Pants' debug log names each process it ran
(argv, env, outputs, named caches, immutable inputs); each kept sandbox is its input root plus
its outputs. For each of the image tool's processes the test copies the sandbox minus the
outputs (and minus Pants' links to named caches, immutable inputs copied in full) into an empty
directory, gives it fresh, empty named caches but for the interpreter link (pointing at the
same interpreter, as a worker image would have it), runs argv there with exactly the declared
environment, and checks the outputs are byte for byte Pants' own.

Not covered, by design: the process that links the interpreter into its named cache (it is the
one host-specific step: a worker image provides the interpreter instead), and `publish`'s
pushes (interactive processes, which run where the user's credentials are).
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.backend.test_python_app_and_run import APP, _example_files
from tests.harness.busybox import PushedImage
from tests.pants_runs import make_pants_repo, run_pants

pytestmark = pytest.mark.slow

# The kinds of tool process (the command's words) an image build runs.
KINDS = {
    ("base", "pull"),
    ("image", "dirs"),
    ("image", "pythons"),
    ("layer", "build"),
    ("image", "assemble"),
    ("image", "index"),
}

_SPAWNED = re.compile(
    r"spawned local process as Some\(\d+\) for Process \{ "
    r"argv: (\[.*?\]), env: (\{.*?\}), working_directory"
)
_PRESERVED = re.compile(r"Preserving local process execution dir (\S+) for (.+)$", re.MULTILINE)


@dataclass(frozen=True)
class ToolProcess:
    argv: tuple[str, ...]
    env: dict[str, str]
    outputs: tuple[str, ...]  # files and directories
    caches: tuple[str, ...]  # where named caches are linked in the sandbox
    immutable: tuple[str, ...]  # where immutable inputs are linked in the sandbox
    description: str

    @property
    def kind(self) -> tuple[str, str]:
        words = self.argv[3:]
        start = next(i for i, word in enumerate(words) if word in ("layer", "base", "image"))
        return (words[start], words[start + 1])


def _relative_paths(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r'RelativePath\("([^"]*)"\)', text))


def _tool_processes(log: str) -> list[ToolProcess]:
    processes = []
    for line in log.splitlines():
        spawned = _SPAWNED.search(line)
        if not spawned:
            continue
        argv = tuple(json.loads(spawned.group(1)))
        if len(argv) < 2 or argv[1] != "__pants_oci_tool/launch.py":
            continue
        env = json.loads(spawned.group(2))
        section = line[spawned.end() :]
        outputs = section.split("output_files: ", 1)[1].split(", timeout:", 1)[0]
        caches = section.split("append_only_caches: ", 1)[1].split(", jdk_home", 1)[0]
        immutable = section.split("immutable_inputs: ", 1)[1].split(", use_nailgun", 1)[0]
        description = re.search(r'description: "((?:[^"\\]|\\.)*)"', section)
        assert description, line
        processes.append(
            ToolProcess(
                argv,
                env,
                _relative_paths(outputs),
                _relative_paths(caches),
                _relative_paths(immutable),
                json.loads(f'"{description.group(1)}"'),
            )
        )
    return processes


def _sandbox_of(
    processes: list[ToolProcess], sandbox: Path, description: str
) -> ToolProcess | None:
    """The process that ran in `sandbox`: by its description, and the command line in its
    `__run.sh`."""
    script = (sandbox / "__run.sh").read_text()
    for process in processes:
        if (
            process.description == description
            and all(word in script for word in process.argv)
            and all(f"{key}=" in script for key in process.env)
        ):
            return process
    return None


def _input_root(sandbox: Path, process: ToolProcess, into: Path, caches: dict[str, Path]) -> None:
    """The sandbox as it was before the process ran, with a fresh machine's named caches."""
    shutil.copytree(sandbox, into, symlinks=True)
    (into / "__run.sh").unlink()
    for output in process.outputs:
        path = into / output
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    for relative in process.immutable:
        link = into / relative
        target = link.resolve()
        link.unlink()
        shutil.copytree(target, link) if target.is_dir() else shutil.copy(target, link)
    for relative in process.caches:
        link = into / relative
        if link.is_symlink():
            link.unlink()
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(caches.setdefault(relative, into.parent / f"cache-{len(caches)}"))
        Path(link.resolve()).mkdir(parents=True, exist_ok=True)


def _host_paths(process: ToolProcess, root: Path, caches: dict[str, Path]) -> list[str]:
    """What would tie the process to this machine: an absolute path in its argv or (if it is
    cached: only registry processes see the user's environment) its env, or a link in its
    input root to outside it."""
    found = [arg for arg in process.argv if arg.startswith("/")]
    if process.kind != ("base", "pull"):
        found += [
            f"{key}={value}"
            for key, value in process.env.items()
            if (key, value) != ("PATH", "/usr/bin:/bin")
            and any(part.startswith("/") for part in value.split(":"))
        ]
    outside = {root.resolve(), *(cache.resolve() for cache in caches.values())}
    for path in root.rglob("*"):
        if path.is_symlink() and path.relative_to(root).as_posix() not in process.caches:
            target = path.resolve()
            if not any(target.is_relative_to(allowed) for allowed in outside):
                found.append(f"{path.relative_to(root)} -> {target}")
    return found


def _same_outputs(expected: Path, actual: Path, outputs: tuple[str, ...]) -> list[str]:
    differences = []
    for output in outputs:
        want, got = expected / output, actual / output
        if want.is_dir():
            comparison = filecmp.dircmp(want, got)
            stack = [comparison]
            while stack:
                current = stack.pop()
                differences += [f"{output}: {d}" for d in current.left_only + current.right_only]
                _, mismatch, errors = filecmp.cmpfiles(
                    current.left, current.right, current.common_files, shallow=False
                )
                differences += [f"{output}: {d}" for d in mismatch + errors]
                stack += current.subdirs.values()
        elif not got.is_file() or want.read_bytes() != got.read_bytes():
            differences.append(output)
    return differences


def test_every_image_build_process_runs_from_its_input_root_alone(
    tmp_path: Path, python_base_image: PushedImage
) -> None:
    nonce = uuid.uuid4().hex
    files = _example_files(APP, {'base="python:3.11-slim"': f'base="{python_base_image.ref}"'})
    files["multi/BUILD"] = (
        'files(name="files", sources=["*.txt"])\n'
        'oci_image(name="multi", dependencies=[":files"], '
        'platforms=["linux/amd64", "linux/arm64"])\n'
    )
    files["multi/nonce.txt"] = nonce
    repo = make_pants_repo(
        tmp_path / "repo", files, extra_toml=f'[source]\nroot_patterns = ["/{APP}"]\n'
    )
    # A concurrency of its own (in every tool argv, no output byte) makes every tool process
    # run here rather than come from the cache of an earlier test.
    result = run_pants(
        "-ldebug",
        "--keep-sandboxes=always",
        f"--oci-concurrency={int(nonce[:6], 16) % 1000 + 17}",
        "package",
        f"{APP}:python-app",
        "multi:multi",
        cwd=repo,
        pantsd=False,
    )
    processes = _tool_processes(result.stderr)
    sandboxes = [(Path(path), what) for path, what in _PRESERVED.findall(result.stderr)]
    try:
        # The interpreter link, as the worker image would provide it.
        interpreters = tmp_path / "interpreters"
        interpreters.mkdir()
        caches: dict[str, Path] = {".pants-oci-python": interpreters}
        replayed = set()
        for number, (sandbox, description) in enumerate(sandboxes):
            process = _sandbox_of(processes, sandbox, description)
            if process is None:
                continue  # not the tool's: Pants' own processes (PEX builds, ...)
            link = Path(process.argv[0])
            if not (interpreters / link.name).exists():
                (interpreters / link.name).symlink_to(os.readlink(sandbox / link))
            root = tmp_path / "replays" / f"{number}"
            _input_root(sandbox, process, root, caches)
            assert not _host_paths(process, root, caches), process.description
            ran = subprocess.run(
                process.argv, cwd=root, env=process.env, capture_output=True, timeout=600
            )
            assert ran.returncode == 0, (process.description, ran.stderr.decode()[-3000:])
            assert not _same_outputs(sandbox, root, process.outputs), process.description
            replayed.add(process.kind)
            print(f"replayed {' '.join(process.kind)}: {process.description}")
        assert replayed >= KINDS, f"not replayed: {sorted(KINDS - replayed)}"
    finally:
        for sandbox, _ in sandboxes:
            shutil.rmtree(sandbox, ignore_errors=True)
