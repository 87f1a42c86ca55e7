"""Prefect's own machinery seen from the database, made to fail for real on every supported schema.

Each scenario makes one of Prefect's background services look stalled the way its users report it
(the late-runs marker, the foreman, the retention, concurrency bookkeeping, cancellation cleanup),
or sets up what breaks them (an invalid index, repeatable read, anonymous sessions), then scrapes.
These tests, and the core ones (every collector runs or says why; runs, PENDING, late runs, workers,
queues and a poll of the release's own statement shape waiting on a deployment row give their values),
run on 2.20.27 and 3.6.29 as well as the suite's usual schemas (the ``any_prefect_db`` fixture); the
rest of the suite does not.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
import troubles
from helpers import Series, eventually, exporter_for, samples, scrape, target_for, value

from devtools import seed
from devtools.pgcluster import TestDatabase
from devtools.prefect_env import ALL_PREFECT_VERSIONS
from exporter.config import DEFAULT_OPERATIONS_FILE
from exporter.operations import load_operations
from exporter.status import CollectorState

# Seconds of slack for ages: rows are aged relative to clock_timestamp() at insert, scraped a little later.
SLACK = 5.0
POLL_SHAPES = Path(__file__).parent / "data" / "poll_statements.jsonl"
MACHINERY = (
    "late_marking", "foreman", "retention", "invalid_indexes", "isolation", "applications",
    "concurrency_slot_leaks", "cancelling_runs", "poll_amplification",
)  # fmt: skip
# The core collectors that must work on every schema, 2.20 included (issue: sessions, locks,
# deadlocks, runs, PENDING, late, workers, queues, polling contention).
CORE = (
    "sessions", "connections", "locks", "lock_waits", "database_stats", "flow_runs", "pending_runs",
    "late_runs", "workers", "work_queues", "work_pools", "deployments", "last_polled_blocking",
    "flow_run_transitions", "tables", "server",
)  # fmt: skip


def major(db: TestDatabase) -> int:
    assert db.prefect_version is not None
    return int(db.prefect_version.split(".")[0])


@asynccontextmanager
async def admin(db: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A superuser session on ``db``."""
    conn = await asyncpg.connect(db.admin_dsn)
    try:
        yield conn
    finally:
        conn.terminate()


async def scrape_once(db: TestDatabase, *collectors: str) -> Series:
    """Scrape ``db`` once with a new exporter limited to ``collectors``, all of which must succeed."""
    exporter = exporter_for(target_for(db), include=frozenset(collectors), sampler=False)
    try:
        series = await scrape(exporter)
    finally:
        await exporter.close()
    for name in collectors:
        assert value(series, "prefect_db_exporter_collector_success", collector=name) == 1.0, name
    return series


def about(actual: float | None, expected: float, slack: float = SLACK) -> bool:
    """True when an age scraped a moment after seeding is ``expected`` give or take the seconds since."""
    return actual is not None and expected <= actual < expected + slack


def of_limit(series: Series, metric: str, limit: str) -> float | None:
    """The sample of ``metric`` for the concurrency limit named ``limit`` (``name`` is value()'s own)."""
    found = [v for labels, v in samples(series, metric).items() if ("name", limit) in labels]
    assert len(found) <= 1, found
    return found[0] if found else None


def queue(pool: str, name: str) -> dict[str, str]:
    return {"work_pool": pool, "work_queue": name}


# Every schema: the core works, and what cannot work says why --------------------------------------


async def test_core_collectors_work_and_the_rest_say_why_on_every_schema(
    any_prefect_db: TestDatabase,
) -> None:
    exporter = exporter_for(target_for(any_prefect_db), sampler=False)
    try:
        await scrape(exporter)
        (target,) = exporter.status().targets
    finally:
        await exporter.close()
    states = {c.name: c for c in target.collectors}
    broken = {
        n: (c.state, c.reason)
        for n, c in states.items()
        if c.state not in (CollectorState.OK, CollectorState.SKIPPED)
    }
    assert not broken, broken
    assert all(states[name].state == CollectorState.OK for name in CORE), {
        name: states[name].reason for name in CORE if states[name].state != CollectorState.OK
    }
    skipped = {n: c.reason for n, c in states.items() if c.state == CollectorState.SKIPPED}
    assert all(skipped.values()), skipped  # every skip names its reason on `/`
    # Deployment concurrency is 3.x only; everything else runs everywhere.
    if major(any_prefect_db) == 2:
        reason = "column missing or not readable: deployment.concurrency_limit_id"
        assert skipped == {"concurrency_slot_leaks": reason}
    else:
        assert skipped == {}


