"""Check images with real tools: skopeo, umoci and runc."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.harness.processes import HarnessError, require_binary
from tests.harness.registry import Registry

TRANSPORTS = ("docker://", "oci:", "oci-archive:", "docker-archive:", "dir:")


class ToolError(HarnessError):
    def __init__(self, argv: Sequence[str], result: subprocess.CompletedProcess[Any]) -> None:
        def text(value: Any) -> str:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

        super().__init__(
            f"{' '.join(argv)} exited with {result.returncode}\n"
            f"--- stderr ---\n{text(result.stderr)[-4000:]}\n"
            f"--- stdout ---\n{text(result.stdout)[-2000:]}"
        )
        self.result = result


def run_tool(argv: Sequence[str], *, timeout: float = 120, **kwargs: Any) -> Any:
    """Run a tool, capturing output; a non-zero exit raises ToolError with its stderr."""
    result = subprocess.run(
        list(argv), capture_output=True, stdin=subprocess.DEVNULL, timeout=timeout, **kwargs
    )
    if result.returncode != 0:
        raise ToolError(argv, result)
    return result


def _with_transport(ref: str) -> str:
    return ref if ref.startswith(TRANSPORTS) else f"docker://{ref}"


@contextmanager
def _skopeo_auth(
    prefix: str,
    *,
    registry: Registry | None,
    tls_verify: bool | None,
    creds: tuple[str, str] | None,
    cert_dir: Path | None,
) -> Iterator[list[str]]:
    """Flags for one side of skopeo (prefix "" or "src-"/"dest-"). Credentials go in a 0600
    auth file, never on argv; an empty auth file keeps the host's own logins out."""
    if registry is not None:
        tls_verify = registry.tls if tls_verify is None else tls_verify
        if creds is None and registry.username and registry.password:
            creds = (registry.username, registry.password)
        cert_dir = cert_dir or registry.cert_dir
    with tempfile.TemporaryDirectory(prefix="skopeo-auth-") as tmp:
        authfile = Path(tmp) / "auth.json"
        auths: dict[str, Any] = {}
        if creds is not None:
            host = registry.host if registry is not None else None
            encoded = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
            if host is None:
                raise HarnessError("creds need registry= so the auth file can name the host")
            auths[host] = {"auth": encoded}
        authfile.touch(mode=0o600)
        authfile.write_text(json.dumps({"auths": auths}))
        flags = [f"--{prefix}authfile={authfile}"]
        if tls_verify is False:
            flags.append(f"--{prefix}tls-verify=false")
        if cert_dir is not None:
            flags.append(f"--{prefix}cert-dir={cert_dir}")
        yield flags


def skopeo_inspect(
    ref: str,
    *,
    raw: bool = False,
    config: bool = False,
    registry: Registry | None = None,
    tls_verify: bool | None = None,
    creds: tuple[str, str] | None = None,
    cert_dir: Path | None = None,
) -> Any:
    """`skopeo inspect`. Returns bytes with raw=True (exact manifest or, with config=True,
    exact config blob), else parsed JSON. `registry` fills in TLS, creds and CA settings; a
    ref without a transport means docker://."""
    skopeo = require_binary("skopeo")
    with _skopeo_auth(
        "", registry=registry, tls_verify=tls_verify, creds=creds, cert_dir=cert_dir
    ) as flags:
        argv = [skopeo, "inspect", *flags]
        argv += ["--raw"] if raw else []
        argv += ["--config"] if config else []
        result = run_tool([*argv, _with_transport(ref)])
    return result.stdout if raw else json.loads(result.stdout)


def skopeo_list_tags(repository: str, *, registry: Registry | None = None) -> list[str]:
    """`skopeo list-tags`: the tags of `repository` (``host/path``, or with a transport)."""
    skopeo = require_binary("skopeo")
    with _skopeo_auth("", registry=registry, tls_verify=None, creds=None, cert_dir=None) as flags:
        result = run_tool([skopeo, "list-tags", *flags, _with_transport(repository)])
    tags: list[str] = json.loads(result.stdout)["Tags"]
    return tags


def skopeo_copy_to_oci_layout(
    src_ref: str,
    layout_dir: Path,
    tag: str = "latest",
    *,
    registry: Registry | None = None,
    src_tls_verify: bool | None = None,
    src_creds: tuple[str, str] | None = None,
    src_cert_dir: Path | None = None,
    extra_args: Sequence[str] = (),
) -> Path:
    """Copy an image (docker://, oci:, docker-archive:, ...) into the OCI layout at
    layout_dir under `tag`. Returns layout_dir."""
    skopeo = require_binary("skopeo")
    layout_dir.mkdir(parents=True, exist_ok=True)
    with _skopeo_auth(
        "src-",
        registry=registry,
        tls_verify=src_tls_verify,
        creds=src_creds,
        cert_dir=src_cert_dir,
    ) as flags:
        # --insecure-policy: no signature policy for throwaway loopback images.
        run_tool(
            [
                skopeo,
                "--insecure-policy",
                "copy",
                *flags,
                *extra_args,
                _with_transport(src_ref),
                f"oci:{layout_dir}:{tag}",
            ]
        )
    return layout_dir


def umoci_unpack(layout_dir: Path, tag: str, bundle_dir: Path) -> Path:
    """Unpack layout_dir:tag into an OCI runtime bundle (rootfs/ + config.json), as root."""
    umoci = require_binary("umoci")
    if bundle_dir.exists() and any(bundle_dir.iterdir()):
        raise HarnessError(f"bundle dir {bundle_dir} is not empty")
    run_tool([umoci, "unpack", "--image", f"{layout_dir}:{tag}", str(bundle_dir)])
    return bundle_dir


def runc_run(
    bundle_dir: Path,
    args: Sequence[str] | None,
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | None = None,
    check: bool = True,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `args` (None: the image's own entrypoint + cmd) in the bundle with runc (no tty;
    output captured) and delete the container.
    The bundle's config.json is rewritten for this run; `env` adds to or overrides the image
    env. With check=True a non-zero exit raises ToolError with stdout/stderr."""
    runc = require_binary("runc")
    config_path = bundle_dir / "config.json"
    spec = json.loads(config_path.read_text())
    process = spec["process"]
    if args is not None:
        process["args"] = list(args)
    process["terminal"] = False  # no tty: stdout/stderr stay separate pipes
    process.pop("consoleSize", None)
    if env:
        merged = dict(item.split("=", 1) for item in process.get("env", []))
        merged.update(env)
        process["env"] = [f"{k}={v}" for k, v in merged.items()]
    if cwd is not None:
        process["cwd"] = cwd
    config_path.write_text(json.dumps(spec, indent=2))

    state_dir = Path(tempfile.mkdtemp(prefix="runc-state-"))
    container_id = f"pants-oci-test-{secrets.token_hex(6)}"
    try:
        argv = [runc, "--root", str(state_dir), "run", "--bundle", str(bundle_dir), container_id]
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )
    finally:
        # `run` removes the container when it exits; this covers a timeout or a failed start.
        subprocess.run(
            [runc, "--root", str(state_dir), "delete", "--force", container_id],
            capture_output=True,
        )
        shutil.rmtree(state_dir, ignore_errors=True)
    if check and result.returncode != 0:
        raise ToolError(argv, result)
    return result
