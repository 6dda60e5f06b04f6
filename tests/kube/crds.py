#!/usr/bin/env python3
"""Make today's CRDs installable into a Kubernetes 1.20 API server.

Usage:
    python3 tests/kube/crds.py DIR_OR_FILE [...]   > crds.json

Reads every CustomResourceDefinition in the given YAML files (a directory
means its *.yaml / *.yml files, sorted by name; other documents are skipped
with a note on stderr) and prints them as ONE JSON array on stdout, ready to
POST to /apis/apiextensions.k8s.io/v1/customresourcedefinitions.

A 1.20 server rejects some newer schema keywords.  As verified in
/work/shared/testbed/README.md ("Installing today's CRDs into a 1.20
server"), this removes
  * from every schema node: `x-kubernetes-validations` (CEL rules),
    `x-kubernetes-list-map-keys`, `x-kubernetes-list-type`, and a `default`
    of "" or null on `type: string` nodes;
  * from every version: `selectableFields`;
  * the CRD's `status` (the server owns it).
The walk follows the schema structure (properties, items, additionalProperties,
allOf/anyOf/oneOf/not, ...), so a *property* that happens to be named like one
of those keywords is kept.  CEL rules are lost; everything else the server
checks.  The removed keys are counted on stderr.

YAML is read like Kubernetes reads it (sigs.k8s.io/yaml): no timestamp or
`=` scalars, so a date stays a string.  Needs PyYAML (tests/kube/setup.sh
makes it importable).  Exit status 1 on errors, 2 on bad usage.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter

PROG = "crds.py"

try:
    import yaml
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"{PROG}: error: cannot import yaml ({e}); run tests/kube/setup.sh, which "
          "installs PyYAML into $CACHE/kube/pylib, and put that on PYTHONPATH",
          file=sys.stderr)
    sys.exit(1)

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class KubeLoader(_Base):  # type: ignore[misc, valid-type]
    """SafeLoader without the timestamp and `=` (value) implicit types."""


KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers
            if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value")]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()
}

SCHEMA_KEYS_REMOVED = ("x-kubernetes-validations", "x-kubernetes-list-map-keys",
                       "x-kubernetes-list-type")
removed: Counter = Counter()


def strip_schema(node) -> None:
    if not isinstance(node, dict):
        return
    for key in SCHEMA_KEYS_REMOVED:
        if key in node:
            del node[key]
            removed[key] += 1
    if node.get("type") == "string" and "default" in node and node["default"] in ("", None):
        del node["default"]
        removed['default ""/null on a string'] += 1
    for key in ("properties", "patternProperties", "definitions"):
        children = node.get(key)
        if isinstance(children, dict):
            for child in children.values():
                strip_schema(child)
    for key in ("items", "additionalProperties", "additionalItems", "not"):
        child = node.get(key)
        if isinstance(child, list):
            for c in child:
                strip_schema(c)
        else:
            strip_schema(child)
    for key in ("allOf", "anyOf", "oneOf"):
        for child in node.get(key) or []:
            strip_schema(child)


def transform(crd: dict) -> dict:
    crd.pop("status", None)
    spec = crd.get("spec") or {}
    for version in spec.get("versions") or []:
        if "selectableFields" in version:
            del version["selectableFields"]
            removed["selectableFields"] += 1
        strip_schema(((version.get("schema") or {}).get("openAPIV3Schema")))
    # apiextensions.k8s.io/v1beta1 keeps one schema for all versions.
    strip_schema(((spec.get("validation") or {}).get("openAPIV3Schema")))
    return crd


def yaml_files(arg: str) -> list[str]:
    if os.path.isdir(arg):
        return [os.path.join(arg, n) for n in sorted(os.listdir(arg))
                if n.endswith((".yaml", ".yml")) and os.path.isfile(os.path.join(arg, n))]
    if os.path.isfile(arg):
        return [arg]
    print(f"{PROG}: error: {arg}: no such file or directory", file=sys.stderr)
    sys.exit(2)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    out = []
    for arg in argv:
        for path in yaml_files(arg):
            try:
                with open(path, encoding="utf-8") as fh:
                    docs = list(yaml.load_all(fh, Loader=KubeLoader))
            except (OSError, yaml.YAMLError) as e:
                print(f"{PROG}: error: {path}: {e}", file=sys.stderr)
                return 1
            for doc in docs:
                if doc is None:
                    continue
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    kind = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
                    print(f"{PROG}: note: {path}: skipping a {kind} document", file=sys.stderr)
                    continue
                out.append(transform(doc))
    if removed:
        print(f"{PROG}: removed for 1.20: "
              + ", ".join(f"{k} x{n}" for k, n in sorted(removed.items())), file=sys.stderr)
    json.dump(out, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
