"""The doctor's JSON report (``--json``, ``GET /doctor`` with ``Accept: application/json``).

Its shape is ``report.schema.json`` beside this file, documented in docs/doctor.md; the
``schema_version`` changes when a field changes meaning or goes away.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exporter.doctor.findings import SCHEMA_VERSION, Finding, Report, TargetReport

SCHEMA_FILE = Path(__file__).with_name("report.schema.json")


def _finding(finding: Finding) -> dict[str, Any]:
    return {
        "code": finding.code,
        "severity": finding.severity.value,
        "title": finding.title,
        "evidence": list(finding.evidence),
        "why": finding.why,
        "action": finding.action,
        "runbook": finding.runbook_link,
        "alerts": list(finding.alerts),
        "data": dict(finding.data),
    }


def _target(target: TargetReport) -> dict[str, Any]:
    return {
        "target": target.target,
        "dsn": target.dsn,
        "status": target.status,
        "exit_code": target.exit_code,
        "reachable": target.reachable,
        "error": target.error,
        "server_version": target.server_version,
        "prefect_release": target.prefect_release,
        "alembic_revision": target.alembic_revision,
        "duration_seconds": round(target.duration, 4),
        "findings": [_finding(f) for f in target.findings],
        "incomplete": list(target.incomplete),
    }


def report_dict(report: Report) -> dict[str, Any]:
    """Return the report as plain JSON data."""
    return {
        "schema_version": SCHEMA_VERSION,
        "exporter_version": report.version,
        "generated_at": datetime.fromtimestamp(report.generated, UTC).isoformat(timespec="seconds"),
        "exit_code": report.exit_code,
        "targets": [_target(t) for t in report.targets],
    }


def render_json(report: Report) -> str:
    """Return the report as JSON text."""
    return json.dumps(report_dict(report), indent=2, default=str) + "\n"
