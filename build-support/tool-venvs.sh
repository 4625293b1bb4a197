# shellcheck shell=bash
# Sourced by ./test after bootstrap.sh: installs the Python tools the tests run for real, each in
# a virtualenv of its own under .pants-bootstrap/<name>-venv-<stamp>, so that their pins never
# meet the main environment's (or each other's). The stamp covers the pins and the interpreter,
# so a venv is rebuilt only when either changes. Exports
#   PANTS_OCI_BGD                 the `bgd` command of BuildGrid, the Remote Execution API server
#                                 of the remote-cache tests (tests/harness/buildgrid.py)
#   PANTS_OCI_VALIDATORS_PYTHON   a Python with others' SBOM validators and OCI client: the
#                                 supply-chain tests check our documents with them
# This is a file of its own, not part of bootstrap.sh, because bootstrap.sh is an input of the main
# environment's stamp: any edit there rebuilds .pants-bootstrap/venv-* for every user of a checkout.

# buildgrid 0.4.4 is the last release for Python 3.11 (later ones need Python >= 3.12).
BUILDGRID_REQUIREMENTS=("buildgrid==0.4.4")
# cyclonedx-python-lib's JSON schema validation, spdx-tools' parser and validator, oras-py.
VALIDATORS_REQUIREMENTS=(
  "cyclonedx-python-lib[json-validation]==11.12.0"
  "spdx-tools==0.8.5"
  "oras==0.2.43"
)

# _ensure_tool_venv NAME CHECK REQUIREMENT...: the venv of NAME (created when missing or stale),
# whose path is left in _TOOL_VENV; CHECK is a command run with the venv's bin/ first on PATH.
_ensure_tool_venv() {
  local name="$1" check="$2" python dir stamp venv
  shift 2
  python="$(_find_python)" || _bootstrap_die "CPython 3.11 not found: install python3.11 (or set PANTS_OCI_PYTHON)"
  dir="$PANTS_OCI_ROOT/.pants-bootstrap"
  stamp="$(
    {
      printf '%s\n' "$@"
      "$python" -c 'import sys, platform; print(sys.version, platform.machine())'
    } | sha256sum | cut -c1-16
  )"
  venv="$dir/$name-venv-$stamp"
  # The .complete marker is written last, so an interrupted install is redone, not trusted. The
  # lock keeps two ./test runs that start at once from installing over each other.
  if [ ! -f "$venv/.complete" ]; then
    mkdir -p "$dir"
    (
      flock 9 || _bootstrap_die "could not lock $dir/$name.lock"
      if [ ! -f "$venv/.complete" ]; then
        _ensure_venv_module "$python"
        _bootstrap_log "installing $* into $venv (first run, or the pins changed)"
        rm -rf "$venv"
        "$python" -m venv "$venv" || _bootstrap_die "could not create $venv"
        "$venv/bin/python" -m pip --disable-pip-version-check --quiet install "$@" ||
          _bootstrap_die "could not install $* into $venv"
        PATH="$venv/bin:$PATH" bash -c "$check" >/dev/null ||
          _bootstrap_die "$* installed in $venv, but \`$check\` fails there"
        find "$dir" -maxdepth 1 -name "$name-venv-*" ! -name "$name-venv-$stamp" -exec rm -rf {} +
        touch "$venv/.complete"
      fi
    ) 9>"$dir/$name.lock" || exit 1
  fi
  _TOOL_VENV="$venv"
}

ensure_buildgrid() {
  _ensure_tool_venv buildgrid "bgd --help" "${BUILDGRID_REQUIREMENTS[@]}"
  PANTS_OCI_BGD="$_TOOL_VENV/bin/bgd"
  export PANTS_OCI_BGD
}

ensure_validators() {
  _ensure_tool_venv validators \
    "python -c 'import cyclonedx.validation.json, spdx_tools.spdx.parser.parse_anything, oras.client'" \
    "${VALIDATORS_REQUIREMENTS[@]}"
  PANTS_OCI_VALIDATORS_PYTHON="$_TOOL_VENV/bin/python"
  export PANTS_OCI_VALIDATORS_PYTHON
}
