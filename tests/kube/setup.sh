#!/usr/bin/env bash
# Provide a real Kubernetes API server for the integration tests: etcd 3.4
# (Debian's `etcd-server`) and kube-apiserver 1.20.2, built once from Debian's
# own `kubernetes` source package and cached.  Idempotent: once the cache is
# complete a run only checks it (milliseconds).
#
#   assets="$(tests/kube/setup.sh | tail -n1)"   # .../kube/1.20.2
#   "$assets/etcd" ...; "$assets/kube-apiserver" ...
#
# The printed directory holds `kube-apiserver` and `etcd` (a symlink to
# /usr/bin/etcd): the KUBEBUILDER_ASSETS layout envtest-style harnesses expect.
# Used by tests/support/kube.rs, which starts both on free loopback ports.
#
# What it does, when something is missing (needs root, Debian bookworm's
# package mirror and PyPI; see /work/shared/testbed/README.md section 4):
# * apt-get install etcd-server, openssl, curl (the harness talks TLS to the
#   API server through `curl -sk`);
# * adds a deb-src entry for <codename> main (same mirror as the deb entry),
#   installs golang-go (1.19), rsync, jq, make and
#   golang-github-modern-go-reflect2-dev, downloads the `kubernetes` source
#   package (1.20.5+really1.20.2, 34 MB), replaces the vendored reflect2 with
#   Debian's 1.0.2 (Go >= 1.18 needs it, or the server panics on the first
#   request) and runs `make WHAT=cmd/kube-apiserver` (about 4-5 minutes on 2
#   cores), copies the binary into the cache and deletes the build tree;
# * makes PyYAML importable for tests/kube/crds.py: if `python3 -c 'import
#   yaml'` fails, it is pip-installed into $CACHE/kube/pylib (the harness
#   always puts that dir on PYTHONPATH).
# `apt-get update` runs only when an install or the source lookup fails
# without it.  A lock file serialises concurrent runs (two test binaries).
# Cache: ${CLAIMD_TEST_CACHE:-$HOME/.cache/claimd-test}/kube/.  PYTHON
# overrides the interpreter.  The last line on stdout is the assets
# directory; progress goes to stderr.
set -euo pipefail

K8S_VERSION=1.20.2
PY="${PYTHON:-python3}"
CACHE="${CLAIMD_TEST_CACHE:-${HOME:-/tmp}/.cache/claimd-test}"
KUBE="$CACHE/kube"
DIR="$KUBE/$K8S_VERSION"
PYLIB="$KUBE/pylib"
STAMP="$DIR/.claimd-setup-stamp"
# Bump the suffix when the build recipe changes, to force a rebuild.
WANT="kube-apiserver $K8S_VERSION debian-src reflect2-1.0.2 recipe-1"

log() { echo "kube/setup.sh: $*" >&2; }

have_yaml() { PYTHONPATH="$PYLIB${PYTHONPATH:+:$PYTHONPATH}" "$PY" -c 'import yaml' >/dev/null 2>&1; }
have_apiserver() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$DIR/kube-apiserver" ]
}
complete() {
  have_apiserver && [ -x "$DIR/etcd" ] \
    && command -v openssl >/dev/null 2>&1 && command -v curl >/dev/null 2>&1 \
    && have_yaml
}

case "$(uname -s)" in
  Linux) ;;
  *) log "error: only Linux is supported, not $(uname -s)"; exit 1 ;;
esac
if ! command -v "$PY" >/dev/null 2>&1; then
  log "error: $PY not found"; exit 1
fi

if complete; then
  echo "$DIR"
  exit 0
fi

mkdir -p "$KUBE"
# Several test binaries may run this at once: one setup (and build) at a time.
exec 9>"$KUBE/.setup.lock"
if ! flock -n 9 2>/dev/null; then
  log "waiting for another kube/setup.sh (lock $KUBE/.setup.lock)"
  flock 9
