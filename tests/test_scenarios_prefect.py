"""Prefect trouble seeded as Prefect writes it (stale PENDING, late runs, zombies, dead workers), scraped."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from helpers import Series, exporter_for, samples, scrape, target_for, value

from devtools import seed
from devtools.pgcluster import TestDatabase
from exporter.catalog import load_catalog
from exporter.config import DEFAULT_QUERY_DIR, Thresholds
from exporter.incremental import IncrementalCounts, Mark
from exporter.registry import Exporter

# Seconds of slack for ages: rows are aged relative to clock_timestamp() at insert, scraped a little later.
SLACK = 5.0


@asynccontextmanager
async def admin(db: TestDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A superuser session on ``db``."""
    conn = await asyncpg.connect(db.admin_dsn)
    try:
        yield conn
    finally:
        conn.terminate()


async def scrape_once(db: TestDatabase, *collectors: str, thresholds: Thresholds | None = None) -> Series:
    """Scrape ``db`` once with a new exporter limited to ``collectors``."""
    exporter = exporter_for(target_for(db), thresholds=thresholds, include=frozenset(collectors))
    try:
        series = await scrape(exporter)
    finally:
        await exporter.close()
    for name in collectors:
        assert value(series, "prefect_db_exporter_collector_success", collector=name) == 1.0, name
    return series


def short_ttl_exporter(db: TestDatabase, *collectors: str, ttl: float = 0.1) -> Exporter:
    """An exporter whose collectors cache results for ``ttl`` seconds only."""
    return exporter_for(target_for(db), include=frozenset(collectors), ttl=ttl)


def about(actual: float | None, expected: float, slack: float = SLACK) -> bool:
    """True when an age scraped a moment after seeding is ``expected`` give or take the seconds since."""
    return actual is not None and expected <= actual < expected + slack


def queue(pool: str, name: str) -> dict[str, str]:
    return {"work_pool": pool, "work_queue": name}


# 7. PENDING ---------------------------------------------------------------------------------------


