#!/usr/bin/env bash
# Installs claimd on a git server: the binary, a commented default configuration, the
# claimd system user and its folders, the hooks in bare repositories (plain or Gitea's
# layout), a systemd unit, and Gitea webhooks. Idempotent: a second run changes nothing
# and says "unchanged". `./install.sh --help` lists every flag.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: ./install.sh [options]            install or bring up to date
       ./install.sh --uninstall [options] remove what install.sh installed

Where things go (give the same options to --uninstall):
  --prefix DIR          the binary goes to DIR/bin/claimd (default /usr/local)
  --etc DIR             configuration folder (default /etc/claimd): claimd.yaml,
                        webhook-secret, and `installed` (what --uninstall removes)
  --unit-dir DIR        systemd unit folder (default /etc/systemd/system)
  --data-dir DIR        claimd's data: mirrors of Gitea repositories (default /var/lib/claimd)
  --cache-dir DIR       chart cache (default /var/cache/claimd)

What to install:
  --binary PATH         install this claimd binary (default: build it with cargo when run
                        from a checkout, else use `claimd` on PATH)
  --repo PATH           a bare repository to install the hooks into (repeatable)
  --gitea-root DIR      Gitea's repository root: the hooks go into every <owner>/<name>.git
                        under it, in Gitea's hooks/<hook>.d/claimd layout (repeatable);
                        Gitea's own hook files are never touched
  --listen ADDR         the daemon's loopback address in a new config (default 127.0.0.1:7462)
  --user NAME           the user the service runs as (default claimd; created with
                        useradd --system when it is claimd and absent)
  --no-user             create no user and change no owner (tests, or a user made by hand)
  --no-systemctl        write the unit but run no systemctl (also when systemd is absent)

Gitea (both or neither):
  --gitea-url URL       Gitea's root URL, written into a new config's gitea: section
  --gitea-token-file F  a file holding a Gitea token (scope write:repository)
  --webhook-url URL     where Gitea delivers (default http://127.0.0.1:7463/hooks/gitea)
  --webhook-listen ADDR the daemon's webhook receiver (default 127.0.0.1:7463)
  With them, a webhook secret is made in <etc>/webhook-secret when absent and
  `claimd gitea register-webhook` registers the webhook on every repository.

Modes:
  --dry-run             print every action, change nothing
  --uninstall           stop and remove the unit, the hooks, the binary, the cache; the
                        config and the data folder only when install.sh wrote them and
                        they were not changed since (else they are kept and named)
  --purge               with --uninstall: also remove the config, the data folder and
                        the user install.sh created
  -h, --help            this text

The configuration is written only when absent: an operator's file is never overwritten.
EOF
}

PREFIX=/usr/local
ETC=/etc/claimd
UNIT_DIR=/etc/systemd/system
DATA_DIR=/var/lib/claimd
CACHE_DIR=/var/cache/claimd
BINARY=
LISTEN=127.0.0.1:7462
SERVICE_USER=claimd
MAKE_USER=1
SYSTEMCTL=1
GITEA_URL=
GITEA_TOKEN_FILE=
WEBHOOK_URL=http://127.0.0.1:7463/hooks/gitea
WEBHOOK_LISTEN=127.0.0.1:7463
DRY_RUN=0
UNINSTALL=0
PURGE=0
REPOS=()
GITEA_ROOTS=()

die() {
	echo "install.sh: $*" >&2
	exit 2
}
need() { [ $# -ge 2 ] && [ -n "$2" ] || die "$1 needs a value (see --help)"; }

while [ $# -gt 0 ]; do
	case "$1" in
	-h | --help) usage; exit 0 ;;
	--dry-run) DRY_RUN=1 ;;
	--uninstall) UNINSTALL=1 ;;
	--purge) PURGE=1 ;;
	--prefix) need "$@"; PREFIX=$2; shift ;;
	--etc) need "$@"; ETC=$2; shift ;;
	--unit-dir) need "$@"; UNIT_DIR=$2; shift ;;
	--data-dir) need "$@"; DATA_DIR=$2; shift ;;
	--cache-dir) need "$@"; CACHE_DIR=$2; shift ;;
	--binary) need "$@"; BINARY=$2; shift ;;
	--repo) need "$@"; REPOS+=("$2"); shift ;;
	--gitea-root) need "$@"; GITEA_ROOTS+=("$2"); shift ;;
	--listen) need "$@"; LISTEN=$2; shift ;;
	--user) need "$@"; SERVICE_USER=$2; shift ;;
	--no-user) MAKE_USER=0 ;;
	--no-systemctl) SYSTEMCTL=0 ;;
	--gitea-url) need "$@"; GITEA_URL=$2; shift ;;
	--gitea-token-file) need "$@"; GITEA_TOKEN_FILE=$2; shift ;;
	--webhook-url) need "$@"; WEBHOOK_URL=$2; shift ;;
	--webhook-listen) need "$@"; WEBHOOK_LISTEN=$2; shift ;;
	*) die "unknown option $1 (see --help)" ;;
	esac
	shift
