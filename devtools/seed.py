"""Insert realistic Prefect rows (pools, queues, deployments, runs, heartbeats) for tests and the demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

STATE_TYPES: Final = (
    "SCHEDULED",
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "CRASHED",
    "PAUSED",
    "CANCELLING",
)
TERMINAL_STATE_TYPES: Final = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
DEFAULT_STATE_NAMES: Final = {
    "SCHEDULED": "Scheduled",
    "PENDING": "Pending",
    "RUNNING": "Running",
    "COMPLETED": "Completed",
    "FAILED": "Failed",
    "CANCELLED": "Cancelled",
    "CRASHED": "Crashed",
    "PAUSED": "Paused",
    "CANCELLING": "Cancelling",
}
POOL_STATUSES: Final = frozenset({"READY", "NOT_READY", "PAUSED"})
DEPLOYMENT_STATUSES: Final = frozenset({"READY", "NOT_READY"})
WORKER_STATUSES: Final = frozenset({"ONLINE", "OFFLINE"})
HEARTBEAT_EVENT: Final = "prefect.flow-run.heartbeat"
# Prefect's foreman marks queues and deployments NOT_READY after 60 s without a poll.
POLL_TIMEOUT_SECONDS: Final = 60.0
# Prefect's foreman marks a worker OFFLINE after 3 missed heartbeat intervals.
WORKER_OFFLINE_MULTIPLE: Final = 3
DEMO_POOLS: Final = ("demo-k8s", "demo-etl")

_EMPIRICAL_POLICY: Final = json.dumps(
    {
        "max_retries": 0,
        "retry_delay_seconds": 0.0,
        "retries": 0,
        "retry_delay": 0,
        "pause_keys": [],
        "resuming": False,
        "retry_type": None,
    }
)
_BASE_JOB_TEMPLATE: Final = json.dumps(
    {
        "job_configuration": {"command": "{{ command }}", "env": "{{ env }}"},
        "variables": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "title": "Command"},
                "env": {"type": "object", "title": "Environment Variables"},
            },
        },
    }
)


@dataclass(frozen=True)
class WorkPool:
    """A work pool row and the id of its default queue."""

    id: uuid.UUID
    default_queue_id: uuid.UUID


def _uuid(value: Any) -> uuid.UUID:
    """Check that a value returned by asyncpg is a UUID."""
    if not isinstance(value, uuid.UUID):
        raise TypeError(f"expected a UUID from the database, got {value!r}")
    return value


def _check(value: str, allowed: frozenset[str] | tuple[str, ...], what: str) -> str:
    """Return value if it is one of the allowed enum values, else raise ValueError."""
    if value not in allowed:
        raise ValueError(f"invalid {what} {value!r}; expected one of {sorted(allowed)}")
    return value


def _poll_status(last_polled_ago: float | None, paused: bool) -> str:
    """Return the status Prefect's foreman would store for a queue polled that long ago."""
    if paused:
        return "PAUSED"
    if last_polled_ago is not None and last_polled_ago <= POLL_TIMEOUT_SECONDS:
        return "READY"
    return "NOT_READY"


async def create_work_pool(
    conn: asyncpg.Connection,
    name: str,
    *,
    pool_type: str = "process",
    concurrency_limit: int | None = None,
    status: str = "READY",
    paused: bool = False,
    default_queue_last_polled_ago: float | None = None,
) -> WorkPool:
    """Create a work pool and its `default` queue, as Prefect's API does."""
    pool_status = "PAUSED" if paused else _check(status, POOL_STATUSES, "work pool status")
    pool_id = _uuid(
        await conn.fetchval(
            """
            INSERT INTO work_pool (name, description, type, base_job_template, is_paused,
                                   concurrency_limit, status, last_transitioned_status_at)
            VALUES ($1, NULL, $2, $3::jsonb, $4, $5, $6::work_pool_status, clock_timestamp())
            RETURNING id
            """,
            name,
            pool_type,
            _BASE_JOB_TEMPLATE,
            paused,
            concurrency_limit,
            pool_status,
        )
    )
    queue_id = await create_work_queue(
        conn,
        pool_id,
        "default",
        last_polled_ago=default_queue_last_polled_ago,
        description="The work pool's default queue.",
    )
    await conn.execute(
        "UPDATE work_pool SET default_queue_id = $2, updated = clock_timestamp() WHERE id = $1",
        pool_id,
        queue_id,
    )
    return WorkPool(id=pool_id, default_queue_id=queue_id)


