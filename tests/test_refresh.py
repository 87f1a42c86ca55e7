"""Background refresh on a real database: a scrape never waits on SQL.

Results are refreshed ahead of their TTL while the exporter is scraped; a scrape serves the newest
good result of each collector; a failing collector serves its last good result as stale, then
reports failed; nobody scraping means no queries; one collector never runs twice at once; and a
collector whose table is locked ACCESS EXCLUSIVE is left out of the refresh instead of queueing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import pytest
from helpers import Series, exporter_for, parse, refresh_now, samples, serving, target_for, value

from devtools import seed
from devtools.pgcluster import TestDatabase
from devtools.prefect_env import PREFECT_VERSIONS
from exporter.database import APPLICATION_NAME
from exporter.freshness import IDLE_MIN, LOCKED_RETRY, stale_limit
from exporter.registry import Exporter

NEWEST = PREFECT_VERSIONS[-1]
LAST_SUCCESS = "prefect_db_exporter_collector_last_success_timestamp_seconds"

# The value is when the run started (epoch seconds), so a served sample tells which run it came from.
SLOW_COLLECTOR = """\
-- description: Sleeps {seconds}s and returns when it started.
-- ttl: {ttl}
-- timeout: 10s
-- metrics:
--   - name: test_slow_started
--     type: gauge
--     help: When the run that produced this sample started.
--     value: v
SELECT extract(epoch FROM now())::float8 AS v FROM pg_sleep({seconds});
"""

# Fails (division by zero) while the test's switch table says so.
SWITCHED_COLLECTOR = """\
-- description: Answers 1 while test_switch.ok is 1, fails while it is 0.
-- ttl: 1s
-- timeout: 2s
-- metrics:
--   - name: test_switched_value
--     type: gauge
--     help: 1 while the switch is on.
--     value: v
SELECT 1 / ok AS v FROM test_switch;
"""


def collector_success(series: Series, name: str) -> float | None:
    return value(series, "prefect_db_exporter_collector_success", collector=name)


async def get(http: object, base: str) -> Series:
    async with http.get(f"{base}/metrics") as response:  # type: ignore[attr-defined]
        assert response.status == 200
        return parse(await response.text())


async def running_slow(admin: asyncpg.Connection, dbname: str) -> list[asyncpg.Record]:
    """Return the exporter's sessions running the slow collector now (pid and statement start)."""
    rows: list[asyncpg.Record] = await admin.fetch(
        """
        SELECT pid, query_start FROM pg_stat_activity
        WHERE application_name = $1 AND datname = $2 AND state = 'active' AND query LIKE '%pg_sleep(%'
        """,
        APPLICATION_NAME,
        dbname,
    )
    return rows