done
if [ -n "$GITEA_URL" ] && [ -z "$GITEA_TOKEN_FILE" ] || [ -z "$GITEA_URL" ] && [ -n "$GITEA_TOKEN_FILE" ]; then
	die "--gitea-url and --gitea-token-file go together"
fi
[ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ] && die "--purge goes with --uninstall"

abs() { # an absolute path, without resolving what does not exist yet
	case "$1" in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s/%s\n' "$(pwd)" "$1" ;;
	esac
}
PREFIX=$(abs "$PREFIX")
ETC=$(abs "$ETC")
UNIT_DIR=$(abs "$UNIT_DIR")
DATA_DIR=$(abs "$DATA_DIR")
CACHE_DIR=$(abs "$CACHE_DIR")
[ -n "$GITEA_TOKEN_FILE" ] && GITEA_TOKEN_FILE=$(abs "$GITEA_TOKEN_FILE")

for p in "$PREFIX" "$ETC" "$DATA_DIR" "$CACHE_DIR"; do
	case "$p" in *[[:space:]]*) die "$p: a path with spaces cannot go into the systemd unit" ;; esac
done

BIN="$PREFIX/bin/claimd"
CONFIG="$ETC/claimd.yaml"
SECRET="$ETC/webhook-secret"
STATE="$ETC/installed"
UNIT="$UNIT_DIR/claimd.service"
HERE=$(cd "$(dirname "$0")" && pwd)
FAILED=0

# One line per thing: "<what>: <state>". In a dry run, what would be done, with the
# command, and nothing is done.
say() { printf '%s: %s\n' "$1" "$2"; }
act() { # act WHAT DONE COMMAND...: run COMMAND (unless dry) and say WHAT: DONE
	local what=$1 done=$2
	shift 2
	if [ "$DRY_RUN" = 1 ]; then
		say "$what" "would be $done (${*})"
	else
		"$@"
		say "$what" "$done"
	fi
}
warn() { printf 'warning: %s\n' "$*"; }
fail() {
	printf 'error: %s\n' "$*"
	FAILED=1
}

