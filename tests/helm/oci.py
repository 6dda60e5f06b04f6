#!/usr/bin/env python3
"""Real Helm (v4.3.0, helm-sdkpy) against an OCI registry, for the tests.

Usage:
    export PYTHONPATH="$(tests/helm/setup.sh | tail -n1)"
    python3 tests/helm/oci.py push CHART_DIR_OR_TGZ oci://127.0.0.1:PORT/charts \\
        [--username U --password P] [--login]
    python3 tests/helm/oci.py fetch-check oci://127.0.0.1:PORT/charts/NAME VERSION \\
        [--username U --password P] [--login]
    python3 tests/helm/oci.py lint CHART_DIR_OR_TGZ

Every subcommand prints one line of JSON on stdout and exits 0, or prints
"oci.py: error: ..." on stderr and exits 1 (2 on bad usage).  Helm's own
output ("Pushed: ...", "Digest: ...") goes to stderr.

push         `helm package` (skipped for a .tgz) then `helm push` to the remote,
             over plain HTTP.  Prints
             {"ref", "name", "version", "tag", "digest", "remote", "auth"};
             `digest` is the manifest digest Helm reports, `tag` is the version
             with "+" replaced by "_" (Helm's rule for OCI tags).
fetch-check  Helm loads the chart straight from the registry (`helm show chart`
             and `helm show values` on oci://.../NAME:TAG; Helm resolves the tag,
             fetches manifest, config and layer and loads the archive) and checks
             that name and version are the ones asked for.  Prints
             {"ref", "name", "version", "digest", "chart_yaml", "values_yaml"};
             chart_yaml is Helm's rendering of the chart metadata, values_yaml
             the chart's values.yaml text as stored in the archive.  A VERSION
             with "+" (build metadata) can only be checked when it is the
             highest version of the chart in the registry: Helm refuses both
             NAME:1.0.0+b and NAME:1.0.0_b, and `show` takes no --version.
lint         `helm lint` on a chart directory or .tgz.  Prints
             {"path", "charts_linted", "errors", "warnings", "messages":
             [{"severity", "path"}]} and exits 1 when there is an error.
             The shim serializes each message's Go error as {}, so only the
             severity and the file are known, not the text.

Credentials (--username/--password): by default they are handed to Helm's
in-memory registry client (Configuration(registry_auth={host: {...}})); with
--login the harness instead runs `helm registry login` (RegistryLogin), which
writes them to a registry config file in the temp dir (HELM_REGISTRY_CONFIG),
and Helm reads them from there.  Both work against Distribution's htpasswd auth.

What does NOT work in helm-sdkpy 0.1.32: `Pull` (nil-pointer panic in the
shim, the process dies) and `Lint` on an oci:// reference ("missing registry
client").  `Install` with an oci:// chart and a version does fetch the chart,
but needs an API server; it is not used here.

As in coalesce.py, Helm runs in a child process whose environment puts all of
Helm's config, cache and data homes (and the registry config) in a temp dir,
so ~/.config/helm and ~/.cache/helm are neither read nor written and every
fetch really goes to the registry.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

PROG = "oci.py"
WORKER_ENV = "CLAIMD_OCI_WORKER_TMP"  # set only in the worker process
RESULT_FILE = "result.json"


class HarnessError(Exception):
    """A failure worth a one-line message and exit status 1."""


def die(msg: str, status: int = 1) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    sys.exit(status)


def helm_error_text(e: Exception) -> str:
    return str(e).strip() or type(e).__name__


def split_oci(ref: str) -> tuple[str, str]:
    """oci://HOST[:PORT]/PATH -> (HOST[:PORT], PATH)."""
    if not ref.startswith("oci://"):
        raise HarnessError(f"{ref}: not an oci:// reference")
    rest = ref[len("oci://"):].rstrip("/")
    host, _, path = rest.partition("/")
    if not host or not path:
        raise HarnessError(f"{ref}: expected oci://HOST/PATH")
    return host, path


def metadata_field(chart_yaml: str, key: str) -> str | None:
    """A top-level scalar of Helm's `show chart` output (Helm's own YAML)."""
    m = re.search(rf"^{re.escape(key)}:[ \t]*(.*?)[ \t]*$", chart_yaml, re.MULTILINE)
    if not m:
        return None
    value = m.group(1)
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return value


# --------------------------------------------------------------------------
# Worker: Helm runs here.