def slow_exporter(db: TestDatabase, directory: Path, seconds: float, ttl: str, **options: object) -> Exporter:
    directory.mkdir(exist_ok=True)
    (directory / "slow.sql").write_text(SLOW_COLLECTOR.format(seconds=seconds, ttl=ttl))
    return exporter_for(
        target_for(db), extra_dir=directory, include=frozenset({"slow", "connections"}), **options
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_a_scrape_during_a_slow_refresh_answers_with_the_previous_result(
    prefect_db: TestDatabase, tmp_path: Path
) -> None:
    exporter = slow_exporter(prefect_db, tmp_path / "extra", seconds=3, ttl="1s")
    admin = await asyncpg.connect(prefect_db.admin_dsn)
    try:
        async with serving(exporter) as (http, base):
            first = await get(http, base)  # cold: waits for the first results
            assert collector_success(first, "slow") == 1.0
            served_before = value(first, "test_slow_started")
            assert served_before is not None
            # The refresher runs the slow collector again on its own; catch it in the middle of a run.
            for _ in range(100):
                running = await running_slow(admin, prefect_db.name)
                if running:
                    break
                await asyncio.sleep(0.05)
            assert running, "the refresher never ran the slow collector again"
            during = await get(http, base)
            still = await running_slow(admin, prefect_db.name)
    finally:
        await admin.close()
    # The scrape answered while the very same statement was still sleeping: it did not wait for it.
    assert {(r["pid"], r["query_start"]) for r in running} & {(r["pid"], r["query_start"]) for r in still}
    assert collector_success(during, "slow") == 1.0
    started_running = running[0]["query_start"].timestamp()
    served = value(during, "test_slow_started")
    assert served is not None and served < started_running  # the previous run's sample
    assert value(during, LAST_SUCCESS, collector="slow") is not None
    assert value(during, "prefect_db_up") == 1.0


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_the_first_scrape_answers_within_its_timeout_with_what_is_ready(
    prefect_db: TestDatabase, tmp_path: Path
) -> None:
    exporter = slow_exporter(prefect_db, tmp_path / "extra", seconds=6, ttl="60s", scrape_timeout=2.0)
    admin = await asyncpg.connect(prefect_db.admin_dsn)
    try:
        async with serving(exporter) as (http, base):
            first = await get(http, base)
            still = await running_slow(admin, prefect_db.name)
    finally:
        await admin.close()
    assert still, "the slow collector finished before the first scrape answered"
    assert value(first, "prefect_db_up") == 1.0
    assert collector_success(first, "connections") == 1.0
    assert samples(first, "prefect_db_connections")
    assert collector_success(first, "slow") == 0.0  # not run yet: reported, its series absent
    assert value(first, "test_slow_started") is None


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_a_failing_collector_serves_its_last_good_result_stale_then_reports_failed(
    prefect_db: TestDatabase, tmp_path: Path
) -> None:
    admin = await asyncpg.connect(prefect_db.admin_dsn)
    await admin.execute(
        "CREATE TABLE test_switch (ok int); INSERT INTO test_switch VALUES (1);"
        " GRANT SELECT ON test_switch TO prefect_exporter"
    )
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "switched.sql").write_text(SWITCHED_COLLECTOR)
    exporter = exporter_for(target_for(prefect_db), extra_dir=extra, include=frozenset({"switched"}))
    try:
        async with serving(exporter) as (http, base):
            good = await get(http, base)
            assert collector_success(good, "switched") == 1.0
            taken = value(good, LAST_SUCCESS, collector="switched")
            assert taken is not None
            await admin.execute("UPDATE test_switch SET ok = 0")
            switched_at = time.monotonic()
            while True:  # the collector's next run (TTL 1 s) sees the switch off
                await refresh_now(exporter)
                stale = await get(http, base)
                if collector_success(stale, "switched") == 0.0:
                    break
                assert time.monotonic() - switched_at < 15, "the collector never ran again"
                await asyncio.sleep(0.25)
            failing_at = time.monotonic()
            taken = value(stale, LAST_SUCCESS, collector="switched")
            # Scraped all along (the refresher keeps running), until past the bound.
            bound = stale_limit(exporter.catalog.get("switched").ttl)
            while time.monotonic() - failing_at < bound + 3:
                latest = await get(http, base)
                await asyncio.sleep(2.0)
            failed = await get(http, base)
            status = exporter.status().targets[0].collector("switched")
    finally:
        await admin.close()
    assert collector_success(stale, "switched") == 0.0  # the latest run failed ...
    assert value(stale, "test_switched_value") == 1.0  # ... and the last good result is still served
    assert value(latest, LAST_SUCCESS, collector="switched") == taken  # no newer good result since
    errors = value(failed, "prefect_db_exporter_queries_total", collector="switched", status="error")
    assert errors is not None and errors >= 3  # retried all along
    assert collector_success(failed, "switched") == 0.0
    assert value(failed, "test_switched_value") is None  # past the bound: no longer served
    assert value(failed, LAST_SUCCESS, collector="switched") == taken
    assert status is not None and status.state.value == "failed", status


async def queries_run(exporter: Exporter) -> int:
    return sum(exporter.status().targets[0].queries_total.values())


async def exporter_statements(admin: asyncpg.Connection) -> int:
    """Return how many statements the exporter role ran on this database (pg_stat_statements)."""
    calls = await admin.fetchval(
        """
        SELECT coalesce(sum(calls), 0) FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND userid = 'prefect_exporter'::regrole
        """
    )
    return int(calls)


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_nobody_scraping_means_no_queries_and_the_next_scrape_resumes(prefect_db: TestDatabase) -> None:
    admin = await asyncpg.connect(prefect_db.admin_dsn)
    await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    # No sampler: it queries once a second whoever scrapes, and is not what is measured here.
    exporter = exporter_for(target_for(prefect_db), ttl=1.0, sampler=False)
    try:
        async with serving(exporter) as (http, base):
            for _ in range(5):
                await asyncio.sleep(1.0)
                await get(http, base)
            last_scrape = time.monotonic()
            refresher = exporter.targets["test"].refresher
            while not refresher.paused:
                assert time.monotonic() - last_scrape < IDLE_MIN + 20, "refreshing never paused"
                await asyncio.sleep(0.5)
            paused_after = time.monotonic() - last_scrape
            runs_paused, statements_paused = await queries_run(exporter), await exporter_statements(admin)
            await asyncio.sleep(10.0)
            runs_later, statements_later = await queries_run(exporter), await exporter_statements(admin)
            resumed = await get(http, base)  # resumes, waiting (as after start) for fresh results
            await asyncio.sleep(3.0)
            runs_resumed = await queries_run(exporter)
    finally:
        await admin.close()
    assert paused_after >= IDLE_MIN
    assert runs_later == runs_paused
    assert statements_later == statements_paused
    assert not refresher.paused
    assert runs_resumed > runs_later
    assert value(resumed, "prefect_db_exporter_collector_success", collector="connections") == 1.0


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_one_collector_never_runs_twice_at_once(prefect_db: TestDatabase, tmp_path: Path) -> None:
    # TTL 1 s: due again as soon as it ends; scraped four times a second and refreshed explicitly too.
    exporter = slow_exporter(prefect_db, tmp_path / "extra", seconds=1.5, ttl="1s")
    admin = await asyncpg.connect(prefect_db.admin_dsn)
    most = 0
    try:
        async with serving(exporter) as (http, base):
            await get(http, base)
            stop = time.monotonic() + 10.0

            async def scrapes() -> None:
                while time.monotonic() < stop:
                    await get(http, base)
                    await asyncio.sleep(0.25)

            async def refreshes() -> None:
                while time.monotonic() < stop:
                    await refresh_now(exporter)

            load = [asyncio.create_task(scrapes()), asyncio.create_task(refreshes())]
            while time.monotonic() < stop:
                most = max(most, len(await running_slow(admin, prefect_db.name)))
                await asyncio.sleep(0.05)
            await asyncio.gather(*load)
            final = await get(http, base)
            runs = value(final, "prefect_db_exporter_queries_total", collector="slow", status="success")
    finally:
        await admin.close()
    assert most == 1
    assert runs is not None and 4 <= runs <= 10  # about one run per 1.5 s, never overlapping


