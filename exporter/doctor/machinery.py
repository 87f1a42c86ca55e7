"""Rules for Prefect's own background services, read from the machinery collectors' rows.

The late-runs marker, the foreman, the retention (``db_vacuum``), concurrency-slot bookkeeping and
cancellation cleanup each leave a trace in their tables; the catalog's collectors (late_marking,
foreman, retention, invalid_indexes, isolation, concurrency_slot_leaks, cancelling_runs) measure it,
and these rules turn their rows into findings. Pure: rows in, findings out, no database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exporter.doctor.findings import Finding, Severity
from exporter.doctor.observations import Row
from exporter.doctor.rules import SHOWN, Context, age, more, plural, queue_of

# The foreman and the relation names of the foreman collector, in the order shown.
FOREMAN_RELATIONS = ("worker", "work_queue", "deployment")


@dataclass(frozen=True)
class MachineryThresholds:
    """When a machinery trace is a finding (docs/doctor.md lists them beside each finding)."""

    # The foreman runs every 15 s: rows this far past their timeout mean four loops went by.
    foreman_overdue_seconds: float = 60.0
    # PREFECT_EVENTS_RETENTION_PERIOD's default; a day of slack, as PrefectRetentionBehind has.
    events_retention_seconds: float = 7 * 86400.0
    retention_slack_seconds: float = 86400.0


MACHINERY = MachineryThresholds()


def _positive(rows: Sequence[Row], key: str) -> list[Row]:
    return [r for r in rows if int(r.get(key) or 0) > 0]


def late_marking_stalled(ctx: Context) -> Iterable[Finding]:
    """SCHEDULED runs far past their start that Prefect has not marked Late; runs marked Late twice."""
    rows = ctx.obs.get("late_marking")
    overdue = sorted(_positive(rows, "overdue_runs"), key=lambda r: -float(r["oldest_overdue_seconds"] or 0))
    repeated = _positive(rows, "repeated_late_runs")
    if not overdue and not repeated:
        return
    lines = [
        f"{queue_of(r)}: {plural(int(r['overdue_runs']), 'run')} still Scheduled more than 60s past "
        f"their start, the oldest {age(r['oldest_overdue_seconds'])}"
        for r in overdue[:SHOWN]
    ]
    lines = more(lines, len(overdue))
    lines.extend(
        f"{queue_of(r)}: {plural(int(r['repeated_late_runs']), 'run')} marked Late more than once"
        for r in repeated[:SHOWN]
    )
    total = sum(int(r["overdue_runs"]) for r in overdue)
    twice = sum(int(r["repeated_late_runs"]) for r in repeated)
    yield Finding(
        code="late_marking_stalled",
        severity=Severity.WARNING if overdue else Severity.INFO,
        title=(
            f"Prefect's late-runs service is not marking runs Late: {total} overdue runs still Scheduled"
            if overdue
            else f"{plural(twice, 'run')} marked Late more than once"
        ),
        evidence=tuple(lines),
        why=(
            "Prefect's late-runs service marks a SCHEDULED run Late 15 s after its start, every 5 s; "
            "since 3.6.7 it is a docket task that stalls with docket or its Redis, and 3.6.7 to 3.7.5 "
            "re-marked Late runs Late again (prefect#22139, fixed in 3.7.6). Automations that watch for "
            "Late runs stay silent meanwhile."
        ),
        action=(
            "Check the Prefect server's log for the late-runs service and, on 3.6+, that Redis answers "
            "every server replica; then restart the server's services. On 3.6.7 to 3.7.5 upgrade to 3.7.6+."
        ),
        runbook="PrefectLateMarkingStalled",
        alerts=("PrefectLateMarkingStalled",),
        data={
            "queues": [
                {
                    "work_pool": r["work_pool"],
                    "work_queue": r["work_queue"],
                    "overdue_runs": int(r["overdue_runs"]),
                    "oldest_overdue_seconds": r["oldest_overdue_seconds"],
                    "repeated_late_runs": int(r["repeated_late_runs"]),
                }
                for r in rows
                if int(r["overdue_runs"]) or int(r["repeated_late_runs"])
            ],
        },
    )


def _overdue(ctx: Context, worker: Row) -> float:
    multiple = ctx.thresholds.worker_offline_multiple
    return float(worker["heartbeat_age_seconds"]) - float(worker["heartbeat_interval_seconds"]) * multiple


def foreman_stalled(ctx: Context) -> Iterable[Finding]:
    """Workers stored ONLINE, queues and deployments stored READY, past the timeouts the foreman applies.

    One finding for the foreman, merging the worker rows by name (the ``workers`` diagnostic) with the
    foreman collector's counts per pool for queues and deployments. Queues nobody polls at all are
    ``unpolled_queues``: that one says no worker polls; this one says Prefect's stored status is wrong.
    """
    slack = MACHINERY.foreman_overdue_seconds
    workers = [w for w in ctx.obs.get("workers") if _overdue(ctx, w) >= slack]
    counts = [
        r
        for r in ctx.obs.get("foreman")
        if int(r.get("stale_rows") or 0) and float(r.get("max_overdue_seconds") or 0) >= slack
    ]
    if not workers and not counts:
        return
    per_pool: dict[str, dict[str, Row]] = {}
    for r in counts:
        per_pool.setdefault(r["work_pool"] or "(no work pool)", {})[r["relation"]] = r
    lines: list[str] = []
    # The pool with the most overdue row first.
    worst = sorted(
        per_pool.items(), key=lambda item: -max(float(r["max_overdue_seconds"]) for r in item[1].values())
    )
    for pool, relations in worst[:SHOWN]:
        parts = [
            f"{plural(int(relations[rel]['stale_rows']), rel.replace('_', ' '))} stored "
            f"{'ONLINE' if rel == 'worker' else 'READY'} up to {age(relations[rel]['max_overdue_seconds'])} "
            "past the timeout"
            for rel in FOREMAN_RELATIONS
            if rel in relations
        ]
        lines.append(f"work pool {pool}: " + ", ".join(parts))
    if len(worst) > SHOWN:
        lines.append(f"… and {len(worst) - SHOWN} more work pools")
    shown = [
        f"  worker {w['worker']} of pool {w['work_pool']}: stored ONLINE, last heartbeat "
        f"{age(w['heartbeat_age_seconds'])} ago (interval {w['heartbeat_interval_seconds']}s)"
        for w in workers[:SHOWN]
    ]
    lines.extend(more(shown, len(workers), "  "))
    stale = {
        rel: sum(int(r["stale_rows"]) for r in counts if r["relation"] == rel) for rel in FOREMAN_RELATIONS
    }
    if not counts:  # no foreman collector (an older exporter catalog): the names alone
        stale["worker"] = len(workers)
    what = ", ".join(plural(n, rel.replace("_", " ")) for rel, n in stale.items() if n)
    yield Finding(
        code="foreman_stalled",
        severity=Severity.WARNING,
        title=f"Prefect's foreman is not updating statuses: {what} stored ONLINE or READY past their timeout",
        evidence=tuple(lines),
        why=(
            "Prefect's foreman (every 15 s) marks a worker OFFLINE after "
            f"{ctx.thresholds.worker_offline_multiple:g} missed heartbeats and queues and deployments "
            "NOT_READY after 60 s without a poll; rows still ONLINE or READY long after mean it is not "
            "running (since 3.6 a docket task: workers stayed ONLINE for hours after a Redis fault, "
            "prefect#22212), so the UI, the API and automations on these statuses see a healthy pool."
        ),
        action=(
            "Look for foreman errors in the Prefect server's log, check Redis on 3.6+, restart the "
            "server's services; the statuses correct themselves within 15 s once it runs. Do not trust "
            "the UI's worker and deployment status meanwhile, and do not edit them by hand."
        ),
        runbook="PrefectForemanStalled",
        alerts=("PrefectForemanStalled", "PrefectWorkPoolNoOnlineWorkers"),
        data={
            "stale_rows": stale,
            "pools": [
                {
                    "work_pool": r["work_pool"],
                    "relation": r["relation"],
                    "stale_rows": int(r["stale_rows"]),
                    "max_overdue_seconds": r["max_overdue_seconds"],
                }
                for r in counts
            ],
            "workers": [dict(w) for w in workers],
        },
    )


def retention_behind(ctx: Context) -> Iterable[Finding]:
    """The oldest events / event_resources row against the events retention."""
    limit = MACHINERY.events_retention_seconds + MACHINERY.retention_slack_seconds
    behind = [
        r
        for r in ctx.obs.get("retention")
        if r["relation"] in ("events", "event_resources")
        and r.get("oldest_age_seconds") is not None
        and float(r["oldest_age_seconds"]) > limit
    ]
    if not behind:
        return
    retention = age(MACHINERY.events_retention_seconds)
    yield Finding(
        code="retention_behind",
        severity=Severity.WARNING,
        title=f"Prefect's event retention is behind: rows older than the {retention} retention remain",
        evidence=tuple(
            f"{r['relation']}: oldest row {age(r['oldest_age_seconds'])} old (retention {retention})"
            for r in behind
        ),
        why=(
            "From 3.6.19 db_vacuum deletes events and event_resources older than "
            "PREFECT_EVENTS_RETENTION_PERIOD (7 days by default) every hour (prefect#20746); older rows mean "
            "it is off, failing, or cannot keep up with the inserts (prefect#22874, #23079), and the "
            "tables grow without bound."
        ),
        action=(
            "Check that PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED includes events and that the server log "
            "shows its batches; raise PREFECT_SERVER_SERVICES_DB_VACUUM_BATCH_SIZE if it falls behind, "
            "check for invalid indexes on events/event_resources, then VACUUM. A longer retention on "
            "purpose: ignore this (7 days is assumed)."
        ),
        runbook="PrefectRetentionBehind",
        alerts=("PrefectRetentionBehind",),
        data={
            "retention_seconds": MACHINERY.events_retention_seconds,
            "tables": [
                {"relation": r["relation"], "oldest_age_seconds": r["oldest_age_seconds"]} for r in behind
            ],
        },
    )


def invalid_indexes(ctx: Context) -> Iterable[Finding]:
    """Invalid indexes on Prefect's tables, by name, with the step that repairs each."""
    prefect = {r["relation"] for r in _positive(ctx.obs.get("invalid_indexes"), "invalid_indexes")}
    if not prefect:
        return
    named = [r for r in ctx.obs.get("invalid_index_names") if r["relation"] in prefect]
    broken = [r for r in named if not r["building"]]
    lines = [
        f"{r['relation']}: index {r['index_name']} INVALID"
        + (", being built now (CREATE INDEX in progress)" if r["building"] else "")
        + f": {r['definition']}"
        for r in named
    ]
    if not named:  # the names could not be read: the counts still say where
        lines = [f"{name}: invalid indexes (names not read)" for name in sorted(prefect)]
    steps = [f"REINDEX INDEX CONCURRENTLY {_qualified(r)};" for r in broken]
    yield Finding(
        code="invalid_indexes",
        severity=Severity.INFO if named and not broken else Severity.WARNING,
        title=f"{plural(len(named) or len(prefect), 'invalid index')} on Prefect's tables, "
        "which the planner ignores",
        evidence=tuple(lines),
        why=(
            "A CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY that is cancelled or fails leaves "
            "its index INVALID: writes still maintain it, the planner never uses it, and the queries "
            "that need it scan the table (Prefect 3.9's migration c8d5f2a71b3e had to rebuild "
            "ix_event_resources__occurred because db_vacuum had fallen back to sequential scans)."
        ),
        action=(
            ("Rebuild each without blocking writes (outside a transaction): " + " ".join(steps) + " ")
            if steps
            else "Wait for the build in progress to finish (pg_stat_progress_create_index). "
        )
        + "If a rebuild fails on duplicates, drop the index instead (DROP INDEX CONCURRENTLY <name>;) and "
        "let the next `prefect server database upgrade` recreate Prefect's own.",
        runbook="PrefectInvalidIndex",
        alerts=("PrefectInvalidIndex",),
        data={
            "indexes": [
                {
                    "relation": r["relation"],
                    "index": r["index_name"],
                    "definition": r["definition"],
                    "unique": r["is_unique"],
                    "building": r["building"],
                    "reindex": f"REINDEX INDEX CONCURRENTLY {_qualified(r)};",
                    "drop": f"DROP INDEX CONCURRENTLY {_qualified(r)};",
                }
                for r in named
            ],
            "relations": sorted(prefect),
        },
    )


