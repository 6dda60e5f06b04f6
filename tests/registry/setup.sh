#!/usr/bin/env bash
# Install a real OCI registry for the integration tests: CNCF Distribution 2.8
# from Debian's `docker-registry` package, plus `htpasswd` (Debian's
# `apache2-utils`) to write the bcrypt password files that Distribution's
# htpasswd auth requires.  Idempotent: when both are present it only checks.
#
#   bin="$(tests/registry/setup.sh | tail -n1)"    # /usr/bin/docker-registry
#   "$bin" serve config.yml
#
# Used by tests/support/registry.rs, which writes its own config (127.0.0.1 and
# a free port, storage in a temp dir) and starts the binary as a child process.
# Nothing here uses or depends on the package's own service: the Debian package
# ships a systemd unit on :5000 with /etc/docker/registry/config.yml; where
# systemd runs and this script installed the package, the unit is disabled
# and stopped again.
#
# Installing needs root (CI and the dev machines run as root) and Debian's
# package mirror; `apt-get update` is run only if the install fails without it.
# The last line on stdout is the path of the docker-registry binary; progress
# goes to stderr.
set -euo pipefail

CACHE="${CLAIMD_TEST_CACHE:-${HOME:-/tmp}/.cache/claimd-test}"

log() { echo "registry/setup.sh: $*" >&2; }

find_registry() { command -v docker-registry 2>/dev/null || { [ -x /usr/bin/docker-registry ] && echo /usr/bin/docker-registry; } || true; }
have_bcrypt_htpasswd() {
  command -v htpasswd >/dev/null 2>&1 \
    && htpasswd -nbB claimd probe 2>/dev/null | grep -q '^claimd:\$2[aby]\$'
}

bin="$(find_registry)"
if [ -n "$bin" ] && have_bcrypt_htpasswd; then
  echo "$bin"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  log "error: need docker-registry and htpasswd (Debian packages docker-registry, apache2-utils); run as root or install them first"
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "error: apt-get not found; install CNCF Distribution (docker-registry) and htpasswd (apache2-utils) by hand"
  exit 1
fi

# Several test binaries may run this at once: one apt-get at a time.
mkdir -p "$CACHE"
exec 9>"$CACHE/.registry-setup.lock"
flock 9 2>/dev/null || true
bin="$(find_registry)"
if [ -n "$bin" ] && have_bcrypt_htpasswd; then
  echo "$bin"
  exit 0
fi

pkgs=()
[ -n "$bin" ] || pkgs+=(docker-registry)
have_bcrypt_htpasswd || pkgs+=(apache2-utils)
had_registry_pkg=0
dpkg-query -W -f='${Status}' docker-registry 2>/dev/null | grep -q 'ok installed' && had_registry_pkg=1

export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y --no-install-recommends -o Dpkg::Use-Pty=0 "${pkgs[@]}" >&2; }
log "installing ${pkgs[*]}"
if ! install; then
  log "install failed; running apt-get update and trying again"
  apt-get update >&2
  install
fi

# The package enables docker-registry.service (port 5000).  The tests never use
# it; where systemd is running, turn it off again so it holds no port.
if [ "$had_registry_pkg" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now docker-registry.service >&2 2>&1 || true
fi

bin="$(find_registry)"
if [ -z "$bin" ]; then
  log "error: docker-registry is still missing after the install"
  exit 1
fi
if ! have_bcrypt_htpasswd; then
  log "error: htpasswd -B (bcrypt) does not work after installing apache2-utils"
  exit 1
fi
log "done: $("$bin" --version 2>&1 | head -n1)"
echo "$bin"