# --- a held ACCESS EXCLUSIVE lock ------------------------------------------------------------------

LOCKED_TABLES = ("flow_run", "deployment")
LOCK_SECONDS = 25.0


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_collectors_reading_a_locked_table_are_left_out_and_serve_stale_results(
    prefect_db: TestDatabase,
) -> None:
    target = target_for(prefect_db)
    exporter = exporter_for(target)
    # Those due during the lock: a collector with a TTL longer than the lock is not run, so not left out.
    affected = sorted(
        spec.name
        for spec in exporter.catalog.collectors
        if set(spec.requires.tables) & set(LOCKED_TABLES) and spec.ttl < LOCK_SECONDS / 2
    )
    assert affected
    admin = await asyncpg.connect(prefect_db.admin_dsn)
    await seed.seed_trouble(admin)  # runs, deployments and queues, so the stale series are not empty
    locker = await asyncpg.connect(prefect_db.admin_dsn)
    longest_lock_wait = 0.0
    try:
        async with serving(exporter) as (http, base):
            before = await get(http, base)
            assert all(collector_success(before, name) == 1.0 for name in affected)
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute(f"LOCK TABLE {', '.join(LOCKED_TABLES)} IN ACCESS EXCLUSIVE MODE")
            locked_at = time.monotonic()
            under_lock: list[Series] = []
            while time.monotonic() - locked_at < LOCK_SECONDS:
                under_lock.append(await get(http, base))
                waits = await admin.fetch(
                    """
                    SELECT extract(epoch FROM clock_timestamp() - query_start)::float8 AS waited
                    FROM pg_stat_activity
                    WHERE application_name = $1 AND datname = $2 AND wait_event_type = 'Lock'
                    """,
                    APPLICATION_NAME,
                    prefect_db.name,
                )
                longest_lock_wait = max([longest_lock_wait, *(r["waited"] for r in waits)])
                await asyncio.sleep(0.5)
            await transaction.rollback()
            released_at = time.monotonic()
            after = await get(http, base)
            while not all(collector_success(after, name) == 1.0 for name in affected):
                assert time.monotonic() - released_at < LOCKED_RETRY + 15, after
                await asyncio.sleep(0.5)
                after = await get(http, base)
    finally:
        await locker.close()
        await admin.close()

    last = under_lock[-1]
    for name in affected:
        locked = value(last, "prefect_db_exporter_queries_total", collector=name, status="locked")
        # Noticed before running, and tried again soon (every few seconds, not once per TTL).
        assert locked is not None and locked >= 3, (name, locked)
        assert collector_success(last, name) == 0.0, name
        # Its last good result is served meanwhile, from before the lock.
        assert value(last, LAST_SUCCESS, collector=name) == value(before, LAST_SUCCESS, collector=name), name
    for metric in ("prefect_db_deployments", "prefect_db_flow_runs"):
        served = {k: v for k, v in last.items() if k[0] == metric}
        assert served and served == {k: v for k, v in before.items() if k[0] == metric}, metric
    # The collectors that read no locked table went on as usual, and show the lock.
    assert collector_success(last, "locks") == 1.0
    granted = value(last, "prefect_db_locks", mode="AccessExclusiveLock", granted="true", relation="flow_run")
    assert granted is not None and granted >= 1
    # No backend of the exporter waited on a lock for longer than lock_timeout (plus sampling slack).
    assert longest_lock_wait <= target.lock_timeout + 0.5, longest_lock_wait