def _qualified(row: Row) -> str:
    def ident(name: str) -> str:
        plain = name.isidentifier() and name == name.lower()
        return name if plain else '"' + name.replace('"', '""') + '"'

    schema = str(row.get("schema_name") or "public")
    return ("" if schema == "public" else ident(schema) + ".") + ident(str(row["index_name"]))


def isolation(ctx: Context) -> Iterable[Finding]:
    """Prefect's database, or its sessions' roles, default to an isolation other than read committed."""
    row = next(iter(ctx.obs.get("isolation")), None)
    if row is None:
        return
    database, sessions = int(row["database_not_read_committed"]), int(row["sessions_not_read_committed"])
    if not database and not sessions:
        return
    release = ctx.obs.release.first_release if ctx.obs.release else "unknown"
    evidence = []
    if database:
        evidence.append(
            "new sessions on this database default to an isolation level other than read committed "
            "(ALTER DATABASE … SET default_transaction_isolation, or the server setting)"
        )
    evidence.append(f"{plural(sessions, 'client session')} run with such a default (the exporter's excluded)")
    evidence.append(
        f"Prefect schema of release {release} or later (Prefect forces read committed from 3.8.0)"
    )
    yield Finding(
        code="isolation_not_read_committed",
        severity=Severity.WARNING,
        title="Prefect's database does not default to read committed",
        evidence=tuple(evidence),
        why=(
            "Prefect before 3.8.0 inherits the default isolation; under repeatable read its "
            "concurrency_limit_v2 updates fail with serialization errors, set_state answers 503 and runs "
            "stay RUNNING (prefect#22597)."
        ),
        action=(
            "ALTER DATABASE <prefect_database> RESET default_transaction_isolation; (or ALTER ROLE <role> "
            "IN DATABASE <db> RESET default_transaction_isolation;), then restart Prefect's server so its "
            "pool opens new sessions."
        ),
        runbook="PrefectIsolationNotReadCommitted",
        alerts=("PrefectIsolationNotReadCommitted",),
        data={"database_not_read_committed": bool(database), "sessions_not_read_committed": sessions},
    )


