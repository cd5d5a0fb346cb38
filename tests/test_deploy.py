"""deploy/kubernetes and deploy/gitops (docs/deploy.md): the overlays render offline with a real
kustomize (kubectl's) and validate against the Kubernetes schemas, the checker catches a broken
manifest, and the rendered objects have what docs/deploy.md promises."""

from __future__ import annotations

import copy
import importlib.util
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_deploy", ROOT / "scripts/check_deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check = _load_checker()


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: check.render(check.KUBERNETES / "overlays" / name) for name in check.OVERLAYS}


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [item for item in objects if item["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def _container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = _one(objects, "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def _env(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in _container(objects)["env"]}


def test_everything_in_deploy_is_valid() -> None:
    assert check.all_errors() == []


def test_an_unknown_field_or_a_wrong_type_is_caught(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    deployment = copy.deepcopy(_one(rendered["sqlite"], "Deployment"))
    deployment["spec"]["replicass"] = 2
    errors = check.schema_errors([deployment], "broken.yaml")
    assert errors and "'replicass' was unexpected" in errors[0]
    assert errors[0].startswith("broken.yaml: Deployment/postwright")
    probe = copy.deepcopy(_one(rendered["sqlite"], "Deployment"))
    probe["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = "5s"
    assert check.schema_errors([probe], "broken.yaml") != []


def test_a_custom_resource_missing_a_field_is_caught() -> None:
    application = check.load_yaml(ROOT / "deploy/gitops/argocd-application.yaml")[0]
    del application["spec"]["source"]["path"]
    errors = check.custom_errors([application], "app.yaml")
    assert errors == ["app.yaml: Application: spec.source: 'path' is a required property"]


def test_kustomize_failing_names_the_folder() -> None:
    folder = ROOT / "deploy" / "no-such-overlay"
    with pytest.raises(ValueError, match="deploy/no-such-overlay: kustomize failed"):
        check.render(folder)


def test_every_overlay_has_the_probes_security_and_metrics_of_the_base(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    for name, objects in rendered.items():
        kinds = sorted(item["kind"] for item in objects)
        assert {"Deployment", "Service", "PodDisruptionBudget", "ServiceAccount"} <= set(kinds)
        assert "NetworkPolicy" in kinds and "Secret" not in kinds, name  # secrets by reference
        assert {item["metadata"].get("namespace", "postwright") for item in objects} == {
            "postwright"
        }
        pod = _one(objects, "Deployment")["spec"]["template"]
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
        assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["automountServiceAccountToken"] is False
        container = _container(objects)
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert set(container["resources"]) == {"requests", "limits"}
        assert _env(objects)["POSTWRIGHT_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == (
            "postwright"
        )
        selector = _one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
        assert selector != {}
        assert _one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
        assert _one(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"] == selector


def test_the_sqlite_overlay_is_one_replica_on_a_claim_replaced_not_rolled(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["sqlite"]
    spec = _one(objects, "Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    claim = _one(objects, "PersistentVolumeClaim")["metadata"]["name"]
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "persistentVolumeClaim": {"claimName": claim}}
    assert _env(objects)["POSTWRIGHT_DATABASE_URL"]["value"] == "sqlite:////data/postwright.db"


def test_the_postgres_overlay_is_three_replicas_with_the_database_from_a_secret(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["postgres"]
    spec = _one(objects, "Deployment")["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"]["type"] == "RollingUpdate"
    reference = _env(objects)["POSTWRIGHT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert reference == {"name": "postwright", "key": "database-url"}
    assert "PersistentVolumeClaim" not in {item["kind"] for item in objects}


def test_every_secret_key_referenced_is_in_the_example_secret(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    example = check.load_yaml(check.KUBERNETES / "base" / "secret.example.yaml")[0]
    for objects in rendered.values():
        for variable in _env(objects).values():
            reference = variable.get("valueFrom", {}).get("secretKeyRef")
            if reference is not None:
                assert reference["name"] == example["metadata"]["name"]
                assert reference["key"] in example["stringData"], reference


def test_the_gitops_examples_point_at_an_overlay_that_exists() -> None:
    application = check.load_yaml(ROOT / "deploy/gitops/argocd-application.yaml")[0]
    assert (ROOT / application["spec"]["source"]["path"] / "kustomization.yaml").is_file()
    flux = check.load_yaml(ROOT / "deploy/gitops/flux-kustomization.yaml")[0]
    assert (ROOT / flux["spec"]["path"] / "kustomization.yaml").is_file()
    source = check.load_yaml(ROOT / "deploy/gitops/flux-gitrepository.yaml")[0]
    assert flux["spec"]["sourceRef"] == {
        "kind": "GitRepository",
        "name": source["metadata"]["name"],
    }


def test_the_overlay_of_your_own_in_docs_deploy_renders_and_validates(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    marker = "# clusters/prod/postwright/kustomization.yaml\n"
    block = text[text.index(marker) : text.index("```", text.index(marker))]
    lines = [line.removeprefix("   ") for line in block.splitlines()]
    # The layout the page describes: deploy/kubernetes copied beside clusters/prod/postwright.
    shutil.copytree(check.KUBERNETES, tmp_path / "deploy" / "kubernetes")
    folder = tmp_path / "clusters" / "prod" / "postwright"
    folder.mkdir(parents=True)
    (folder / "kustomization.yaml").write_text("\n".join(lines), encoding="utf-8")
    objects = check.render(folder)
    assert check.schema_errors(objects, "docs/deploy.md") == []
    env = _env(objects)
    assert env["POSTWRIGHT_GIT_URL"]["value"] == "https://git.example.com/team/automations.git"
    assert env["POSTWRIGHT_PUBLIC_URL"]["value"] == "https://postwright.example.com"
    assert env["POSTWRIGHT_DATABASE_URL"]["value"] == "sqlite:////data/postwright.db"
    assert _container(objects)["image"] == "registry.example.com/postwright:0.1.0"


def test_unbalanced_promql_is_caught() -> None:
    good = 'sum by (le) (rate(postwright_send_latency_seconds_bucket{job="a(b"}[5m]))'
    assert check.query_errors([good], "rules.yaml") == []
    assert check.query_errors(["sum(rate(x[5m])"], "rules.yaml") == [
        "rules.yaml: unbalanced brackets in 'sum(rate(x[5m])'"
    ]
    assert check.query_errors(["sum(x])"], "rules.yaml") != []