async def test_core_signals_have_their_values_on_every_schema(any_prefect_db: TestDatabase) -> None:
    async with admin(any_prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-core", default_queue_last_polled_ago=5)
        unpolled = await seed.create_work_queue(conn, pool.id, "unpolled", last_polled_ago=900)
        flow = await seed.create_flow(conn, "flow")
        q = pool.default_queue_id
        await seed.create_flow_run(conn, flow_id=flow, queue_id=q, state_type="PENDING", state_age=1200)
        await seed.create_flow_run(conn, flow_id=flow, queue_id=q, state_type="RUNNING", state_age=30)
        await seed.create_flow_run(conn, flow_id=flow, queue_id=unpolled, state_type="SCHEDULED",
                                   state_name="Late", state_age=100)  # fmt: skip
        await seed.create_worker(conn, pool.id, "dead", heartbeat_ago=600)
        await seed.create_worker(conn, pool.id, "alive", heartbeat_ago=5)
    series = await scrape_once(
        any_prefect_db, "flow_runs", "pending_runs", "late_runs", "workers", "work_queues"
    )
    where = queue("pool-core", "default")
    assert value(series, "prefect_db_flow_runs", **where, state_type="PENDING") == 1
    assert value(series, "prefect_db_flow_runs", **where, state_type="RUNNING") == 1
    assert value(series, "prefect_db_pending_runs_stale", **where) == 1
    assert value(series, "prefect_db_late_runs", **queue("pool-core", "unpolled")) == 1
    assert value(series, "prefect_db_workers", work_pool="pool-core", status="ONLINE") == 1
    assert value(series, "prefect_db_workers", work_pool="pool-core", status="OFFLINE") == 1
    assert about(
        value(series, "prefect_db_work_queue_last_polled_age_seconds", **queue("pool-core", "unpolled")), 900
    )


# 1. Late-run marking stalled ----------------------------------------------------------------------


async def test_overdue_scheduled_runs_not_marked_late_and_runs_marked_late_twice(
    any_prefect_db: TestDatabase,
) -> None:
    async with admin(any_prefect_db) as conn:
        await troubles.stall_late_marking(conn, "pool-l")
    series = await scrape_once(any_prefect_db, "late_marking")
    where = queue("pool-l", "default")
    assert value(series, "prefect_db_late_marking_overdue_runs", **where) == 2
    assert about(value(series, "prefect_db_late_marking_oldest_overdue_seconds", **where), 300)
    assert value(series, "prefect_db_late_marking_repeated_late_runs", **where) == 1


# 2. Foreman stalled -------------------------------------------------------------------------------


async def test_stale_rows_stored_online_and_ready_are_the_foremans_disagreement(
    any_prefect_db: TestDatabase,
) -> None:
    async with admin(any_prefect_db) as conn:
        await troubles.stall_foreman(conn)
    series = await scrape_once(any_prefect_db, "foreman")
    rows = "prefect_db_foreman_stale_status_rows"
    overdue = "prefect_db_foreman_stale_status_max_overdue_seconds"
    assert value(series, rows, work_pool="pool-f", relation="worker") == 2
    assert about(value(series, overdue, work_pool="pool-f", relation="worker"), 300 - 90)
    assert value(series, rows, work_pool="pool-f", relation="work_queue") == 1
    assert about(value(series, overdue, work_pool="pool-f", relation="work_queue"), 400 - 60)
    assert value(series, rows, work_pool="pool-f", relation="deployment") == 1
    assert about(value(series, overdue, work_pool="pool-f", relation="deployment"), 400 - 60)
    assert {v for v in samples(series, rows, work_pool="pool-calm").values()} == {0}
    assert samples(series, overdue, work_pool="pool-calm") == {}


async def test_the_foremans_edges_no_queue_never_polled_no_interval_and_long_gone_workers(
    any_prefect_db: TestDatabase,
) -> None:
    """The stale rows are found from the stale queues, the deployments without a queue and the recent
    workers: each edge of that path, made for real."""
    async with admin(any_prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-e", default_queue_last_polled_ago=5)
        flow = await seed.create_flow(conn, "flow")
        # Without a queue: stale when its own poll is 500 s old; never polled (NULL) is not stale.
        deployment = troubles.create_deployment
        await deployment(conn, flow, None, "no-queue-stale", status="READY", last_polled_ago=500)
        await deployment(conn, flow, None, "no-queue-unpolled", status="READY")
        # A queue never polled (last_polled NULL) stored READY: the queue itself is not counted, its
        # deployment polled 300 s ago is; one never polled is not.
        unpolled = await seed.create_work_queue(conn, pool.id, "unpolled", status="READY")
        await deployment(conn, flow, unpolled, "d-old", status="READY", last_polled_ago=300)
        await deployment(conn, flow, unpolled, "d-null", status="READY")
        # Stored NOT_READY already: right, not counted.
        await deployment(conn, flow, unpolled, "d-marked", status="NOT_READY", last_polled_ago=900)
        # A fresh queue keeps its deployments READY however old their own poll.
        await deployment(conn, flow, pool.default_queue_id, "d-fresh-queue", status="READY",
                         last_polled_ago=900)  # fmt: skip
        # No heartbeat interval: Prefect assumes 30 s, so 3 x 30 s.
        await seed.create_worker(conn, pool.id, "no-interval-late", heartbeat_ago=120, interval=None,
                                 status="ONLINE")  # fmt: skip
        await seed.create_worker(conn, pool.id, "no-interval-ok", heartbeat_ago=60, interval=None,
                                 status="ONLINE")  # fmt: skip
        # Silent for two days, beyond worker_recent_seconds (one day): long gone, not read.
        await seed.create_worker(conn, pool.id, "long-gone", heartbeat_ago=2 * 86400, status="ONLINE")
    series = await scrape_once(any_prefect_db, "foreman")
    rows = "prefect_db_foreman_stale_status_rows"
    overdue = "prefect_db_foreman_stale_status_max_overdue_seconds"
    assert value(series, rows, work_pool="", relation="deployment") == 1
    assert about(value(series, overdue, work_pool="", relation="deployment"), 500 - 60)
    assert value(series, rows, work_pool="pool-e", relation="deployment") == 1
    assert about(value(series, overdue, work_pool="pool-e", relation="deployment"), 300 - 60)
    assert value(series, rows, work_pool="pool-e", relation="work_queue") == 0
    assert value(series, rows, work_pool="pool-e", relation="worker") == 1
    assert about(value(series, overdue, work_pool="pool-e", relation="worker"), 120 - 90)
    assert samples(series, rows, work_pool="", relation="worker") == {}


# 3. Retention keeping up --------------------------------------------------------------------------


async def test_events_and_runs_older_than_retention_are_measured_through_indexes(
    any_prefect_db: TestDatabase,
) -> None:
    async with admin(any_prefect_db) as conn:
        has_index = await troubles.age_events_past_retention(conn)
    series = await scrape_once(any_prefect_db, "retention")
    oldest = "prefect_db_retention_oldest_row_age_seconds"
    assert about(value(series, oldest, relation="events"), 10 * 86400)
    assert about(value(series, oldest, relation="flow_run"), 100 * 86400)  # terminal runs only
    if has_index:  # 3.7.5+
        assert about(value(series, oldest, relation="event_resources"), 10 * 86400)
    else:  # no index to read it from: absent, never a full scan
        assert value(series, oldest, relation="event_resources") is None


async def test_an_empty_prefect_database_has_no_oldest_rows(any_prefect_db: TestDatabase) -> None:
    series = await scrape_once(any_prefect_db, "retention")
    assert samples(series, "prefect_db_retention_oldest_row_age_seconds") == {}


# 4. Invalid indexes -------------------------------------------------------------------------------


async def test_a_failed_concurrent_unique_index_build_is_an_invalid_index(
    any_prefect_db: TestDatabase,
) -> None:
    async with admin(any_prefect_db) as conn:
        await troubles.leave_invalid_index(conn)
    series = await scrape_once(any_prefect_db, "invalid_indexes")
    assert value(series, "prefect_db_invalid_indexes", relation="flow_run") == 1
    assert value(series, "prefect_db_invalid_indexes", relation="flow_run_state") == 0
    assert sum(samples(series, "prefect_db_invalid_indexes").values()) == 1


# 5. Isolation level -------------------------------------------------------------------------------


async def test_a_database_set_to_repeatable_read(any_prefect_db: TestDatabase) -> None:
    before = await scrape_once(any_prefect_db, "isolation")
    assert value(before, "prefect_db_default_transaction_isolation_not_read_committed") == 0
    assert value(before, "prefect_db_sessions_isolation_not_read_committed") == 0
    async with admin(any_prefect_db) as conn:
        await troubles.set_repeatable_read(conn, any_prefect_db.name)
    # Sessions opened from now on (two "Prefect" sessions) get repeatable read.
    async with admin(any_prefect_db) as first, admin(any_prefect_db) as second:
        assert await first.fetchval("SHOW default_transaction_isolation") == "repeatable read"
        assert await second.fetchval("SHOW default_transaction_isolation") == "repeatable read"
        # The session that ran ALTER DATABASE must be gone: the defaults are read from the catalog.
        pids = [first.get_server_pid(), second.get_server_pid()]

        async def only_these_two() -> bool:
            others: int = await first.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> ALL ($1::int[])",
                pids,
            )
            return others == 0

        await eventually(only_these_two)
        series = await scrape_once(any_prefect_db, "isolation")
    assert value(series, "prefect_db_default_transaction_isolation_not_read_committed") == 1
    assert value(series, "prefect_db_sessions_isolation_not_read_committed") == 2


# 6. Sessions without application_name -------------------------------------------------------------


async def test_sessions_without_application_name_and_connections_per_application(
    any_prefect_db: TestDatabase,
) -> None:
    conns = [
        await asyncpg.connect(any_prefect_db.admin_dsn, server_settings={"application_name": app})
        for app in ["", "", "", "prefect-server", "prefect-server"]
    ]
    try:
        series = await scrape_once(any_prefect_db, "applications")
    finally:
        for conn in conns:
            conn.terminate()
    assert value(series, "prefect_db_application_connections", application="") == 3
    assert value(series, "prefect_db_application_connections_per_client_max", application="") == 3
    assert value(series, "prefect_db_application_connections", application="prefect-server") == 2
    assert (value(series, "prefect_db_application_connections", application="prefect-db-exporter") or 0) >= 1


# 7. Leaked concurrency slots ----------------------------------------------------------------------


# Deployment concurrency is 3.x only: on 2.x the collector is gated, which the every-collector test asserts.
@pytest.mark.parametrize(
    "any_prefect_db",
    [v for v in ALL_PREFECT_VERSIONS if not v.startswith("2.")],
    ids=lambda version: f"prefect-{version}",
    indirect=True,
)
async def test_slots_held_with_no_runs_and_runs_awaiting_a_slot(any_prefect_db: TestDatabase) -> None:
    async with admin(any_prefect_db) as conn:
        leaked = await troubles.leak_concurrency_slots(conn)
    series = await scrape_once(any_prefect_db, "concurrency_slot_leaks")
    name = leaked.deployment_limit
    assert of_limit(series, "prefect_db_concurrency_limit_slot_holders", name) == 1
    assert of_limit(series, "prefect_db_concurrency_limit_leaked_slots", name) == 2
    assert of_limit(series, "prefect_db_concurrency_limit_slot_holders", "tag:db") == 0
    assert of_limit(series, "prefect_db_concurrency_limit_leaked_slots", "tag:db") == 2
    assert of_limit(series, "prefect_db_concurrency_limit_leaked_slots", "external-api") is None
    where = queue("pool-c", "default")
    assert value(series, "prefect_db_awaiting_concurrency_slot_runs", **where) == 2
    assert about(value(series, "prefect_db_awaiting_concurrency_slot_oldest_seconds", **where), 600)


# 8. CANCELLING runs -------------------------------------------------------------------------------


async def test_cancelling_runs_aged_ten_minutes(any_prefect_db: TestDatabase) -> None:
    async with admin(any_prefect_db) as conn:
        await troubles.strand_cancelling_runs(conn)
    series = await scrape_once(any_prefect_db, "cancelling_runs")
    where = queue("pool-x", "default")
    assert value(series, "prefect_db_cancelling_runs_stale", **where) == 2
    assert about(value(series, "prefect_db_cancelling_runs_oldest_age_seconds", **where), 600)


# 9. The poll statement: three shapes, one operation, and its amplification ------------------------


def poll_shapes() -> list[dict[str, str]]:
    lines = POLL_SHAPES.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_all_three_shapes_of_the_poll_update_are_one_operation() -> None:
    classifier = load_operations(DEFAULT_OPERATIONS_FILE)
    shapes = poll_shapes()
    assert {s["shape"] for s in shapes} == {"plain", "updated=deployment.updated", "with locked"}
    wrong = [s for s in shapes if classifier.classify(s["statement"]) != "deployment_last_polled_update"]
    assert not wrong, wrong


async def test_rows_rewritten_per_poll_are_counted_from_pg_stat_statements(
    any_prefect_db: TestDatabase,
) -> None:
    version = any_prefect_db.prefect_version
    (shape,) = [s for s in poll_shapes() if s["version"] == version]
    async with admin(any_prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-a", default_queue_last_polled_ago=5)
        flow = await seed.create_flow(conn, "flow")
        for i in range(3):
            await troubles.create_deployment(
                conn, flow, pool.default_queue_id, f"d{i}", status="READY", last_polled_ago=5
            )
        await conn.execute("SELECT pg_stat_statements_reset()")
        # The statement as this release sends it (prepared, as asyncpg does), polling one queue twice.
        statement = await conn.prepare(shape["statement"])
        for _ in range(2):
            await statement.fetch(datetime.now(UTC), "READY", pool.default_queue_id)
    series = await scrape_once(any_prefect_db, "poll_amplification")
    assert value(series, "prefect_db_deployment_poll_updates_total") == 2
    assert value(series, "prefect_db_deployment_poll_updated_rows_total") == 6


async def test_a_poll_of_this_release_waiting_on_a_deployment_row_is_polling_contention(
    any_prefect_db: TestDatabase,
) -> None:
    (shape,) = [s for s in poll_shapes() if s["version"] == any_prefect_db.prefect_version]
    async with (
        admin(any_prefect_db) as setup,
        admin(any_prefect_db) as holder,
        admin(any_prefect_db) as poller,
    ):
        pool = await seed.create_work_pool(setup, "pool-w", default_queue_last_polled_ago=5)
        flow = await seed.create_flow(setup, "flow")
        locked = await troubles.create_deployment(
            setup, flow, pool.default_queue_id, "d", status="READY", last_polled_ago=5
        )
        await holder.execute("BEGIN")
        await holder.execute("SELECT id FROM deployment WHERE id = $1 FOR UPDATE", locked)
        poll = asyncio.ensure_future(
            poller.fetch(shape["statement"], datetime.now(UTC), "READY", pool.default_queue_id)
        )
        pid = poller.get_server_pid()

        async def waiting() -> bool:
            event: str | None = await setup.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
            )
            return event == "Lock"

        await eventually(waiting)
        series = await scrape_once(any_prefect_db, "last_polled_blocking")
        await holder.execute("ROLLBACK")
        await asyncio.wait_for(poll, 5)
    assert value(series, "prefect_db_last_polled_blocked_sessions", relation="deployment") == 1


@pytest.mark.parametrize("any_prefect_db", ["2.20.27"], indirect=True)
async def test_without_pg_stat_statements_the_amplification_says_why(any_prefect_db: TestDatabase) -> None:
    async with admin(any_prefect_db) as conn:
        await conn.execute("DROP EXTENSION pg_stat_statements")
    exporter = exporter_for(
        target_for(any_prefect_db), include=frozenset({"poll_amplification"}), sampler=False
    )
    try:
        await scrape(exporter)
        (target,) = exporter.status().targets
    finally:
        await exporter.close()
    (status,) = target.collectors
    assert status.state == CollectorState.SKIPPED
    assert status.reason == "table missing or not readable: pg_stat_statements"
