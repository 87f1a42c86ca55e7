"""Write deploy/kubernetes/prometheusrule.yaml from alerts/prefect-db-alerts.yml (``make k8s``).

The Prometheus Operator loads rules from PrometheusRule objects, whose ``spec.groups`` is a Prometheus
rule file's ``groups``. The alert file stays the one source: this writes its groups, unchanged, into
the object, and tests/test_kubernetes.py fails when the two drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from devtools.paths import REPO_ROOT

ALERTS_FILE = REPO_ROOT / "alerts" / "prefect-db-alerts.yml"
RULE_OBJECT = REPO_ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"
HEADER = (
    "# Generated from alerts/prefect-db-alerts.yml by `make k8s` (python -m devtools.k8s_rules): do not\n"
    "# edit; change the alert file and regenerate. Needs the Prometheus Operator's CRDs.\n"
)


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so descriptions stay readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def rule_object(alerts: dict[str, Any]) -> dict[str, Any]:
    """The PrometheusRule holding the alert file's groups."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "prefect-db-exporter",
            "labels": {"app.kubernetes.io/name": "prefect-db-exporter"},
        },
        "spec": {"groups": alerts["groups"]},
    }


def render(alerts_file: Path = ALERTS_FILE) -> str:
    """The text of prometheusrule.yaml for ``alerts_file``."""
    alerts = yaml.safe_load(alerts_file.read_text(encoding="utf-8"))
    body = yaml.dump(
        rule_object(alerts), Dumper=_Dumper, sort_keys=False, width=1_000_000, allow_unicode=True
    )
    return HEADER + body


def main() -> int:
    """Write the PrometheusRule next to the other manifests."""
    RULE_OBJECT.write_text(render(), encoding="utf-8")
    print(f"wrote {RULE_OBJECT.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