fi
if complete; then
  echo "$DIR"
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  need_apt=0
  command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need_apt=1
  command -v openssl >/dev/null 2>&1 || need_apt=1
  command -v curl >/dev/null 2>&1 || need_apt=1
  have_apiserver || need_apt=1
  if [ "$need_apt" = 1 ]; then
    log "error: need root and apt-get (Debian) to install etcd-server, openssl, curl and to build kube-apiserver"
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
APT_OPTS=(-y --no-install-recommends -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=600)
updated=0
apt_update() {
  if [ "$updated" = 0 ]; then
    log "apt-get update"
    apt-get update -o DPkg::Lock::Timeout=600 >&2
    updated=1
  fi
}
apt_install() {
  log "apt-get install $*"
  if ! apt-get install "${APT_OPTS[@]}" "$@" >&2; then
    log "install failed; running apt-get update and trying again"
    apt_update
    apt-get install "${APT_OPTS[@]}" "$@" >&2
  fi
}

# --- runtime packages ------------------------------------------------------
pkgs=()
[ -x /usr/bin/etcd ] || pkgs+=(etcd-server)
command -v openssl >/dev/null 2>&1 || pkgs+=(openssl)
command -v curl >/dev/null 2>&1 || pkgs+=(curl ca-certificates)
if [ "${#pkgs[@]}" -gt 0 ]; then
  had_etcd_pkg=0
  dpkg-query -W -f='${Status}' etcd-server 2>/dev/null | grep -q 'ok installed' && had_etcd_pkg=1
  apt_install "${pkgs[@]}"
  # The package enables etcd.service (ports 2379/2380); the tests never use it.
  if [ "$had_etcd_pkg" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now etcd.service >&2 2>&1 || true
  fi
fi
[ -x /usr/bin/etcd ] || { log "error: /usr/bin/etcd missing after installing etcd-server"; exit 1; }

# --- PyYAML for crds.py ----------------------------------------------------
if ! have_yaml; then
  log "installing PyYAML into $PYLIB"
  tmp_py="$(mktemp -d "$KUBE/.pylib.tmp.XXXXXX")"
  PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    "$PY" -m pip install --quiet --target "$tmp_py" PyYAML >&2
  rm -rf "$PYLIB"
  mv "$tmp_py" "$PYLIB"
  have_yaml || { log "error: PyYAML still not importable from $PYLIB"; exit 1; }
fi

# --- kube-apiserver from Debian's source package ---------------------------
# Prints the mirror URI and Signed-By of the distribution's main deb entry.
deb_mirror() {
  local codename="$1" f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v cn="$codename" '
      function flush() {
        if (deb && suite && uri != "") { print uri "\t" signed; found = 1; exit }
        deb = 0; suite = 0; uri = ""; signed = ""
      }
      /^[[:space:]]*$/ { flush(); next }
      /^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == cn) suite = 1 }
      /^URIs:/ { uri = $2 }
      /^Signed-By:/ { signed = $2 }
      END { if (!found) flush() }
    ' "$f"
  done | head -n1
  if [ -f /etc/apt/sources.list ]; then
    awk -v cn="$codename" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i == cn) { u = $(i-1); print u "\t"; exit } }' \
      /etc/apt/sources.list | sed 's/^\[.*\]//'
  fi
}

# Is there a deb-src entry (one-line or deb822) for this codename?
has_deb_src() {
  local codename="$1"
  grep -qsE "^[[:space:]]*deb-src[[:space:]].*[[:space:]]$codename[[:space:]]" \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list && return 0
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v cn="$codename" '
      /^[[:space:]]*$/ { if (src && suite) { ok = 1; exit } src = 0; suite = 0; next }
      /^Types:/ { for (i = 2; i <= NF; i++) if ($i == "deb-src") src = 1 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == cn) suite = 1 }
      END { exit !(ok || (src && suite)) }
    ' "$f" && return 0
  done
  return 1
}

have_kubernetes_src() {
  apt-cache showsrc kubernetes 2>/dev/null | grep -q "^Version: .*really$K8S_VERSION"
}