def leaked_slots(ctx: Context) -> Iterable[Finding]:
    """Concurrency slots taken beyond the runs that can hold them, and the runs waiting for one."""
    rows = ctx.obs.get("concurrency_slot_leaks")
    leaks = sorted(_positive(rows, "leaked_slots"), key=lambda r: -int(r["leaked_slots"]))
    if not leaks:
        return
    waiting = sorted(_positive(rows, "awaiting_runs"), key=lambda r: -float(r["oldest_seconds"] or 0))
    lines = [
        f"{r['name']}: {int(r['leaked_slots'])} slots taken beyond its {int(r['holders'])} holding runs"
        for r in leaks
    ]
    lines = more(lines[:SHOWN], len(leaks))
    lines.extend(
        f"{queue_of(r)}: {plural(int(r['awaiting_runs']), 'run')} AwaitingConcurrencySlot, the oldest "
        f"{age(r['oldest_seconds'])}"
        for r in waiting[:SHOWN]
    )
    yield Finding(
        code="concurrency_slots_leaked",
        severity=Severity.WARNING,
        title=f"{plural(sum(int(r['leaked_slots']) for r in leaks), 'concurrency slot')} taken that no run "
        f"holds, on {plural(len(leaks), 'limit')}",
        evidence=tuple(lines),
        why=(
            "A run takes a slot when it is proposed PENDING (deployment limits) or RUNNING (tag limits) and "
            "gives it back on the way out; a crash in between leaves it taken until its lease expires "
            "(prefect#17415), and serialization failures under repeatable read break the bookkeeping "
            "(prefect#22597). Runs then wait in AwaitingConcurrencySlot."
        ),
        action=(
            "Check for runs stuck PENDING first (they hold slots legitimately); then reset each limit's "
            "slots to what its holders use: prefect gcl update <name> --active-slots <n>."
        ),
        runbook="PrefectConcurrencySlotsLeaked",
        alerts=("PrefectConcurrencySlotsLeaked",),
        data={
            "limits": [
                {"name": r["name"], "holders": int(r["holders"]), "leaked_slots": int(r["leaked_slots"])}
                for r in leaks
            ],
            "awaiting": [
                {
                    "work_pool": r["work_pool"],
                    "work_queue": r["work_queue"],
                    "runs": int(r["awaiting_runs"]),
                    "oldest_seconds": r["oldest_seconds"],
                }
                for r in waiting
            ],
        },
    )


