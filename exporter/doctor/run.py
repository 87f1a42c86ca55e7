"""Diagnose the registry's targets: observe each database, apply the rules, build the report."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace

from exporter import __version__
from exporter.doctor.findings import Report, TargetReport, ranked
from exporter.doctor.observations import DeadlockSample
from exporter.doctor.observe import observe
from exporter.doctor.queries import DiagnosticQuery, load_diagnostics
from exporter.doctor.rules import DoctorThresholds
from exporter.doctor.ruleset import diagnose as apply_rules
from exporter.errors import ConnectError, QueryError
from exporter.registry import Exporter
from exporter.target import Target


@functools.cache
def diagnostics() -> Mapping[str, DiagnosticQuery]:
    """The built-in diagnostic queries, read once."""
    return load_diagnostics()


async def diagnose_target(
    target: Target,
    doctor: DoctorThresholds,
    running: bool,
    previous: DeadlockSample | None = None,
) -> tuple[TargetReport, DeadlockSample | None]:
    """Diagnose one target; return its report and the deadlock sample the next ``--watch`` round starts from.

    ``running`` says the target belongs to a running exporter: its status snapshot (collector
    states) is then part of the diagnosis. With a ``server_log``, the deadlocks the log reports
    during the diagnosis are attributed to Prefect operations.
    """
    started = time.monotonic()
    status = target.status() if running else None
    server_log = target.server_log
    if server_log is not None:
        # Read the log up to now (from its end when nobody follows it yet), so that only the
        # deadlocks of the window are attributed.
        server_log.poll(first=server_log.following is None)
    before = Counter(server_log.status().by_operation) if server_log is not None else Counter[str]()
    try:
        obs = await observe(
            target.db,
            target.catalog,
            diagnostics(),
            target.releases.describe,
            doctor.deadlock_window_seconds,
            previous,
        )
        if server_log is not None:
            server_log.poll()
            window = Counter(server_log.status().by_operation) - before
            obs = replace(obs, deadlocks_by_operation=dict(window))
    except (ConnectError, QueryError) as error:
        report = TargetReport(
            target=target.name,
            dsn=target.settings.target.safe_dsn,
            reachable=False,
            error=str(error),
            server_version=None,
            prefect_release=None,
            alembic_revision=None,
            duration=time.monotonic() - started,
            findings=(),
        )
        return report, None
    findings = apply_rules(obs, target.classifier, target.settings.thresholds, doctor, status)
    release = obs.release
    report = TargetReport(
        target=target.name,
        dsn=target.settings.target.safe_dsn,
        reachable=True,
        error=None,
        server_version=obs.facts.server_version,
        prefect_release=release.first_release if release else None,
        alembic_revision=obs.facts.alembic_revision,
        duration=time.monotonic() - started,
        findings=ranked(findings),
        incomplete=obs.incomplete,
    )
    return report, obs.deadlocks_after


async def diagnose(
    exporter: Exporter,
    target: str | None = None,
    doctor: DoctorThresholds | None = None,
    running: bool = False,
    previous: Mapping[str, DeadlockSample | None] | None = None,
) -> tuple[Report, dict[str, DeadlockSample | None]]:
    """Diagnose every target of ``exporter`` (or ``target`` only) in parallel."""
    generated = time.time()
    chosen = [t for name, t in exporter.targets.items() if target is None or name == target]
    results = await asyncio.gather(
        *(
            diagnose_target(t, doctor or DoctorThresholds(), running, (previous or {}).get(t.name))
            for t in chosen
        )
    )
    report = Report(__version__, generated, tuple(r for r, _ in results))
    return report, {t.name: sample for t, (_, sample) in zip(chosen, results, strict=True)}