async def create_work_queue(
    conn: asyncpg.Connection,
    pool_id: uuid.UUID,
    name: str,
    *,
    last_polled_ago: float | None = None,
    concurrency_limit: int | None = None,
    status: str | None = None,
    paused: bool = False,
    priority: int | None = None,
    description: str = "",
) -> uuid.UUID:
    """Create a work queue in a pool; status defaults to what the foreman derives from last_polled."""
    queue_status = (
        _check(status, POOL_STATUSES, "work queue status")
        if status is not None
        else _poll_status(last_polled_ago, paused)
    )
    return _uuid(
        await conn.fetchval(
            """
            INSERT INTO work_queue (name, description, is_paused, concurrency_limit, priority,
                                    last_polled, status, work_pool_id)
            VALUES ($1, $2, $3, $4,
                    coalesce($5, (SELECT coalesce(max(priority), 0) + 1
                                  FROM work_queue WHERE work_pool_id = $8)),
                    clock_timestamp() - make_interval(secs => $6::float8),
                    $7::work_queue_status, $8)
            RETURNING id
            """,
            name,
            description,
            paused,
            concurrency_limit,
            priority,
            last_polled_ago,
            queue_status,
            pool_id,
        )
    )


async def create_flow(conn: asyncpg.Connection, name: str) -> uuid.UUID:
    """Create a flow, or return the existing flow of that name (Prefect upserts flows)."""
    return _uuid(
        await conn.fetchval(
            """
            INSERT INTO flow (name) VALUES ($1)
            ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name
            RETURNING id
            """,
            name,
        )
    )


