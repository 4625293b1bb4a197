# shellcheck shell=bash
# Sourced by ./test after bootstrap.sh: installs the Debian packages that the test suite runs for
# real (registry, image tools, container runtimes). A file of its own, not part of bootstrap.sh,
# because bootstrap.sh is an input of the main environment's stamp (see tool-venvs.sh).

# Debian packages that the test suite runs for real: registry, image tools, container runtime.
TEST_DEBIAN_PACKAGES=(docker-registry skopeo umoci runc busybox-static podman)
TEST_COMMANDS=(docker-registry skopeo umoci runc busybox podman)

ensure_test_packages() {
  local missing=() i
  for i in "${!TEST_COMMANDS[@]}"; do
    command -v "${TEST_COMMANDS[$i]}" >/dev/null 2>&1 || missing+=("${TEST_DEBIAN_PACKAGES[$i]}")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || _bootstrap_die "missing ${missing[*]}: install them as root"
    sudo=(sudo)
  fi
  _bootstrap_log "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