is_root() { [ "$(id -u)" = 0 ]; }
systemd_running() { [ "$SYSTEMCTL" = 1 ] && [ -d /run/systemd/system ]; }
user_exists() { getent passwd "$1" >/dev/null 2>&1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
yaml_quote() { local s=${1//\'/\'\'}; printf "'%s'" "$s"; }

# Writes CONTENT to FILE with MODE when it differs; says so.
put_file() { # put_file WHAT FILE MODE CONTENT
	local what=$1 file=$2 mode=$3 content=$4
	if [ -f "$file" ] && [ "$(cat "$file")" = "$content" ] && [ "$(stat -c %a "$file")" = "$mode" ]; then
		say "$what $file" unchanged
		return 1
	fi
	local done=written
	[ -f "$file" ] && done=updated
	if [ "$DRY_RUN" = 1 ]; then
		say "$what $file" "would be $done (mode $mode)"
	else
		mkdir -p "$(dirname "$file")"
		printf '%s\n' "$content" >"$file.tmp.$$"
		chmod "$mode" "$file.tmp.$$"
		mv -f "$file.tmp.$$" "$file"
		say "$what $file" "$done"
	fi
	return 0
}

# The repositories: --repo, every <owner>/<name>.git under --gitea-root (not wikis), and
# (for --uninstall) those the last install recorded. REPO_LINES: "<path> <plain|gitea>".
declare -A SEEN=()
REPO_LINES=()
REPO_PATHS=()
add_repo() { # add_repo PATH LAYOUT
	local path
	path=$(cd "$1" && pwd -P)
	case "$path" in *[[:space:]]*) die "$path: a path with spaces cannot go into the systemd unit" ;; esac
	[ -n "${SEEN[$path]:-}" ] && return 0
	SEEN[$path]=1
	REPO_LINES+=("$path $2")
	REPO_PATHS+=("$path")
}
for r in "${REPOS[@]}"; do
	[ -d "$r/objects" ] || die "--repo $r: not a bare git repository (no objects/ folder)"
	add_repo "$r" plain
done
for d in "${GITEA_ROOTS[@]}"; do
	[ -d "$d" ] || die "--gitea-root $d: no such folder"
	for r in "$d"/*/*.git; do
		case "$r" in *.wiki.git) continue ;; esac
		[ -d "$r/objects" ] && add_repo "$r" gitea
	done
done
if [ "$UNINSTALL" = 1 ] && [ -f "$STATE" ]; then
	while read -r _ layout path; do
		[ -d "$path" ] && add_repo "$path" "$layout"
	done < <(grep '^repo ' "$STATE" || true)
fi

# Gitea's name of a repository: <owner>/<name> from <root>/<owner>/<name>.git.
gitea_name() {
	local name owner
	name=$(basename "$1" .git)
	owner=$(basename "$(dirname "$1")")
	printf '%s/%s\n' "$owner" "$name"
}

################################################################ uninstall

uninstall() {
	if [ -f "$UNIT" ] && systemd_running; then
		act "service claimd.service" "stopped and disabled" systemctl disable --now claimd.service
	fi
	if [ -f "$UNIT" ]; then
		act "unit $UNIT" removed rm -f "$UNIT"
		systemd_running && act "systemd" reloaded systemctl daemon-reload
	else
		say "unit $UNIT" absent
	fi

	local hooks_bin=$BIN
	[ -x "$hooks_bin" ] || hooks_bin=${BINARY:-}
	local line repo
	for line in "${REPO_LINES[@]}"; do
		repo=${line% *}
		if [ "$DRY_RUN" = 1 ]; then
			say "hooks $repo" "would be removed ($hooks_bin hooks uninstall $repo)"
			continue
		fi
		[ -n "$hooks_bin" ] && [ -x "$hooks_bin" ] || {
			fail "hooks $repo: no claimd binary to remove them with (give --binary PATH)"
			continue
		}
		local out
		if out=$("$hooks_bin" hooks uninstall "$repo" 2>&1); then
			[ -z "$out" ] && say "hooks $repo" absent ||
				printf '%s\n' "$out" | sed 's/^removed \(.*\)$/hooks \1: removed/; s/^left \(.*\)$/hooks \1: left/'
		else
			fail "hooks $repo: $out"
		fi
	done
	if grep -q '^webhook ' "$STATE" 2>/dev/null; then
		warn "the webhooks registered on Gitea stay (remove them in each repository's Settings > Webhooks)"
	fi

	if [ -e "$BIN" ]; then act "binary $BIN" removed rm -f "$BIN"; else say "binary $BIN" absent; fi
	if [ -e "$BIN-hook" ]; then act "binary $BIN-hook" removed rm -f "$BIN-hook"; fi

	local wrote_config
	wrote_config=$(sed -n 's/^config //p' "$STATE" 2>/dev/null || true)
	if [ -f "$CONFIG" ]; then
		if [ "$PURGE" = 1 ] || { [ -n "$wrote_config" ] && [ "$(sha "$CONFIG")" = "$wrote_config" ]; }; then
			act "config $CONFIG" removed rm -f "$CONFIG"
			[ -f "$SECRET" ] && act "secret $SECRET" removed rm -f "$SECRET"
		else
			say "config $CONFIG" "kept (not written by install.sh, or changed since; --purge removes it)"
		fi
	fi

	if [ -d "$CACHE_DIR" ]; then act "folder $CACHE_DIR" removed rm -rf "$CACHE_DIR"; fi
	if [ -d "$DATA_DIR" ]; then
		if [ "$PURGE" = 1 ]; then
			act "folder $DATA_DIR" removed rm -rf "$DATA_DIR"
		elif [ -z "$(ls -A "$DATA_DIR")" ]; then
			act "folder $DATA_DIR" removed rmdir "$DATA_DIR"
		else
			say "folder $DATA_DIR" "kept (holds claimd's mirrors; --purge removes it)"
		fi
	fi

	local made_user=
	grep -qx "user $SERVICE_USER" "$STATE" 2>/dev/null && made_user=1
	[ -f "$STATE" ] && act "record $STATE" removed rm -f "$STATE"
	if [ -d "$ETC" ] && [ -z "$(ls -A "$ETC")" ]; then act "folder $ETC" removed rmdir "$ETC"; fi
	if [ -n "$made_user" ]; then
		if [ "$PURGE" = 1 ]; then
			act "user $SERVICE_USER" removed userdel "$SERVICE_USER"
		else
			say "user $SERVICE_USER" "kept (--purge removes it)"
		fi
	fi
	[ "$FAILED" = 0 ] || exit 1
	[ "$DRY_RUN" = 1 ] && echo "dry run: nothing was changed"
	echo "claimd is uninstalled."
	exit 0
}
[ "$UNINSTALL" = 1 ] && uninstall

################################################################ install

# 1. The binary.
if [ -z "$BINARY" ] && [ -f "$HERE/Cargo.toml" ] && [ -d "$HERE/src" ]; then
	target=${CARGO_TARGET_DIR:-$HERE/target}
	if command -v cargo >/dev/null 2>&1; then
		act "build $target/release/claimd" built \
			cargo build --release --locked --quiet --manifest-path "$HERE/Cargo.toml" --bin claimd --bin claimd-hook
	elif [ -x "$target/release/claimd" ]; then
		# sudo resets PATH, so a rustup cargo is not found: use what was built before.
		say "$target/release/claimd" "cargo is not on PATH; installing the binary built before"
	else
		die "cargo is not on PATH (sudo resets PATH): build as your user first ('cargo build --release'), then run this again, or give --binary PATH"
	fi
	BINARY=$target/release/claimd
elif [ -z "$BINARY" ]; then
	BINARY=$(command -v claimd || true)
	[ -n "$BINARY" ] || die "no claimd binary: run from a checkout (cargo builds it) or give --binary PATH"
fi
if [ "$DRY_RUN" = 0 ] || [ -e "$BINARY" ]; then
	[ -x "$BINARY" ] || die "$BINARY: not an executable file"
fi
if [ -f "$BIN" ] && [ -x "$BINARY" ] && cmp -s "$BINARY" "$BIN" && [ "$(stat -c %a "$BIN")" = 755 ]; then
	say "binary $BIN" unchanged
	BINARY_CHANGED=0
else
	done=installed
	[ -f "$BIN" ] && done=updated
	act "binary $BIN" "$done" install -D -m 0755 "$BINARY" "$BIN"
	BINARY_CHANGED=1
fi
# The hooks' small client when a daemon serves (built beside claimd; without it the
# hooks run the full claimd, only slower).
if [ -x "$BINARY-hook" ]; then
	if [ -f "$BIN-hook" ] && cmp -s "$BINARY-hook" "$BIN-hook"; then
		say "binary $BIN-hook" unchanged
	else
		act "binary $BIN-hook" installed install -D -m 0755 "$BINARY-hook" "$BIN-hook"
	fi
else
	say "binary $BIN-hook" "not installed (no $BINARY-hook: the hooks run the full claimd)"
fi

# 2. The user and its folders.
MADE_USER=0
if grep -qx "user $SERVICE_USER" "$STATE" 2>/dev/null; then MADE_USER=1; fi
if [ "$MAKE_USER" = 0 ]; then
	say "user $SERVICE_USER" "not made (--no-user)"
elif user_exists "$SERVICE_USER"; then
	say "user $SERVICE_USER" unchanged
elif [ "$SERVICE_USER" != claimd ]; then
	die "user $SERVICE_USER does not exist (install.sh only creates the user claimd)"
elif ! is_root; then
	say "user $SERVICE_USER" "not made (not root: rerun as root, or give --no-user)"
	MAKE_USER=0
else
	act "user $SERVICE_USER" "created (system user, home $DATA_DIR, no login)" \
		useradd --system --user-group --home-dir "$DATA_DIR" --no-create-home \
		--shell /usr/sbin/nologin --comment "claimd daemon" "$SERVICE_USER"
	MADE_USER=1
fi
owner_ok() { # the folder belongs to the service user (or users are not managed)
	[ "$MAKE_USER" = 0 ] || [ "$(stat -c %U "$1")" = "$SERVICE_USER" ]
}
for dir in "$DATA_DIR" "$CACHE_DIR"; do
	if [ -d "$dir" ] && [ "$(stat -c %a "$dir")" = 750 ] && owner_ok "$dir"; then
		say "folder $dir" unchanged
	elif [ "$MAKE_USER" = 1 ]; then
		act "folder $dir" "made (owner $SERVICE_USER, mode 750)" \
			install -d -m 0750 -o "$SERVICE_USER" -g "$(id -gn "$SERVICE_USER" 2>/dev/null || echo "$SERVICE_USER")" "$dir"
	else
		act "folder $dir" "made (mode 750)" install -d -m 0750 "$dir"
	fi
done

# 3. The configuration: written only when absent.
default_config() {
	local line repo
	cat <<EOF
# claimd's configuration, written by install.sh. install.sh never overwrites it: edit
# freely; the daemon reads it again when it changes (no restart needed).
# Every key: README, "Configuration". Relative paths are relative to this file.

# Loopback address of the hooks' hand-off, GET /healthz, /readyz and /v1/status.
listen: $LISTEN

# The bare repositories to keep rendered. Per repository: branch (default: its HEAD
# branch), watchRefs (also watch refs on disk, for servers that cannot run hooks),
# pushUrl (publish bot commits with git push), giteaRepository (OWNER/NAME).
EOF
	if [ "${#REPO_PATHS[@]}" = 0 ]; then
		echo "repositories: []"
		echo "#  - path: /srv/git/gitops.git"
	else
		echo "repositories:"
		for line in "${REPO_LINES[@]}"; do
			repo=${line% *}
			echo "  - path: $(yaml_quote "$repo")"
			# On Gitea, bot commits go through Gitea (its webhooks, statuses and branch
			# protection see them), not straight onto the disk.
			if [ "${line##* }" = gitea ] && [ -n "$GITEA_URL" ]; then
				echo "    giteaRepository: $(gitea_name "$repo")"
			fi
		done
	fi
	cat <<EOF

# Where charts come from: embedded (the charts built into claimd), oci (the chart
# repository each claim names), or a folder of charts.
# charts: embedded

# claimd's own data: mirrors of repositories that are not on this disk.
dataDir: $(yaml_quote "$DATA_DIR")

# OCI registries: the chart cache, how often a tag is asked again, per-host settings.
registries:
  cache: $(yaml_quote "$CACHE_DIR/charts")
  # refresh: 300
  # hosts:
  #   registry.example.com:
  #     caFile: /etc/claimd/registry-ca.pem

# The author of bot commits.
# bot:
#   name: claimd
#   email: claimd@localhost

EOF
	if [ -n "$GITEA_URL" ]; then
		cat <<EOF
# The Gitea next to claimd: webhooks (registered at start on every repository),
# commit statuses. Secrets only from files.
gitea:
  url: $(yaml_quote "$GITEA_URL")
  tokenFile: $(yaml_quote "$GITEA_TOKEN_FILE")
  webhookUrl: $(yaml_quote "$WEBHOOK_URL")
  webhookListen: $WEBHOOK_LISTEN
  webhookSecretFile: $(yaml_quote "$SECRET")
EOF
	else
		cat <<'EOF'
# The Gitea next to claimd (webhooks, commit statuses); install.sh --gitea-url writes it.
# gitea:
#   url: https://gitea.example.com
#   tokenFile: /etc/claimd/gitea-token
#   webhookUrl: http://127.0.0.1:7463/hooks/gitea
#   webhookListen: 127.0.0.1:7463
#   webhookSecretFile: /etc/claimd/webhook-secret
EOF
	fi
}
CONFIG_SHA=$(sed -n 's/^config //p' "$STATE" 2>/dev/null || true)
if [ -f "$CONFIG" ]; then
	if [ -n "$CONFIG_SHA" ] && [ "$(sha "$CONFIG")" = "$CONFIG_SHA" ]; then
		say "config $CONFIG" unchanged
	else
		CONFIG_SHA=
		say "config $CONFIG" "kept (it exists; install.sh never overwrites it)"
	fi
	for repo in "${REPO_PATHS[@]}"; do
		grep -qF -- "$repo" "$CONFIG" ||
			warn "$CONFIG does not list $repo: add \"- path: $repo\" under repositories:"
	done
	if [ -n "$GITEA_URL" ] && ! grep -qF -- "$SECRET" "$CONFIG"; then
		warn "$CONFIG has no gitea.webhookSecretFile: $SECRET; the webhooks registered now use that secret"
	fi
else
	content=$(default_config)
	put_file config "$CONFIG" 644 "$content" || true
	CONFIG_SHA=$(printf '%s\n' "$content" | sha256sum | cut -d' ' -f1)
fi

# 4. The webhook secret (with Gitea): made once, readable by the service only.
if [ -n "$GITEA_URL" ]; then
	[ -r "$GITEA_TOKEN_FILE" ] || fail "--gitea-token-file $GITEA_TOKEN_FILE: cannot read it"
	KEEP_SECRET=(--keep-secret)
	if [ -s "$SECRET" ]; then
		say "secret $SECRET" unchanged
	else
		KEEP_SECRET=()
		make_secret() {
			mkdir -p "$ETC"
			(umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$SECRET")
			if [ "$MAKE_USER" = 1 ]; then
				chgrp "$(id -gn "$SERVICE_USER")" "$SECRET"
				chmod 0640 "$SECRET"
			fi
		}
		act "secret $SECRET" "made (32 random bytes)" make_secret
	fi
fi

# 5. The hooks, with the installed binary's own `claimd hooks install`.
HOOK_DAEMON=$LISTEN
if [ -f "$CONFIG" ]; then
	listen=$(sed -n 's/^listen:[[:space:]]*//p' "$CONFIG" | head -n 1 | tr -d "\"'")
	[ -n "$listen" ] && HOOK_DAEMON=$listen
fi
for line in "${REPO_LINES[@]}"; do
	repo=${line% *}
	layout=${line##* }
	# The hooks hand pushes to the daemon at the config's listen address (they render
	# inline when it does not answer).
	args=(hooks install "$repo" --binary "$BIN" --daemon "$HOOK_DAEMON")
	[ "$layout" = gitea ] && args+=(--gitea)
	if [ "$DRY_RUN" = 1 ]; then
		say "hooks $repo" "would be installed ($BIN ${args[*]})"
		continue
	fi
	if out=$("$BIN" "${args[@]}" 2>&1); then
		printf '%s\n' "$out" | sed 's/^installed \(.*\)$/hook \1: installed/; s/^unchanged \(.*\)$/hook \1: unchanged/'
	else
		fail "hooks $repo: $out"
	fi
	if [ "$DRY_RUN" = 0 ] && [ "$MAKE_USER" = 1 ] && user_exists "$SERVICE_USER" && is_root &&
		! runuser -u "$SERVICE_USER" -- test -w "$repo/refs/heads"; then
		owner=$(stat -c %U "$repo")
		group=$(stat -c %G "$repo")
		how="usermod -aG $group $SERVICE_USER"
		[ "$group" = root ] && how="chgrp -R $(id -gn "$SERVICE_USER") $repo"
		how="share the repository's group: $how; chmod -R g+rwX $repo; git --git-dir=$repo config core.sharedRepository group"
		[ "$owner" != root ] && how="run the service as $owner (--user $owner), or $how"
		warn "$SERVICE_USER cannot write $repo (owner $owner): the daemon's own bot commits there will fail (the hooks, run by the pusher, still render). To fix: $how"
	fi
done

# 6. Gitea webhooks, with `claimd gitea register-webhook`.
WEBHOOKS=()
if [ -n "$GITEA_URL" ]; then
	for repo in "${REPO_PATHS[@]}"; do
		name=$(gitea_name "$repo")
		if [ "$DRY_RUN" = 1 ]; then
			say "webhook $name" "would be registered ($BIN gitea register-webhook $name --gitea-url $GITEA_URL --token-file $GITEA_TOKEN_FILE --webhook-url $WEBHOOK_URL --secret-file $SECRET)"
			continue
		fi
		if out=$("$BIN" gitea register-webhook "$name" --gitea-url "$GITEA_URL" \
			--token-file "$GITEA_TOKEN_FILE" --webhook-url "$WEBHOOK_URL" --secret-file "$SECRET" "${KEEP_SECRET[@]}" 2>&1); then
			case "$out" in
			*"is as wanted"*) say "webhook $name" unchanged ;;
			created*) say "webhook $name" "created (push events to $WEBHOOK_URL)" ;;
			*) say "webhook $name" "updated (push events to $WEBHOOK_URL)" ;;
			esac
			printf '%s\n' "$out" | grep -v '^\(created\|updated\|webhook\) ' || true
			WEBHOOKS+=("$name")
		else
			fail "webhook $name: $out"
		fi
	done
