"""The terminal report: grouped by severity, wrapped to the width, colour only on a TTY without NO_COLOR."""

from __future__ import annotations

import io

import pytest

from exporter.doctor.findings import Finding, Report, Severity, TargetReport
from exporter.doctor.text import render_text, use_colour


def report(*findings: Finding) -> Report:
    target = TargetReport(
        target="prod",
        dsn="postgresql://exporter@db/prefect",
        reachable=True,
        error=None,
        server_version="15.4",
        prefect_release="3.1.6",
        alembic_revision="5d03c01be85e",
        duration=0.2,
        findings=findings,
    )
    return Report("0.1.0", 0.0, (target,))


def finding(severity: Severity, title: str) -> Finding:
    return Finding(
        code="lock_tree",
        severity=severity,
        title=title,
        evidence=("pid 10, read, idle in transaction ← ROOT BLOCKER", "└─ pid 11 " + "waiting " * 20),
        why="because " * 30,
        action="SELECT pg_terminate_backend(10);",
        runbook="PrefectPostgresLockWaitLong",
        alerts=("PrefectPostgresLockWaitLong",),
    )


def test_findings_are_grouped_critical_first_and_wrapped_to_the_width() -> None:
    text = render_text(report(finding(Severity.CRITICAL, "c"), finding(Severity.INFO, "i")), width=60)
    lines = text.splitlines()
    assert lines.index("CRITICAL (1)") < lines.index("INFO (1)")
    assert all(len(line) <= 60 for line in lines)
    assert "runbook: docs/runbooks.md#prefectpostgreslockwaitlong" in text
    assert "\033[" not in text


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(Tty()) and not use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Tty())
    coloured = render_text(report(finding(Severity.WARNING, "w")), colour=True)
    assert "\033[1;33mWARNING (1)\033[0m" in coloured


def test_a_healthy_report_says_so_and_its_exit_code_is_0() -> None:
    healthy = report(finding(Severity.INFO, "sizes"))
    assert "Nothing wrong found." in render_text(healthy)
    assert healthy.exit_code == 0 and report(finding(Severity.WARNING, "w")).exit_code == 1