def cancelling_stuck(ctx: Context) -> Iterable[Finding]:
    """Flow runs CANCELLING for more than 300 s, by id."""
    counts = sorted(
        _positive(ctx.obs.get("cancelling_runs"), "stale_runs"),
        key=lambda r: -float(r["oldest_age_seconds"] or 0),
    )
    if not counts:
        return
    runs = ctx.obs.get("stuck_cancelling_runs")
    lines = [
        f"{queue_of(r)}: {plural(int(r['stale_runs']), 'run')} CANCELLING for more than 5m, the oldest "
        f"{age(r['oldest_age_seconds'])}"
        for r in counts[:SHOWN]
    ]
    shown = [
        f"  run {r['run_id']} {r['run_name']} on {queue_of(r)}: CANCELLING for {age(r['age_seconds'])}, "
        + (
            f"infrastructure pid {r['infrastructure_pid']}"
            if r.get("infrastructure_pid")
            else "no infrastructure"
        )
        for r in runs[:SHOWN]
    ]
    total = sum(int(r["stale_runs"]) for r in counts)
    lines.extend(more(shown, total, "  ") if runs else [])
    yield Finding(
        code="cancelling_stuck",
        severity=Severity.WARNING,
        title=f"{plural(total, 'flow run')} stuck CANCELLING for more than 5 minutes",
        evidence=tuple(lines),
        why=(
            "A CANCELLING run waits for its worker to kill the infrastructure and for the "
            "cancellation-cleanup service to cancel its subflows; with many subflows that loop cannot "
            "keep up (prefect#15231), and before 3.7.5 (which gives up after 300 s) nothing ends a run whose "
            "worker is gone. These runs keep their concurrency slots."
        ),
        action=(
            "Check that a worker of the pool is alive and can reach the infrastructure; a run whose "
            "infrastructure is gone can be forced to Cancelled (prefect flow-run cancel <id> again, or "
            "set its state with force=true). Many subflows: upgrade to 3.7.5+."
        ),
        runbook="PrefectFlowRunsCancellingStuck",
        alerts=("PrefectFlowRunsCancellingStuck",),
        data={
            "queues": [
                {
                    "work_pool": r["work_pool"],
                    "work_queue": r["work_queue"],
                    "stale_runs": int(r["stale_runs"]),
                    "oldest_age_seconds": r["oldest_age_seconds"],
                }
                for r in counts
            ],
            "runs": [
                {
                    "id": r["run_id"],
                    "name": r["run_name"],
                    "work_pool": r["work_pool"],
                    "work_queue": r["work_queue"],
                    "age_seconds": r["age_seconds"],
                    "infrastructure_pid": r.get("infrastructure_pid"),
                }
                for r in runs
            ],
        },
    )
