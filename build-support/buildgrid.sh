# shellcheck shell=bash
# Sourced by ./test after bootstrap.sh: installs BuildGrid, the Remote Execution API server that
# the remote-cache tests run for real (tests/harness/buildgrid.py), then sets
#   PANTS_OCI_BGD    the `bgd` command of its virtualenv
# BuildGrid lives in a virtualenv of its own, .pants-bootstrap/buildgrid-venv-<stamp>, so that its
# grpcio/protobuf/pydantic pins never meet the main environment's. The stamp covers the pin and
# the interpreter, so the venv is rebuilt only when either changes.
# This is a file of its own, not part of bootstrap.sh, because bootstrap.sh is an input of the main
# environment's stamp: any edit there rebuilds .pants-bootstrap/venv-* for every user of a checkout.

# buildgrid 0.4.4 is the last release for Python 3.11 (later ones need Python >= 3.12).
BUILDGRID_REQUIREMENT="buildgrid==0.4.4"

_install_buildgrid() {
  local python="$1" venv="$2"
  _bootstrap_log "installing $BUILDGRID_REQUIREMENT into $venv (first run, or the pin changed)"
  rm -rf "$venv"
  "$python" -m venv "$venv" || _bootstrap_die "could not create $venv"
  "$venv/bin/python" -m pip --disable-pip-version-check --quiet install "$BUILDGRID_REQUIREMENT" ||
    _bootstrap_die "could not install $BUILDGRID_REQUIREMENT into $venv"
  "$venv/bin/bgd" --help >/dev/null ||
    _bootstrap_die "$BUILDGRID_REQUIREMENT is installed in $venv, but its bgd command does not run"
}

ensure_buildgrid() {
  local python dir stamp venv
  python="$(_find_python)" || _bootstrap_die "CPython 3.11 not found: install python3.11 (or set PANTS_OCI_PYTHON)"
  dir="$PANTS_OCI_ROOT/.pants-bootstrap"
  stamp="$(
    {
      echo "$BUILDGRID_REQUIREMENT"
      "$python" -c 'import sys, platform; print(sys.version, platform.machine())'
    } | sha256sum | cut -c1-16
  )"
  venv="$dir/buildgrid-venv-$stamp"
  # The .complete marker is written last, so an interrupted install is redone, not trusted. The
  # lock keeps two ./test runs that start at once from installing over each other.
  if [ ! -f "$venv/.complete" ]; then
    mkdir -p "$dir"
    (
      flock 9 || _bootstrap_die "could not lock $dir/buildgrid.lock"
      if [ ! -f "$venv/.complete" ]; then
        _ensure_venv_module "$python"
        _install_buildgrid "$python" "$venv"
        find "$dir" -maxdepth 1 -name 'buildgrid-venv-*' ! -name "buildgrid-venv-$stamp" \
          -exec rm -rf {} +
        touch "$venv/.complete"
      fi
    ) 9>"$dir/buildgrid.lock" || exit 1
  fi
  PANTS_OCI_BGD="$venv/bin/bgd"
  export PANTS_OCI_BGD
}
