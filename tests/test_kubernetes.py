"""deploy/kubernetes: rendered offline by `kubectl kustomize`, its PrometheusRule generated from the alert
file and checked by promtool, its exporter config parsed by the exporter's own parser.

Not checked here (no cluster, no CRD schemas offline): that an API server accepts the objects, and that
the Prometheus Operator selects the ServiceMonitor and PrometheusRule (that depends on the labels
your Prometheus selects by; the README says which)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import exporter
from devtools import k8s_rules
from devtools.paths import REPO_ROOT
from exporter.config import parse_config

BASE = REPO_ROOT / "deploy" / "kubernetes"
ALERTS_FILE = REPO_ROOT / "alerts" / "prefect-db-alerts.yml"
IMAGE_UID = 10001


def tool(name: str, package: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is missing: apt-get install {package} (make test does)"
    return found


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    """The objects `kubectl kustomize` renders from the base, by kind."""
    result = subprocess.run(
        [tool("kubectl", "kubernetes-client"), "kustomize", str(BASE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    objects = [o for o in yaml.safe_load_all(result.stdout) if o]
    by_kind = {o["kind"]: o for o in objects}
    assert len(by_kind) == len(objects), "one object of each kind"
    return by_kind


def test_prometheusrule_is_the_alert_file_regenerated() -> None:
    committed = (BASE / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert committed == k8s_rules.render(ALERTS_FILE), "run `make k8s` after changing the alert file"
    generated = yaml.safe_load(committed)
    assert generated["spec"]["groups"] == yaml.safe_load(ALERTS_FILE.read_text())["groups"]


def test_generated_rule_groups_pass_promtool(tmp_path: Path) -> None:
    groups = yaml.safe_load((BASE / "prometheusrule.yaml").read_text())["spec"]["groups"]
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    result = subprocess.run(
        [tool("promtool", "prometheus"), "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in groups)
    assert f"SUCCESS: {count} rules found" in result.stdout


def test_kustomize_renders_every_object_of_the_base(rendered: dict[str, dict[str, Any]]) -> None:
    assert sorted(rendered) == [
        "ConfigMap",
        "Deployment",
        "PrometheusRule",
        "Secret",
        "Service",
        "ServiceMonitor",
    ]


def test_deployment_probes_resources_and_sandbox(rendered: dict[str, dict[str, Any]]) -> None:
    deployment = rendered["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 1
    assert container["image"] == f"prefect-db-exporter:{exporter.__version__}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    requests = container["resources"]["requests"]
    assert set(requests) == {"cpu", "memory"} and container["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == IMAGE_UID == pod["securityContext"]["fsGroup"]
    sandbox = container["securityContext"]
    assert sandbox["readOnlyRootFilesystem"] is True and sandbox["allowPrivilegeEscalation"] is False
    assert sandbox["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    # The config the pod reads is the generated ConfigMap (its hashed name), and it listens on the port.
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == rendered["ConfigMap"]["metadata"]["name"]
    assert rendered["ConfigMap"]["metadata"]["name"].startswith("prefect-db-exporter-config-")
    assert volumes["secrets"]["secret"]["secretName"] == rendered["Secret"]["metadata"]["name"]
    config = parse_config(rendered["ConfigMap"]["data"]["exporter.yaml"].replace("password_file", "#"), "cm")
    assert ports["metrics"] == config.listen_port


def test_the_pod_reads_its_config_and_password_where_they_are_mounted(
    rendered: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    pod = rendered["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    (config_arg,) = [a for a in container["args"] if a.startswith("--config=")]
    assert config_arg == f"--config={mounts['config']['mountPath']}"
    text = rendered["ConfigMap"]["data"][mounts["config"]["subPath"]]
    secret_dir = mounts["secrets"]["mountPath"]
    (key,) = rendered["Secret"]["stringData"]
    assert rendered["Secret"]["stringData"][key] == "change-me", "the committed Secret is a placeholder"
    password = tmp_path / key
    password.write_text("change-me")
    config = parse_config(text.replace(f"{secret_dir}/{key}", str(password)), "exporter.yaml")
    (target,) = config.targets
    assert target.password_file == password
    # The mounted Secret is readable by the pod's group (fsGroup), not by others.
    assert pod["volumes"][1]["secret"]["defaultMode"] == 0o440


def test_servicemonitor_scrapes_the_service_as_the_job_the_alerts_expect(
    rendered: dict[str, dict[str, Any]],
) -> None:
    service, monitor = rendered["Service"], rendered["ServiceMonitor"]
    pod_labels = rendered["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    jobs = set(re.findall(r'up\{job="([^"]+)"\}', ALERTS_FILE.read_text()))
    assert jobs == {service["metadata"]["labels"][monitor["spec"]["jobLabel"]]}
    config = parse_config(rendered["ConfigMap"]["data"]["exporter.yaml"].replace("password_file", "#"), "cm")
    # The exporter answers before Prometheus gives up on the scrape.
    assert config.scrape_timeout < float(endpoint["scrapeTimeout"].removesuffix("s"))