async def create_deployment(
    conn: asyncpg.Connection,
    flow_id: uuid.UUID,
    queue_id: uuid.UUID | None,
    name: str,
    *,
    status: str | None = None,
    last_polled_ago: float | None = None,
    paused: bool = False,
    concurrency_limit_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Create a deployment on a queue; status defaults to what the foreman derives from last_polled."""
    deployment_status = (
        _check(status, DEPLOYMENT_STATUSES, "deployment status")
        if status is not None
        else ("READY" if _poll_status(last_polled_ago, False) == "READY" else "NOT_READY")
    )
    return _uuid(
        await conn.fetchval(
            """
            INSERT INTO deployment (name, flow_id, work_queue_id, work_queue_name, path,
                                    entrypoint, infra_overrides, parameters, tags,
                                    pull_steps, paused, status, last_polled,
                                    concurrency_limit_id, enforce_parameter_schema,
                                    parameter_openapi_schema)
            VALUES ($1::text, $2, $3::uuid, (SELECT name FROM work_queue WHERE id = $3::uuid), '.',
                    'flows.py:' || replace($1::text, '-', '_'), '{}'::jsonb, '{}'::jsonb, '[]'::jsonb,
                    '[]'::jsonb, $4, $5::deployment_status,
                    clock_timestamp() - make_interval(secs => $6::float8), $7, true,
                    '{"type": "object", "properties": {}}'::jsonb)
            RETURNING id
            """,
            name,
            flow_id,
            queue_id,
            paused,
            deployment_status,
            last_polled_ago,
            concurrency_limit_id,
        )
    )


async def create_flow_run(
    conn: asyncpg.Connection,
    *,
    flow_id: uuid.UUID,
    queue_id: uuid.UUID | None = None,
    deployment_id: uuid.UUID | None = None,
    state_type: str,
    state_name: str | None = None,
    state_age: float = 0.0,
    next_scheduled_in: float | None = None,
    infrastructure_pid: str | None = None,
    name: str | None = None,
) -> uuid.UUID:
    """Create a flow run whose current state entered state_age seconds ago, with its state row."""
    _check(state_type, STATE_TYPES, "state type")
    state_name = state_name or DEFAULT_STATE_NAMES[state_type]
    if state_type == "SCHEDULED" and next_scheduled_in is None:
        # A run marked Late is overdue by more than the late-runs threshold (15 s).
        next_scheduled_in = -(state_age + 15.0) if state_name == "Late" else 0.0
    run_id = uuid.uuid4()
    state_id = uuid.uuid4()
    async with conn.transaction():
        # The state timestamp (ts) and, for SCHEDULED runs, the scheduled start (sched).
        await conn.execute(
            """
            WITH t AS (
                SELECT clock_timestamp() - make_interval(secs => $7::float8) AS ts,
                       clock_timestamp() + make_interval(secs => $8::float8) AS sched
            )
            INSERT INTO flow_run (id, name, flow_id, deployment_id, work_queue_id, work_queue_name,
                                  state_type, state_name, state_timestamp, run_count,
                                  expected_start_time, next_scheduled_start_time, start_time,
                                  end_time, total_run_time, empirical_policy, infrastructure_pid,
                                  deployment_version, created, updated)
            SELECT $1::uuid, $9::text, $2::uuid, $3::uuid, $4::uuid,
                   (SELECT name FROM work_queue WHERE id = $4::uuid),
                   $5::state_type, $6::text, t.ts,
                   CASE WHEN $5 IN ('SCHEDULED', 'PENDING') THEN 0 ELSE 1 END,
                   CASE WHEN $5 = 'SCHEDULED' THEN t.sched ELSE t.ts - interval '5 seconds' END,
                   CASE WHEN $5 = 'SCHEDULED' THEN t.sched END,
                   CASE WHEN $5 = 'RUNNING' THEN t.ts
                        WHEN $5 IN ('SCHEDULED', 'PENDING') THEN NULL
                        ELSE t.ts - interval '1 minute' END,
                   CASE WHEN $5 IN ('COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED') THEN t.ts END,
                   CASE WHEN $5 IN ('COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED')
                        THEN interval '1 minute' ELSE interval '0' END,
                   $10::jsonb, $11::text, CASE WHEN $3::uuid IS NOT NULL THEN '1' END,
                   least(t.ts, t.sched) - interval '1 second', t.ts
            FROM t
            """,
            run_id,
            flow_id,
            deployment_id,
            queue_id,
            state_type,
            state_name,
            state_age,
            next_scheduled_in if next_scheduled_in is not None else 0.0,
            name or f"seed-{run_id.hex[:12]}",
            _EMPIRICAL_POLICY,
            infrastructure_pid,
        )
        await conn.execute(
            """
            INSERT INTO flow_run_state (id, flow_run_id, type, name, timestamp, state_details,
                                        created, updated)
            SELECT $1::uuid, fr.id, fr.state_type, fr.state_name, fr.state_timestamp,
                   jsonb_build_object('flow_run_id', fr.id::text,
                                      'scheduled_time', fr.next_scheduled_start_time),
                   fr.state_timestamp, fr.state_timestamp
            FROM flow_run AS fr
            WHERE fr.id = $2::uuid
            """,
            state_id,
            run_id,
        )
        await conn.execute("UPDATE flow_run SET state_id = $2 WHERE id = $1", run_id, state_id)
    return run_id


async def set_flow_run_state(
    conn: asyncpg.Connection,
    run_id: uuid.UUID,
    state_type: str,
    state_name: str | None = None,
    *,
    scheduled_in: float | None = None,
    infrastructure_pid: str | None = None,
) -> uuid.UUID:
    """Move a flow run to a new state now, as a Prefect transition does; return the state id."""
    _check(state_type, STATE_TYPES, "state type")
    state_name = state_name or DEFAULT_STATE_NAMES[state_type]
    state_id = uuid.uuid4()
    async with conn.transaction():
        await conn.execute(
            """
            WITH t AS (
                SELECT clock_timestamp() AS ts,
                       clock_timestamp() + make_interval(secs => $5::float8) AS sched
            )
            INSERT INTO flow_run_state (id, flow_run_id, type, name, timestamp, state_details,
                                        created, updated)
            SELECT $1::uuid, $2::uuid, $3::state_type, $4::text, t.ts,
                   jsonb_build_object('flow_run_id', $2::uuid::text, 'scheduled_time',
                                      CASE WHEN $3 = 'SCHEDULED' THEN t.sched END),
                   t.ts, t.ts
            FROM t
            """,
            state_id,
            run_id,
            state_type,
            state_name,
            scheduled_in if scheduled_in is not None else 0.0,
        )
        status = await conn.execute(
            """
            UPDATE flow_run AS fr
            SET state_id = s.id,
                state_type = s.type,
                state_name = s.name,
                state_timestamp = s.timestamp,
                next_scheduled_start_time = CASE WHEN s.type = 'SCHEDULED'
                                                 THEN (s.state_details->>'scheduled_time')::timestamptz
                                            END,
                start_time = CASE WHEN s.type = 'RUNNING' THEN coalesce(fr.start_time, s.timestamp)
                                  ELSE fr.start_time END,
                end_time = CASE WHEN s.type IN ('COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED')
                                THEN s.timestamp END,
                run_count = fr.run_count + CASE WHEN s.type = 'RUNNING'
                                                 AND fr.state_type IS DISTINCT FROM 'RUNNING'
                                                THEN 1 ELSE 0 END,
                total_run_time = fr.total_run_time
                    + CASE WHEN fr.state_type = 'RUNNING' THEN s.timestamp - fr.state_timestamp
                           ELSE interval '0' END,
                infrastructure_pid = coalesce($2::text, fr.infrastructure_pid),
                updated = s.timestamp
            FROM flow_run_state AS s
            WHERE s.id = $1::uuid AND fr.id = s.flow_run_id
            """,
            state_id,
            infrastructure_pid,
        )
        if status != "UPDATE 1":
            raise LookupError(f"flow run {run_id} does not exist")
    return state_id


async def add_heartbeat(conn: asyncpg.Connection, run_id: uuid.UUID, ago: float) -> uuid.UUID:
    """Record a `prefect.flow-run.heartbeat` event sent ago seconds ago, with its event_resources."""
    row = await conn.fetchrow(
        """
        SELECT fr.name, fr.run_count, fr.deployment_id, f.id AS flow_id, f.name AS flow_name,
               d.name AS deployment_name
        FROM flow_run AS fr
        JOIN flow AS f ON f.id = fr.flow_id
        LEFT JOIN deployment AS d ON d.id = fr.deployment_id
        WHERE fr.id = $1
        """,
        run_id,
    )
    if row is None:
        raise LookupError(f"flow run {run_id} does not exist")
    resource = {
        "prefect.resource.id": f"prefect.flow-run.{run_id}",
        "prefect.resource.name": row["name"],
        "prefect.run-count": str(row["run_count"]),
    }
    related = [
        {
            "prefect.resource.id": f"prefect.flow.{row['flow_id']}",
            "prefect.resource.role": "flow",
            "prefect.resource.name": row["flow_name"],
        }
    ]
    if row["deployment_id"] is not None:
        related.append(
            {
                "prefect.resource.id": f"prefect.deployment.{row['deployment_id']}",
                "prefect.resource.role": "deployment",
                "prefect.resource.name": row["deployment_name"],
            }
        )
    event_id = uuid.uuid4()
    async with conn.transaction():
        await conn.execute(
            """
            WITH t AS (SELECT clock_timestamp() - make_interval(secs => $2::float8) AS occurred)
            INSERT INTO events (id, occurred, event, resource_id, resource, related_resource_ids,
                                related, payload, received, recorded, created, updated)
            SELECT $1::uuid, t.occurred, $3::text, $4::text, $5::jsonb, $6::jsonb, $7::jsonb, '{}'::jsonb,
                   t.occurred + interval '20 milliseconds', t.occurred + interval '50 milliseconds',
                   t.occurred + interval '50 milliseconds', t.occurred + interval '50 milliseconds'
            FROM t
            """,
            event_id,
            ago,
            HEARTBEAT_EVENT,
            resource["prefect.resource.id"],
            json.dumps(resource),
            json.dumps([r["prefect.resource.id"] for r in related]),
            json.dumps(related),
        )
        rows = [(resource["prefect.resource.id"], "", json.dumps(resource))] + [
            (r["prefect.resource.id"], r["prefect.resource.role"], json.dumps(r)) for r in related
        ]
        await conn.executemany(
            """
            INSERT INTO event_resources (occurred, resource_id, resource_role, resource, event_id,
                                         created, updated)
            SELECT e.occurred, $2::text, $3::text, $4::json, e.id, e.recorded, e.recorded
            FROM events AS e
            WHERE e.id = $1::uuid
            """,
            [(event_id, *r) for r in rows],
        )
    return event_id


async def create_worker(
    conn: asyncpg.Connection,
    pool_id: uuid.UUID,
    name: str,
    *,
    heartbeat_ago: float,
    interval: int | None = 30,
    status: str | None = None,
) -> uuid.UUID:
    """Create or refresh a worker row; status defaults to what the foreman derives from heartbeat."""
    if status is None:
        limit = (interval if interval is not None else 30) * WORKER_OFFLINE_MULTIPLE
        status = "ONLINE" if heartbeat_ago <= limit else "OFFLINE"
    _check(status, WORKER_STATUSES, "worker status")
    return _uuid(
        await conn.fetchval(
            """
            INSERT INTO worker (work_pool_id, name, last_heartbeat_time,
                                heartbeat_interval_seconds, status)
            VALUES ($1, $2, clock_timestamp() - make_interval(secs => $3::float8), $4,
                    $5::worker_status)
            ON CONFLICT (work_pool_id, name) DO UPDATE
            SET last_heartbeat_time = EXCLUDED.last_heartbeat_time,
                heartbeat_interval_seconds = EXCLUDED.heartbeat_interval_seconds,
                status = EXCLUDED.status,
                updated = clock_timestamp()
            RETURNING id
            """,
            pool_id,
            name,
            heartbeat_ago,
            interval,
            status,
        )
    )


async def create_concurrency_limit(
    conn: asyncpg.Connection,
    name: str,
    *,
    limit: int,
    active_slots: int = 0,
    slot_decay_per_second: float = 0.0,
    denied_slots: int = 0,
    active: bool = True,
    updated_ago: float = 0.0,
) -> uuid.UUID:
    """Create a global concurrency limit (concurrency_limit_v2) last updated updated_ago seconds ago."""
    return _uuid(
        await conn.fetchval(
            """
            INSERT INTO concurrency_limit_v2 (active, name, "limit", active_slots, denied_slots,
                                              slot_decay_per_second, avg_slot_occupancy_seconds,
                                              created, updated)
            VALUES ($1, $2, $3, $4, $5, $6, 2.0,
                    clock_timestamp() - make_interval(secs => $7::float8),
                    clock_timestamp() - make_interval(secs => $7::float8))
            RETURNING id
            """,
            active,
            name,
            limit,
            active_slots,
            denied_slots,
            slot_decay_per_second,
            updated_ago,
        )
    )


async def seed_trouble(conn: asyncpg.Connection) -> None:
    """Build a small scene showing every kind of trouble the exporter reports (skipped if present)."""
    exists = await conn.fetchval("SELECT 1 FROM work_pool WHERE name = $1", DEMO_POOLS[0])
    if exists:
        return
    async with conn.transaction():
        await _seed_trouble(conn)


async def _seed_trouble(conn: asyncpg.Connection) -> None:
    """Insert the rows of seed_trouble inside the caller's transaction."""
    # Pool 1: a Kubernetes pool with two live workers and three queues polled every few seconds.
    k8s = await create_work_pool(
        conn,
        DEMO_POOLS[0],
        pool_type="kubernetes",
        concurrency_limit=10,
        default_queue_last_polled_ago=4,
    )
    critical = await create_work_queue(conn, k8s.id, "critical", last_polled_ago=3, concurrency_limit=2)
    batch = await create_work_queue(conn, k8s.id, "batch", last_polled_ago=5)
    # Pool 2: a process pool whose workers died; its queues have not been polled for an hour.
    etl = await create_work_pool(conn, DEMO_POOLS[1], status="NOT_READY", default_queue_last_polled_ago=3700)
    nightly = await create_work_queue(conn, etl.id, "nightly", last_polled_ago=3600)
    backfill = await create_work_queue(conn, etl.id, "backfill", last_polled_ago=3600, paused=True)

    await create_worker(conn, k8s.id, "KubernetesWorker 6f1c0d2e", heartbeat_ago=8)
    await create_worker(conn, k8s.id, "KubernetesWorker 0b7e9a41", heartbeat_ago=20)
    await create_worker(conn, etl.id, "ProcessWorker 3d5a77c0", heartbeat_ago=3650)
    await create_worker(conn, etl.id, "ProcessWorker 9e21b4f8", heartbeat_ago=3 * 86400)

    flow_names = ("ingest-orders", "build-reports", "train-model", "sync-crm", "nightly-etl")
    flows = [await create_flow(conn, name) for name in flow_names]
    queues = [
        (k8s.default_queue_id, 4.0),
        (critical, 3.0),
        (batch, 5.0),
        (etl.default_queue_id, 3700.0),
        (nightly, 3600.0),
        (backfill, 3600.0),
    ]
    deployments: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID]] = []
    for i in range(20):
        queue_id, polled_ago = queues[i % len(queues)]
        flow_id = flows[i % len(flows)]
        deployment_id = await create_deployment(
            conn,
            flow_id,
            queue_id,
            f"{flow_names[i % len(flows)]}-{i:02d}",
            last_polled_ago=polled_ago,
        )
        deployments.append((flow_id, queue_id, deployment_id))

    async def run(
        i: int,
        state_type: str,
        *,
        state_name: str | None = None,
        state_age: float = 0.0,
        next_scheduled_in: float | None = None,
        infrastructure_pid: str | None = None,
    ) -> uuid.UUID:
        """Create a flow run of demo deployment i."""
        flow_id, queue_id, deployment_id = deployments[i]
        return await create_flow_run(
            conn,
            flow_id=flow_id,
            queue_id=queue_id,
            deployment_id=deployment_id,
            state_type=state_type,
            state_name=state_name,
            state_age=state_age,
            next_scheduled_in=next_scheduled_in,
            infrastructure_pid=infrastructure_pid,
        )

    # History: finished runs, so that the state tables are not empty.
    for i in range(40):
        await run(
            i % 20,
            ("COMPLETED", "COMPLETED", "COMPLETED", "FAILED", "CRASHED")[i % 5],
            state_age=300 + 97 * i,
        )
    # Scheduled in the future; AwaitingRetry in the past, which is not late.
    for i in range(6):
        await run(i, "SCHEDULED", state_age=60, next_scheduled_in=600 + 300 * i)
    await run(1, "SCHEDULED", state_name="AwaitingRetry", state_age=40, next_scheduled_in=-30)
    # Late: marked Late by Prefect, and an overdue run the late-runs service has not marked.
    await run(4, "SCHEDULED", state_name="Late", state_age=1780, next_scheduled_in=-1800)
    await run(10, "SCHEDULED", state_name="Late", state_age=280, next_scheduled_in=-300)
    await run(16, "SCHEDULED", state_age=3600, next_scheduled_in=-120)
    # PENDING: two stuck for more than 10 minutes (one never launched), one just submitted.
    await run(0, "PENDING", state_age=1500)
    await run(
        6,
        "PENDING",
        state_name="Submitting",
        state_age=900,
        infrastructure_pid="a41f0c2e:prefect:ingest-orders-x7k2q",
    )
    await run(3, "PENDING", state_age=2)
    # RUNNING: healthy heartbeats, a zombie whose heartbeats stopped, one without any heartbeat.
    healthy = await run(
        1, "RUNNING", state_age=420, infrastructure_pid="a41f0c2e:prefect:build-reports-p2m4d"
    )
    for ago in (330, 240, 150, 60):
        await add_heartbeat(conn, healthy, ago)
    healthy2 = await run(
        7, "RUNNING", state_age=95, infrastructure_pid="a41f0c2e:prefect:build-reports-r8v1n"
    )
    await add_heartbeat(conn, healthy2, 30)
    zombie = await run(9, "RUNNING", state_age=5400, infrastructure_pid="etl-host-1:41877")
    for ago in (5340, 5160, 4980, 4800):
        await add_heartbeat(conn, zombie, ago)
    await run(15, "RUNNING", state_age=7200, infrastructure_pid="etl-host-1:40233")
    await run(2, "CANCELLING", state_age=45)
    await run(8, "PAUSED", state_age=1200)
    # Concurrency: a saturated tag limit with denials, a decaying rate limit, a deployment limit.
    await create_concurrency_limit(conn, "tag:warehouse", limit=5, active_slots=5, denied_slots=14)
    await create_concurrency_limit(
        conn, "crm-api-rate", limit=10, active_slots=8, slot_decay_per_second=0.5, updated_ago=6
    )
    limited = deployments[0][2]
    limit_id = await create_concurrency_limit(conn, f"deployment:{limited}", limit=1, active_slots=1)
    await conn.execute("UPDATE deployment SET concurrency_limit_id = $2 WHERE id = $1", limited, limit_id)


