"""The rules that turn observations into findings. Pure: rows in, findings out, no database."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.config import Thresholds
from exporter.doctor.findings import Finding, Severity
from exporter.doctor.locktree import Node, lock_forest
from exporter.doctor.observations import Observations, Row
from exporter.labels import OTHER
from exporter.operations import Classifier
from exporter.status import CollectorState, TargetStatus

# Operations that are not Prefect's own work (for "Prefect sessions without application_name").
NOT_PREFECT = frozenset({OTHER, "read", "exporter"})
# Prefect's tables whose size is history: they grow with every run, log line and event.
HISTORY_TABLES = ("events", "event_resources", "log", "flow_run_state")
# Pool types whose runs no worker polls for (push and managed pools).
WORKERLESS_POOL_SUFFIXES = (":push", "prefect:managed")
SHOWN = 10


@dataclass(frozen=True)
class DoctorThresholds:
    """When the doctor calls something a finding (docs/doctor.md lists them beside each finding)."""

    # A lock tree is shown once some session has waited this long, critical at the critical wait
    # (PrefectPostgresLockWaitLong) or with this many sessions waiting.
    lock_wait_seconds: float = 1.0
    lock_wait_critical_seconds: float = 60.0
    blocked_sessions_critical: int = 5
    idle_in_transaction_seconds: float = 60.0
    long_transaction_seconds: float = 1800.0
    connections_warning_ratio: float = 0.8
    connections_critical_ratio: float = 0.95
    # Late runs are critical once this late (PrefectFlowRunsLate), unless their pool or queue is paused.
    late_critical_seconds: float = 600.0
    unpolled_queue_seconds: float = 600.0
    dead_tuples_min: int = 10000
    dead_tuples_ratio: float = 0.2
    autovacuum_age_seconds: float = 86400.0
    # The deadlock counter is read twice this far apart: not shorter, because backends flush their
    # statistics (deadlocks included) at most once a second.
    deadlock_window_seconds: float = 1.0


def age(seconds: float | None) -> str:
    """A duration for people: 45s, 12m03s, 3h02m, 2d04h."""
    if seconds is None:
        return "never"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def size(count: float | None) -> str:
    """Bytes for people: 12.3 MB."""
    if count is None:
        return "?"
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def plural(count: int, noun: str) -> str:
    """``1 work queue``, ``3 work queues``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _names(names: Sequence[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def queue_of(row: Row) -> str:
    pool, queue = row.get("work_pool") or "", row.get("work_queue") or ""
    return f"{pool}/{queue}" if pool or queue else "(no work queue)"


def more(lines: list[str], total: int, indent: str = "") -> list[str]:
    return [*lines, f"{indent}… and {total - len(lines)} more"] if total > len(lines) else lines


@dataclass(frozen=True)
class Context:
    """What every rule may read."""

    obs: Observations
    classifier: Classifier
    thresholds: Thresholds
    doctor: DoctorThresholds
    status: TargetStatus | None

    def operation(self, row: Row) -> str:
        """The Prefect operation of a session row."""
        return self.classifier.classify(row.get("query"), row.get("application_name"))


Rule = Callable[[Context], Iterable[Finding]]


# Locks ------------------------------------------------------------------------------------------


def _waiting(row: Row) -> float:
    if row.get("wait_event_type") != "Lock":
        return 0.0
    return float(row.get("state_age_seconds") or 0.0)


def _session_line(ctx: Context, depth: int, node: Node, root: bool) -> str:
    row = node.row
    app = row.get("application_name") or "no application_name"
    parts = [f"pid {node.pid}", ctx.operation(row), f"[{app}]", str(row.get("state", "?"))]
    if _waiting(row) > 0:
        target = row.get("waiting_relation") or row.get("waiting_locktype") or "a lock"
        parts.append(f"waiting {age(_waiting(row))} for {row.get('waiting_mode')} on {target}")
    parts.append(f"xact {age(row.get('xact_age_seconds'))}")
    if root:
        parts.append("← ROOT BLOCKER")
    prefix = "" if depth == 0 else "   " * (depth - 1) + "└─ "
    return prefix + ", ".join(parts)


def lock_trees(ctx: Context) -> Iterable[Finding]:
    """Who blocks whom, with the root blocker and the statement to end it."""
    for tree in lock_forest(ctx.obs.get("sessions")):
        nodes = tree.walk()
        waits = [_waiting(n.row) for _, n in nodes]
        longest, waiting = max(waits), sum(1 for w in waits if w > 0)
        if longest < ctx.doctor.lock_wait_seconds:
            continue
        critical = (
            longest >= ctx.doctor.lock_wait_critical_seconds
            or waiting >= ctx.doctor.blocked_sessions_critical
        )
        root = tree.row
        idle = str(root.get("state", "")).startswith("idle in transaction")
        statement = str(root.get("query") or "").strip().replace("\n", " ")
        evidence = [_session_line(ctx, d, n, d == 0) for d, n in nodes]
        evidence.append(f"root blocker's {'last' if idle else 'current'} statement: {statement[:200]}")
        why = (
            "PostgreSQL grants a lock only after every conflicting request queued before it, so one "
            "session holding a lock "
            + ("while idle in its transaction " if idle else "")
            + "stops every session queued behind it; Prefect's API calls wait there until they time out."
        )
        yield Finding(
            code="lock_tree",
            severity=Severity.CRITICAL if critical else Severity.WARNING,
            title=f"pid {tree.pid} ({ctx.operation(root)}) blocks {tree.size() - 1} sessions, "
            f"the longest waiting {age(longest)}",
            evidence=tuple(evidence),
            why=why,
            action=(
                f"Find who owns pid {tree.pid} (application_name, client address) and let it finish or "
                f"end it: SELECT pg_terminate_backend({tree.pid}); — this rolls back its transaction "
                "(its work is lost and the client sees an error), and the sessions queued behind it "
                "then proceed in order."
            ),
            runbook="PrefectPostgresLockWaitLong",
            alerts=("PrefectPostgresLockWaitLong", "PrefectPostgresManyBlockedSessions"),
            data={
                "root_pid": tree.pid,
                "terminate": f"SELECT pg_terminate_backend({tree.pid});",
                "sessions": [
                    {
                        "pid": n.pid,
                        "depth": d,
                        "blocked_by": list(n.row.get("blocked_by") or []),
                        "operation": ctx.operation(n.row),
                        "application_name": n.row.get("application_name"),
                        "state": n.row.get("state"),
                        "wait_seconds": _waiting(n.row),
                        "waiting_relation": n.row.get("waiting_relation"),
                        "waiting_mode": n.row.get("waiting_mode"),
                        "xact_age_seconds": n.row.get("xact_age_seconds"),
                    }
                    for d, n in nodes
                ],
            },
        )


def deadlocks(ctx: Context) -> Iterable[Finding]:
    """Deadlocks happening now, what they involve and the fix for the Prefect release in use."""
    obs = ctx.obs
    before, after = obs.deadlocks_before, obs.deadlocks_after
    release = obs.release
    risky = release is not None and release.poll_deadlocks == "true"
    pools = sorted(
        {
            r["work_pool"]: int(r["live_workers"]) for r in obs.get("queues") if int(r["live_workers"]) > 1
        }.items()
    )
    if before is None or after is None or after.deadlocks <= before.deadlocks:
        total = next((r.get("deadlocks") for r in obs.get("database_stats")), None)
        if total:
            yield Finding(
                code="deadlocks_earlier",
                severity=Severity.INFO,
                title=f"{total} deadlocks since statistics were reset, none right now",
                evidence=(f"pg_stat_database.deadlocks = {total}",),
                why="Each deadlock aborts one of the transactions involved; Prefect retries some, "
                "others end runs Crashed.",
                action="Compare with prefect_db_deadlocks_total over time; a storm shows as a steep rise.",
                runbook="PrefectPostgresDeadlocks",
                alerts=("PrefectPostgresDeadlocks",),
                data={"deadlocks_total": total},
            )
        if risky and pools:
            yield _poll_risk(release.first_release if release else "unknown", pools)
        return
    count = after.deadlocks - before.deadlocks
    seconds = max(after.taken - before.taken, 0.001)
    per_minute = count * 60.0 / seconds
    evidence = [f"{count} deadlocks in the last {seconds:.1f}s (about {per_minute:.0f} per minute)"]
    if obs.deadlocks_by_operation:
        ranked = sorted(obs.deadlocks_by_operation.items(), key=lambda i: -i[1])
        evidence.append(
            "operations in the server log's deadlock reports: " + ", ".join(f"{o} {n}" for o, n in ranked)
        )
    else:
        evidence.append("operations: not attributed (configure server_log to read them from the log)")
    waits = sorted(
        {
            ctx.operation(r)
            for r in obs.get("sessions")
            if r.get("wait_event_type") == "Lock" and ctx.operation(r) not in NOT_PREFECT
        }
    )
    if waits:
        evidence.append("Prefect operations waiting on locks now: " + ", ".join(waits))
    version = release.first_release if release else "unknown"
    evidence.append(
        f"Prefect schema revision {release.alembic_revision if release else '?'} "
        f"(release {version} or later); its polls deadlock: {release.poll_deadlocks if release else '?'}"
    )
    if pools:
        evidence.append("pools with several live workers: " + ", ".join(f"{p} ({n})" for p, n in pools))
    fix = (
        "Upgrade Prefect to 3.7.0 or later (it locks deployment rows in id order). Until then: fewer "
        "workers per work queue, split a busy queue into several, or poll less often with a longer "
        "PREFECT_WORKER_QUERY_SECONDS (default 10)."
    )
    yield Finding(
        code="deadlock_storm",
        severity=Severity.CRITICAL,
        title=f"Deadlocks right now: about {per_minute:.0f} per minute",
        evidence=tuple(evidence),
        why=(
            "Every worker poll rewrites every deployment row of the polled queues "
            "(UPDATE deployment SET last_polled=…); Prefect 2.18.1 to 3.6.x lock those rows in an unstable "
            "order, so concurrent polls of one queue deadlock and one of them is aborted."
            if risky or release is None or release.poll_deadlocks == "unknown"
            else "Two transactions each wait for a lock the other holds; PostgreSQL aborts one of them."
        ),
        action=fix
        if risky or release is None or release.poll_deadlocks == "unknown"
        else (
            "Read the server log's 'deadlock detected' reports for the statements involved "
            "(or configure server_log) and order their locking."
        ),
        runbook="PrefectPostgresDeadlocks",
        alerts=("PrefectPostgresDeadlocks", "PrefectWorkerPollContention"),
        data={
            "deadlocks": count,
            "window_seconds": seconds,
            "per_minute": per_minute,
            "by_operation": dict(obs.deadlocks_by_operation),
            "prefect_release": version,
            "poll_deadlocks": release.poll_deadlocks if release else None,
            "pools_with_several_live_workers": dict(pools),
        },
    )


def _poll_risk(version: str, pools: list[tuple[str, int]]) -> Finding:
    return Finding(
        code="poll_deadlock_risk",
        severity=Severity.INFO,
        title=f"Prefect {version}+ with several live workers per pool: worker polls can deadlock",
        evidence=tuple(f"work pool {p}: {n} live workers" for p, n in pools),
        why="Before 3.7.0 concurrent polls of one queue lock its deployment rows in an unstable order.",
        action="Upgrade to Prefect 3.7.0 or later; until then keep one worker per queue where you can.",
        runbook="PrefectWorkerPollContention",
        alerts=("PrefectWorkerPollContention", "PrefectPostgresDeadlocks"),
        data={"prefect_release": version, "pools": dict(pools)},
    )


# Runs -------------------------------------------------------------------------------------------


def _grouped(rows: Sequence[Row]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(queue_of(row), []).append(row)
    return groups


# Per queue, at most this many run ids in the evidence (all of them are in the JSON data).
SHOWN_PER_QUEUE = 3


def stranded_pending(ctx: Context) -> Iterable[Finding]:
    """PENDING runs older than the threshold: one finding, the evidence per queue, worst queue first."""
    rows = ctx.obs.get("stranded_pending")
    if not rows:
        return
    # Rows come oldest first; the queue with the oldest stranded run leads.
    groups = sorted(_grouped(rows).items(), key=lambda item: -float(item[1][0]["age_seconds"]))
    lines: list[str] = []
    for where, runs in groups[:SHOWN]:
        live, pool = int(runs[0]["live_workers"]), runs[0]["work_pool"]
        serving = f"{live} live workers serve the pool" if pool else "no work pool"
        lines.append(f"{where}: {len(runs)} runs, oldest {age(runs[0]['age_seconds'])}, {serving}")
        shown = [
            f"  run {r['run_id']} {r['run_name']}: PENDING for {age(r['age_seconds'])}, infrastructure "
            + (f"pid {r['infrastructure_pid']}" if r.get("infrastructure_pid") else "never reported")
            for r in runs[:SHOWN_PER_QUEUE]
        ]
        lines.extend(more(shown, len(runs), "  "))
    if len(groups) > SHOWN:
        lines.append(f"… and {len(groups) - SHOWN} more queues")
    unserved = sorted({r["work_pool"] for r in rows if r["work_pool"] and int(r["live_workers"]) == 0})
    yield Finding(
        code="stranded_pending",
        severity=Severity.CRITICAL,
        title=f"{len(rows)} flow runs stranded in PENDING on {plural(len(groups), 'work queue')} "
        f"(oldest {age(max(float(r['age_seconds']) for r in rows))})",
        evidence=tuple(lines),
        why=(
            "PENDING has no server-side timeout: a worker claimed these runs and died, or their "
            "infrastructure never started. They keep holding the pool's and queue's concurrency slots."
        ),
        action=(
            (
                f"No live worker serves {_names(unserved)}: start one first, then cancel"
                if unserved
                else "Cancel"
            )
            + " or reschedule each run (prefect flow-run cancel <id>, or set it to "
            "Scheduled), after checking its infrastructure is really gone."
        ),
        runbook="PrefectFlowRunsStuckPending",
        alerts=("PrefectFlowRunsStuckPending",),
        data={
            "threshold_seconds": ctx.thresholds.pending_stale_seconds,
            "pools_without_live_workers": unserved,
            "queues": [
                {
                    "work_pool": runs[0]["work_pool"],
                    "work_queue": runs[0]["work_queue"],
                    "live_workers": int(runs[0]["live_workers"]),
                    "runs": len(runs),
                }
                for _, runs in groups
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
                for r in rows
            ],
        },
    )


def zombies(ctx: Context) -> Iterable[Finding]:
    """RUNNING runs whose heartbeats stopped (or the absence of heartbeats, which hides them)."""
    summary = next(
        (r for r in ctx.obs.get("running_heartbeats") if r.get("heartbeats_present") is not None), None
    )
    if summary is not None and not summary["heartbeats_present"]:
        running = sum(int(r.get("runs") or 0) for r in ctx.obs.get("running_heartbeats"))
        if running:
            yield Finding(
                code="heartbeats_absent",
                severity=Severity.INFO,
                title=f"No flow-run heartbeats within the lookback: {running} RUNNING runs cannot be "
                "checked for zombies",
                evidence=(f"last heartbeat event: {age(summary.get('last_heartbeat_age_seconds'))} ago",),
                why="Heartbeats need Prefect 3.1.8+ and PREFECT_FLOWS_HEARTBEAT_FREQUENCY (off by default "
                "before 3.6.22); without them a dead run looks like a running one.",
                action="Set PREFECT_FLOWS_HEARTBEAT_FREQUENCY (e.g. 60) on the flows' environment.",
                runbook="PrefectFlowRunsHeartbeatStale",
                alerts=("PrefectFlowRunsRunningTooLong",),
                data={"running_runs": running},
            )
    rows = ctx.obs.get("zombie_runs")
    if not rows:
        return
    lines = []
    for r in rows[:SHOWN]:
        beat = r.get("last_heartbeat_age_seconds")
        cadence = r.get("cadence_seconds")
        lines.append(
            f"run {r['run_id']} {r['run_name']} on {queue_of(r)}: "
            + (f"last heartbeat {age(beat)} ago" if beat is not None else "no heartbeat since it started")
            + (f" (every {cadence:.0f}s before)" if cadence else "")
            + f", running {age(r['running_seconds'])}, started by "
            + (f"infrastructure pid {r['infrastructure_pid']}" if r.get("infrastructure_pid") else "unknown")
        )
    yield Finding(
        code="zombie_runs",
        severity=Severity.CRITICAL,
        title=f"{len(rows)} RUNNING flow runs stopped sending heartbeats (zombies)",
        evidence=tuple(more(lines, len(rows))),
        why=(
            "A flow run sends a heartbeat event every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds while its "
            "process lives; Prefect's server never marks a silent run Crashed by itself (only an automation "
            "does), so it stays RUNNING and holds its concurrency slots."
        ),
        action=(
            "Check the infrastructure (pod, container, process) of each run; if it is gone, set the run "
            "Crashed (or cancel it), and add the zombie-detection automation from Prefect's docs."
        ),
        runbook="PrefectFlowRunsHeartbeatStale",
        alerts=("PrefectFlowRunsHeartbeatStale",),
        data={
            "threshold_seconds": ctx.thresholds.heartbeat_stale_seconds,
            "runs": [
                {
                    "id": r["run_id"],
                    "name": r["run_name"],
                    "work_pool": r["work_pool"],
                    "work_queue": r["work_queue"],
                    "last_heartbeat_age_seconds": r.get("last_heartbeat_age_seconds"),
                    "cadence_seconds": r.get("cadence_seconds"),
                    "running_seconds": r["running_seconds"],
                    "infrastructure_pid": r.get("infrastructure_pid"),
                }
                for r in rows
            ],
        },
    )


def _workerless(row: Row) -> bool:
    kind = str(row.get("pool_type") or "")
    return any(kind.endswith(suffix) for suffix in WORKERLESS_POOL_SUFFIXES)


def _late_reasons(ctx: Context, row: Row) -> list[str]:
    reasons = []
    if row["pool_paused"]:
        reasons.append("the work pool is paused")
    if row["queue_paused"]:
        reasons.append("the work queue is paused")
    if not _workerless(row) and int(row["live_workers"]) == 0:
        reasons.append(
            f"no live worker serves work pool {row['work_pool']} ({row['worker_rows']} worker rows)"
        )
    if row["queue_limit"] is not None and int(row["queue_active"]) >= int(row["queue_limit"]):
        reasons.append(
            f"queue concurrency limit full: {row['queue_active']} of {row['queue_limit']} slots held "
            "by RUNNING or PENDING runs"
        )
    if row["pool_limit"] is not None and int(row["pool_active"]) >= int(row["pool_limit"]):
        reasons.append(
            f"pool concurrency limit full: {row['pool_active']} of {row['pool_limit']} slots held "
            "by RUNNING or PENDING runs"
        )
    polled = row.get("last_polled_age_seconds")
    if polled is None or polled > ctx.doctor.unpolled_queue_seconds:
        reasons.append(
            f"nobody polled the queue for {age(polled)}" if polled else "the queue was never polled"
        )
    return reasons


def _late_severity(ctx: Context, row: Row) -> Severity:
    if row["pool_paused"] or row["queue_paused"]:
        return Severity.INFO
    if float(row["max_lateness_seconds"] or 0.0) >= ctx.doctor.late_critical_seconds:
        return Severity.CRITICAL
    return Severity.WARNING


def late_runs(ctx: Context) -> Iterable[Finding]:
    """Late runs and why they are late: one finding per severity, the evidence per queue, latest first."""
    late = [r for r in ctx.obs.get("queues") if int(r["late_runs"])]
    for severity in Severity:
        rows = sorted(
            (r for r in late if _late_severity(ctx, r) is severity),
            key=lambda r: -float(r["max_lateness_seconds"] or 0.0),
        )
        if not rows:
            continue
        reasons = {queue_of(r): _late_reasons(ctx, r) for r in rows}
        every = [reason for found in reasons.values() for reason in found]
        alerts = ["PrefectFlowRunsLate"]
        for prefix, alert in (
            ("no live worker", "PrefectWorkPoolNoOnlineWorkers"),
            ("queue concurrency", "PrefectWorkQueueConcurrencySaturated"),
            ("pool concurrency", "PrefectWorkPoolConcurrencySaturated"),
        ):
            if any(reason.startswith(prefix) for reason in every):
                alerts.append(alert)
        lines: list[str] = []
        for r in rows[:SHOWN]:
            why = "; ".join(reasons[queue_of(r)]) or "no cause found in the database"
            lines.append(
                f"{queue_of(r)}: {r['late_runs']} late, up to {age(r['max_lateness_seconds'])} — why: {why}"
            )
            examples = [f"  run {e}" for e in r["late_examples"][:SHOWN_PER_QUEUE]]
            lines.extend(more(examples, int(r["late_runs"]), "  "))
        if len(rows) > SHOWN:
            lines.append(f"… and {len(rows) - SHOWN} more queues")
        total = sum(int(r["late_runs"]) for r in rows)
        worst = max(float(r["max_lateness_seconds"] or 0.0) for r in rows)
        paused = severity is Severity.INFO
        yield Finding(
            code="late_runs",
            severity=severity,
            title=f"{plural(total, 'late flow run')} on {plural(len(rows), 'work queue')} "
            f"(up to {age(worst)} late)" + (", their pool or queue paused" if paused else ""),
            evidence=tuple(lines),
            why=(
                "A scheduled run starts only when a live worker polls its queue and the pool and queue "
                "have free concurrency slots; Prefect marks it Late 15 s after its start time."
            ),
            action=(
                "Unpause the pool or queue if that was not meant."
                if paused
                else "Fix the first cause listed for each queue: start a worker for the pool, free or raise "
                "the concurrency limit (stranded PENDING runs hold slots), or restart the worker that "
                "stopped polling."
            ),
            runbook="PrefectFlowRunsLate",
            alerts=tuple(alerts),
            data={
                "queues": [
                    {
                        "work_pool": r["work_pool"],
                        "work_queue": r["work_queue"],
                        "late_runs": int(r["late_runs"]),
                        "max_lateness_seconds": float(r["max_lateness_seconds"] or 0.0),
                        "reasons": reasons[queue_of(r)],
                        "examples": list(r["late_examples"]),
                    }
                    for r in rows
                ],
            },
        )


# Workers and queues -----------------------------------------------------------------------------


def unpolled_queues(ctx: Context) -> Iterable[Finding]:
    """Queues with deployments that nobody polls (queues with late runs are reported there)."""
    rows = [
        r
        for r in ctx.obs.get("queues")
        if not (r["pool_paused"] or r["queue_paused"] or _workerless(r))
        and int(r["deployments"]) > 0
        and int(r["late_runs"]) == 0
        and (
            r.get("last_polled_age_seconds") is None
            or r["last_polled_age_seconds"] > ctx.doctor.unpolled_queue_seconds
        )
    ]
    if not rows:
        return
    lines = [
        f"{queue_of(r)}: {r['deployments']} deployments, last polled "
        + (
            f"{age(r['last_polled_age_seconds'])} ago"
            if r.get("last_polled_age_seconds") is not None
            else "never"
        )
        + f", {r['live_workers']} live workers in the pool"
        for r in rows
    ]
    yield Finding(
        code="unpolled_queues",
        severity=Severity.WARNING,
        title=f"{len(rows)} work queues with deployments are polled by nobody",
        evidence=tuple(lines),
        why="Workers poll their queues every PREFECT_WORKER_QUERY_SECONDS (10 s); a queue nobody polls "
        "starts none of its runs, and the next scheduled run will be late.",
        action="Start a worker for the pool with --work-queue for these queues, or move their deployments.",
        runbook="PrefectWorkQueueNotPolled",
        alerts=("PrefectWorkQueueNotPolled",),
        data={
            "queues": [
                {
                    k: r[k]
                    for k in (
                        "work_pool",
                        "work_queue",
                        "deployments",
                        "live_workers",
                        "last_polled_age_seconds",
                    )
                }
                for r in rows
            ]
        },
    )


# Sessions ---------------------------------------------------------------------------------------


def connections(ctx: Context) -> Iterable[Finding]:
    """Connections near max_connections, by application_name; Prefect sessions without one."""
    server = next(iter(ctx.obs.get("server")), None)
    groups = ctx.obs.get("connections")
    if server is not None:
        available = int(server["max_connections"]) - int(server["reserved_connections"])
        used = int(server["server_connections"])
        ratio = used / available if available > 0 else 1.0
        if ratio >= ctx.doctor.connections_warning_ratio:
            lines = [
                f"{g['database'] or '(no database)'} / {g['application_name'] or 'no application_name'}: "
                f"{g['sessions']} (active {g['active']}, idle {g['idle']}, idle in transaction "
                f"{g['idle_in_transaction']})"
                for g in groups[:SHOWN]
            ]
            yield Finding(
                code="connections_near_limit",
                severity=Severity.CRITICAL
                if ratio >= ctx.doctor.connections_critical_ratio
                else Severity.WARNING,
                title=f"{used} of {available} connections in use ({ratio:.0%})",
                evidence=(
                    f"max_connections {server['max_connections']}, reserved {server['reserved_connections']}",
                    *lines,
                ),
                why="Each Prefect API process opens its own pool (5 + 10 overflow by default); past the "
                "limit "
                "new connections fail with 'too many clients' and API calls fail.",
                action="Find the largest group above; reduce pool sizes or replicas, put PgBouncer in front, "
                "or raise max_connections (restart needed).",
                runbook="PrefectPostgresTooManyConnections",
                alerts=("PrefectPostgresTooManyConnections",),
                data={
                    "used": used,
                    "available": available,
                    "ratio": ratio,
                    "groups": [dict(g) for g in groups],
                },
            )
    unnamed: dict[str, int] = {}
    for row in ctx.obs.get("sessions"):
        operation = ctx.operation(row)
        if not row.get("application_name") and operation not in NOT_PREFECT:
            unnamed[operation] = unnamed.get(operation, 0) + 1
    if unnamed:
        total = sum(unnamed.values())
        yield Finding(
            code="prefect_sessions_unnamed",
            severity=Severity.WARNING,
            title=f"{total} of Prefect's sessions have no application_name",
            evidence=(
                "operations of those sessions: " + ", ".join(f"{o} {n}" for o, n in sorted(unnamed.items())),
            ),
            why="Without an application_name, connections, locks and slow queries cannot be told apart "
            "by Prefect process (API, services, workers) in pg_stat_activity.",
            action="Set PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_APPLICATION_NAME (Prefect 3.1.13+) "
            "on every Prefect server process, e.g. prefect-api.",
            runbook="PrefectPostgresTooManyConnections",
            alerts=(),
            data={"sessions": total, "by_operation": unnamed},
        )


def transactions(ctx: Context) -> Iterable[Finding]:
    """Idle-in-transaction sessions and long transactions."""
    idle = [
        r
        for r in ctx.obs.get("sessions")
        if str(r.get("state", "")).startswith("idle in transaction")
        and float(r.get("state_age_seconds") or 0) >= ctx.doctor.idle_in_transaction_seconds
    ]
    if idle:
        lines = [
            f"pid {r['pid']} {ctx.operation(r)} [{r['application_name'] or 'no application_name'}] "
            f"{r['usename']}@{r['client_addr'] or 'local'}: idle for {age(r['state_age_seconds'])}, "
            "transaction "
            f"open {age(r['xact_age_seconds'])}; last statement: "
            + str(r.get("query") or "").strip().replace("\n", " ")[:120]
            for r in idle[:SHOWN]
        ]
        yield Finding(
            code="idle_in_transaction",
            severity=Severity.WARNING,
            title=f"{len(idle)} sessions sit idle inside an open transaction",
            evidence=tuple(more(lines, len(idle))),
            why="An open transaction keeps its locks and stops vacuum from removing dead rows everywhere; "
            "the client forgot to commit or hangs between statements.",
            action="Fix or restart the client; end a session now with SELECT pg_terminate_backend(<pid>); "
            "(its transaction is rolled back). Set idle_in_transaction_session_timeout for Prefect's role.",
            runbook="PrefectPostgresIdleInTransaction",
            alerts=("PrefectPostgresIdleInTransaction",),
            data={"pids": [int(r["pid"]) for r in idle], "sessions": [_plain(r) for r in idle]},
        )
    long = [
        r
        for r in ctx.obs.get("sessions")
        if r.get("state") == "active"
        and float(r.get("xact_age_seconds") or 0) >= ctx.doctor.long_transaction_seconds
    ]
    if long:
        lines = [
            f"pid {r['pid']} {ctx.operation(r)} [{r['application_name'] or 'no application_name'}]: "
            "transaction "
            f"open {age(r['xact_age_seconds'])}; statement: "
            + str(r.get("query") or "").strip().replace("\n", " ")[:120]
            for r in long[:SHOWN]
        ]
        yield Finding(
            code="long_transactions",
            severity=Severity.WARNING,
            title=f"{len(long)} transactions have been running for more than "
            f"{age(ctx.doctor.long_transaction_seconds)}",
            evidence=tuple(more(lines, len(long))),
            why="A long transaction holds its locks and its snapshot: vacuum cannot clean up behind it and "
            "Prefect's hot tables bloat.",
            action="Find out what it is; if it must go: SELECT pg_terminate_backend(<pid>); (rolls it back).",
            runbook="PrefectPostgresLongTransaction",
            alerts=("PrefectPostgresLongTransaction",),
            data={"pids": [int(r["pid"]) for r in long], "sessions": [_plain(r) for r in long]},
        )


def _plain(row: Row) -> dict[str, Any]:
    keep = (
        "pid",
        "application_name",
        "usename",
        "client_addr",
        "state",
        "xact_age_seconds",
        "state_age_seconds",
    )
    return {k: row.get(k) for k in keep}


# Tables -----------------------------------------------------------------------------------------


def tables(ctx: Context) -> Iterable[Finding]:
    """Dead tuples and vacuum age of Prefect's tables; the size and growth of its history tables."""
    rows = {r["relation"]: r for r in ctx.obs.get("tables")}
    bloated = []
    for name, r in sorted(rows.items()):
        dead, live = int(r.get("dead_tuples") or 0), int(r.get("live_tuples") or 0)
        vacuumed = r.get("last_autovacuum_age_seconds")
        if dead < ctx.doctor.dead_tuples_min:
            continue
        ratio = dead / (dead + live) if dead + live else 0.0
        starved = vacuumed is None or float(vacuumed) > ctx.doctor.autovacuum_age_seconds
        if ratio > ctx.doctor.dead_tuples_ratio or starved:
            bloated.append((name, dead, ratio, vacuumed))
    if bloated:
        yield Finding(
            code="dead_tuples",
            severity=Severity.WARNING,
            title=f"{len(bloated)} Prefect tables carry many dead tuples",
            evidence=tuple(
                f"{n}: {d} dead tuples ({ratio:.0%}), last autovacuum "
                + (f"{age(v)} ago" if v is not None else "never")
                for n, d, ratio, v in bloated
            ),
            why="Prefect rewrites rows of its hot tables on every poll, state change and heartbeat; when "
            "autovacuum cannot keep up (or an old transaction pins the rows) tables and indexes bloat.",
            action="Look for long or idle transactions first; then VACUUM (VERBOSE, ANALYZE) the table and "
            "tune autovacuum_vacuum_scale_factor for it.",
            runbook="PrefectPostgresDeadTuplesHigh",
            alerts=("PrefectPostgresDeadTuplesHigh", "PrefectPostgresAutovacuumStarved"),
            data={
                "tables": [
                    {"relation": n, "dead_tuples": d, "dead_ratio": ratio, "last_autovacuum_age_seconds": v}
                    for n, d, ratio, v in bloated
                ]
            },
        )
    stats = next(iter(ctx.obs.get("database_stats")), {})
    reset = stats.get("stats_reset_seconds")
    server = next(iter(ctx.obs.get("server")), {})
    since = reset or server.get("postmaster_start_time_seconds")
    lines, data = [], []
    for name in HISTORY_TABLES:
        if name not in rows:
            continue
        r = rows[name]
        inserts = int(r.get("inserts") or 0)
        live = int(r.get("live_tuples") or 0)
        line = f"{name}: {size(r.get('size_bytes'))}, {live} live rows, {inserts} rows inserted"
        lines.append(line + (" since statistics were reset" if reset else " since the server started"))
        data.append(
            {
                "relation": name,
                "size_bytes": r.get("size_bytes"),
                "live_tuples": r.get("live_tuples"),
                "inserts": inserts,
            }
        )
    if lines:
        yield Finding(
            code="history_tables",
            severity=Severity.INFO,
            title="Size and growth of Prefect's history tables",
            evidence=tuple(lines),
            why="events, event_resources, log and flow_run_state grow with every run; only events (and, "
            "from 3.1.15, event_resources) are trimmed by Prefect, after "
            "PREFECT_SERVER_EVENTS_RETENTION_PERIOD.",
            action="Watch their growth on the Tables dashboard; delete old log rows yourself (Prefect OSS "
            "keeps them forever).",
            runbook="PrefectPostgresDeadTuplesHigh",
            alerts=(),
            data={"tables": data, "counted_since_seconds": since},
        )


# The exporter's own view ------------------------------------------------------------------------


def exporter_state(ctx: Context) -> Iterable[Finding]:
    """No Prefect schema; failing collectors of a running exporter (from its status snapshot)."""
    if not ctx.obs.facts.has_prefect_schema:
        yield Finding(
            code="no_prefect_schema",
            severity=Severity.WARNING,
            title="No Prefect schema in this database: only PostgreSQL checks ran",
            evidence=("missing or unreadable: " + ", ".join(ctx.obs.facts.missing_prefect_tables()),),
            why="The doctor reads Prefect's tables with the exporter's role; they are absent or not granted.",
            action="Point --dsn at Prefect's database, and run deploy/exporter-role.sql there.",
            runbook="PrefectDbPrefectSchemaMissing",
            alerts=("PrefectDbPrefectSchemaMissing",),
        )
    if ctx.status is None:
        return
    broken = [c for c in ctx.status.collectors if c.state in (CollectorState.FAILED, CollectorState.INVALID)]
    if broken:
        yield Finding(
            code="collectors_failing",
            severity=Severity.WARNING,
            title=f"{len(broken)} of the exporter's collectors are failing: their metrics are missing",
            evidence=tuple(f"{c.name}: {c.state.value}: {c.reason}" for c in broken),
            why="A collector that fails drops its own series; the alerts built on them cannot fire.",
            action="Read the reason; lock_timeout means a lock on a Prefect table (see the lock tree).",
            runbook="PrefectDbCollectorFailing",
            alerts=("PrefectDbCollectorFailing",),
            data={"collectors": {c.name: c.reason for c in broken}},
        )