fi

# 7. The systemd unit.
protect_home=yes
for p in "${REPO_PATHS[@]}" "$DATA_DIR" "$CACHE_DIR"; do
	case "$p" in /home/* | /root/* | /run/user/*) protect_home=read-only ;; esac
done
unit_text() {
	local p
	cat <<EOF
# claimd.service, written by claimd's install.sh (./install.sh --uninstall removes it).
[Unit]
Description=claimd: renders GitOps claims into the files Argo CD deploys from
After=network-online.target
Wants=network-online.target

[Service]
# READY=1 once every repository is reconciled (the daemon's GET /readyz).
Type=notify
ExecStart=$BIN serve --config $CONFIG
Restart=on-failure
RestartSec=2s
TimeoutStartSec=5min
TimeoutStopSec=45s
User=$SERVICE_USER
EOF
	[ "$SERVICE_USER" = claimd ] && echo "Group=claimd"
	cat <<EOF
Environment=HOME=$DATA_DIR
Environment=CLAIMD_CACHE=$CACHE_DIR/charts
EOF
	[ "$DATA_DIR" = /var/lib/claimd ] && echo "StateDirectory=claimd"
	[ "$CACHE_DIR" = /var/cache/claimd ] && echo "CacheDirectory=claimd"
	cat <<EOF
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=$protect_home
PrivateTmp=yes
EOF
	# "-": a repository that went away is claimd's error to report, not systemd's.
	for p in "${REPO_PATHS[@]}"; do echo "ReadWritePaths=-$p"; done
	[ "$DATA_DIR" = /var/lib/claimd ] || echo "ReadWritePaths=-$DATA_DIR"
	[ "$CACHE_DIR" = /var/cache/claimd ] || echo "ReadWritePaths=-$CACHE_DIR"
	cat <<'EOF'

[Install]
WantedBy=multi-user.target
EOF
}
UNIT_CHANGED=0
put_file unit "$UNIT" 644 "$(unit_text)" && UNIT_CHANGED=1

if systemd_running; then
	if [ "$UNIT_CHANGED" = 1 ]; then act "systemd" reloaded systemctl daemon-reload; fi
	if systemctl is-enabled --quiet claimd.service 2>/dev/null; then
		say "service claimd.service" "enabled: unchanged"
	else
		act "service claimd.service" enabled systemctl enable --quiet claimd.service
	fi
	if ! systemctl is-active --quiet claimd.service 2>/dev/null; then
		act "service claimd.service" "started (waits for READY=1)" systemctl start claimd.service
	elif [ "$UNIT_CHANGED" = 1 ] || [ "$BINARY_CHANGED" = 1 ]; then
		act "service claimd.service" "restarted (new unit or binary)" systemctl restart claimd.service
	else
		say "service claimd.service" "running: unchanged"
	fi
else
	why="systemd is not running here"
	[ "$SYSTEMCTL" = 0 ] && why="--no-systemctl"
	say "service claimd.service" "not enabled ($why); run: $BIN serve --config $CONFIG"
fi

# 8. What install.sh did, for --uninstall (written only when it differs).
state_text() {
	echo "# What claimd's install.sh installed; ./install.sh --uninstall reads it."
	[ -n "$CONFIG_SHA" ] && echo "config $CONFIG_SHA"
	[ "$MADE_USER" = 1 ] && echo "user $SERVICE_USER"
	local line
	{
		for line in "${REPO_LINES[@]}"; do echo "repo ${line##* } ${line% *}"; done
		sed -n '/^repo /p' "$STATE" 2>/dev/null || true
	} | sort -u
	{
		for line in "${WEBHOOKS[@]}"; do echo "webhook $line"; done
		sed -n '/^webhook /p' "$STATE" 2>/dev/null || true
	} | sort -u
}
put_file record "$STATE" 644 "$(state_text)" || true

if [ "$FAILED" = 1 ]; then
	echo "install.sh: some steps failed (see error: above)"
	exit 1
fi
if [ "$DRY_RUN" = 1 ]; then
	echo "dry run: nothing was changed"
	exit 0
fi
echo
echo "claimd is installed. Next:"
if systemd_running; then
	echo "  systemctl status claimd          # active (running) once every repository is reconciled"
	echo "  journalctl -u claimd -f          # its log"
else
	echo "  $BIN serve --config $CONFIG      # (no systemd here) or start claimd.service where systemd runs"
fi
echo "  curl -fsS http://$LISTEN/readyz   # 200 once every repository is reconciled"
echo "  $BIN doctor --config $CONFIG      # checks hooks, Gitea, registry, cluster"