async def refresh_trouble(conn: asyncpg.Connection) -> int:
    """Advance the demo scene: the live pool polls and runs its due flow runs; return runs finished."""
    pool_id = await conn.fetchval("SELECT id FROM work_pool WHERE name = $1", DEMO_POOLS[0])
    if pool_id is None:
        return 0
    async with conn.transaction():
        # Worker heartbeats, then the two UPDATEs every worker poll runs (prefect-db-facts §3.2).
        await conn.execute(
            """
            UPDATE worker SET last_heartbeat_time = clock_timestamp(), status = 'ONLINE',
                              updated = clock_timestamp()
            WHERE work_pool_id = $1 AND last_heartbeat_time > clock_timestamp() - interval '1 hour'
            """,
            pool_id,
        )
        queue_ids = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM work_queue WHERE work_pool_id = $1 AND NOT is_paused", pool_id
            )
        ]
        await conn.execute(
            """
            UPDATE work_queue SET last_polled = clock_timestamp(), status = 'READY',
                                  updated = clock_timestamp()
            WHERE id = ANY($1::uuid[])
            """,
            queue_ids,
        )
        await conn.execute(
            """
            UPDATE deployment SET last_polled = clock_timestamp(), status = 'READY',
                                  updated = clock_timestamp()
            WHERE work_queue_id = ANY($1::uuid[])
            """,
            queue_ids,
        )
    # Runs with recent heartbeats keep sending them; runs whose heartbeats stopped stay silent.
    alive = await conn.fetch(
        """
        SELECT fr.id
        FROM flow_run AS fr
        WHERE fr.state_type = 'RUNNING'
          AND fr.work_queue_id = ANY($1::uuid[])
          AND EXISTS (SELECT 1 FROM events AS e
                      WHERE e.event = $2
                        AND e.resource_id = 'prefect.flow-run.' || fr.id::text
                        AND e.occurred > clock_timestamp() - interval '10 minutes')
        """,
        queue_ids,
        HEARTBEAT_EVENT,
    )
    for row in alive:
        await add_heartbeat(conn, row["id"], 0.0)
    # Due runs go through Pending, Running and Completed; each is replaced by a new scheduled run.
    due = await conn.fetch(
        """
        SELECT fr.id, fr.flow_id, fr.work_queue_id, fr.deployment_id
        FROM flow_run AS fr
        WHERE fr.state_type = 'SCHEDULED'
          AND fr.state_name IN ('Scheduled', 'Late')
          AND fr.next_scheduled_start_time <= clock_timestamp()
          AND fr.work_queue_id = ANY($1::uuid[])
        """,
        queue_ids,
    )
    for row in due:
        for state_type in ("PENDING", "RUNNING", "COMPLETED"):
            await set_flow_run_state(conn, row["id"], state_type)
        await create_flow_run(
            conn,
            flow_id=row["flow_id"],
            queue_id=row["work_queue_id"],
            deployment_id=row["deployment_id"],
            state_type="SCHEDULED",
            next_scheduled_in=600.0,
        )
    return len(due)


async def _main(dsn: str, keep_alive: float | None) -> None:
    """Connect to dsn, run seed_trouble, then refresh_trouble every keep_alive seconds."""
    conn = await asyncpg.connect(dsn)
    try:
        await seed_trouble(conn)
        while keep_alive:
            await refresh_trouble(conn)
            await asyncio.sleep(keep_alive)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    """Command line: seed the demo scene into a Prefect database."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--dsn",
        default=os.environ.get("PREFECT_DB_DSN", "postgresql://prefect@localhost/prefect"),
        help="database to seed (default: $PREFECT_DB_DSN or postgresql://prefect@localhost/prefect)",
    )
    parser.add_argument(
        "--keep-alive",
        type=float,
        metavar="SECONDS",
        help="keep the live pool polling, heartbeating and running due runs every SECONDS",
    )
    args = parser.parse_args(argv)
    try:
        asyncio.run(_main(args.dsn, args.keep_alive))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
