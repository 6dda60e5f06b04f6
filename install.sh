#!/usr/bin/env bash
# Install claimd: builds the binary and puts it in $PREFIX/bin (default /usr/local).
# Hooks, the service unit and webhook registration are added with the git loop and
# the Gitea integration.
set -euo pipefail
cd "$(dirname "$0")"
PREFIX="${PREFIX:-/usr/local}"
cargo install --locked --path . --root "$PREFIX"
echo "installed $PREFIX/bin/claimd"
"$PREFIX/bin/claimd" --version
