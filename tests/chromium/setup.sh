#!/usr/bin/env bash
# Install a real headless browser for the status page test (tests/it/status_page.rs):
# Debian's `chromium` package. Idempotent: when /usr/bin/chromium is there it only
# prints its path.
#
#   bin="$(tests/chromium/setup.sh | tail -n1)"    # /usr/bin/chromium
#
# Installing needs root (CI and the dev machines run as root) and Debian's package
# mirror; `apt-get update` is run only if the install fails without it. The last line
# on stdout is the path of the binary; progress goes to stderr.
set -euo pipefail

CACHE="${CLAIMD_TEST_CACHE:-${HOME:-/tmp}/.cache/claimd-test}"

log() { echo "chromium/setup.sh: $*" >&2; }

find_chromium() { command -v chromium 2>/dev/null || { [ -x /usr/bin/chromium ] && echo /usr/bin/chromium; } || true; }

bin="$(find_chromium)"
if [ -n "$bin" ]; then
  echo "$bin"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "error: need chromium (Debian package chromium); run as root or install it first"
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "error: apt-get not found; install Chromium by hand (a binary named chromium on PATH)"
  exit 1
fi

# Several scripts may run apt-get at once: one at a time.
mkdir -p "$CACHE"
exec 9>"$CACHE/.chromium-setup.lock"
flock 9 2>/dev/null || true
bin="$(find_chromium)"
if [ -n "$bin" ]; then
  echo "$bin"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Quiet: apt's output goes to a log, shown only when the install fails.
apt_log="$CACHE/chromium-apt.log"
install() {
  apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 chromium fonts-dejavu-core >"$apt_log" 2>&1
}
log "installing chromium (Debian package; apt's output in $apt_log)"
if ! install; then
  log "install failed; running apt-get update and trying again"
  apt-get update -q >"$apt_log.update" 2>&1 || { tail -n 20 "$apt_log.update" >&2; exit 1; }
  install || { tail -n 30 "$apt_log" >&2; exit 1; }
fi

bin="$(find_chromium)"
if [ -z "$bin" ]; then
  log "error: chromium is still not on PATH after installing"
  exit 1
fi
echo "$bin"
