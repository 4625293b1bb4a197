# shellcheck shell=bash
# Sourced by ./pants and ./test: makes sure the repo's isolated environment exists, then sets
#   PANTS_OCI_VENV   the virtualenv with Pants 2.17.1 and the pinned tools of build-support/requirements.txt
#   PANTS_OCI_PEX    the pex tool PEX that pants.toml's [pex-cli] points at
# The environment lives in .pants-bootstrap/ (git-ignored; Pants ignores dot-directories). It is
# rebuilt only when its inputs change: this file, the requirements, or the interpreter version.

PANTS_OCI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PANTS_VERSION="2.17.1"
PEX_VERSION="2.1.137"

_bootstrap_log() { printf 'pants_oci bootstrap: %s\n' "$*" >&2; }
_bootstrap_die() { _bootstrap_log "error: $*"; exit 1; }

_find_python() {
  local candidate
  for candidate in "${PANTS_OCI_PYTHON:-}" python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

_ensure_venv_module() {
  local python="$1"
  "$python" -c 'import ensurepip, venv' 2>/dev/null && return 0
  # Debian splits venv/ensurepip out of the interpreter package.
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    _bootstrap_log "installing python3-venv (Debian ships venv separately)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2 ||
      _bootstrap_die "could not install python3-venv; install it and re-run"
  else
    _bootstrap_die "$python has no venv module: run 'sudo apt-get install python3-venv' and re-run"
  fi
}

_sha256() { sha256sum "$1" | cut -d' ' -f1; }

_install_env() {
  local python="$1" venv="$2" work
  work="$(mktemp -d "$PANTS_OCI_ROOT/.pants-bootstrap/tmp.XXXXXX")"
  _bootstrap_log "creating $venv (first run, or the pins changed)"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  local pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
  # Pants 2.17.1's wheels are tagged cp37-cp39 but run on CPython 3.11: fetch the 3.9 wheel and
  # install it under a 3.11 tag. Its test utilities (RuleRunner) come from a pure wheel.
  "${pip[@]}" download --no-deps --only-binary=:all: --python-version 3.9 \
    -d "$work" "pantsbuild.pants==$PANTS_VERSION" "pantsbuild.pants.testutil==$PANTS_VERSION"
  local wheel renamed
  wheel="$(ls "$work"/pantsbuild.pants-"$PANTS_VERSION"-cp39-cp39-*.whl)" ||
    _bootstrap_die "no Pants $PANTS_VERSION wheel for this platform"
  renamed="${wheel/-cp39-cp39-/-cp311-cp311-}"
  mv "$wheel" "$renamed"
  "${pip[@]}" install --no-deps --ignore-requires-python "$renamed" \
    "$work"/pantsbuild.pants.testutil-"$PANTS_VERSION"-py3-none-any.whl
  "${pip[@]}" install --no-deps -r "$PANTS_OCI_ROOT/build-support/requirements.txt"
  rm -rf "$work"
  "$venv/bin/python" -c 'import pants.version, httpx, pydantic' ||
    _bootstrap_die "the new environment in $venv does not import Pants"
}

_build_pex_tool() {
  local venv="$1" out="$2"
  # Pants downloads the pex tool from a release host; build the same PEX from PyPI instead.
  # The build is reproducible (fixed shebang, pinned pex), so pants.toml pins its sha256.
  _bootstrap_log "building the pex $PEX_VERSION tool PEX"
  "$venv/bin/pex" "pex==$PEX_VERSION" -c pex --python-shebang '/usr/bin/env python3' -o "$out.tmp"
  local built pinned
  built="$(_sha256 "$out.tmp")"
  pinned="$(sed -n "s/.*v$PEX_VERSION|linux_x86_64|\([0-9a-f]*\)|.*/\1/p" "$PANTS_OCI_ROOT/pants.toml")"
  if [ "$built" != "$pinned" ]; then
    rm -f "$out.tmp"
    _bootstrap_die "the pex tool built here has sha256 $built, but pants.toml's [pex-cli] known_versions pins $pinned; if pex $PEX_VERSION's build changed on purpose, update known_versions"
  fi
  mv "$out.tmp" "$out"
}

bootstrap_env() {
  local python stamp dir
  python="$(_find_python)" || _bootstrap_die "CPython 3.11 not found: install python3.11 (or set PANTS_OCI_PYTHON)"
  dir="$PANTS_OCI_ROOT/.pants-bootstrap"
  stamp="$(
    {
      cat "$PANTS_OCI_ROOT/build-support/bootstrap.sh" "$PANTS_OCI_ROOT/build-support/requirements.txt"
      "$python" -c 'import sys, platform; print(sys.version, platform.machine())'
    } | sha256sum | cut -c1-16
  )"
  PANTS_OCI_VENV="$dir/venv-$stamp"
  PANTS_OCI_PEX="$dir/pex-v$PEX_VERSION.pex"
  # The .complete marker is written last, so an interrupted install is redone, not trusted.
  if [ ! -f "$PANTS_OCI_VENV/.complete" ]; then
    mkdir -p "$dir"
    _ensure_venv_module "$python"
    _install_env "$python" "$PANTS_OCI_VENV"
    rm -f "$PANTS_OCI_PEX"
    find "$dir" -maxdepth 1 -name 'venv-*' ! -name "venv-$stamp" -exec rm -rf {} +
    touch "$PANTS_OCI_VENV/.complete"
  fi
  if [ ! -f "$PANTS_OCI_PEX" ]; then
    _build_pex_tool "$PANTS_OCI_VENV" "$PANTS_OCI_PEX"
  fi
  export PANTS_OCI_VENV PANTS_OCI_PEX
}
