"""Prefect's machinery made to fail for real, shared by the collector tests and the doctor tests.

Each function makes one trouble on a Prefect schema through a superuser session and returns what the
tests assert on (run ids, names). Ages are relative to clock_timestamp() at insert.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from devtools import seed


async def create_deployment(
    conn: asyncpg.Connection, flow_id: uuid.UUID, queue_id: uuid.UUID | None, name: str, *,
    status: str, last_polled_ago: float | None = None,
) -> uuid.UUID:  # fmt: skip
    """A deployment with only the columns every schema has (2.20 lacks concurrency_limit_id); without
    a queue when ``queue_id`` is None, never polled (last_polled NULL) when ``last_polled_ago`` is."""
    deployment_id: uuid.UUID = await conn.fetchval(
        """
        INSERT INTO deployment (name, flow_id, work_queue_id, work_queue_name, status, last_polled)
        VALUES ($1, $2, $3::uuid, (SELECT name FROM work_queue WHERE id = $3::uuid), $4::deployment_status,
                clock_timestamp() - make_interval(secs => $5::float8))
        RETURNING id
        """,
        name, flow_id, queue_id, status, last_polled_ago,
    )  # fmt: skip
    return deployment_id


async def stall_late_marking(conn: asyncpg.Connection, pool_name: str) -> None:
    """On the default queue of a new pool: SCHEDULED runs 300 s and 90 s overdue never marked Late, one
    30 s overdue (within the service's slack), one marked Late twice (prefect#22139) and one once."""
    pool = await seed.create_work_pool(conn, pool_name, default_queue_last_polled_ago=5)
    flow = await seed.create_flow(conn, "flow")
    q = pool.default_queue_id
    for overdue in (300, 90, 30):
        await seed.create_flow_run(conn, flow_id=flow, queue_id=q, state_type="SCHEDULED",
                                   next_scheduled_in=-overdue)  # fmt: skip
    twice = await seed.create_flow_run(conn, flow_id=flow, queue_id=q, state_type="SCHEDULED",
                                       next_scheduled_in=-120)  # fmt: skip
    for _ in range(2):
        await seed.set_flow_run_state(conn, twice, "SCHEDULED", "Late", scheduled_in=-120)
    await seed.create_flow_run(conn, flow_id=flow, queue_id=q, state_type="SCHEDULED",
                               state_name="Late", state_age=60)  # fmt: skip


async def stall_foreman(conn: asyncpg.Connection) -> None:
    """Pool ``pool-f``: workers ``dead-1`` and ``dead-2`` stored ONLINE, silent 300 s and 200 s at a 30 s
    interval (timeout 90 s), one alive; queue ``stale`` stored READY, polled 400 s ago, with a READY
    deployment polled 500 s ago; a deployment on the recently polled default queue (READY is right).
    Pool ``pool-calm``: a worker marked OFFLINE as it should be."""
    pool = await seed.create_work_pool(conn, "pool-f", default_queue_last_polled_ago=5)
    calm = await seed.create_work_pool(conn, "pool-calm", default_queue_last_polled_ago=5)
    await seed.create_worker(conn, pool.id, "dead-1", heartbeat_ago=300, status="ONLINE")
    await seed.create_worker(conn, pool.id, "dead-2", heartbeat_ago=200, status="ONLINE")
    await seed.create_worker(conn, pool.id, "alive", heartbeat_ago=10, status="ONLINE")
    await seed.create_worker(conn, calm.id, "gone", heartbeat_ago=900, status="OFFLINE")
    stale_queue = await seed.create_work_queue(conn, pool.id, "stale", last_polled_ago=400, status="READY")
    flow = await seed.create_flow(conn, "flow")
    await create_deployment(conn, flow, stale_queue, "d-stale", status="READY", last_polled_ago=500)
    await create_deployment(conn, flow, pool.default_queue_id, "d-ok", status="READY", last_polled_ago=500)


async def age_events_past_retention(conn: asyncpg.Connection) -> bool:
    """A COMPLETED run ended 100 days ago, a RUNNING one 200 days old, heartbeat events 10 days and 60 s
    old; return whether ix_event_resources__occurred exists (3.7.5+: event_resources can be measured)."""
    pool = await seed.create_work_pool(conn, "pool-r")
    flow = await seed.create_flow(conn, "flow")
    run = await seed.create_flow_run(conn, flow_id=flow, queue_id=pool.default_queue_id,
                                     state_type="COMPLETED", state_age=100 * 86400)  # fmt: skip
    await seed.create_flow_run(conn, flow_id=flow, queue_id=pool.default_queue_id,
                               state_type="RUNNING", state_age=200 * 86400)  # fmt: skip
    await seed.add_heartbeat(conn, run, ago=10 * 86400)
    await seed.add_heartbeat(conn, run, ago=60)
    has_index: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM pg_indexes WHERE indexname = 'ix_event_resources__occurred')"
    )
    return has_index


