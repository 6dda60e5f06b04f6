#!/usr/bin/env bash
# Install claimd: builds the binary and puts it in $PREFIX/bin (default /usr/local).
# Then, on the git server:
#   claimd hooks install /path/to/repo.git            # pre-receive + post-receive
#   claimd serve --config /etc/claimd/claimd.yaml     # optional daemon (see README)
# A service unit and Gitea webhook registration come with the Gitea integration.
set -euo pipefail
cd "$(dirname "$0")"
PREFIX="${PREFIX:-/usr/local}"
cargo install --locked --path . --root "$PREFIX"
echo "installed $PREFIX/bin/claimd"
"$PREFIX/bin/claimd" --version
