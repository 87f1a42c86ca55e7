"""The between-scrape sampler, against real lock waits and real deadlocks between worker polls."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from helpers import Series, exporter_for, scrape, target_for, value

from devtools import seed
from devtools.pgcluster import PgCluster, TestDatabase
from exporter.registry import Exporter

# The statements a worker poll sends, exactly as captured from real servers (one polled queue).
POLL_WORK_QUEUE = (
    "UPDATE work_queue SET last_polled=$1::TIMESTAMP WITH TIME ZONE, updated=now() "
    "WHERE work_queue.id IN ($2::UUID)"
)
# Prefect 2.18.1 - 3.6.x: locks rows in scan order.
POLL_DEPLOYMENTS_BEFORE_3_7 = (
    "UPDATE deployment SET last_polled=$1::TIMESTAMP WITH TIME ZONE, status=$2::deployment_status, "
    "updated=now() WHERE deployment.id IN (NULL) AND (1 != 1) OR deployment.work_queue_id IN ($3::UUID)"
)
# Prefect 3.7+: locks rows in id order first.
POLL_DEPLOYMENTS_3_7 = (
    "WITH locked AS (SELECT deployment.id AS id, deployment.status AS status FROM deployment "
    "WHERE deployment.id IN (NULL) AND (1 != 1) OR deployment.work_queue_id IN ($3::UUID) "
    "ORDER BY deployment.id FOR UPDATE) UPDATE deployment SET last_polled=$1::TIMESTAMP WITH TIME ZONE, "
    "status=$2::deployment_status, updated=deployment.updated "
    "WHERE deployment.id IN (SELECT locked.id FROM locked) RETURNING deployment.id"
)
POLLERS = 4
LOAD_SECONDS = 30.0
DEPLOYMENTS = 1000
OPERATION = "deployment_last_polled_update"


def sampling_exporter(db: TestDatabase, server_log: str | None = None, interval: float = 0.25) -> Exporter:
    """An exporter whose sampler runs every ``interval`` seconds (and follows ``server_log``)."""
    target = target_for(db, server_log=server_log)
    return exporter_for(target, include=frozenset({"database_stats"}), sampler_interval=interval)


async def one_queue_with_deployments(db: TestDatabase, count: int) -> uuid.UUID:
    """Create a pool whose default queue holds ``count`` deployments; return the queue id."""
    conn = await asyncpg.connect(db.admin_dsn)
    try:
        pool = await seed.create_work_pool(conn, "busy-pool")
        flow = await seed.create_flow(conn, "etl")
        async with conn.transaction():
            for index in range(count):
                await seed.create_deployment(conn, flow, pool.default_queue_id, f"deployment-{index:04d}")
        return pool.default_queue_id
    finally:
        await conn.close()


async def poll_for(db: TestDatabase, queue: uuid.UUID, statement: str, seconds: float) -> tuple[int, int]:
    """Replay worker polls from one session for ``seconds``; return (polls, deadlocks it lost)."""
    conn = await asyncpg.connect(db.admin_dsn)
    polls = deadlocks = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            now = datetime.now(UTC)
            try:
                await conn.execute(POLL_WORK_QUEUE, now, queue)
                await conn.execute(statement, now, "READY", queue)
                polls += 1
            except asyncpg.DeadlockDetectedError:
                deadlocks += 1
    finally:
        await conn.close()
    return polls, deadlocks


async def run_pollers(db: TestDatabase, queue: uuid.UUID, statement: str) -> tuple[int, int]:
    results = await asyncio.gather(*(poll_for(db, queue, statement, LOAD_SECONDS) for _ in range(POLLERS)))
    return sum(r[0] for r in results), sum(r[1] for r in results)


async def deadlocks_now(db: TestDatabase) -> float:
    """pg_stat_database.deadlocks as the exporter reports it, from a fresh exporter (no cache)."""
    exporter = exporter_for(target_for(db), include=frozenset({"database_stats"}))
    try:
        found = value(await scrape(exporter), "prefect_db_deadlocks_total")
        assert found is not None
        return found
    finally:
        await exporter.close()


async def poll_under_the_sampler(
    db: TestDatabase, cluster: PgCluster, statement: str
) -> tuple[int, int, float, Series]:
    """Run the pollers on 1,000 deployments while the sampler and the log follower watch.

    Returns (polls, deadlocks the pollers lost, deadlocks counted by pg_stat_database, the final scrape).
    """
    queue = await one_queue_with_deployments(db, DEPLOYMENTS)
    before = await deadlocks_now(db)
    exporter = sampling_exporter(db, server_log=str(cluster.log_path))
    exporter.start_background()
    try:
        polls, lost = await run_pollers(db, queue, statement)
        await asyncio.sleep(1.5)  # statistics and the log follower catch up
        series = await scrape(exporter)
    finally:
        await exporter.close()
    deadlocks = await deadlocks_now(db) - before
    print(f"{polls} polls, {lost} deadlocks lost by the pollers, pg_stat_database +{deadlocks:g}")
    return polls, lost, deadlocks, series


@pytest.mark.parametrize("prefect_db", ["3.1.15"], indirect=True)
async def test_pollers_before_3_7_deadlock_and_are_attributed(
    prefect_db: TestDatabase, cluster: PgCluster
) -> None:
    _, lost, deadlocks, series = await poll_under_the_sampler(
        prefect_db, cluster, POLL_DEPLOYMENTS_BEFORE_3_7
    )
    assert lost > 0, "four pollers on 1,000 deployments should deadlock (Prefect < 3.7)"
    assert deadlocks >= lost

    waits = value(
        series, "prefect_db_lock_wait_samples_total",
        operation=OPERATION, blocker_operation=OPERATION, relation="deployment",
    )  # fmt: skip
    assert waits is not None and waits > 0
    waited = value(series, "prefect_db_last_polled_lock_wait_seconds_total", relation="deployment")
    assert waited is not None and waited > 0
    busy = value(
        series,
        "prefect_db_session_samples_total",
        operation=OPERATION,
        state="active",
        wait_event_type="Lock",
    )
    assert busy is not None and busy > 0
    assert value(series, "prefect_db_server_log_deadlocks_total") == lost
    assert value(series, "prefect_db_deadlocks_by_operation_total", operation=OPERATION) == lost
    assert value(series, "prefect_db_exporter_server_log_ok") == 1.0
    samples = value(series, "prefect_db_sampler_samples_total")
    assert samples is not None and samples >= LOAD_SECONDS / 0.25 / 2


@pytest.mark.parametrize("prefect_db", ["3.9.1"], indirect=True)
async def test_pollers_from_3_7_never_deadlock_and_are_the_same_operation(
    prefect_db: TestDatabase, cluster: PgCluster
) -> None:
    polls, lost, deadlocks, series = await poll_under_the_sampler(prefect_db, cluster, POLL_DEPLOYMENTS_3_7)
    assert polls > 0
    assert (lost, deadlocks) == (0, 0)
    assert value(series, "prefect_db_server_log_deadlocks_total") == 0
    busy = sum(
        v for (name, labels), v in series.items()
        if name == "prefect_db_session_samples_total" and ("operation", OPERATION) in labels
    )  # fmt: skip
    assert busy > 0


async def test_a_blocked_last_polled_update_is_sampled(prefect_db: TestDatabase) -> None:
    queue = await one_queue_with_deployments(prefect_db, 3)
    holder = await asyncpg.connect(prefect_db.admin_dsn)
    poller = await asyncpg.connect(prefect_db.admin_dsn)
    exporter = sampling_exporter(prefect_db, interval=0.1)
    try:
        await holder.execute("BEGIN")
        await holder.fetch("SELECT id FROM deployment WHERE work_queue_id = $1 FOR UPDATE", queue)
        blocked = asyncio.create_task(
            poller.execute(POLL_DEPLOYMENTS_BEFORE_3_7, datetime.now(UTC), "READY", queue)
        )
        exporter.start_background()
        await asyncio.sleep(1.5)
        series = await scrape(exporter)
        await holder.execute("ROLLBACK")
        await blocked
    finally:
        await exporter.close()
        await holder.close()
        await poller.close()
    # The holder's last statement was a SELECT ... FOR UPDATE: a read, from the sampler's view.
    waits = value(
        series, "prefect_db_lock_wait_samples_total",
        operation=OPERATION, blocker_operation="read", relation="deployment",
    )  # fmt: skip
    assert waits is not None and waits >= 5
    waited = value(series, "prefect_db_last_polled_lock_wait_seconds_total", relation="deployment")
    assert waited is not None and 0.5 <= waited <= 3.0
    assert value(series, "prefect_db_last_polled_lock_wait_seconds_total", relation="work_queue") == 0.0
    assert value(series, "prefect_db_sampler_errors_total") == 0.0
    # The holder sits idle in transaction: counted as a busy session too.
    idle = value(series, "prefect_db_session_samples_total", operation="read", state="idle in transaction")
    assert idle is not None and idle > 0