INVALID_INDEX = "ix_flow_run__dup"


async def leave_invalid_index(conn: asyncpg.Connection) -> None:
    """Index ``ix_flow_run__dup`` on flow_run left INVALID: a CREATE UNIQUE INDEX CONCURRENTLY that failed
    on duplicates (two runs of one flow)."""
    pool = await seed.create_work_pool(conn, "pool-i")
    flow = await seed.create_flow(conn, "flow")
    for _ in range(2):
        await seed.create_flow_run(conn, flow_id=flow, queue_id=pool.default_queue_id, state_type="COMPLETED")
    try:
        await conn.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {INVALID_INDEX} ON flow_run (flow_id)")
    except asyncpg.UniqueViolationError:
        return
    raise AssertionError("the unique index build should have failed on duplicates")


async def set_repeatable_read(conn: asyncpg.Connection, database: str) -> None:
    """New sessions on ``database`` default to repeatable read (prefect#22597)."""
    await conn.execute(f"ALTER DATABASE \"{database}\" SET default_transaction_isolation = 'repeatable read'")


@dataclass(frozen=True)
class LeakedSlots:
    deployment_limit: str
    # The runs AwaitingConcurrencySlot, their ages in seconds.
    awaiting_ages: tuple[int, ...]


async def leak_concurrency_slots(conn: asyncpg.Connection) -> LeakedSlots:
    """Pool ``pool-c``: deployment ``etl/nightly`` with a limit of 5, 3 slots taken and 1 run RUNNING
    (2 leaked); ``tag:db`` with 2 slots taken and no task run (2 leaked); ``external-api`` whose
    holders the database does not record; two runs AwaitingConcurrencySlot, 600 s and 30 s."""
    pool = await seed.create_work_pool(conn, "pool-c", default_queue_last_polled_ago=5)
    flow = await seed.create_flow(conn, "etl")
    q = pool.default_queue_id
    limit = await seed.create_concurrency_limit(conn, "deployment:placeholder", limit=5, active_slots=3)
    deployment = await seed.create_deployment(
        conn, flow, q, "nightly", last_polled_ago=5, concurrency_limit_id=limit
    )
    await conn.execute("UPDATE concurrency_limit_v2 SET name = 'deployment:' || $2::text WHERE id = $1",
                       limit, str(deployment))  # fmt: skip
    await seed.create_flow_run(conn, flow_id=flow, queue_id=q, deployment_id=deployment, state_type="RUNNING")
    await seed.create_concurrency_limit(conn, "tag:db", limit=4, active_slots=2)
    await seed.create_concurrency_limit(conn, "external-api", limit=2, active_slots=2)
    ages = (600, 30)
    for age in ages:
        await seed.create_flow_run(conn, flow_id=flow, queue_id=q, deployment_id=deployment,
                                   state_type="SCHEDULED", state_name="AwaitingConcurrencySlot",
                                   next_scheduled_in=-age)  # fmt: skip
    await conn.execute(
        "UPDATE flow_run SET expected_start_time = next_scheduled_start_time"
        " WHERE state_name = 'AwaitingConcurrencySlot'"
    )
    return LeakedSlots("deployment:etl/nightly", ages)


async def strand_cancelling_runs(conn: asyncpg.Connection) -> list[uuid.UUID]:
    """Pool ``pool-x``: runs CANCELLING for 600 s, 400 s and 60 s; return their ids, oldest first."""
    pool = await seed.create_work_pool(conn, "pool-x", default_queue_last_polled_ago=5)
    flow = await seed.create_flow(conn, "flow")
    return [
        await seed.create_flow_run(
            conn, flow_id=flow, queue_id=pool.default_queue_id, state_type="CANCELLING", state_age=age
        )
        for age in (600, 400, 60)
    ]
