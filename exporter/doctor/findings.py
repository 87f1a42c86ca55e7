"""The doctor's findings and reports: plain, frozen records that the renderers read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Bumped when a field of the JSON report changes meaning or goes away (docs/doctor.md).
SCHEMA_VERSION = 2
RUNBOOKS = "docs/runbooks.md"


class Severity(StrEnum):
    """How bad a finding is: critical when Prefect work is hurt now, warning for a risk, info for context."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for the most severe."""
        return list(Severity).index(self)


class ExitCode:
    """The exit status of ``doctor``: usable in scripts and as a Kubernetes probe."""

    HEALTHY = 0
    WARNING = 1
    CRITICAL = 2
    UNREACHABLE = 3


@dataclass(frozen=True)
class Finding:
    """One thing the doctor found."""

    # A stable identifier of the kind of finding (docs/doctor.md lists them), e.g. lock_tree.
    code: str
    severity: Severity
    # What is wrong, in plain words.
    title: str
    # The evidence, one line each (pids, run ids, queues, ages); leading spaces are kept (trees).
    evidence: tuple[str, ...]
    # The Prefect mechanism behind it, in a sentence or two.
    why: str
    # What to do now.
    action: str
    # The runbook section (an anchor of docs/runbooks.md), or None.
    runbook: str | None = None
    # The alert rules (alerts/prefect-db-alerts.yml) that cover it.
    alerts: tuple[str, ...] = ()
    # The evidence as data, for --json (its shape per code is in docs/doctor.md).
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def runbook_link(self) -> str | None:
        """The runbook section as a link relative to the repository root."""
        return f"{RUNBOOKS}#{self.runbook.lower()}" if self.runbook else None


def ranked(findings: list[Finding]) -> tuple[Finding, ...]:
    """Return ``findings`` critical first, keeping the order rules gave within a severity."""
    return tuple(sorted(findings, key=lambda f: f.severity.rank))


@dataclass(frozen=True)
class TargetReport:
    """The diagnosis of one target."""

    target: str
    dsn: str
    reachable: bool
    error: str | None
    server_version: str | None
    # The first Prefect release of the schema revision, "unknown", or None without a Prefect schema.
    prefect_release: str | None
    alembic_revision: str | None
    # Seconds the diagnosis took.
    duration: float
    findings: tuple[Finding, ...]
    # Diagnostics that could not run here (lock timeouts, missing tables), one line each.
    incomplete: tuple[str, ...] = ()

    @property
    def exit_code(self) -> int:
        """0 healthy, 1 warnings, 2 critical, 3 unreachable."""
        if not self.reachable:
            return ExitCode.UNREACHABLE
        severities = {f.severity for f in self.findings}
        if Severity.CRITICAL in severities:
            return ExitCode.CRITICAL
        if Severity.WARNING in severities:
            return ExitCode.WARNING
        return ExitCode.HEALTHY

    @property
    def status(self) -> str:
        """healthy, warning, critical or unreachable."""
        return ("healthy", "warning", "critical", "unreachable")[self.exit_code]


@dataclass(frozen=True)
class Report:
    """The diagnosis of every chosen target, as of one moment."""

    version: str
    # time.time() when the diagnosis started.
    generated: float
    targets: tuple[TargetReport, ...]

    @property
    def exit_code(self) -> int:
        """The worst exit code of the targets (3 when any target is unreachable)."""
        return max((t.exit_code for t in self.targets), default=ExitCode.HEALTHY)
