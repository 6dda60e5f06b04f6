#!/usr/bin/env python3
"""Print the values that real Helm computes for a chart, as one line of JSON.

Usage:
    PYTHONPATH="$(tests/helm/setup.sh | tail -n1)" \
        python3 tests/helm/coalesce.py CHART_DIR [-f VALUES_FILE ...]

This is the reference oracle for claimd's Rust Helm-values merge. It drives
Helm v4.3.0 itself (the Go library bundled in the `helm-sdkpy` wheel; see
setup.sh) and prints Helm's `.Values` exactly as a template sees it, i.e. the
result of `helm template CHART_DIR -f FILE1 -f FILE2 ...`.

How it works (no Kubernetes cluster is needed or contacted):

* helm-sdkpy has no `template` / client-only action, only a real `Install`.
  Install first talks to an API server (reachability check and discovery),
  so this script starts a tiny stand-in API server on 127.0.0.1 (ephemeral
  port) that answers only /version and the discovery documents, and points
  Helm at it with an in-memory kubeconfig.  The release store is Helm's
  in-memory driver (HELM_DRIVER=memory), so nothing is written anywhere.
* The chart is copied to a temp dir; every templates/ and crds/ directory
  (in the chart and in its subcharts, .tgz subcharts are unpacked first) is
  removed and a single templates/NOTES.txt containing `{{ .Values | toJson }}`
  is added.  A chart with no manifests makes Install create no objects, and
  the rendered notes come back in the release record.  Values, the schema,
  Chart.yaml, dependencies and subchart values.yaml files are untouched.
* `-f` files: helm-sdkpy's Install takes user values only as one JSON
  object, not as files.  So the files are turned into that object the way
  Helm v4's CLI does it (pkg/cli/values Options.MergeValues):
    - each file is split into YAML documents like k8s.io/apimachinery's
      YAMLReader (used by Helm's loader.LoadValues);
    - each document is parsed BY HELM, with its `fromYaml` template function
      (sigs.k8s.io/yaml.Unmarshal into a map, the same call LoadValues makes),
      in a first throw-away render;
    - documents, then files, are combined with a port of Helm's MergeMaps
      (maps merge recursively, anything else - lists, scalars, null -
      replaces).
  The combined map is then passed to Install, which does the real work:
  dependency processing, CoalesceValues against the chart defaults, schema
  validation, and rendering.
* libhelm runs in a child process of this script, started with the
  environment Helm needs (Go only sees the environment a process started
  with); the parent owns the temp dir and prints the JSON.
* As a self-check the result is compared with Helm's `get values --all` for
  the same (in-memory) release; a mismatch is reported on stderr.

Optional real-API-server mode: if the environment variable CLAIMD_KUBECONFIG
names a kubeconfig file (e.g. the one tests/support/kube.rs writes for its
kube-apiserver 1.20.2), there is no stand-in server: both installs go to that
API server, into a fresh namespace per call (`claimd-coalesce-<random>`,
created by Helm's create-namespace and left behind), with Helm's default
release store (Secrets in that namespace, HELM_DRIVER=secret).  The chart is
prepared exactly as above, so the server receives only the namespace and the
release Secrets.  The printed JSON is then Helm's `get values --all` for the
release, read back from the server and serialised the way Go's
encoding/json (Helm's toJson) does; the NOTES.txt render becomes the
self-check (a mismatch is reported on stderr).  For the same chart and files
both modes print the same bytes, with one known exception: a float -0 (YAML
`-0.0`) prints as `0` in this mode, because helm-sdkpy parses the `get values`
JSON with Python's json.loads.  Helm sees the real server's version
(v1.20.2) as .Capabilities.KubeVersion instead of the stand-in's v1.34.0, so
a chart whose Chart.yaml `kubeVersion` excludes 1.20 fails in this mode.

Exit status: 0 on success (JSON on stdout), 1 if Helm or the harness failed,
2 on bad usage.  Errors go to stderr, prefixed with "coalesce.py: error:".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROG = "coalesce.py"
WORKER_ENV = "CLAIMD_COALESCE_WORKER_TMP"  # set only in the worker process
KUBECONFIG_ENV = "CLAIMD_KUBECONFIG"  # optional: use this real API server
RESULT_FILE = "result.json"
FAKE_KUBE_VERSION = {"major": "1", "minor": "34", "gitVersion": "v1.34.0",
                     "platform": "linux/amd64"}


class HarnessError(Exception):
    """A failure worth a one-line message and exit status 1."""


def die(msg: str, status: int = 1) -> None:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    sys.exit(status)


# --------------------------------------------------------------------------
# A stand-in Kubernetes API server: just enough for Helm's reachability check
# and capability discovery.  Anything else is answered 404 and recorded, so a
# chart that unexpectedly makes Helm create objects fails loudly.


class _FakeApiHandler(BaseHTTPRequestHandler):
    unexpected: list[str] = []

    def log_message(self, *args):  # keep stderr quiet
        pass

    def _send(self, code: int, obj) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self) -> None:
        self.unexpected.append(f"{self.command} {self.path}")
        self._send(404, {"kind": "Status", "apiVersion": "v1",
                         "status": "Failure", "reason": "NotFound",
                         "code": 404, "message": "not served by coalesce.py"})

    def do_GET(self):  # noqa: N802 (http.server naming)
        path = self.path.split("?", 1)[0]
        if path == "/version":
            return self._send(200, FAKE_KUBE_VERSION)
        if path == "/api":
            return self._send(200, {
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})
        if path == "/apis":
            return self._send(200, {"kind": "APIGroupList",
                                    "apiVersion": "v1", "groups": []})
        if path == "/api/v1":
            return self._send(200, {"kind": "APIResourceList",
                                    "groupVersion": "v1", "resources": []})
        return self._not_found()

    def _other(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._not_found()

    do_POST = do_PUT = do_PATCH = do_DELETE = _other


def start_fake_api() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApiHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                     daemon=True).start()
    port = server.server_address[1]
    kubeconfig = (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: fake\n  cluster: {{server: \"http://127.0.0.1:{port}\"}}\n"
        "contexts:\n"
        "- name: fake\n  context: {cluster: fake, user: fake, namespace: default}\n"
        "current-context: fake\n"
        "users:\n"
        "- name: fake\n  user: {}\n"
    )
    return server, kubeconfig


# --------------------------------------------------------------------------
# -f file handling, mirroring Helm v4.3 (pkg/cli/values/options.go,
# pkg/chart/loader LoadValues / MergeMaps, k8s.io/apimachinery YAMLReader).


def split_yaml_documents(data: bytes, name: str) -> list[bytes]:
    """Split like k8s.io/apimachinery/pkg/util/yaml.YAMLReader.Read.

    Lines are read with bufio.ReadLine semantics (a "\\r\\n" or "\\n" ending
    becomes "\\n", a last line without newline gets one).  A line starting
    with "---" is a separator; after the "---" only blanks or a "#" comment
    may follow, else it is an error.  A separator ends the current document if
    that is non-empty (the separator line is dropped); if the current document
    is still empty the separator line is kept as its first line.
    """
    pieces = data.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()  # the data ended with "\n": no extra (empty) last line
    lines = []
    for i, piece in enumerate(pieces):
        had_newline = i < len(pieces) - 1 or data.endswith(b"\n")
        if had_newline and piece.endswith(b"\r"):
            piece = piece[:-1]
        lines.append(piece + b"\n")

    docs: list[bytes] = []
    buf = bytearray()
    for line in lines:
        if line.startswith(b"---"):
            rest = line[3:].strip()
            if rest and not rest.startswith(b"#"):
                raise HarnessError(
                    f"failed to parse {name}: error reading yaml document: "
                    f"invalid Yaml document separator: {rest.decode('utf-8', 'replace')}")
            if buf:
                docs.append(bytes(buf))
                buf = bytearray()
                continue
        buf += line
    if buf:
        docs.append(bytes(buf))
    return docs


def merge_maps(a: dict, b: dict) -> dict:
    """Port of Helm's loader.MergeMaps: b wins; only map-over-map recurses."""
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_maps(out[k], v)
            continue
        out[k] = v
    return out