def configuration(helm, host: str | None, args) -> object:
    if args.username is None and args.password is None:
        return helm.Configuration(plain_http=True)
    if args.username is None or args.password is None:
        raise HarnessError("--username and --password go together")
    if args.login:
        cfg = helm.Configuration(plain_http=True)
        try:
            asyncio.run(helm.RegistryLogin(cfg).run(host, args.username, args.password,
                                                    plain_http=True))
        except helm.HelmError as e:
            raise HarnessError(f"helm registry login {host}: {helm_error_text(e)}") from e
        return cfg
    return helm.Configuration(plain_http=True, registry_auth={
        host: {"username": args.username, "password": args.password}})


def auth_mode(args) -> str:
    if args.username is None:
        return "none"
    return "login" if args.login else "registry_auth"


def do_push(helm, args, tmp: str) -> dict:
    host, _ = split_oci(args.remote)
    cfg = configuration(helm, host, args)
    src = args.chart
    if os.path.isdir(src):
        if not os.path.isfile(os.path.join(src, "Chart.yaml")):
            raise HarnessError(f"{src}: no Chart.yaml")
        dest = os.path.join(tmp, "package")
        os.makedirs(dest)
        try:
            tgz = asyncio.run(helm.Package(cfg).run(os.path.abspath(src), dest))
        except helm.HelmError as e:
            raise HarnessError(f"helm package {src}: {helm_error_text(e)}") from e
    elif os.path.isfile(src) and src.endswith((".tgz", ".tar.gz")):
        tgz = os.path.abspath(src)
    else:
        raise HarnessError(f"{src}: neither a chart directory nor a .tgz")
    try:
        meta = asyncio.run(helm.Show(cfg).chart(tgz))
    except helm.HelmError as e:
        raise HarnessError(f"helm show chart {tgz}: {helm_error_text(e)}") from e
    name, version = metadata_field(meta, "name"), metadata_field(meta, "version")
    if not name or not version:
        raise HarnessError(f"{tgz}: no name/version in the chart metadata:\n{meta}")
    try:
        asyncio.run(helm.Push(cfg).run(tgz, args.remote.rstrip("/"), plain_http=True))
    except helm.HelmError as e:
        raise HarnessError(f"helm push {os.path.basename(tgz)} {args.remote}: "
                           f"{helm_error_text(e)}") from e
    tag = version.replace("+", "_")
    ref = f"{args.remote.rstrip('/')[len('oci://'):]}/{name}:{tag}"
    return {"ref": ref, "name": name, "version": version, "tag": tag,
            "remote": args.remote, "auth": auth_mode(args)}


def do_fetch_check(helm, args, tmp: str) -> dict:
    host, path = split_oci(args.ref)
    if ":" in path.rsplit("/", 1)[-1] or "@" in path:
        raise HarnessError(f"{args.ref}: give the version as a separate argument, no tag")
    cfg = configuration(helm, host, args)
    if "+" in args.version:
        # Helm's show takes no --version, and Helm refuses NAME:TAG both with "+" (invalid
        # tag) and with "_" (improper constraint).  Without a tag Helm picks the highest
        # version in the registry; the check below tells if that is not the one asked for.
        ref = args.ref.rstrip("/")
    else:
        ref = f"{args.ref.rstrip('/')}:{args.version}"
    show = helm.Show(cfg)
    try:
        chart_yaml = asyncio.run(show.chart(ref))
        values_yaml = asyncio.run(show.values(ref))
    except helm.HelmError as e:
        raise HarnessError(f"helm show {ref}: {helm_error_text(e)}") from e
    name, version = metadata_field(chart_yaml, "name"), metadata_field(chart_yaml, "version")
    want_name = path.rsplit("/", 1)[-1]
    if name != want_name or version != args.version:
        raise HarnessError(f"{ref}: Helm loaded chart {name!r} version {version!r}, "
                           f"expected {want_name!r} version {args.version!r}")
    return {"ref": ref[len("oci://"):], "name": name, "version": version,
            "chart_yaml": chart_yaml, "values_yaml": values_yaml}


SEVERITY = {0: "unknown", 1: "info", 2: "warning", 3: "error"}


def do_lint(helm, args, tmp: str) -> dict:
    path = args.chart
    if path.startswith("oci://"):
        raise HarnessError("lint cannot read oci:// references (helm-sdkpy: missing registry "
                           "client); use fetch-check, or lint a downloaded .tgz")
    if not os.path.exists(path):
        raise HarnessError(f"{path}: not found")
    try:
        res = asyncio.run(helm.Lint(helm.Configuration()).run(os.path.abspath(path)))
    except helm.HelmError as e:
        raise HarnessError(f"helm lint {path}: {helm_error_text(e)}") from e
    messages = [{"severity": SEVERITY.get(m.get("Severity"), str(m.get("Severity"))),
                 "path": m.get("Path", "")}
                for m in (res.get("Messages") or [])]
    errors = sum(1 for m in messages if m["severity"] == "error")
    errors = max(errors, len(res.get("Errors") or []))
    return {"path": path, "charts_linted": res.get("TotalChartsLinted", 0),
            "errors": errors,
            "warnings": sum(1 for m in messages if m["severity"] == "warning"),
            "messages": messages}