async def test_stale_pending_runs_per_queue(prefect_db: TestDatabase) -> None:
    async with admin(prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-p", default_queue_last_polled_ago=5)
        qa = await seed.create_work_queue(conn, pool.id, "queue-a", last_polled_ago=5)
        qb = await seed.create_work_queue(conn, pool.id, "queue-b", last_polled_ago=5)
        flow = await seed.create_flow(conn, "flow")

        async def run(
            queue_id: uuid.UUID | None, state_type: str, age: float, pid: str | None = None
        ) -> None:
            await seed.create_flow_run(
                conn,
                flow_id=flow,
                queue_id=queue_id,
                state_type=state_type,
                state_age=age,
                infrastructure_pid=pid,
            )

        await run(qa, "PENDING", 1200)
        await run(qa, "PENDING", 900, pid="host:4242")
        await run(qa, "PENDING", 60)
        await run(qb, "PENDING", 1800)
        await run(None, "PENDING", 700)
        # Not PENDING: never counted, however old.
        await run(qa, "RUNNING", 5000)
        await run(qa, "COMPLETED", 5000)
        await run(qa, "SCHEDULED", 0)

    a, b, default = queue("pool-p", "queue-a"), queue("pool-p", "queue-b"), queue("pool-p", "default")
    series = await scrape_once(prefect_db, "pending_runs", "flow_runs")
    assert value(series, "prefect_db_pending_runs_stale", **a) == 2.0
    assert value(series, "prefect_db_pending_runs_stale", **b) == 1.0
    assert value(series, "prefect_db_pending_runs_stale", **default) == 0.0
    assert value(series, "prefect_db_pending_runs_stale", **queue("", "")) == 1.0
    assert value(series, "prefect_db_pending_runs", **a) == 3.0
    assert value(series, "prefect_db_pending_runs", **default) == 0.0
    assert about(value(series, "prefect_db_pending_runs_oldest_age_seconds", **a), 1200)
    assert about(value(series, "prefect_db_pending_runs_oldest_age_seconds", **b), 1800)
    assert value(series, "prefect_db_pending_runs_oldest_age_seconds", **default) is None
    # Of the two stale runs of queue A, one reported its infrastructure.
    assert value(series, "prefect_db_pending_runs_never_started", **a) == 1.0
    assert value(series, "prefect_db_flow_runs", **a, state_type="PENDING") == 3.0
    assert value(series, "prefect_db_flow_runs", **a, state_type="RUNNING") == 1.0
    assert value(series, "prefect_db_flow_runs", **a, state_type="SCHEDULED") == 1.0
    assert value(series, "prefect_db_flow_runs", **b, state_type="PENDING") == 1.0
    assert value(series, "prefect_db_flow_runs", **default, state_type="PENDING") == 0.0
    assert value(series, "prefect_db_flow_runs", **queue("", ""), state_type="PENDING") == 1.0
    assert samples(series, "prefect_db_flow_runs", state_type="COMPLETED") == {}

    # The threshold is a setting: at 60 s the one-minute-old run is stale too.
    strict = await scrape_once(prefect_db, "pending_runs", thresholds=Thresholds(pending_stale_seconds=60))
    assert value(strict, "prefect_db_pending_runs_stale", **a) == 3.0
    assert value(strict, "prefect_db_pending_runs_stale", **b) == 1.0
    assert value(strict, "prefect_db_pending_runs_never_started", **a) == 2.0


# 8. Late runs -------------------------------------------------------------------------------------


async def test_late_runs(prefect_db: TestDatabase) -> None:
    async with admin(prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-l", default_queue_last_polled_ago=5)
        quiet = await seed.create_work_queue(conn, pool.id, "quiet", last_polled_ago=5)
        flow = await seed.create_flow(conn, "flow")

        async def scheduled(name: str, starts_in: float, state_age: float = 60.0) -> None:
            await seed.create_flow_run(
                conn,
                flow_id=flow,
                queue_id=pool.default_queue_id,
                state_type="SCHEDULED",
                state_name=name,
                state_age=state_age,
                next_scheduled_in=starts_in,
            )

        await scheduled("Late", -600, state_age=585)  # marked Late by Prefect's late-runs service
        await scheduled("Scheduled", -120, state_age=3600)  # overdue, the service has not caught up
        await scheduled("Scheduled", -5)  # due, but within late_after_seconds (15 s)
        await scheduled("Scheduled", 600)  # in the future
        await scheduled("AwaitingRetry", -300)  # retries are never late
        await scheduled("AwaitingConcurrencySlot", -300)
        await seed.create_flow_run(
            conn, flow_id=flow, queue_id=quiet, state_type="SCHEDULED", next_scheduled_in=60
        )

    series = await scrape_once(prefect_db, "late_runs", "flow_runs")
    default = queue("pool-l", "default")
    assert value(series, "prefect_db_late_runs", **default) == 2.0
    assert about(value(series, "prefect_db_late_runs_max_lateness_seconds", **default), 600)
    assert value(series, "prefect_db_late_runs", **queue("pool-l", "quiet")) == 0.0
    assert value(series, "prefect_db_late_runs_max_lateness_seconds", **queue("pool-l", "quiet")) is None
    assert value(series, "prefect_db_flow_runs", **default, state_type="SCHEDULED") == 6.0


# 9. Heartbeats ------------------------------------------------------------------------------------


async def test_running_runs_whose_heartbeats_stopped(prefect_db: TestDatabase) -> None:
    async with admin(prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-h", default_queue_last_polled_ago=5)
        flow = await seed.create_flow(conn, "flow")
        deployment = await seed.create_deployment(conn, flow, pool.default_queue_id, "dep", last_polled_ago=5)

        async def running(age: float, heartbeats: tuple[float, ...]) -> None:
            run_id = await seed.create_flow_run(
                conn,
                flow_id=flow,
                queue_id=pool.default_queue_id,
                deployment_id=deployment,
                state_type="RUNNING",
                state_age=age,
            )
            for ago in heartbeats:
                await seed.add_heartbeat(conn, run_id, ago)

        await running(300, (270, 90, 30))  # healthy
        await running(2400, (2370, 1200))  # heartbeats stopped 20 min ago
        await running(1800, ())  # never sent one
        await running(120, (2000,))  # its only heartbeat is from before it entered RUNNING (a retry)

    series = await scrape_once(prefect_db, "running_heartbeats")
    default = queue("pool-h", "default")
    assert value(series, "prefect_db_flow_run_heartbeats_present") == 1.0
    assert about(value(series, "prefect_db_flow_run_last_heartbeat_age_seconds"), 30)
    assert value(series, "prefect_db_running_runs", **default) == 4.0
    assert about(value(series, "prefect_db_running_runs_oldest_age_seconds", **default), 2400)
    assert value(series, "prefect_db_running_runs_heartbeat_stale", **default) == 2.0
    assert about(value(series, "prefect_db_running_runs_oldest_heartbeat_age_seconds", **default), 1800)
    assert value(series, "prefect_db_running_runs_without_heartbeat", **default) == 2.0

    lenient = await scrape_once(
        prefect_db, "running_heartbeats", thresholds=Thresholds(heartbeat_stale_seconds=1500)
    )
    assert value(lenient, "prefect_db_running_runs_heartbeat_stale", **default) == 1.0


async def test_running_runs_without_any_heartbeat_report_absence(prefect_db: TestDatabase) -> None:
    async with admin(prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-h", default_queue_last_polled_ago=5)
        flow = await seed.create_flow(conn, "flow")
        for age in (60, 7200):
            await seed.create_flow_run(
                conn, flow_id=flow, queue_id=pool.default_queue_id, state_type="RUNNING", state_age=age
            )

    series = await scrape_once(prefect_db, "running_heartbeats")
    default = queue("pool-h", "default")
    assert value(series, "prefect_db_flow_run_heartbeats_present") == 0.0
    assert value(series, "prefect_db_flow_run_last_heartbeat_age_seconds") is None
    assert value(series, "prefect_db_running_runs", **default) == 2.0
    assert about(value(series, "prefect_db_running_runs_oldest_age_seconds", **default), 7200)
    # Without heartbeats nothing can be stale: absent, never 0.
    for name in (
        "prefect_db_running_runs_heartbeat_stale",
        "prefect_db_running_runs_oldest_heartbeat_age_seconds",
        "prefect_db_running_runs_without_heartbeat",
    ):
        assert samples(series, name) == {}, name


async def test_heartbeats_older_than_the_lookback_count_as_absent(prefect_db: TestDatabase) -> None:
    async with admin(prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-h", default_queue_last_polled_ago=5)
        flow = await seed.create_flow(conn, "flow")
        run_id = await seed.create_flow_run(
            conn, flow_id=flow, queue_id=pool.default_queue_id, state_type="RUNNING", state_age=9000
        )
        await seed.add_heartbeat(conn, run_id, 5000)

    series = await scrape_once(prefect_db, "running_heartbeats")
    assert value(series, "prefect_db_flow_run_heartbeats_present") == 0.0
    assert about(value(series, "prefect_db_flow_run_last_heartbeat_age_seconds"), 5000)
    assert samples(series, "prefect_db_running_runs_heartbeat_stale") == {}


# 10. Workers --------------------------------------------------------------------------------------


async def test_workers_status_from_heartbeat_age(prefect_db: TestDatabase) -> None:
    async with admin(prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-w")
        await seed.create_worker(conn, pool.id, "fresh", heartbeat_ago=10, interval=30)
        # Stored ONLINE, but its heartbeat is 10 min old: the foreman has not caught up.
        await seed.create_worker(conn, pool.id, "lagging", heartbeat_ago=600, interval=30, status="ONLINE")
        await seed.create_worker(conn, pool.id, "dead", heartbeat_ago=3 * 86400, interval=30)
        other = await seed.create_work_pool(conn, "pool-i")
        # Without an interval Prefect assumes 30 s; a long interval allows a long silence.
        await seed.create_worker(conn, other.id, "no-interval-ok", heartbeat_ago=60, interval=None)
        await seed.create_worker(conn, other.id, "no-interval-late", heartbeat_ago=120, interval=None)
        await seed.create_worker(conn, other.id, "slow-ok", heartbeat_ago=600, interval=300)

    series = await scrape_once(prefect_db, "workers")
    assert value(series, "prefect_db_workers", work_pool="pool-w", status="ONLINE") == 1.0
    assert value(series, "prefect_db_workers", work_pool="pool-w", status="OFFLINE") == 1.0
    assert value(series, "prefect_db_workers_stored_status", work_pool="pool-w", status="ONLINE") == 2.0
    assert value(series, "prefect_db_workers_stored_status", work_pool="pool-w", status="OFFLINE") == 0.0
    assert value(series, "prefect_db_worker_rows", work_pool="pool-w") == 3.0
    assert about(value(series, "prefect_db_work_pool_worker_heartbeat_age_seconds", work_pool="pool-w"), 10)
    assert about(value(series, "prefect_db_work_pool_worker_heartbeat_age_seconds", work_pool="pool-i"), 60)
    # No series per worker unless the opt-in collector is on.
    assert samples(series, "prefect_db_worker_last_heartbeat_age_seconds") == {}

    assert value(series, "prefect_db_workers", work_pool="pool-i", status="ONLINE") == 2.0
    assert value(series, "prefect_db_workers", work_pool="pool-i", status="OFFLINE") == 1.0


async def test_per_worker_heartbeat_ages_with_the_opt_in_collector(prefect_db: TestDatabase) -> None:
    async with admin(prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-hb")
        await seed.create_worker(conn, pool.id, "fresh", heartbeat_ago=10, interval=30)
        await seed.create_worker(conn, pool.id, "lagging", heartbeat_ago=600, interval=30, status="ONLINE")
        await seed.create_worker(conn, pool.id, "dead", heartbeat_ago=3 * 86400, interval=30)
    # A default exporter does not run it; collectors.enable turns it on.
    default = exporter_for(target_for(prefect_db))
    assert "worker_heartbeats" not in [c.name for c in default.catalog.collectors]
    await default.close()
    exporter = exporter_for(target_for(prefect_db), enable=frozenset({"worker_heartbeats"}))
    try:
        series = await scrape(exporter)
    finally:
        await exporter.close()
    assert value(series, "prefect_db_exporter_collector_success", collector="worker_heartbeats") == 1.0
    heartbeat_ages = samples(series, "prefect_db_worker_last_heartbeat_age_seconds", work_pool="pool-hb")
    ages = {dict(labels)["worker"]: age for labels, age in heartbeat_ages.items()}
    # Recently seen workers only: the one silent for three days has no series.
    assert set(ages) == {"fresh", "lagging"}
    assert about(ages["fresh"], 10)
    assert about(ages["lagging"], 600)


async def test_worker_collectors_read_recent_workers_only_however_many_dead_rows_pile_up(
    prefect_db: TestDatabase,
) -> None:
    """5,000 dead worker rows per pool (one per restarted pod) add no series and at most 1,000 rows read."""
    async with admin(prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-k8s")
        retired = await seed.create_work_pool(conn, "pool-retired")
        await seed.create_worker(conn, pool.id, "alive", heartbeat_ago=5, interval=30)
        for pool_id in (pool.id, retired.id):
            await conn.execute(
                """
                INSERT INTO worker (id, work_pool_id, name, last_heartbeat_time)
                SELECT gen_random_uuid(), $1, 'KubernetesWorker ' || gen_random_uuid(),
                       now() - make_interval(days => 2 + i % 30)
                FROM generate_series(1, 5000) AS i
                """,
                pool_id,
            )
        await conn.execute("ANALYZE worker")
        read = {}
        for name in ("workers", "worker_heartbeats"):
            sql = load_catalog([DEFAULT_QUERY_DIR]).get(name).sql
            plan = json.loads(await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql))[0]["Plan"]
            scans = [node for node in plan_nodes(plan) if node.get("Relation Name") == "worker"]
            assert all(node["Node Type"] != "Seq Scan" for node in scans), scans
            read[name] = sum(
                (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
                for node in scans
            )
    # The recent workers of each pool through the heartbeat index; dead rows counted up to 1,000 a pool.
    # (EXPLAIN rounds the rows of each loop down: these are upper bounds.)
    assert read["workers"] <= 1 + 1000 + 1000 and read["worker_heartbeats"] <= 1, read
    series = await scrape_once(prefect_db, "workers", "worker_heartbeats")
    assert value(series, "prefect_db_worker_rows", work_pool="pool-k8s") == 1000.0
    assert value(series, "prefect_db_workers", work_pool="pool-k8s", status="ONLINE") == 1.0
    assert value(series, "prefect_db_workers", work_pool="pool-k8s", status="OFFLINE") == 0.0
    ages = samples(series, "prefect_db_worker_last_heartbeat_age_seconds", work_pool="pool-k8s")
    assert [dict(labels)["worker"] for labels in ages] == ["alive"]


# 11. Work queues ----------------------------------------------------------------------------------


async def test_work_queue_polling_status_and_concurrency(prefect_db: TestDatabase) -> None:
    async with admin(prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-q", concurrency_limit=4)
        await seed.create_work_queue(conn, pool.id, "fresh", last_polled_ago=5)
        await seed.create_work_queue(conn, pool.id, "old", last_polled_ago=3600)
        await seed.create_work_queue(conn, pool.id, "never")
        await seed.create_work_queue(conn, pool.id, "paused", last_polled_ago=5, paused=True)
        limited = await seed.create_work_queue(
            conn, pool.id, "limited", last_polled_ago=5, concurrency_limit=2
        )
        flow = await seed.create_flow(conn, "flow")
        for state_type in ("RUNNING", "RUNNING", "PENDING", "SCHEDULED", "COMPLETED", "PAUSED"):
            await seed.create_flow_run(
                conn, flow_id=flow, queue_id=limited, state_type=state_type, state_age=30
            )

    series = await scrape_once(prefect_db, "work_queues", "work_pools")
    age = "prefect_db_work_queue_last_polled_age_seconds"
    assert about(value(series, age, **queue("pool-q", "fresh")), 5)
    assert about(value(series, age, **queue("pool-q", "old")), 3600)
    assert value(series, age, **queue("pool-q", "never")) is None
    assert value(series, age, **queue("pool-q", "default")) is None

    stored = {"fresh": "READY", "old": "NOT_READY", "never": "NOT_READY", "paused": "PAUSED"}
    for name, status in stored.items():
        found = samples(series, "prefect_db_work_queue_status", **queue("pool-q", name))
        flags = {dict(labels)["status"]: flag for labels, flag in found.items()}
        assert flags == {s: (1.0 if s == status else 0.0) for s in ("READY", "NOT_READY", "PAUSED")}, name
    assert value(series, "prefect_db_work_queue_paused", **queue("pool-q", "paused")) == 1.0
    assert value(series, "prefect_db_work_queue_paused", **queue("pool-q", "fresh")) == 0.0

    assert value(series, "prefect_db_work_queue_active_runs", **queue("pool-q", "limited")) == 3.0
    assert value(series, "prefect_db_work_queue_concurrency_limit", **queue("pool-q", "limited")) == 2.0
    assert value(series, "prefect_db_work_queue_concurrency_limit", **queue("pool-q", "fresh")) is None
    assert value(series, "prefect_db_work_queue_active_runs", **queue("pool-q", "fresh")) == 0.0
    assert value(series, "prefect_db_work_pool_active_runs", work_pool="pool-q") == 3.0
    assert value(series, "prefect_db_work_pool_concurrency_limit", work_pool="pool-q") == 4.0
    assert value(series, "prefect_db_work_pool_queues", work_pool="pool-q") == 6.0


# 12. Deployments ----------------------------------------------------------------------------------


async def test_deployments_per_status_and_rows_per_poll(prefect_db: TestDatabase) -> None:
    async with admin(prefect_db) as conn:
        pool = await seed.create_work_pool(conn, "pool-d")
        busy = await seed.create_work_queue(conn, pool.id, "busy", last_polled_ago=5)
        other = await seed.create_work_pool(conn, "pool-e")
        flow = await seed.create_flow(conn, "flow")
        for i, status in enumerate(("READY", "READY", "READY", "NOT_READY", "NOT_READY")):
            await seed.create_deployment(conn, flow, busy, f"busy-{i}", status=status, paused=i == 4)
        await seed.create_deployment(conn, flow, pool.default_queue_id, "default-0", status="READY")
        for i in range(2):
            await seed.create_deployment(conn, flow, other.default_queue_id, f"other-{i}", status="READY")
        await seed.create_deployment(conn, flow, None, "served")  # .serve(): no work queue

    series = await scrape_once(prefect_db, "deployments")
    assert value(series, "prefect_db_deployments", **queue("pool-d", "busy"), status="READY") == 3.0
    assert value(series, "prefect_db_deployments", **queue("pool-d", "busy"), status="NOT_READY") == 2.0
    assert value(series, "prefect_db_deployments", **queue("pool-d", "default"), status="READY") == 1.0
    assert value(series, "prefect_db_deployments", **queue("pool-d", "default"), status="NOT_READY") == 0.0
    assert value(series, "prefect_db_deployments", **queue("", ""), status="NOT_READY") == 1.0
    assert value(series, "prefect_db_deployments_paused", **queue("pool-d", "busy")) == 1.0
    # One poll of every queue of pool-d rewrites all six of its deployment rows.
    assert value(series, "prefect_db_deployment_updates_per_poll", work_pool="pool-d") == 6.0
    assert value(series, "prefect_db_deployment_updates_per_poll", work_pool="pool-e") == 2.0


# 13. Concurrency limits ---------------------------------------------------------------------------


async def test_concurrency_limits_and_rate_limit_decay(prefect_db: TestDatabase) -> None:
    async with admin(prefect_db) as conn:
        await seed.create_concurrency_limit(conn, "db-writes", limit=5, active_slots=4, denied_slots=3)
        await seed.create_concurrency_limit(
            conn, "api-rate", limit=10, active_slots=10, slot_decay_per_second=1.0, updated_ago=3
        )
        await seed.create_concurrency_limit(conn, "switched-off", limit=1, active_slots=1, active=False)
        pool = await seed.create_work_pool(conn, "pool-c")
        flow = await seed.create_flow(conn, "etl")
        deployment = await seed.create_deployment(conn, flow, pool.default_queue_id, "nightly")
        await seed.create_concurrency_limit(conn, f"deployment:{deployment}", limit=1, active_slots=1)

    series = await scrape_once(prefect_db, "concurrency_limits")
    slots = by_name(series, "prefect_db_concurrency_limit_slots")
    active = by_name(series, "prefect_db_concurrency_limit_active_slots")
    assert slots == {"db-writes": 5.0, "api-rate": 10.0, "deployment:etl/nightly": 1.0}
    assert active["db-writes"] == 4.0
    assert 6.0 <= active["api-rate"] <= 7.0, active
    assert active["deployment:etl/nightly"] == 1.0
    assert by_name(series, "prefect_db_concurrency_limit_denied_slots")["db-writes"] == 3.0
    decay = by_name(series, "prefect_db_concurrency_limit_slot_decay_per_second")
    assert decay == {"db-writes": 0.0, "api-rate": 1.0, "deployment:etl/nightly": 0.0}


def by_name(series: Series, metric: str) -> dict[str, float]:
    """Samples of ``metric`` by their ``name`` label."""
    return {dict(labels)["name"]: v for labels, v in samples(series, metric).items()}


# 14. Transitions, counted incrementally -----------------------------------------------------------


async def test_transitions_are_counted_once_from_new_rows_only(prefect_db: TestDatabase) -> None:
    name = "prefect_db_flow_run_transitions_total"
    async with admin(prefect_db) as conn, admin(prefect_db) as late_writer:
        pool = await seed.create_work_pool(conn, "pool-t")
        other = await seed.create_work_pool(conn, "pool-u")
        flow = await seed.create_flow(conn, "flow")

        async def new_run(queue_id: uuid.UUID | None) -> uuid.UUID:
            return await seed.create_flow_run(conn, flow_id=flow, queue_id=queue_id, state_type="SCHEDULED")

        run, slow, quick = [await new_run(pool.default_queue_id) for _ in range(3)]
        elsewhere, unqueued = await new_run(other.default_queue_id), await new_run(None)
        # History written just before the exporter starts: never counted.
        await seed.set_flow_run_state(conn, quick, "PENDING")

        exporter = short_ttl_exporter(prefect_db, "flow_run_transitions")
        try:
            first = await scrape(exporter)
            success = value(first, "prefect_db_exporter_collector_success", collector="flow_run_transitions")
            assert success == 1.0
            # The first run counts nothing; what it saw starts at 0 so rate() sees the first increase.
            seen = [("pool-t", "SCHEDULED"), ("pool-t", "PENDING"), ("pool-u", "SCHEDULED")]
            seen.append(("", "SCHEDULED"))
            assert counted(first, name, zeros=True) == dict.fromkeys(seen, 0.0)

            for state_type in ("PENDING", "RUNNING", "COMPLETED"):
                await seed.set_flow_run_state(conn, run, state_type)
            await seed.set_flow_run_state(conn, elsewhere, "CANCELLED")
            await seed.set_flow_run_state(conn, unqueued, "RUNNING")
            await asyncio.sleep(0.2)
            second = await scrape(exporter)
            expected = {
                ("pool-t", "PENDING"): 1.0,
                ("pool-t", "RUNNING"): 1.0,
                ("pool-t", "COMPLETED"): 1.0,
                ("pool-u", "CANCELLED"): 1.0,
                ("", "RUNNING"): 1.0,
            }
            assert counted(second, name) == expected

            # Re-reading the overlap window never counts a row twice.
            await asyncio.sleep(0.2)
            assert counted(await scrape(exporter), name) == expected

            # A transition whose transaction commits after a later one was counted is still counted.
            transaction = late_writer.transaction()
            await transaction.start()
            await seed.set_flow_run_state(late_writer, slow, "PENDING")
            await seed.set_flow_run_state(conn, quick, "RUNNING")
            await asyncio.sleep(0.2)
            expected[("pool-t", "RUNNING")] = 2.0
            assert counted(await scrape(exporter), name) == expected
            await transaction.commit()
            await asyncio.sleep(0.2)
            expected[("pool-t", "PENDING")] = 2.0
            assert counted(await scrape(exporter), name) == expected
        finally:
            await exporter.close()


def counted(series: Series, name: str, zeros: bool = False) -> dict[tuple[str, str], float]:
    """Transition counters by (work_pool, state_type); those still at 0 only when ``zeros``."""
    return {
        (dict(labels)["work_pool"], dict(labels)["state_type"]): count
        for labels, count in samples(series, name).items()
        if count or zeros
    }


async def scheduled_run_in_new_pool(conn: asyncpg.Connection, pool_name: str) -> uuid.UUID:
    """A SCHEDULED flow run on the default queue of a new work pool."""
    pool = await seed.create_work_pool(conn, pool_name)
    flow = await seed.create_flow(conn, "flow")
    run: uuid.UUID = await seed.create_flow_run(
        conn, flow_id=flow, queue_id=pool.default_queue_id, state_type="SCHEDULED"
    )
    return run


async def test_history_just_before_the_start_is_never_counted(prefect_db: TestDatabase) -> None:
    """Rows older than the first run's window but inside the next run's re-read window are history."""
    name = "prefect_db_flow_run_transitions_total"
    async with admin(prefect_db) as conn:
        run = await scheduled_run_in_new_pool(conn, "pool-h")
        # Nothing newer than 30 s, so the first run leaves its cursor there and the next run
        # re-reads back to 90 s ago, finding the 80 s old row that was outside the first window.
        await conn.execute(
            "UPDATE flow_run_state SET updated = now() - interval '45 seconds' WHERE flow_run_id = $1", run
        )
        for seconds_ago, state_type in ((80, "CANCELLING"), (30, "PENDING")):
            await conn.execute(
                """
                INSERT INTO flow_run_state (id, flow_run_id, type, name, timestamp, created, updated)
                SELECT gen_random_uuid(), $1, $2::state_type, 'History', t, t, t
                FROM (SELECT now() - make_interval(secs => $3::int) AS t) AS ts
                """,
                run,
                state_type,
                seconds_ago,
            )
        exporter = short_ttl_exporter(prefect_db, "flow_run_transitions")
        try:
            await scrape(exporter)
            await asyncio.sleep(0.2)
            assert counted(await scrape(exporter), name) == {}
            await seed.set_flow_run_state(conn, run, "RUNNING")
            await asyncio.sleep(0.2)
            assert counted(await scrape(exporter), name) == {("pool-h", "RUNNING"): 1.0}
        finally:
            await exporter.close()


async def scrape_until(
    exporter: Exporter, name: str, expected: float, timeout: float = 120.0, **labels: str
) -> list[float | None]:
    """Scrape until the counter ``name{labels}`` reaches ``expected`` (as many runs as it takes)."""
    seen: list[float | None] = []
    async with asyncio.timeout(timeout):
        while not seen or seen[-1] != expected:
            await asyncio.sleep(0.2)
            seen.append(value(await scrape(exporter), name, **labels))
            assert seen[-1] is None or seen[-1] <= expected, seen  # never a row counted twice
    return seen


async def test_a_burst_of_transitions_larger_than_one_run_is_counted_in_full(
    prefect_db: TestDatabase,
) -> None:
    """More new state rows than one run reads (its LIMIT) are all counted, in as many runs as it takes."""
    burst = 10_050
    name = "prefect_db_flow_run_transitions_total"
    async with admin(prefect_db) as conn:
        run = await scheduled_run_in_new_pool(conn, "pool-b")
        exporter = short_ttl_exporter(prefect_db, "flow_run_transitions")
        try:
            assert counted(await scrape(exporter), name) == {}
            # One transaction writes them all, each stamped when written, as a busy server does.
            await conn.execute(
                """
                INSERT INTO flow_run_state (id, flow_run_id, type, name, timestamp, created, updated)
                SELECT gen_random_uuid(), $1, 'RUNNING', 'Running', t.ts, t.ts, t.ts
                FROM (SELECT clock_timestamp() + make_interval(secs => i / 1e6) AS ts
                      FROM generate_series(1, $2::int) AS i) AS t
                """,
                run,
                burst,
            )
            seen = await scrape_until(exporter, name, burst, work_pool="pool-b", state_type="RUNNING")
            # The burst took more than one run, however fast the machine.
            assert len(seen) > 1 and seen[0] != burst, seen
            # Further runs count nothing again, and a transition after the burst is counted too.
            await seed.set_flow_run_state(conn, run, "COMPLETED")
            await scrape_until(exporter, name, 1.0, work_pool="pool-b", state_type="COMPLETED")
            for _ in range(3):
                await asyncio.sleep(0.2)
                series = await scrape(exporter)
                assert value(series, name, work_pool="pool-b", state_type="RUNNING") == burst
                assert value(series, name, work_pool="pool-b", state_type="COMPLETED") == 1.0
        finally:
            await exporter.close()


async def test_a_transition_committed_30_seconds_after_it_was_written_is_counted_once(
    prefect_db: TestDatabase,
) -> None:
    """A slow transaction's rows, stamped 30 s before they become visible, are counted once when it commits.

    The clock-skew allowance is 1 s here, so only the transaction bound (the oldest open transaction's
    start) reaches back far enough: a time cursor would have moved past these rows long before.
    """
    name = "prefect_db_flow_run_transitions_total"
    async with admin(prefect_db) as conn, admin(prefect_db) as slow_writer:
        run = await scheduled_run_in_new_pool(conn, "pool-l")
        other = await scheduled_run_in_new_pool(conn, "pool-m")
        exporter = exporter_for(
            target_for(prefect_db), include=frozenset({"flow_run_transitions"}), ttl=0.1, overlap=1.0
        )
        try:
            assert counted(await scrape(exporter), name) == {}
            transaction = slow_writer.transaction()
            await transaction.start()
            await seed.set_flow_run_state(slow_writer, run, "PENDING")  # under a savepoint
            await slow_writer.execute(
                """
                INSERT INTO flow_run_state (id, flow_run_id, type, name, timestamp, created, updated)
                SELECT gen_random_uuid(), $1, 'RUNNING', 'Running', t, t, t FROM clock_timestamp() AS t
                """,
                run,
            )
            # Meanwhile other transitions are counted, pass after pass.
            async with asyncio.timeout(90):
                loop = asyncio.get_running_loop()
                started = loop.time()
                while loop.time() - started < 30:
                    await seed.set_flow_run_state(conn, other, "RUNNING")
                    await asyncio.sleep(1.0)
                    assert ("pool-l", "PENDING") not in counted(await scrape(exporter), name)
            others = await conn.fetchval(
                "SELECT count(*) - 1 FROM flow_run_state WHERE flow_run_id = $1", other
            )
            await scrape_until(exporter, name, others, work_pool="pool-m", state_type="RUNNING")
            await transaction.commit()
            await scrape_until(exporter, name, 1.0, work_pool="pool-l", state_type="RUNNING")
            for _ in range(3):
                await asyncio.sleep(0.2)
                assert counted(await scrape(exporter), name) == {
                    ("pool-l", "PENDING"): 1.0,
                    ("pool-l", "RUNNING"): 1.0,
                    ("pool-m", "RUNNING"): others,
                }
        finally:
            await exporter.close()


async def test_the_transitions_query_reads_a_bounded_range_of_the_updated_index(
    prefect_db: TestDatabase,
) -> None:
    """With a long history, a page reads flow_run_state through ix_flow_run_state__updated from `since` on."""
    spec = load_catalog([DEFAULT_QUERY_DIR]).get("flow_run_transitions")
    async with admin(prefect_db) as conn:
        run = await scheduled_run_in_new_pool(conn, "pool-x")
        await conn.execute(
            """
            INSERT INTO flow_run_state (id, flow_run_id, type, name, timestamp, created, updated)
            SELECT gen_random_uuid(), $1, 'RUNNING', 'Running', t.ts, t.ts, t.ts
            FROM (SELECT now() - make_interval(secs => i) AS ts FROM generate_series(1, 50000) AS i) AS t
            """,
            run,
        )
        await conn.execute("ANALYZE flow_run_state")
        # The first pass (no setting yet), then one with a mark.
        plans = [json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + spec.sql))[0]["Plan"]]
        counts = IncrementalCounts(spec)
        now = await conn.fetchval("SELECT now()")
        counts.begin(Mark(now, now, 1))
        for name, setting in counts.settings().items():
            await conn.execute("SELECT set_config($1, $2, false)", name, setting)
        plans.append(json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + spec.sql))[0]["Plan"])
    for plan in plans:
        scans = [node for node in plan_nodes(plan) if node.get("Relation Name") == "flow_run_state"]
        assert [(node["Node Type"], node.get("Index Name")) for node in scans] == [
            ("Index Scan", "ix_flow_run_state__updated")
        ], scans
        assert "updated >=" in scans[0]["Index Cond"], scans[0]


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan."""
    yield node
    for child in node.get("Plans", ()):
        yield from plan_nodes(child)
