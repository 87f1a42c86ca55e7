"""The doctor's report as a small HTML page (``GET /doctor``)."""

from __future__ import annotations

from html import escape

from exporter.doctor.findings import Finding, Report, Severity, TargetReport

_COLOURS = {Severity.CRITICAL: "#b00020", Severity.WARNING: "#a36b00", Severity.INFO: "#0b6e99"}


def _finding(finding: Finding) -> str:
    alerts = ", ".join(finding.alerts)
    runbook = f"<br><b>runbook:</b> {escape(finding.runbook_link)}" if finding.runbook_link else ""
    return (
        f"<div class='f'><h3 style='color:{_COLOURS[finding.severity]}'>"
        f"[{finding.severity.value}] {escape(finding.title)}</h3>"
        f"<pre>{escape(chr(10).join(finding.evidence))}</pre>"
        f"<p><b>why:</b> {escape(finding.why)}<br><b>do now:</b> {escape(finding.action)}{runbook}"
        + (f"<br><b>alerts:</b> {escape(alerts)}" if alerts else "")
        + "</p></div>"
    )


def _target(target: TargetReport) -> str:
    if not target.reachable:
        return f"<h2>{escape(target.target)}: unreachable</h2><p>{escape(target.error or '')}</p>"
    incomplete = "".join(f"<li>{escape(line)}</li>" for line in target.incomplete)
    return (
        f"<h2>{escape(target.target)}: {escape(target.status)}</h2>"
        f"<p>{escape(target.dsn)} — PostgreSQL {escape(target.server_version or '?')}, Prefect "
        f"{escape(target.prefect_release or 'no Prefect schema')}, diagnosed in {target.duration:.2f}s</p>"
        + "".join(_finding(f) for f in target.findings)
        + (f"<p>not checked:</p><ul>{incomplete}</ul>" if incomplete else "")
    )


def render_html(report: Report) -> str:
    """Return the report as an HTML page."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>prefect-db-exporter doctor</title>"
        "<style>body{font-family:sans-serif}pre{background:#f4f4f4;padding:6px;overflow-x:auto}</style>"
        "</head><body><h1>doctor</h1><p><a href='/'>status</a> · "
        "<a href='/doctor' type='application/json'>JSON: send Accept: application/json</a></p>"
        + "".join(_target(t) for t in report.targets)
        + "</body></html>"
    )