def read_values_file(path: str) -> bytes:
    try:
        if path.strip() == "-":
            return sys.stdin.buffer.read()
        if "://" in path:
            raise HarnessError(f"{path}: only local values files are supported")
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise HarnessError(f"cannot read values file {path}: {e.strerror}") from e


# --------------------------------------------------------------------------
# Charts.

PARSE_CHART_YAML = "apiVersion: v2\nname: claimd-parse-values\nversion: 0.0.0\n"
# Each entry of .Values.docs is one YAML document; Helm's fromYaml parses it.
PARSE_NOTES = ("{{- $out := list -}}"
               "{{- range .Values.docs -}}{{- $out = append $out (fromYaml .) -}}{{- end -}}"
               "{{- $out | toJson -}}")
VALUES_NOTES = "{{- .Values | toJson -}}"


def write_file(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def strip_chart(chart_dir: str) -> None:
    """Remove templates/ and crds/ from a chart and, recursively, its subcharts."""
    for sub in ("templates", "crds"):
        p = os.path.join(chart_dir, sub)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.lexists(p):
            os.remove(p)
    charts = os.path.join(chart_dir, "charts")
    if not os.path.isdir(charts):
        return
    for entry in sorted(os.listdir(charts)):
        p = os.path.join(charts, entry)
        if entry.startswith(("_", ".")):
            continue  # Helm's loader ignores these
        if entry.endswith(".tgz") and os.path.isfile(p):
            unpack = os.path.join(charts, "." + entry + ".unpacked")  # hidden: not loaded
            with tarfile.open(p, "r:gz") as tf:
                try:
                    tf.extractall(unpack, filter="data")
                except TypeError:  # Python without extraction filters
                    tf.extractall(unpack)
            tops = [d for d in os.listdir(unpack) if os.path.isdir(os.path.join(unpack, d))]
            if len(tops) != 1:
                raise HarnessError(f"subchart archive {entry}: expected one top-level dir")
            target = os.path.join(charts, tops[0])
            if os.path.exists(target):
                raise HarnessError(f"subchart archive {entry} clashes with charts/{tops[0]}")
            os.rename(os.path.join(unpack, tops[0]), target)
            shutil.rmtree(unpack)
            os.remove(p)
            strip_chart(target)
        elif os.path.isdir(p):
            strip_chart(p)


def prepare_values_chart(src: str, dest: str) -> None:
    shutil.copytree(src, dest, symlinks=False)
    strip_chart(dest)
    os.makedirs(os.path.join(dest, "templates"))
    write_file(os.path.join(dest, "templates", "NOTES.txt"), VALUES_NOTES)


# --------------------------------------------------------------------------
# Talking to Helm.


def worker_environment(tmp: str) -> dict[str, str]:
    """The environment for the worker process that loads libhelm.

    Go reads the process environment once, from the environment the process
    was started with (os.environ changes made after start do not reach it),
    so Helm runs in a child process started with this environment: Helm's
    in-memory release store, and Helm/kube config and cache dirs inside tmp
    so the user's ~/.config/helm, ~/.kube etc. are neither read nor written.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HELM_") and k not in ("KUBECONFIG", "KUBECACHEDIR")}
    # A real API server keeps the release where Helm normally does (Secrets).
    env["HELM_DRIVER"] = "secret" if env.get(KUBECONFIG_ENV) else "memory"
    for key, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
                     ("HELM_DATA_HOME", "data"), ("KUBECACHEDIR", "kubecache")):
        env[key] = os.path.join(tmp, "helm-home", sub)
    env[WORKER_ENV] = tmp
    return env


def helm_error_text(e: BaseException) -> str:
    return str(e).strip() or type(e).__name__


def notes_of(release: dict, what: str) -> str:
    notes = (release.get("info") or {}).get("notes")
    if not isinstance(notes, str) or not notes:
        raise HarnessError(
            f"{what}: Helm returned no rendered NOTES.txt (is templates/NOTES.txt "
            "excluded by the chart's .helmignore?)")
    return notes


def _go_float(f: float) -> str:
    """strconv.FormatFloat as encoding/json uses it for a float64."""
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    d = Decimal(repr(f))  # repr: the shortest digits that round-trip, like Go's -1
    if 1e-6 <= abs(f) < 1e21:
        text = format(d, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    sign, digits, exp = d.as_tuple()
    digits_text = "".join(map(str, digits)).rstrip("0") or "0"
    exp10 = exp + len(digits) - 1
    mantissa = digits_text[0] + ("." + digits_text[1:] if len(digits_text) > 1 else "")
    text = f"{'-' if sign else ''}{mantissa}e{'+' if exp10 >= 0 else '-'}{abs(exp10):02d}"
    # Go shortens a negative two-digit exponent "e-07" to "e-7".
    return text[:-2] + text[-1] if text[-4:-1] == "e-0" else text


def go_json(value) -> str:
    """Serialise like Go's json.Marshal (Helm's toJson): sorted map keys, no
    spaces, <, > and & escaped as \\u003c etc., float64 formatting."""
    if isinstance(value, dict):
        return "{" + ",".join(go_json(str(k)) + ":" + go_json(value[k])
                              for k in sorted(value, key=str)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(go_json(v) for v in value) + "]"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                        ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
            text = text.replace(ch, esc)
        return text
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    raise HarnessError(f"cannot serialise {type(value).__name__} as JSON")


def run(chart_dir: str, value_files: list[str], tmp: str) -> str:
    try:
        import helm_sdkpy
    except ImportError as e:
        raise HarnessError(
            f"cannot import helm_sdkpy ({e}); run tests/helm/setup.sh and put the "
            "directory it prints last on PYTHONPATH") from e

    real_kubeconfig = os.environ.get(KUBECONFIG_ENV) or None
    server = None
    if real_kubeconfig:
        namespace = "claimd-coalesce-" + secrets.token_hex(5)
        kubeconfig = real_kubeconfig
    else:
        namespace = "default"
        server, kubeconfig = start_fake_api()
    try:
        cfg = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=kubeconfig)

        def install(release: str, chart: str, values: dict | None, what: str) -> dict:
            try:
                return asyncio.run(helm_sdkpy.Install(cfg).run(
                    release, chart, values=values or None, wait=False, timeout=60,
                    create_namespace=bool(real_kubeconfig)))
            except helm_sdkpy.HelmError as e:
                extra = ""
                if real_kubeconfig:
                    extra = (f" (real API server from ${KUBECONFIG_ENV}={real_kubeconfig}, "
                             f"namespace {namespace})")
                elif _FakeApiHandler.unexpected:
                    extra = (" (Helm made requests the harness does not serve: "
                             + ", ".join(_FakeApiHandler.unexpected[:5]) + ")")
                raise HarnessError(f"{what}: {helm_error_text(e)}{extra}") from e

        # 1. Parse the -f files with Helm (fromYaml), merge like Helm's CLI.
        user: dict = {}
        if value_files:
            docs: list[str] = []
            owners: list[int] = []  # index into value_files of each document
            for index, path in enumerate(value_files):
                for doc in split_yaml_documents(read_values_file(path), path):
                    try:
                        docs.append(doc.decode("utf-8"))
                    except UnicodeDecodeError as e:
                        raise HarnessError(f"{path}: not UTF-8 ({e})") from e
                    owners.append(index)
            # Helm: LoadValues(file) merges a file's documents, then MergeValues
            # merges the files in order.  (A file given twice counts twice.)
            per_file: list[dict] = [{} for _ in value_files]
            if docs:
                parse_dir = os.path.join(tmp, "parse-chart")
                os.makedirs(os.path.join(parse_dir, "templates"))
                write_file(os.path.join(parse_dir, "Chart.yaml"), PARSE_CHART_YAML)
                write_file(os.path.join(parse_dir, "templates", "NOTES.txt"), PARSE_NOTES)
                rel = install("claimd-parse", parse_dir, {"docs": docs},
                              "parsing values files")
                # Go's toJson writes float64 -0 as "-0"; keep its sign (Python
                # would read it as the int 0).  Other numbers round-trip exactly.
                parsed = json.loads(notes_of(rel, "parsing values files"),
                                    parse_int=lambda t: -0.0 if t == "-0" else int(t))
                if not isinstance(parsed, list) or len(parsed) != len(docs):
                    raise HarnessError("parsing values files: unexpected result from Helm")
                for index, doc_map in zip(owners, parsed):
                    path = value_files[index]
                    if doc_map is None:  # empty / comment-only / `null` document
                        continue
                    if (isinstance(doc_map, dict) and list(doc_map) == ["Error"]
                            and isinstance(doc_map["Error"], str)
                            and doc_map["Error"].startswith("error ")):
                        raise HarnessError(
                            f"failed to parse {path}: cannot unmarshal yaml document: "
                            f"{doc_map['Error']}")
                    if not isinstance(doc_map, dict):
                        raise HarnessError(f"failed to parse {path}: not a map")
                    per_file[index] = merge_maps(per_file[index], doc_map)
            for file_map in per_file:
                user = merge_maps(user, file_map)

        # 2. Coalesce with the chart, as `helm template` would.
        work_chart = os.path.join(tmp, "chart", os.path.basename(os.path.abspath(chart_dir)))
        prepare_values_chart(chart_dir, work_chart)
        rel = install("claimd", work_chart, user, "helm install (client-side render)")
        text = notes_of(rel, "rendering .Values")
        try:
            computed = json.loads(text)
        except json.JSONDecodeError as e:
            raise HarnessError(f"Helm's toJson output is not JSON ({e}): {text[:200]}") from e

        # 3. Real API server: the answer is `helm get values --all`, read back
        #    from the release stored there; the NOTES render is the check.
        if real_kubeconfig:
            try:
                all_values = asyncio.run(helm_sdkpy.GetValues(cfg).run("claimd", all=True))
            except helm_sdkpy.HelmError as e:
                raise HarnessError(
                    f"get values --all (namespace {namespace}): {helm_error_text(e)}") from e
            if all_values != computed:
                print(f"{PROG}: warning: .Values differs from `get values --all`: "
                      f"{text}", file=sys.stderr)
            return go_json(all_values)

        # 3. Self-check against `helm get values --all` for the same release.
        try:
            all_values = asyncio.run(helm_sdkpy.GetValues(cfg).run("claimd", all=True))
        except helm_sdkpy.HelmError as e:
            print(f"{PROG}: warning: get values --all failed: {helm_error_text(e)}",
                  file=sys.stderr)
        else:
            if all_values != computed:
                print(f"{PROG}: warning: .Values differs from `get values --all`: "
                      f"{json.dumps(all_values, sort_keys=True)}", file=sys.stderr)
        return text
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Print Helm v4's computed .Values for CHART_DIR as one line of JSON.")
    parser.add_argument("chart_dir", metavar="CHART_DIR")
    parser.add_argument("-f", "--values", dest="values", action="append", default=[],
                        metavar="VALUES_FILE",
                        help="user values file, as `helm template -f`; repeatable, "
                             "later files win")
    args = parser.parse_args(argv)

    if not os.path.isdir(args.chart_dir):
        die(f"{args.chart_dir}: not a chart directory", 2)
    if not os.path.isfile(os.path.join(args.chart_dir, "Chart.yaml")):
        die(f"{args.chart_dir}: no Chart.yaml", 2)
    real_kubeconfig = os.environ.get(KUBECONFIG_ENV)
    if real_kubeconfig and not os.path.isfile(real_kubeconfig):
        die(f"${KUBECONFIG_ENV}={real_kubeconfig}: no such file", 2)

    worker_tmp = os.environ.get(WORKER_ENV)
    if worker_tmp:
        # Worker: Helm runs here.  Its own stdout is the parent's stderr, so
        # anything Helm prints cannot get mixed into the JSON.
        try:
            text = run(args.chart_dir, args.values, worker_tmp)
        except HarnessError as e:
            die(str(e))
        write_file(os.path.join(worker_tmp, RESULT_FILE), text.strip() + "\n")
        return 0

    tmp = tempfile.mkdtemp(prefix="claimd-helm-")
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *argv],
                              env=worker_environment(tmp), stdout=2)
        result = os.path.join(tmp, RESULT_FILE)
        if proc.returncode != 0 or not os.path.isfile(result):
            if proc.returncode < 0:
                die(f"the Helm worker process was killed by signal {-proc.returncode}")
            if proc.returncode not in (1, 2):
                die(f"the Helm worker process failed (exit status {proc.returncode})")
            sys.exit(proc.returncode or 1)
        with open(result, encoding="utf-8") as fh:
            text = fh.read()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
