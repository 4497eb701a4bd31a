"""The deployment artifacts under ``deploy/`` are valid and say only what the product understands.

* every Kubernetes manifest validates offline against Kubernetes' own JSON schemas (strict:
  no unknown fields), with ``kubernetes-validate`` and the schemas it ships; the one custom
  resource (the Prometheus Operator's ServiceMonitor, whose schema is not Kubernetes') is
  checked for what it must scrape;
* every environment variable they set is a setting of ``Settings``, every command line is a
  ``bisnesgpt`` command, every probe is a route of the role's health router, and every port is
  the role's port — in the manifests and in ``deploy/compose.yaml``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from bisnesgpt.cli.main import app
from bisnesgpt.config import Settings

pytestmark = pytest.mark.unit

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES_VERSION = "1.33"
ROLE_PORTS = {"api": 3000, "wwebjs": 3001, "meta": 3002}
PROBE_PATHS = {"/health", "/health/ready", "/health/live"}
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", []))


def test_every_manifest_validates_against_the_kubernetes_schemas() -> None:
    docs = _documents()
    kinds = sorted({doc["kind"] for _, doc in docs})
    assert kinds == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job", "PodDisruptionBudget", "Secret",
                     "Service", "ServiceMonitor"]
    for name, doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "bisnesgpt", name
    monitors = [doc for _, doc in docs if doc["kind"] == "ServiceMonitor"]
    assert [e["path"] for m in monitors for e in m["spec"]["endpoints"]] == ["/metrics"]
    assert monitors[0]["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "bisnesgpt"}


def test_a_malformed_manifest_is_refused_by_the_validator() -> None:
    deployment = next(doc for _, doc in _documents() if doc["kind"] == "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "three"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_roles_run_their_command_with_probes_ports_and_budgets() -> None:
    docs = _documents()
    deployments = {doc["metadata"]["name"]: doc for _, doc in docs if doc["kind"] == "Deployment"}
    assert set(deployments) == {f"bisnesgpt-{role}" for role in ROLE_PORTS}
    budgets = {doc["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
               for _, doc in docs if doc["kind"] == "PodDisruptionBudget"}
    assert budgets == set(ROLE_PORTS)
    hpa = next(doc for _, doc in docs if doc["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "bisnesgpt-api"
    for role, port in ROLE_PORTS.items():
        (container,) = _containers(deployments[f"bisnesgpt-{role}"])
        assert container["args"] == ["run", role]
        assert [p["containerPort"] for p in container["ports"]] == [port]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["path"] in PROBE_PATHS
    # Sessions are handed over on SIGTERM: the grace period outlasts the lease period.
    grace = deployments["bisnesgpt-wwebjs"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > Settings.model_fields["wwebjs_lease_ttl_seconds"].default


def test_every_variable_is_a_setting_and_every_command_exists() -> None:
    runner = CliRunner()
    commands: list[list[str]] = []
    names: set[str] = set()
    for _, doc in _documents():
        if doc["kind"] in ("ConfigMap", "Secret"):
            names |= set(doc.get("data") or {}) | set(doc.get("stringData") or {})
        commands += [c["args"] for c in _containers(doc)]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for service in compose["services"].values():
        commands.append(service["command"])
        names |= set(service.get("environment") or {})
        probe = " ".join(service.get("healthcheck", {}).get("test", []))
        if service["command"][:1] == ["run"]:
            assert f":{ROLE_PORTS[service['command'][1]]}/health/ready" in probe
    assert names and names <= SETTING_NAMES, sorted(names - SETTING_NAMES)
    for args in commands:
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, f"bisnesgpt {' '.join(args)}: {result.output}"
    assert ["migrate"] in commands and ["run", "wwebjs"] in commands
