"""PostgreSQL trouble made for real (deadlocks, held locks, idle transactions, colliding polls), scraped."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg
import pytest
from helpers import Series, eventually, exporter_for, samples, scrape, target_for, value

from devtools import seed
from devtools.pgcluster import TestDatabase
from exporter.database import APPLICATION_NAME
from exporter.registry import Exporter

T = TypeVar("T")

# Collectors that read flow_run, and so must give up while it is locked.
FLOW_RUN_COLLECTORS = (
    "flow_runs",
    "pending_runs",
    "late_runs",
    "running_heartbeats",
    "work_queues",
    "work_pools",
    "flow_run_transitions",
)
# Collectors that read only PostgreSQL's own views.
POSTGRES_COLLECTORS = (
    "connections",
    "database_stats",
    "last_polled_blocking",
    "lock_waits",
    "locks",
    "server",
    "sessions",
    "tables",
)
# Prefect collectors that do not touch flow_run.
OTHER_PREFECT_COLLECTORS = (
    "concurrency_limits",
    "deployments",
    "prefect_schema",
    "workers",
)

# Prefect's worker-poll statements exactly as they reach PostgreSQL (captured from real servers).
POLL_DEPLOYMENTS_PRE_3_7 = (
    "UPDATE deployment SET last_polled=$1::TIMESTAMP WITH TIME ZONE, status=$2::deployment_status, "
    "updated=now() WHERE deployment.id IN (NULL) AND (1 != 1) OR deployment.work_queue_id IN ($3::UUID)"
)
POLL_DEPLOYMENTS_3_7 = (
    "WITH locked AS (SELECT deployment.id AS id, deployment.status AS status FROM deployment "
    "WHERE deployment.id IN ($4) AND ($5 != $6) OR deployment.work_queue_id IN ($3::UUID) "
    "ORDER BY deployment.id FOR UPDATE) "
    "UPDATE deployment SET last_polled=$1::TIMESTAMP WITH TIME ZONE, status=$2::deployment_status, "
    "updated=deployment.updated WHERE deployment.id IN (SELECT locked.id FROM locked) RETURNING deployment.id"
)
POLL_WORK_QUEUE = (
    "UPDATE work_queue SET last_polled=$1::TIMESTAMP WITH TIME ZONE, updated=now() "
    "WHERE work_queue.id IN ($2::UUID)"
)
# The foreman's NOT_READY update: it waits on the same rows but is not a poll.
FOREMAN_DEPLOYMENTS = (
    "UPDATE deployment SET status=$1::deployment_status, updated=now() "
    "WHERE deployment.id IN ($2::UUID) OR deployment.work_queue_id IN (NULL) AND (1 != 1)"
)


@asynccontextmanager
async def admin_sessions(db: TestDatabase, count: int) -> AsyncIterator[list[asyncpg.Connection]]:
    """``count`` superuser sessions, dropped (and their transactions rolled back) afterwards."""
    conns = [await asyncpg.connect(db.admin_dsn) for _ in range(count)]
    try:
        yield conns
    finally:
        for conn in conns:
            conn.terminate()


def in_background(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run ``work`` as a task whose failure is always retrieved (an unretrieved one is logged from a
    finalizer, which on CPython 3.11.7 can break pytest's assertion rewriting of a module then loaded)."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


async def scrape_once(db: TestDatabase, *collectors: str) -> Series:
    """Scrape ``db`` once with a new exporter limited to ``collectors`` (all when none)."""
    exporter = exporter_for(target_for(db), include=frozenset(collectors))
    try:
        return await scrape(exporter)
    finally:
        await exporter.close()


def short_ttl_exporter(db: TestDatabase, *collectors: str, ttl: float = 0.1, pool_size: int = 2) -> Exporter:
    """An exporter whose collectors (all when none named) cache results for ``ttl`` seconds only."""
    return exporter_for(target_for(db, pool_size=pool_size), include=frozenset(collectors), ttl=ttl)


async def wait_until_lock_waiting(observer: asyncpg.Connection, pid: int) -> None:
    """Return once backend ``pid`` waits on a heavyweight lock."""

    async def waiting() -> bool:
        event = await observer.fetchval("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid)
        return event == "Lock"

    await eventually(waiting, timeout=10, interval=0.05)


async def exporter_sessions_waiting(observer: asyncpg.Connection) -> int:
    """Sessions of the exporter waiting on a lock now."""
    count: int = await observer.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
        APPLICATION_NAME,
    )
    return count


async def make_deployments(conn: asyncpg.Connection, count: int) -> tuple[seed.WorkPool, list[uuid.UUID]]:
    """A pool whose default queue holds ``count`` deployments."""
    pool = await seed.create_work_pool(conn, "pool", default_queue_last_polled_ago=5)
    flow = await seed.create_flow(conn, "flow")
    ids = [
        await seed.create_deployment(conn, flow, pool.default_queue_id, f"deployment-{i}", last_polled_ago=5)
        for i in range(count)
    ]
    return pool, ids


def runs(series: Series, collector: str, status: str) -> float | None:
    """prefect_db_exporter_queries_total of one collector and outcome."""
    return value(series, "prefect_db_exporter_queries_total", collector=collector, status=status)


def total(series: Series, name: str, **labels: str) -> float:
    """Sum of every sample of ``name`` matching ``labels``."""
    return sum(samples(series, name, **labels).values())


# 1. Deadlocks ------------------------------------------------------------------------------------


async def test_deadlock_between_two_pollers_counts_exactly_one(prefect_db: TestDatabase) -> None:
    update = "UPDATE deployment SET last_polled = now() WHERE id = $1"
    async with admin_sessions(prefect_db, 3) as (setup, a, b):
        _, (d1, d2) = await make_deployments(setup, 2)
        before = value(await scrape_once(prefect_db, "database_stats"), "prefect_db_deadlocks_total")
        assert before == 0.0

        for conn, own in ((a, d1), (b, d2)):
            await conn.execute("BEGIN")
            await conn.execute(update, own)
        a_crosses = in_background(a.execute(update, d2))
        await wait_until_lock_waiting(setup, a.get_server_pid())
        b_crosses = in_background(b.execute(update, d1))
        outcomes = await asyncio.wait_for(asyncio.gather(a_crosses, b_crosses, return_exceptions=True), 10)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(failed) == 1 and isinstance(failed[0], asyncpg.DeadlockDetectedError), outcomes
        for conn in (a, b):
            await conn.execute("ROLLBACK")
            # Statistics are flushed when a backend goes idle, at most once a second unless forced.
            await conn.execute("SELECT pg_stat_force_next_flush()")

        async def deadlocks() -> float | None:
            found = value(await scrape_once(prefect_db, "database_stats"), "prefect_db_deadlocks_total")
            return found if found is not None and found >= before + 1 else None

        assert await eventually(deadlocks, timeout=20, interval=0.5) == before + 1
        # The rolled back transactions are counted too.
        series = await scrape_once(prefect_db, "database_stats")
        assert (value(series, "prefect_db_xact_rollback_total") or 0) >= 2


# 2. A held ACCESS EXCLUSIVE lock -----------------------------------------------------------------


@pytest.mark.parametrize("pool_size", [2, 1], ids=["pool_size-2", "pool_size-1"])
async def test_access_exclusive_lock_on_flow_run(prefect_db: TestDatabase, pool_size: int) -> None:
    # Results must outlive one scrape (seven 0.5 s lock timeouts spread over the pool's connections)
    # but not the pause between two scrapes.
    ttl = 1.0 + 3.5 / pool_size
    exporter = short_ttl_exporter(prefect_db, ttl=ttl, pool_size=pool_size)
    try:
        async with admin_sessions(prefect_db, 3) as (observer, holder, blocked):
            # A first scrape with no lock: every collector is validated and works.
            calm = await scrape(exporter)
            calm_at = time.monotonic()
            assert value(calm, "prefect_db_exporter_collector_success", collector="flow_runs") == 1.0
            assert value(calm, "prefect_db_blocked_sessions") == 0.0
            assert value(calm, "prefect_db_lock_wait_max_seconds") == 0.0

            await holder.execute("BEGIN; LOCK TABLE flow_run IN ACCESS EXCLUSIVE MODE")
            reader = in_background(blocked.fetchval("SELECT count(*) FROM flow_run"))
            await wait_until_lock_waiting(observer, blocked.get_server_pid())
            await asyncio.sleep(1.2)
            await asyncio.sleep(max(0.0, calm_at + ttl + 0.1 - time.monotonic()))

            started = time.monotonic()
            series = await scrape(exporter)
            elapsed = time.monotonic() - started
            # Nothing of the exporter stays queued behind the lock once the scrape has answered.
            assert await exporter_sessions_waiting(observer) == 0
            assert not reader.done()

            assert value(series, "prefect_db_up") == 1.0
            blocked_sessions = value(series, "prefect_db_blocked_sessions")
            assert blocked_sessions is not None and blocked_sessions >= 1
            lock_wait = value(series, "prefect_db_lock_wait_max_seconds")
            assert lock_wait is not None and lock_wait >= 1.0
            assert (
                value(
                    series,
                    "prefect_db_locks",
                    relation="flow_run",
                    mode="AccessExclusiveLock",
                    granted="true",
                )
                == 1.0
            )
            assert total(series, "prefect_db_locks", relation="flow_run", granted="false") >= 1
            assert value(series, "prefect_db_blocking_sessions") == 1.0

            for name in FLOW_RUN_COLLECTORS:
                assert value(series, "prefect_db_exporter_collector_success", collector=name) == 0.0, name
                # Left out after the refresh's look at pg_locks, instead of waiting out lock_timeout.
                assert runs(series, name, "locked") == 1.0, name
            for name in POSTGRES_COLLECTORS + OTHER_PREFECT_COLLECTORS:
                assert value(series, "prefect_db_exporter_collector_success", collector=name) == 1.0, name
            # A collector left out serves its last good result, as stale (for at most max(60 s, 4 x TTL)).
            assert samples(series, "prefect_db_flow_runs") == samples(calm, "prefect_db_flow_runs")
            # tables.sql must not ask for the size of a relation under ACCESS EXCLUSIVE (it would wait).
            assert value(series, "prefect_db_table_size_bytes", relation="flow_run") is None
            assert value(series, "prefect_db_table_size_bytes", relation="deployment") is not None
            assert value(series, "prefect_db_table_live_tuples", relation="flow_run") is not None
            # Failing fast: lock_timeout (0.5 s) per flow_run query, not the 8 s scrape timeout.
            assert elapsed < 0.5 * len(FLOW_RUN_COLLECTORS) / pool_size + 1.5, elapsed

            await holder.execute("ROLLBACK")
            assert await asyncio.wait_for(reader, 5) == 0
            await asyncio.sleep(ttl + 0.1)
            after = await scrape(exporter)
            for name in FLOW_RUN_COLLECTORS:
                assert value(after, "prefect_db_exporter_collector_success", collector=name) == 1.0, name
            assert value(after, "prefect_db_blocked_sessions") == 0.0
            assert samples(after, "prefect_db_locks", relation="flow_run", granted="false") == {}
    finally:
        await exporter.close()


async def test_exporter_started_while_flow_run_is_locked_recovers(prefect_db: TestDatabase) -> None:
    """A lock held while the exporter first validates its queries must not disable collectors for good."""
    ttl = 2.0  # longer than one scrape (two 0.5 s lock timeouts), shorter than the pause after the lock
    exporter = short_ttl_exporter(prefect_db, "flow_runs", "sessions", ttl=ttl)
    try:
        async with admin_sessions(prefect_db, 2) as (observer, holder):
            await holder.execute("BEGIN; LOCK TABLE flow_run IN ACCESS EXCLUSIVE MODE")
            series = await scrape(exporter)
            assert value(series, "prefect_db_up") == 1.0
            assert value(series, "prefect_db_exporter_collector_success", collector="sessions") == 1.0
            assert value(series, "prefect_db_exporter_collector_success", collector="flow_runs") == 0.0
            assert await exporter_sessions_waiting(observer) == 0
            # A lock is not a broken query: the collector stays enabled and is left out as locked.
            assert value(series, "prefect_db_exporter_collector_enabled", collector="flow_runs") == 1.0
            assert runs(series, "flow_runs", "invalid") is None
            assert runs(series, "flow_runs", "locked") == 1.0

            await holder.execute("ROLLBACK")
            await asyncio.sleep(ttl + 0.1)
            after = await scrape(exporter)
            assert value(after, "prefect_db_exporter_collector_success", collector="flow_runs") == 1.0
            assert value(after, "prefect_db_flow_runs", work_pool="", state_type="PENDING") is None
    finally:
        await exporter.close()


# 3. Idle in transaction --------------------------------------------------------------------------


async def test_idle_in_transaction_session(prefect_db: TestDatabase) -> None:
    async with admin_sessions(prefect_db, 1) as (idle,):
        calm = await scrape_once(prefect_db, "sessions", "connections")
        assert value(calm, "prefect_db_oldest_transaction_age_seconds", state="idle in transaction") == 0.0
        assert total(calm, "prefect_db_connections", state="idle in transaction") == 0

        await idle.execute("BEGIN")
        await idle.fetchval("SELECT 1")
        await asyncio.sleep(2.2)
        series = await scrape_once(prefect_db, "sessions", "connections")
        age = value(series, "prefect_db_oldest_transaction_age_seconds", state="idle in transaction")
        assert age is not None and 2.0 <= age < 30.0
        assert total(series, "prefect_db_connections", state="idle in transaction") == 1
        # The exporter's own session is active but excluded from the transaction ages.
        active = value(series, "prefect_db_oldest_transaction_age_seconds", state="active")
        assert active is not None and active < 2.0


# 4. Worker polls waiting on last_polled rows -----------------------------------------------------


def poll_args(statement: str, queue_id: uuid.UUID, deployment_id: uuid.UUID) -> tuple[Any, ...]:
    now = datetime.now(UTC)
    if statement == POLL_DEPLOYMENTS_PRE_3_7:
        return (now, "READY", queue_id)
    if statement == POLL_DEPLOYMENTS_3_7:
        return (now, "READY", queue_id, None, "1", "1")
    if statement == POLL_WORK_QUEUE:
        return (now, queue_id)
    return ("NOT_READY", deployment_id)


@pytest.mark.parametrize(
    ("statement", "locked_table", "expected"),
    [
        (POLL_DEPLOYMENTS_PRE_3_7, "deployment", {"deployment": 1.0, "work_queue": 0.0}),
        (POLL_DEPLOYMENTS_3_7, "deployment", {"deployment": 1.0, "work_queue": 0.0}),
        (POLL_WORK_QUEUE, "work_queue", {"deployment": 0.0, "work_queue": 1.0}),
        (FOREMAN_DEPLOYMENTS, "deployment", {"deployment": 0.0, "work_queue": 0.0}),
    ],
    ids=["poll-pre-3.7", "poll-3.7+", "work-queue-poll", "foreman-not-a-poll"],
)
async def test_blocked_last_polled_update(
    prefect_db: TestDatabase, statement: str, locked_table: str, expected: dict[str, float]
) -> None:
    async with admin_sessions(prefect_db, 3) as (setup, holder, poller):
        pool, (deployment_id, _) = await make_deployments(setup, 2)
        queue_id = pool.default_queue_id
        row = deployment_id if locked_table == "deployment" else queue_id
        await holder.execute("BEGIN")
        await holder.execute(f"SELECT id FROM {locked_table} WHERE id = $1 FOR UPDATE", row)
        poll = in_background(poller.fetch(statement, *poll_args(statement, queue_id, deployment_id)))
        await wait_until_lock_waiting(setup, poller.get_server_pid())

        series = await scrape_once(prefect_db, "last_polled_blocking", "sessions")
        assert value(series, "prefect_db_blocked_sessions") == 1.0
        for relation, sessions in expected.items():
            assert value(series, "prefect_db_last_polled_blocked_sessions", relation=relation) == sessions

        await holder.execute("ROLLBACK")
        await asyncio.wait_for(poll, 5)
        after = await scrape_once(prefect_db, "last_polled_blocking")
        assert value(after, "prefect_db_last_polled_blocked_sessions", relation="deployment") == 0.0
        assert value(after, "prefect_db_last_polled_blocked_sessions", relation="work_queue") == 0.0


# 5. Table statistics -----------------------------------------------------------------------------


async def test_deployment_updates_are_counted(prefect_db: TestDatabase) -> None:
    polls = 4
    async with admin_sessions(prefect_db, 1) as (conn,):
        pool, ids = await make_deployments(conn, 3)
        await conn.execute("SELECT pg_stat_force_next_flush()")
        before = await scrape_once(prefect_db, "tables")
        updates_before = value(before, "prefect_db_table_updates_total", relation="deployment")
        hot_before = value(before, "prefect_db_table_hot_updates_total", relation="deployment")
        assert updates_before is not None and hot_before is not None
        for _ in range(polls):
            # A poll rewrites every deployment of the queue and bumps the indexed `updated`: never HOT.
            await conn.execute(
                "UPDATE deployment SET last_polled = clock_timestamp(), updated = clock_timestamp()"
                " WHERE work_queue_id = $1",
                pool.default_queue_id,
            )
        await conn.execute("SELECT pg_stat_force_next_flush()")
        expected = updates_before + polls * len(ids)

        async def counted() -> Series | None:
            series = await scrape_once(prefect_db, "tables")
            updates = value(series, "prefect_db_table_updates_total", relation="deployment")
            return series if updates is not None and updates >= expected else None

        series = await eventually(counted, timeout=20, interval=0.5)
        assert isinstance(series, dict)
        assert value(series, "prefect_db_table_updates_total", relation="deployment") == expected
        assert value(series, "prefect_db_table_hot_updates_total", relation="deployment") == hot_before
        dead = value(series, "prefect_db_table_dead_tuples", relation="deployment")
        assert dead is not None and dead >= polls * len(ids)


# 6. A database without Prefect's schema ---------------------------------------------------------


async def test_plain_database_without_prefect_schema(plain_db: TestDatabase) -> None:
    series = await scrape_once(plain_db)
    assert value(series, "prefect_db_up") == 1.0
    assert value(series, "prefect_db_prefect_schema_present") == 0.0
    for name in POSTGRES_COLLECTORS:
        assert value(series, "prefect_db_exporter_collector_enabled", collector=name) == 1.0, name
        assert value(series, "prefect_db_exporter_collector_success", collector=name) == 1.0, name
    for name in (*FLOW_RUN_COLLECTORS, *OTHER_PREFECT_COLLECTORS, "tag_concurrency_limits"):
        assert value(series, "prefect_db_exporter_collector_enabled", collector=name) == 0.0, name
        assert value(series, "prefect_db_exporter_collector_success", collector=name) is None, name
    assert samples(series, "prefect_db_flow_runs") == {}
    assert samples(series, "prefect_db_table_size_bytes") == {}
    assert value(series, "prefect_db_max_connections") == 200.0
