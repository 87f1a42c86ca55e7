"""The doctor's terminal report: grouped by severity, wrapped to the terminal, coloured only on a TTY."""

from __future__ import annotations

import os
import textwrap
from typing import TextIO

from exporter.doctor.findings import Finding, Report, Severity, TargetReport

_COLOURS = {Severity.CRITICAL: "\033[1;31m", Severity.WARNING: "\033[1;33m", Severity.INFO: "\033[36m"}
_RESET = "\033[0m"
_LABELS = {Severity.CRITICAL: "CRITICAL", Severity.WARNING: "WARNING", Severity.INFO: "INFO"}


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


class _Writer:
    def __init__(self, width: int, colour: bool) -> None:
        self.width = max(40, width)
        self.colour = colour
        self.lines: list[str] = []

    def paint(self, text: str, severity: Severity) -> str:
        return f"{_COLOURS[severity]}{text}{_RESET}" if self.colour else text

    def wrap(self, text: str, indent: str, first: str | None = None) -> None:
        # Leading spaces of the text (lock trees) are kept on its continuation lines.
        inner = text[: len(text) - len(text.lstrip())]
        self.lines.extend(
            textwrap.wrap(
                text,
                self.width,
                initial_indent=first if first is not None else indent,
                subsequent_indent=indent + inner + "  ",
                break_on_hyphens=False,
            )
            or [indent]
        )


def _finding(out: _Writer, finding: Finding) -> None:
    mark = out.paint(f"[{_LABELS[finding.severity]}]", finding.severity)
    out.wrap(f"{finding.title}", "    ", f"  {mark} ")
    for line in finding.evidence:
        out.wrap(line, "      ")
    out.wrap(f"why: {finding.why}", "    ")
    out.wrap(f"do now: {finding.action}", "    ")
    if finding.runbook_link:
        out.wrap(f"runbook: {finding.runbook_link}", "    ")
    if finding.alerts:
        out.wrap("alerts: " + ", ".join(finding.alerts), "    ")
    out.lines.append("")


def _target(out: _Writer, target: TargetReport) -> None:
    head = f"{target.target} ({target.dsn})"
    if not target.reachable:
        out.lines.append(f"{head}: cannot reach the database: {target.error}")
        return
    # The schema revision tells the first release that leaves it, not the release itself.
    release = f"Prefect {target.prefect_release}+" if target.prefect_release else "no Prefect schema"
    out.lines.append(
        f"{head}: {target.status.upper()} — PostgreSQL {target.server_version}, {release}"
        + (f" (schema {target.alembic_revision})" if target.alembic_revision else "")
        + f", diagnosed in {target.duration:.2f}s"
    )
    out.lines.append("")
    for severity in Severity:
        found = [f for f in target.findings if f.severity is severity]
        if not found:
            continue
        out.lines.append(out.paint(f"{_LABELS[severity]} ({len(found)})", severity))
        for finding in found:
            _finding(out, finding)
    if not any(f.severity is not Severity.INFO for f in target.findings):
        out.lines.append("Nothing wrong found.")
    for line in target.incomplete:
        out.wrap(f"not checked: {line}", "  ", "")


def render_text(report: Report, width: int = 100, colour: bool = False) -> str:
    """Return the report for a terminal of ``width`` columns."""
    out = _Writer(width, colour)
    for index, target in enumerate(report.targets):
        if index:
            out.lines.append("")
        _target(out, target)
    return "\n".join(line.rstrip() for line in out.lines).rstrip() + "\n"
