#!/usr/bin/env bash
# Install real Helm (v4.3.0, as a Go library inside the helm-sdkpy wheel) for
# tests/helm/coalesce.py.  Idempotent: a second run only checks and exits.
#
#   dir="$(tests/helm/setup.sh | tail -n1)"
#   PYTHONPATH="$dir" python3 tests/helm/coalesce.py CHART_DIR -f values.yaml
#
# Installs into ${CLAIMD_TEST_CACHE:-$HOME/.cache/claimd-test}/helm-sdkpy with
# `pip install --target` (no venv, nothing system-wide): helm-sdkpy 0.1.32 and
# its one runtime dependency cffi (+ pycparser).  helm-sdkpy declares
# Requires-Python >=3.12 but works on 3.11, hence --ignore-requires-python.
# Needs python3 (3.11+) with pip and access to PyPI; no stdin, CI=true is fine.
# PYTHON=/path/to/python overrides the interpreter.  The last line on stdout is
# the directory to put on PYTHONPATH; progress goes to stderr.
set -euo pipefail

HELM_SDKPY_VERSION=0.1.32
PY="${PYTHON:-python3}"
CACHE="${CLAIMD_TEST_CACHE:-${HOME:-/tmp}/.cache/claimd-test}"
DIR="$CACHE/helm-sdkpy"
STAMP="$DIR/.claimd-setup-stamp"

log() { echo "setup.sh: $*" >&2; }

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64|Linux/amd64) ;;
  *) log "error: helm-sdkpy $HELM_SDKPY_VERSION ships libhelm only for linux-amd64, not $(uname -s)/$(uname -m)"; exit 1 ;;
esac

if ! command -v "$PY" >/dev/null 2>&1; then
  log "error: $PY not found"; exit 1
fi
# The cffi wheel is specific to the Python version, so the stamp records it.
want="helm-sdkpy==$HELM_SDKPY_VERSION $("$PY" -c 'import sys, platform; print("cp%d%d" % sys.version_info[:2], platform.machine())')"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
   && [ -f "$DIR/helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so" ] \
   && PYTHONPATH="$DIR" "$PY" -c 'import cffi, helm_sdkpy' >/dev/null 2>&1; then
  echo "$DIR"
  exit 0
fi

log "installing helm-sdkpy $HELM_SDKPY_VERSION into $DIR (about 50 MB download)"
mkdir -p "$CACHE"
tmp="$(mktemp -d "$CACHE/.helm-sdkpy.tmp.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"

export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# Wheels only: cffi must not be compiled from source (no compiler needed).
"$PY" -m pip install --quiet --target "$tmp" --only-binary=:all: \
  --ignore-requires-python --no-deps "helm-sdkpy==$HELM_SDKPY_VERSION" >&2
"$PY" -m pip install --quiet --target "$tmp" --only-binary=:all: \
  "cffi>=1.15" >&2

# Check that it loads before making it the installed copy.
PYTHONPATH="$tmp" "$PY" - <<'EOF' >&2
import helm_sdkpy
from helm_sdkpy import _ffi
_ffi.get_library()  # dlopen libhelm_sdkpy.so
EOF

echo "$want" > "$tmp/.claimd-setup-stamp"
rm -rf "$DIR"
mv "$tmp" "$DIR"
trap - EXIT
log "done"
echo "$DIR"
