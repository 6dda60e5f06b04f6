#!/usr/bin/env python3
"""Real Helm (v4.3.0, helm-sdkpy) on the project's charts, for tests/charts.rs.

Usage (PYTHONPATH = the last line of tests/helm/setup.sh; PyYAML importable):

    charts.py lint CHART_DIR [--values FILE ...]
    charts.py install CHART_DIR --release NAME --namespace NS --kubeconfig FILE [--values FILE ...]

`--values` files are what `helm install -f FILE` takes (later files win; a `key: null`
removes a chart default), e.g. the values.yaml that `claimd render` commits for a claim.

lint
    helm-sdkpy's Lint takes no values, so the chart is copied to a temp dir and its
    values.yaml is replaced by the final values: the chart's values.yaml coalesced with the
    files the way Helm does (maps merge, anything else replaces, null deletes). Helm then
    lints exactly what an install with those files would see (schema included).
    Prints {"charts_linted", "errors", "warnings", "messages": [{"severity", "path"}]}.
    Lint errors are a result, not a failure: the exit status is 0 whenever Helm ran.
    (helm-sdkpy passes on each message's severity and file, not its text.)

install
    `helm install NAME CHART_DIR -n NS -f FILE...` (wait=False) into the API server of the
    kubeconfig; NS must exist. Helm renders with the server's real capabilities, validates
    the values against values.schema.json and the built-in objects against the server's
    OpenAPI, and creates every object. Prints {"release", "namespace", "status", "notes",
    "objects": [{"apiVersion", "kind", "name", "namespace", "object"}], "hooks": [...]}:
    each object as Helm rendered it (the manifest), for the caller to read back.
    A refused install exits 1 with Helm's message on stderr.

The last stdout line is the JSON; errors go to stderr ("charts.py: error: ..."), exit 1
(2 on bad usage). Helm runs in a child process started with its own HELM_* homes in a
temp dir (Go reads the environment only at process start), and whatever Helm prints goes
to stderr, so it cannot mix with the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile

PROG = "charts.py"
WORKER_ENV = "CLAIMD_CHARTS_WORKER_TMP"  # set only in the worker process
RESULT_FILE = "result.json"
SEVERITY = {0: "unknown", 1: "info", 2: "warning", 3: "error"}


class HarnessError(Exception):
    """A failure worth a message on stderr and exit status 1."""


def die(msg: str, status: int = 1) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    sys.exit(status)


def load_yaml(path: str):
    import yaml  # PyYAML (YAML 1.1, like Helm's go-yaml v2 based parser)
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except (OSError, yaml.YAMLError) as e:
        raise HarnessError(f"cannot read {path}: {e}") from e


def load_values_files(paths: list[str]) -> dict:
    """The files combined as Helm's CLI does before coalescing (MergeMaps: maps merge,
    anything else - lists, scalars, null - replaces; nulls are kept for the coalesce)."""
    out: dict = {}
    for p in paths:
        doc = load_yaml(p)
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise HarnessError(f"{p}: values must be a map, found {type(doc).__name__}")
        out = merge_maps(out, doc)
    return out


def merge_maps(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_maps(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def coalesce(defaults: dict, user: dict) -> dict:
    """Helm's CoalesceValues for one chart: user values over the chart's, a user null
    deletes the key; nulls left in the chart's own values are dropped too."""
    out = {k: copy.deepcopy(v) for k, v in defaults.items() if v is not None}
    for k, v in user.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = coalesce(out[k], v)
        elif isinstance(v, dict):
            out[k] = coalesce({}, v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def jsonable(v):
    """PyYAML turns unquoted dates into datetime objects; Helm keeps strings."""
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [jsonable(x) for x in v]
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    return v


def helm_error_text(e: BaseException) -> str:
    return str(e).strip() or type(e).__name__


# --------------------------------------------------------------------------
# Worker side: Helm runs here.


def do_lint(helm, args, tmp: str) -> dict:
    src = os.path.abspath(args.chart)
    if not os.path.isfile(os.path.join(src, "Chart.yaml")):
        raise HarnessError(f"{args.chart}: no Chart.yaml")
    work = os.path.join(tmp, "lint", os.path.basename(src.rstrip("/")))
    shutil.copytree(src, work)
    if args.values:
        import yaml
        defaults = load_yaml(os.path.join(src, "values.yaml")) or {}
        final = coalesce(defaults, load_values_files(args.values))
        with open(os.path.join(work, "values.yaml"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(final, fh, sort_keys=False)
    try:
        res = asyncio.run(helm.Lint(helm.Configuration()).run(work))
    except helm.HelmError as e:
        raise HarnessError(f"helm lint {args.chart}: {helm_error_text(e)}") from e
    messages = [{"severity": SEVERITY.get(m.get("Severity"), str(m.get("Severity"))),
                 "path": m.get("Path", "")}
                for m in (res.get("Messages") or [])]
    errors = sum(1 for m in messages if m["severity"] == "error")
    errors = max(errors, len(res.get("Errors") or []))
    return {"chart": args.chart, "charts_linted": res.get("TotalChartsLinted", 0),
            "errors": errors,
            "warnings": sum(1 for m in messages if m["severity"] == "warning"),
            "messages": messages}


def split_manifest(text: str, what: str) -> list[dict]:
    import yaml
    try:
        docs = [d for d in yaml.safe_load_all(text or "") if d]
    except yaml.YAMLError as e:
        raise HarnessError(f"{what}: Helm's manifest is not YAML: {e}") from e
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            raise HarnessError(f"{what}: a rendered document is not an object: {d!r:.200}")
    return docs


def do_install(helm, args, tmp: str) -> dict:
    if not os.path.isfile(os.path.join(args.chart, "Chart.yaml")):
        raise HarnessError(f"{args.chart}: no Chart.yaml")
    values = jsonable(load_values_files(args.values))
    cfg = helm.Configuration(namespace=args.namespace, kubeconfig=args.kubeconfig)
    try:
        rel = asyncio.run(helm.Install(cfg).run(
            args.release, os.path.abspath(args.chart), values=values or None, wait=False,
            timeout=120, create_namespace=False))
    except helm.HelmError as e:
        raise HarnessError(f"helm install {args.release} {args.chart} -n {args.namespace}: "
                           f"{helm_error_text(e)}") from e
    what = f"release {args.release}"
    objects = []
    for doc in split_manifest(rel.get("manifest", ""), what):
        meta = doc.get("metadata") or {}
        objects.append({"apiVersion": doc["apiVersion"], "kind": doc["kind"],
                        "name": meta.get("name", ""),
                        "namespace": meta.get("namespace") or args.namespace,
                        "object": jsonable(doc)})
    hooks = []
    for hook in rel.get("hooks") or []:
        for doc in split_manifest(hook.get("manifest", ""), what):
            hooks.append({"apiVersion": doc["apiVersion"], "kind": doc["kind"],
                          "name": (doc.get("metadata") or {}).get("name", "")})
    info = rel.get("info") or {}
    return {"release": args.release, "namespace": args.namespace,
            "status": info.get("status") or rel.get("status"),
            "notes": info.get("notes") or "", "objects": objects, "hooks": hooks}


def worker(args, tmp: str) -> dict:
    try:
        import helm_sdkpy as helm
    except ImportError as e:
        raise HarnessError(f"cannot import helm_sdkpy ({e}); set PYTHONPATH to the last line "
                           "of tests/helm/setup.sh") from e
    return {"lint": do_lint, "install": do_install}[args.cmd](helm, args, tmp)


# --------------------------------------------------------------------------
# Parent: the environment, the worker process, the JSON.


def worker_environment(tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HELM_") and k not in ("KUBECONFIG", "KUBECACHEDIR")}
    for key, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
                     ("HELM_DATA_HOME", "data"), ("KUBECACHEDIR", "kubecache")):
        env[key] = os.path.join(tmp, "helm-home", sub)
    env["HELM_DRIVER"] = "secret"  # releases live where Helm keeps them (Secrets in NS)
    env[WORKER_ENV] = tmp
    return env


def parse_args(argv: list[str]):
    parser = argparse.ArgumentParser(prog=PROG, description="Real Helm on a chart directory.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("lint", help="helm lint, with the final values of -f files")
    p.add_argument("chart", metavar="CHART_DIR")
    p.add_argument("--values", "-f", action="append", default=[], metavar="FILE")
    p = sub.add_parser("install", help="helm install (wait=False) into a real API server")
    p.add_argument("chart", metavar="CHART_DIR")
    p.add_argument("--release", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--values", "-f", action="append", default=[], metavar="FILE")
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

    if not os.path.isdir(args.chart):
        die(f"{args.chart}: not a chart directory", 2)
    for f in args.values:
        if not os.path.isfile(f):
            die(f"{f}: no such values file", 2)
    if args.cmd == "install" and not os.path.isfile(args.kubeconfig):
        die(f"{args.kubeconfig}: no such kubeconfig", 2)
    tmp = tempfile.mkdtemp(prefix="claimd-charts-")
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv],
                              env=worker_environment(tmp), stdout=2)
        result_path = os.path.join(tmp, RESULT_FILE)
        if proc.returncode != 0 or not os.path.isfile(result_path):
            if proc.returncode < 0:
                die(f"the Helm worker process was killed by signal {-proc.returncode}")
            return proc.returncode if proc.returncode in (1, 2) else 1
        with open(result_path, encoding="utf-8") as fh:
            result = json.load(fh)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
