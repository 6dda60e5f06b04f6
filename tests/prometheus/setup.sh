#!/usr/bin/env bash
# Provide `promtool` (Prometheus' rule checker and rule unit-test runner) for the tests of
# claimd's Helm chart (tests/it/claimd_chart.rs). Idempotent: once it is there, this only
# checks and prints its path.
#
#   promtool="$(tests/prometheus/setup.sh | tail -n1)"
#   "$promtool" check rules rules.yaml; "$promtool" test rules tests.yaml
#
# Source: Debian's `prometheus` package (19 MB download). It is NOT installed: installing
# it would add a Prometheus server and its service. `apt-get download` fetches the .deb
# and only usr/bin/promtool is unpacked, into
# ${CLAIMD_TEST_CACHE:-$HOME/.cache/claimd-test}/promtool/<version>/promtool (48 MB).
# A promtool already on PATH is used as it is. Needs Debian's package mirror (apt-get
# update is run once if the download fails without it). The last stdout line is the
# path of promtool; progress goes to stderr.
set -euo pipefail

CACHE="${CLAIMD_TEST_CACHE:-${HOME:-/tmp}/.cache/claimd-test}"
DIR="$CACHE/promtool"

log() { echo "prometheus/setup.sh: $*" >&2; }
works() { [ -x "$1" ] && "$1" --version >/dev/null 2>&1; }

if command -v promtool >/dev/null 2>&1 && works "$(command -v promtool)"; then
  command -v promtool
  exit 0
fi
for bin in "$DIR"/*/promtool; do
  if works "$bin"; then echo "$bin"; exit 0; fi
done

if ! command -v apt-get >/dev/null 2>&1; then
  log "error: no promtool and no apt-get; install Prometheus' promtool and put it on PATH"
  exit 1
fi

# Several test threads or binaries may run this at once: one download at a time.
mkdir -p "$DIR"
exec 9>"$DIR/.setup.lock"
flock 9 2>/dev/null || true
for bin in "$DIR"/*/promtool; do
  if works "$bin"; then echo "$bin"; exit 0; fi
done

tmp="$(mktemp -d "$DIR/.download.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
download() { (cd "$tmp" && apt-get download -q -o APT::Sandbox::User=root prometheus >&2); }
if ! download; then
  log "apt-get download failed; running apt-get update once"
  apt-get update -q >&2
  download
fi
deb="$(ls "$tmp"/prometheus_*.deb)"
version="$(dpkg-deb -f "$deb" Version | tr -c 'A-Za-z0-9.+~\n-' '_')"
log "unpacking promtool from $(basename "$deb")"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool
mkdir -p "$DIR/$version"
mv "$tmp/usr/bin/promtool" "$DIR/$version/promtool"
works "$DIR/$version/promtool" || { log "error: the unpacked promtool does not run"; exit 1; }
echo "$DIR/$version/promtool"