def worker(args, tmp: str) -> dict:
    try:
        import helm_sdkpy as helm
    except ImportError as e:
        raise HarnessError(f"cannot import helm_sdkpy ({e}); set PYTHONPATH to the last line "
                           "of tests/helm/setup.sh") from e
    return {"push": do_push, "fetch-check": do_fetch_check, "lint": do_lint}[args.cmd](
        helm, args, tmp)


# --------------------------------------------------------------------------
# Parent: sets up the environment, runs the worker, prints the JSON.


def worker_environment(tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HELM_") and k not in ("KUBECONFIG", "DOCKER_CONFIG")}
    home = os.path.join(tmp, "helm-home")
    env["HELM_CACHE_HOME"] = os.path.join(home, "cache")
    env["HELM_CONFIG_HOME"] = os.path.join(home, "config")
    env["HELM_DATA_HOME"] = os.path.join(home, "data")
    env["HELM_REGISTRY_CONFIG"] = os.path.join(home, "config", "registry", "config.json")
    env["DOCKER_CONFIG"] = os.path.join(home, "docker")  # no ~/.docker/config.json
    env["HELM_DRIVER"] = "memory"
    env[WORKER_ENV] = tmp
    return env


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(prog=PROG, description="Real Helm against an OCI registry.")
    sub = parser.add_subparsers(dest="cmd", required=True)

    def creds(p):
        p.add_argument("--username")
        p.add_argument("--password")
        p.add_argument("--login", action="store_true",
                       help="use `helm registry login` (a registry config file) instead of "
                            "in-memory credentials")

    p = sub.add_parser("push", help="package (unless .tgz) and push a chart")
    p.add_argument("chart", metavar="CHART_DIR_OR_TGZ")
    p.add_argument("remote", metavar="oci://HOST/PATH")
    creds(p)
    p = sub.add_parser("fetch-check", help="load a chart from the registry with Helm")
    p.add_argument("ref", metavar="oci://HOST/PATH/NAME")
    p.add_argument("version", metavar="VERSION")
    creds(p)
    p = sub.add_parser("lint", help="helm lint a chart directory or .tgz")
    p.add_argument("chart", metavar="CHART_DIR_OR_TGZ")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)

    worker_tmp = os.environ.get(WORKER_ENV)
    if worker_tmp:
        try:
            result = worker(args, worker_tmp)
        except HarnessError as e:
            die(str(e))
        with open(os.path.join(worker_tmp, RESULT_FILE), "w", encoding="utf-8") as fh:
            json.dump(result, fh)
        return 0

    tmp = tempfile.mkdtemp(prefix="claimd-oci-")
    try:
        # Helm prints to the worker's stdout; keep it (for the digest) and show it on stderr.
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv],
                              env=worker_environment(tmp), stdout=subprocess.PIPE)
        helm_out = proc.stdout.decode("utf-8", "replace")
        sys.stderr.write(helm_out)
        result_path = os.path.join(tmp, RESULT_FILE)
        if proc.returncode != 0 or not os.path.isfile(result_path):
            if proc.returncode < 0:
                die(f"the Helm worker process was killed by signal {-proc.returncode}")
            if proc.returncode not in (1, 2):
                die(f"the Helm worker process failed (exit status {proc.returncode})")
            return proc.returncode or 1
        with open(result_path, encoding="utf-8") as fh:
            result = json.load(fh)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    digests = re.findall(r"^Digest: (sha256:[0-9a-f]{64})\s*$", helm_out, re.MULTILINE)
    if args.cmd in ("push", "fetch-check"):
        if not digests:
            die(f"Helm did not report a digest; its output was:\n{helm_out}")
        result["digest"] = digests[-1]
    if args.cmd == "push":
        pushed = re.findall(r"^Pushed: (\S+)\s*$", helm_out, re.MULTILINE)
        if pushed and pushed[-1] != result["ref"]:
            die(f"Helm pushed {pushed[-1]}, expected {result['ref']}")
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    if args.cmd == "lint" and result["errors"]:
        bad = ", ".join(m["path"] for m in result["messages"] if m["severity"] == "error")
        die(f"helm lint {args.chart}: {result['errors']} error(s) in {bad or '?'} "
            "(helm-sdkpy does not pass on the messages' text)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