if ! have_apiserver; then
  start=$(date +%s)
  . /etc/os-release
  codename="${VERSION_CODENAME:-bookworm}"
  apt_install golang-go rsync jq make golang-github-modern-go-reflect2-dev

  if ! have_kubernetes_src && ! has_deb_src "$codename"; then
    line="$(deb_mirror "$codename" | head -n1)"
    uri="${line%%$'\t'*}"
    signed=""
    [[ "$line" == *$'\t'* ]] && signed="${line#*$'\t'}"
    [ -n "$uri" ] || uri=http://deb.debian.org/debian
    src_list=/etc/apt/sources.list.d/claimd-deb-src.sources
    log "adding deb-src entry $uri $codename main ($src_list)"
    {
      echo "Types: deb-src"
      echo "URIs: $uri"
      echo "Suites: $codename"
      echo "Components: main"
      [ -n "$signed" ] && echo "Signed-By: $signed"
    } > "$src_list"
    updated=0
  fi
  if ! have_kubernetes_src; then
    apt_update
  fi
  if ! have_kubernetes_src; then
    log "error: no 'kubernetes' source package with version *really$K8S_VERSION in the apt sources (Debian bookworm has 1.20.5+really1.20.2)"
    exit 1
  fi

  build="$(mktemp -d "$KUBE/.build.XXXXXX")"
  trap 'rm -rf "$build"' EXIT
  log "downloading the kubernetes source package into $build"
  src_version="$(apt-cache showsrc kubernetes | sed -n "s/^Version: \(.*really$K8S_VERSION.*\)$/\1/p" | head -n1)"
  # (as root: apt's _apt sandbox user cannot enter a cache under /root)
  (cd "$build" && apt-get source --download-only -o APT::Sandbox::User=root \
     "kubernetes=$src_version" >&2)
  orig="$(ls "$build"/kubernetes_*.orig.tar.gz | head -n1)"
  log "unpacking $(basename "$orig")"
  tar -C "$build" -xzf "$orig"
  tree="$build/kubernetes-$K8S_VERSION"
  [ -d "$tree" ] || { log "error: $orig has no kubernetes-$K8S_VERSION/"; exit 1; }

  # Go >= 1.18 needs reflect2 1.0.2, else the server panics on the first request.
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/"
  mkdir -p "$tree/.go/src/k8s.io"
  ln -sfn ../../.. "$tree/.go/src/k8s.io/kubernetes"
  log "building kube-apiserver $K8S_VERSION (about 4-5 minutes on 2 cores)"
  # The orig tarball is a `git archive` export: hack/lib/version.sh finds the
  # version (v1.20.2, commit faecb196815e) substituted into itself, no .git
  # needed.  GOCACHE inside the build tree, so deleting the tree frees it all.
  # Debian's Go (golang-go, 1.19) first on PATH: the recipe was verified with it.
  (cd "$tree" && env -u KUBE_GIT_VERSION_FILE -u KUBE_GIT_VERSION PATH="/usr/lib/go/bin:$PATH" GOPATH="$tree/.go" \
     GOCACHE="$build/gocache" GOFLAGS= CGO_ENABLED=0 HOME="$build/home" \
     make WHAT="cmd/kube-apiserver" >&2)
  bin="$tree/_output/bin/kube-apiserver"
  [ -x "$bin" ] || { log "error: the build produced no $bin"; exit 1; }

  mkdir -p "$DIR"
  rm -f "$STAMP"
  cp "$bin" "$DIR/kube-apiserver.tmp"
  mv -f "$DIR/kube-apiserver.tmp" "$DIR/kube-apiserver"
  echo "$WANT" > "$STAMP"
  rm -rf "$build"
  trap - EXIT
  log "built kube-apiserver in $(( $(date +%s) - start )) s"
fi

mkdir -p "$DIR"
ln -sfn /usr/bin/etcd "$DIR/etcd"

complete || { log "error: setup incomplete after installing (see above)"; exit 1; }
log "done: $("$DIR/kube-apiserver" --version 2>&1 | head -n1), $("$DIR/etcd" --version 2>&1 | head -n1)"
echo "$DIR"
