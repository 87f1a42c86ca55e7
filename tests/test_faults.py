"""Faults on the database side: killed backends, a stalled network path, no free connection slot,
an ACCESS EXCLUSIVE lock on Prefect's busiest tables, and SIGTERM of the real command line.

Every test uses a real PostgreSQL; the figures each one measures are printed (run with ``-s``) and
collected in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from helpers import Series, exporter_for, parse, refresh_now, serving, split_password, target_for, value
from tcp_proxy import TcpProxy

from devtools.paths import ROLE_SCRIPT
from devtools.pgcluster import PgCluster, TestDatabase, free_port
from devtools.prefect_env import PREFECT_VERSIONS
from exporter.config import TargetConfig
from exporter.database import APPLICATION_NAME
from exporter.registry import Exporter

REPO_ROOT = Path(__file__).resolve().parents[1]
NEWEST = PREFECT_VERSIONS[-1]
# Collectors that read PostgreSQL's own views only: they must keep working while Prefect's tables are locked.
LOCK_DIAGNOSING = ("connections", "sessions", "locks", "lock_waits", "last_polled_blocking", "database_stats")
LOCKED_TABLES = ("flow_run", "deployment", "events")


def report(name: str, **figures: object) -> None:
    """Print one measured figure line (shown with ``pytest -s``; copied into docs/reliability.md)."""
    shown = " ".join(f"{key}={value}" for key, value in figures.items())
    print(f"\n[figures] {name}: {shown}", file=sys.stderr, flush=True)


def collector_success(series: Series) -> dict[str, float]:
    """Return ``prefect_db_exporter_collector_success`` by collector."""
    return {
        dict(labels)["collector"]: v
        for (name, labels), v in series.items()
        if name == "prefect_db_exporter_collector_success"
    }


def queries_by_status(series: Series) -> dict[tuple[str, str], float]:
    """Return ``prefect_db_exporter_queries_total`` by (collector, status)."""
    found = {}
    for (name, labels), v in series.items():
        if name == "prefect_db_exporter_queries_total":
            found[(dict(labels)["collector"], dict(labels)["status"])] = v
    return found


@dataclass
class Scrape:
    """One HTTP scrape: status, how long it took, and the parsed series."""

    status: int
    elapsed: float
    series: Series = field(default_factory=dict)

    @property
    def up(self) -> float | None:
        """``prefect_db_up`` of the only target."""
        return value(self.series, "prefect_db_up")

    def all_succeeded(self) -> bool:
        """True when the target is up and every enabled collector's latest run succeeded."""
        success = collector_success(self.series)
        return self.up == 1.0 and bool(success) and all(v == 1.0 for v in success.values())


async def timed_scrape(
    http: aiohttp.ClientSession, base: str, limit: float = 30.0, refresh: Exporter | None = None
) -> Scrape:
    """GET /metrics, measuring how long the answer took (the client gives up after ``limit``).

    With ``refresh``, that exporter's expired collectors are run first and awaited (``refresh_now``),
    so that the scrape shows what that refresh found; the time measured is the scrape's alone.
    """
    if refresh is not None:
        await refresh_now(refresh)
    started = time.monotonic()
    async with http.get(f"{base}/metrics", timeout=aiohttp.ClientTimeout(total=limit)) as response:
        text = await response.text()
        elapsed = time.monotonic() - started
        return Scrape(response.status, elapsed, parse(text) if response.status == 200 else {})


async def exporter_sessions(admin: asyncpg.Connection, dbname: str) -> list[asyncpg.Record]:
    """Return the exporter's sessions on ``dbname`` as PostgreSQL sees them."""
    rows: list[asyncpg.Record] = await admin.fetch(
        """
        SELECT pid, state, wait_event_type, query, query_start,
               extract(epoch FROM clock_timestamp() - query_start)::float8 AS running_for
        FROM pg_stat_activity
        WHERE application_name = $1 AND datname = $2
        """,
        APPLICATION_NAME,
        dbname,
    )
    return rows


async def wait_until(check: object, timeout: float, interval: float = 0.2, what: str = "condition") -> float:
    """Await the async ``check()`` until truthy; return the seconds it took; fail after ``timeout``."""
    started = time.monotonic()
    while True:
        if await check():  # type: ignore[operator]
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not met within {timeout}s")
        await asyncio.sleep(interval)


def exporter_with(
    targets: tuple[TargetConfig, ...],
    extra_dir: Path | None = None,
    include: frozenset[str] = frozenset(),
    scrape_timeout: float = 8.0,
) -> Exporter:
    """An Exporter over the built-in catalog plus the collectors in ``extra_dir``."""
    return exporter_for(*targets, extra_dir=extra_dir, include=include, scrape_timeout=scrape_timeout)


SLOW_COLLECTOR = """\
-- description: Sleeps {seconds}s, so that a scrape stays in flight long enough to kill its backend.
-- ttl: 1s
-- timeout: 6s
-- metrics:
--   - name: test_{name}_value
--     type: gauge
--     help: Always 1, after a sleep.
--     value: v
SELECT 1 AS v FROM pg_sleep({seconds});
"""


def write_slow_collectors(directory: Path, names: tuple[str, ...], seconds: float) -> Path:
    """Write collectors that each sleep ``seconds`` into ``directory``."""
    directory.mkdir(exist_ok=True)
    for name in names:
        (directory / f"{name}.sql").write_text(SLOW_COLLECTOR.format(name=name, seconds=seconds))
    return directory


# --- killed backends -------------------------------------------------------------------------------


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_backends_killed_mid_scrape(prefect_db: TestDatabase, tmp_path: Path) -> None:
    """Every exporter backend is killed mid-scrape: the scrape answers and the queries are retried."""
    # Two collectors are running when all backends are terminated: the scrape still answers, the killed
    # queries are retried on fresh connections, and the pool stays within its size.
    extra = write_slow_collectors(tmp_path / "slow", ("slow_a", "slow_b"), 1.5)
    target = target_for(prefect_db)
    exporter = exporter_with((target,), extra)
    admin = await asyncpg.connect(prefect_db.admin_dsn)
    try:
        async with serving(exporter) as (http, base):
            first = await timed_scrape(http, base)
            assert first.all_succeeded(), collector_success(first.series)
            await asyncio.sleep(1.2)  # past the slow collectors' TTL, so the refresh runs them
            in_flight = asyncio.create_task(timed_scrape(http, base, refresh=exporter))
            try:

                async def both_sleeping() -> bool:
                    rows = await exporter_sessions(admin, prefect_db.name)
                    return sum(1 for r in rows if r["state"] == "active" and "pg_sleep" in r["query"]) == 2

                await wait_until(both_sleeping, 10.0, 0.05, "two slow collectors running")
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = $1 AND datname = $2",
                    APPLICATION_NAME,
                    prefect_db.name,
                )
                during = await in_flight
            finally:
                if not in_flight.done():
                    in_flight.cancel()
                await asyncio.gather(in_flight, return_exceptions=True)
            assert during.status == 200
            scrapes = [during]
            while not scrapes[-1].all_succeeded() and len(scrapes) < 20:
                await asyncio.sleep(0.5)
                scrapes.append(await timed_scrape(http, base))
            sessions = await exporter_sessions(admin, prefect_db.name)
    finally:
        await admin.close()
    report(
        "backends killed mid-scrape",
        killed=killed,
        scrape_during_kill_s=f"{during.elapsed:.2f}",
        up_during=during.up,
        scrapes_to_recover=len(scrapes) - 1,
        sessions_after=len(sessions),
    )
    assert killed >= 2  # both pool connections (and the sampler's)
    assert scrapes[-1].all_succeeded(), collector_success(scrapes[-1].series)
    assert len(sessions) <= target.pool_size + 1
    statuses = queries_by_status(scrapes[-1].series)
    # The database never went down: a killed query is retried once on a fresh connection.
    assert not [key for key in statuses if key[1] == "connection"], statuses
    assert during.up == 1.0


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_one_dead_backend_costs_only_its_own_query(prefect_db: TestDatabase, tmp_path: Path) -> None:
    """Killing one collector's backends (twice) must not fail a sibling on a healthy connection."""
    # Only slow_a's backends are killed (its pooled one, then the one it retries on), as a DBA's
    # pg_terminate_backend or a pooler's timeout would: slow_b must still succeed and the target stay up.
    extra = tmp_path / "slow"
    write_slow_collectors(extra, ("slow_a",), 2.0)
    write_slow_collectors(extra, ("slow_b",), 2.5)  # a different sleep, to tell the two apart
    target = target_for(prefect_db)
    exporter = exporter_with((target,), extra)
    admin = await asyncpg.connect(prefect_db.admin_dsn)

    async def slow_pids(seconds: str) -> list[int]:
        rows = await exporter_sessions(admin, prefect_db.name)
        return [r["pid"] for r in rows if r["state"] == "active" and f"pg_sleep({seconds})" in r["query"]]

    try:
        async with serving(exporter) as (http, base):
            first = await timed_scrape(http, base)
            assert first.all_succeeded(), {k: v for k, v in collector_success(first.series).items() if v != 1}
            await asyncio.sleep(1.2)  # past the slow collectors' TTL, so the refresh runs them
            in_flight = asyncio.create_task(timed_scrape(http, base, refresh=exporter))
            try:
                found: list[int] = []

                async def running(seconds: str, not_pid: int = 0) -> bool:
                    found[:] = [pid for pid in await slow_pids(seconds) if pid != not_pid]
                    return bool(found) and bool(await slow_pids("2.5" if seconds == "2.0" else "2.0"))

                await wait_until(lambda: running("2.0"), 10.0, 0.05, "both slow collectors running")
                pid_a = found[0]
                await admin.fetchval("SELECT pg_terminate_backend($1)", pid_a)
                await wait_until(lambda: running("2.0", pid_a), 5.0, 0.05, "slow_a retrying on a new backend")
                await admin.fetchval("SELECT pg_terminate_backend($1)", found[0])
                during = await in_flight
            finally:
                if not in_flight.done():
                    in_flight.cancel()
                await asyncio.gather(in_flight, return_exceptions=True)
            await asyncio.sleep(1.2)
            next_scrape = await timed_scrape(http, base)
    finally:
        await admin.close()
    statuses = queries_by_status(during.series)
    report(
        "one backend killed twice",
        up_during=during.up,
        slow_a=collector_success(during.series).get("slow_a"),
        slow_b=collector_success(during.series).get("slow_b"),
        statuses={k: v for k, v in statuses.items() if k[0].startswith("slow")},
        up_next=next_scrape.up,
    )
    assert during.status == 200
    # slow_b's own connection was never killed: it must not pay for slow_a's.
    assert collector_success(during.series).get("slow_b") == 1.0, statuses
    assert statuses.get(("slow_b", "connection"), 0) == 0, statuses
    # The database answered all along: no connect back-off, the next scrape is up.
    assert next_scrape.up == 1.0, next_scrape.series


# --- stalled network path ----------------------------------------------------------------------------


def via_proxy(target: TargetConfig, port: int) -> TargetConfig:
    """Return ``target`` with its DSN pointing at 127.0.0.1:``port``."""
    parts = urlsplit(target.dsn)
    userinfo = parts.netloc.rpartition("@")[0]
    return replace(target, dsn=urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}")))


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_stalled_network_path(prefect_db: TestDatabase, caplog: pytest.LogCaptureFixture) -> None:
    """The path to the database stops forwarding bytes: scrapes still answer in time, then recover."""
    # No RST, no FIN: every scrape answers within the scrape timeout, the target is reported down or its
    # collectors failed, nothing piles up on the server, and everything recovers when the path resumes.
    scrape_timeout = 4.0
    real_port = urlsplit(prefect_db.admin_dsn).port
    assert real_port is not None
    admin = await asyncpg.connect(prefect_db.admin_dsn)
    async with TcpProxy("127.0.0.1", real_port) as proxy:
        target = via_proxy(target_for(prefect_db, connect_timeout=2.0), proxy.port)
        exporter = exporter_for(target, scrape_timeout=scrape_timeout)
        try:
            async with serving(exporter) as (http, base):
                first = await timed_scrape(http, base)
                assert first.all_succeeded(), collector_success(first.series)
                proxy.pause()
                attempts_before = proxy.connections_total
                stalled_at = time.monotonic()
                stalled: list[Scrape] = []
                server_side: list[int] = []
                while time.monotonic() - stalled_at < 60:
                    scrape = await timed_scrape(http, base, limit=scrape_timeout + 10)
                    stalled.append(scrape)
                    server_side.append(len(await exporter_sessions(admin, prefect_db.name)))
                    success = collector_success(scrape.series)
                    if scrape.up == 0.0 or (success and all(v == 0.0 for v in success.values())):
                        break
                    await asyncio.sleep(0.5)
                detected_after = time.monotonic() - stalled_at
                # A few more scrapes while stalled: still bounded, still answering.
                for _ in range(3):
                    stalled.append(await timed_scrape(http, base, limit=scrape_timeout + 10))
                    server_side.append(len(await exporter_sessions(admin, prefect_db.name)))
                stall_seconds = time.monotonic() - stalled_at
                sampler = exporter.status(target.name).targets[0].sampler
                assert sampler is not None
                sampler_errors, sampler_error = sampler.errors, sampler.last_error
                attempts = proxy.connections_total - attempts_before
                proxy.resume()
                resumed_at = time.monotonic()
                recovered: list[Scrape] = []
                while time.monotonic() - resumed_at < 90:
                    recovered.append(await timed_scrape(http, base, limit=scrape_timeout + 10))
                    if recovered[-1].all_succeeded():
                        break
                    await asyncio.sleep(0.5)
                recovery = time.monotonic() - resumed_at

                async def settled() -> bool:
                    return len(await exporter_sessions(admin, prefect_db.name)) <= target.pool_size + 1

                await wait_until(settled, 30.0, what="exporter sessions back within pool_size + 1")
        finally:
            await admin.close()
    slowest = max(s.elapsed for s in stalled)
    report(
        "stalled network path",
        scrape_timeout_s=scrape_timeout,
        slowest_stalled_scrape_s=f"{slowest:.2f}",
        median_stalled_scrape_s=f"{statistics.median(s.elapsed for s in stalled):.2f}",
        reported_after_s=f"{detected_after:.1f}",
        connect_attempts_during_stall=attempts,
        stall_s=f"{stall_seconds:.0f}",
        max_server_sessions=max(server_side),
        recovery_s=f"{recovery:.1f}",
        scrapes_to_recover=len(recovered),
    )
    assert all(s.status == 200 for s in stalled + recovered)
    # Answered within the scrape timeout (plus rendering and a loaded machine's scheduling).
    assert slowest < scrape_timeout + 2.0, [round(s.elapsed, 2) for s in stalled]
    final = stalled[-1]
    success = collector_success(final.series)
    assert final.up == 0.0 or all(v == 0.0 for v in success.values()), (final.up, success)
    assert max(server_side) <= target.pool_size + 1
    assert recovered[-1].all_succeeded(), collector_success(recovered[-1].series)
    assert not proxy.errors
    # The sampler noticed too, and says why (shown on / and in its log line).
    assert sampler_errors >= 1
    assert sampler_error, f"the sampler's last error is empty: {sampler_error!r}"
    sampler_logs = [r for r in caplog.records if r.getMessage() == "sampler failed"]
    assert sampler_logs
    empty = [r for r in sampler_logs if not str(r.fields["error"])]  # type: ignore[attr-defined]
    assert not empty, f"{len(empty)} of {len(sampler_logs)} 'sampler failed' log lines have error=\"\""


# --- max_connections exhausted ----------------------------------------------------------------------


@pytest.fixture
def small_cluster(exporter_password: str) -> Iterator[PgCluster]:
    """A cluster of this test's own with max_connections=10 (7 slots for non-superusers)."""
    pg = PgCluster.create(Path(tempfile.mkdtemp(prefix="ppe-small-")), settings={"max_connections": "10"})
    pg.start()
    try:
        pg.create_database("prefect")
        pg.psql("", "prefect", file=ROLE_SCRIPT, variables={"exporter_password": exporter_password})
        yield pg
    finally:
        pg.destroy()


async def test_max_connections_exhausted(small_cluster: PgCluster, exporter_password: str) -> None:
    """Every non-superuser slot is taken: up 0 with the reason, no crash, reconnects when slots free up."""
    db = TestDatabase(
        name="prefect",
        prefect_version=None,
        admin_dsn=small_cluster.dsn("prefect"),
        exporter_dsn=small_cluster.dsn("prefect", user="prefect_exporter", password=exporter_password),
    )
    fillers: list[asyncpg.Connection] = []
    admin = await asyncpg.connect(db.admin_dsn)  # superusers keep their reserved slots
    try:
        refused = ""
        while len(fillers) < 50:
            try:
                fillers.append(await asyncpg.connect(db.exporter_dsn))
            except asyncpg.TooManyConnectionsError as error:
                refused = str(error)
                break
        assert 0 < len(fillers) < 50 and refused
        target = target_for(db, connect_timeout=2.0)
        exporter = exporter_for(target, scrape_timeout=4.0)
        async with serving(exporter) as (http, base):
            full = []
            for _ in range(5):
                full.append(await timed_scrape(http, base))
                await asyncio.sleep(0.5)
            async with http.get(f"{base}/readyz") as response:
                ready_status, ready_text = response.status, await response.text()
            async with http.get(f"{base}/") as response:
                assert response.status == 200
            held = len(await exporter_sessions(admin, db.name))
            for conn in fillers:
                await conn.close()
            fillers.clear()
            freed_at = time.monotonic()
            recovered: list[Scrape] = []
            while time.monotonic() - freed_at < 90:
                recovered.append(await timed_scrape(http, base))
                if recovered[-1].all_succeeded():
                    break
                await asyncio.sleep(0.5)
            recovery = time.monotonic() - freed_at
            sessions = len(await exporter_sessions(admin, db.name))
    finally:
        for conn in fillers:
            await conn.close()
        await admin.close()
    report(
        "max_connections exhausted",
        slots_filled=len(fillers) or "all",
        slowest_scrape_while_full_s=f"{max(s.elapsed for s in full):.2f}",
        recovery_s=f"{recovery:.1f}",
        scrapes_to_recover=len(recovered),
        sessions_after=sessions,
    )
    assert all(s.status == 200 and s.up == 0.0 for s in full)
    assert held == 0
    assert ready_status == 503
    assert "remaining connection slots" in ready_text or "too many clients" in ready_text, ready_text
    assert recovered[-1].all_succeeded(), collector_success(recovered[-1].series)
    assert sessions <= target.pool_size + 1


# --- ACCESS EXCLUSIVE lock on Prefect's tables --------------------------------------------------------


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_access_exclusive_lock_for_a_minute(prefect_db: TestDatabase) -> None:
    """ACCESS EXCLUSIVE on flow_run, deployment and events for 60 s, scraped every second."""
    # The exporter never queues behind the lock, never holds more than pool_size + 1 connections, leaves
    # the collectors reading a locked table out (status locked) or reports their lock timeouts, and
    # recovers after release.
    lock_seconds = 60.0
    target = target_for(prefect_db)
    exporter = exporter_for(target)
    affected = {
        spec.name for spec in exporter.catalog.collectors if set(spec.requires.tables) & set(LOCKED_TABLES)
    }
    ttl = max(exporter.catalog.get(name).ttl for name in affected)
    admin = await asyncpg.connect(prefect_db.admin_dsn)
    watcher = await asyncpg.connect(prefect_db.admin_dsn)
    locker = await asyncpg.connect(prefect_db.admin_dsn)
    samples: list[list[asyncpg.Record]] = []
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            samples.append(await exporter_sessions(watcher, prefect_db.name))
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass

    try:
        async with serving(exporter) as (http, base):
            first = await timed_scrape(http, base)
            assert first.all_succeeded(), collector_success(first.series)
            before = queries_by_status(first.series)
            watching = asyncio.create_task(watch())
            try:
                transaction = locker.transaction()
                await transaction.start()
                await locker.execute(f"LOCK TABLE {', '.join(LOCKED_TABLES)} IN ACCESS EXCLUSIVE MODE")
                locked_at = time.monotonic()
                under_lock: list[Scrape] = []
                while time.monotonic() - locked_at < lock_seconds:
                    tick = time.monotonic()
                    under_lock.append(await timed_scrape(http, base))
                    await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
                await transaction.rollback()
                released_at = time.monotonic()
                after: list[Scrape] = []
                while time.monotonic() - released_at < ttl + 45:
                    tick = time.monotonic()
                    after.append(await timed_scrape(http, base))
                    if after[-1].all_succeeded():
                        break
                    await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
                recovery = time.monotonic() - released_at
            finally:
                stop.set()
                await asyncio.gather(watching, return_exceptions=True)
    finally:
        await locker.close()
        await watcher.close()
        await admin.close()

    most_sessions = max(len(sample) for sample in samples)
    # A statement (pid, query_start) seen waiting on a lock in two samples one second apart has waited
    # longer than its lock_timeout (0.5 s).
    long_waits = []
    longest_wait = 0.0
    previous: set[tuple[int, object]] = set()
    for sample in samples:
        waiting = {(r["pid"], r["query_start"]) for r in sample if r["wait_event_type"] == "Lock"}
        for r in sample:
            if r["wait_event_type"] == "Lock":
                longest_wait = max(longest_wait, r["running_for"] or 0.0)
        long_waits += sorted(waiting & previous, key=str)
        previous = waiting
    last = under_lock[-1]
    success = collector_success(last.series)
    during = queries_by_status(last.series)
    # Left out because the lock was seen before they ran (locked), or waited out lock_timeout.
    lock_timeouts = {
        name: sum(during.get((name, s), 0) - before.get((name, s), 0) for s in ("locked", "lock_timeout"))
        for name in sorted(affected)
    }
    failed_somewhere = sorted(
        {n for s in under_lock for n, v in collector_success(s.series).items() if not v}
    )
    latencies = sorted(s.elapsed for s in under_lock)
    # Collectors that read none of the locked tables: they should not fail at all.
    bystanders = {
        key: count - before.get(key, 0)
        for key, count in queries_by_status(after[-1].series).items()
        if key[0] not in affected and key[1] != "success" and count > before.get(key, 0)
    }
    report(
        "ACCESS EXCLUSIVE lock 60 s",
        scrapes=len(under_lock),
        max_exporter_sessions=most_sessions,
        pool_size=target.pool_size,
        waits_over_2_samples=len(long_waits),
        longest_wait_seen_s=f"{longest_wait:.2f}",
        scrape_p50_s=f"{statistics.median(latencies):.3f}",
        scrape_max_s=f"{latencies[-1]:.3f}",
        lock_timeouts=sum(lock_timeouts.values()),
        failed_collectors=",".join(failed_somewhere),
        bystander_failures=bystanders,
        recovery_s=f"{recovery:.1f}",
        scrapes_to_recover=len(after),
    )
    assert all(s.status == 200 for s in under_lock + after)
    assert most_sessions <= target.pool_size + 1, samples
    assert not long_waits, long_waits
    assert last.up == 1.0
    for name in affected:
        assert success.get(name) == 0.0, (name, success)
        assert lock_timeouts[name] > 0, (name, lock_timeouts)
        assert during.get((name, "success"), 0) == before.get((name, "success"), 0), name
    for name in LOCK_DIAGNOSING:
        assert success.get(name) == 1.0, (name, success)
    granted = value(
        last.series, "prefect_db_locks", mode="AccessExclusiveLock", granted="true", relation="flow_run"
    )
    assert granted is not None and granted >= 1
    assert after[-1].all_succeeded(), collector_success(after[-1].series)
    assert not bystanders, bystanders
    # Failed results are kept for their collector's TTL, so recovery takes at most about one TTL.
    assert recovery <= ttl + 10


QUICK_COLLECTOR = """\
-- description: Answers at once; kept for 5 s.
-- ttl: 5s
-- timeout: 2s
-- metrics:
--   - name: test_quick_value
--     type: gauge
--     help: Always 1.
--     value: v
SELECT 1 AS v;
"""


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_a_result_fresh_when_the_refresh_starts_is_not_dropped(
    prefect_db: TestDatabase, tmp_path: Path
) -> None:
    """A result fresh when a slow refresh starts must not be dropped when its TTL runs out during it."""
    # A slow refresh (collectors waiting on locks take seconds) must keep the series of a collector that was
    # fresh when the refresh began, and so was not re-run.
    extra = write_slow_collectors(tmp_path / "extra", ("slow",), 3.0)  # ttl 1s
    (extra / "quick.sql").write_text(QUICK_COLLECTOR)  # ttl 5s
    exporter = exporter_with((target_for(prefect_db),), extra, include=frozenset({"slow", "quick"}))
    async with serving(exporter) as (http, base):
        first = await timed_scrape(http, base)  # quick done at t0, slow at t0 + 3
        assert first.all_succeeded(), collector_success(first.series)
        await asyncio.sleep(1.5)
        # t0 + 4.5: quick (age 4.5 < 5) is fresh and not re-run; slow is re-run and takes 3 s.
        second = await timed_scrape(http, base)
    report(
        "result expiring during a slow refresh",
        scrape_s=f"{second.elapsed:.2f}",
        quick_success=collector_success(second.series).get("quick"),
        quick_value=value(second.series, "test_quick_value"),
    )
    assert second.status == 200
    assert collector_success(second.series).get("quick") == 1.0, collector_success(second.series)
    assert value(second.series, "test_quick_value") == 1.0


# --- SIGTERM of the real command line ---------------------------------------------------------------


@asynccontextmanager
async def running_cli(
    args: list[str], env: dict[str, str], log_path: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run ``python -m exporter ARGS`` with stderr in ``log_path``; kill it if the test did not stop it."""
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "exporter", *args,
            cwd=REPO_ROOT, env=env, stdout=log, stderr=log, stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def wait_healthy(base: str, process: asyncio.subprocess.Process, ssl: object = None) -> None:
    """Poll /healthz until the CLI answers (fail early if it exits)."""
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert process.returncode is None, "the exporter exited during start-up"
            try:
                async with http.get(f"{base}/healthz", ssl=ssl) as response:  # type: ignore[arg-type]
                    if response.status in (200, 401):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the exporter did not start listening within 30 s")


def cli_env(password: str | None) -> dict[str, str]:
    """The environment for the CLI: no PG* variables of ours, the password in PGPASSWORD."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if password is not None:
        env["PGPASSWORD"] = password
    return env


async def count_sessions(dsn: str, dbname: str) -> int:
    """Return how many exporter sessions ``dbname`` has now."""
    admin = await asyncpg.connect(dsn)
    try:
        return len(await exporter_sessions(admin, dbname))
    finally:
        await admin.close()


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_sigterm_exits_0_and_closes_its_sessions(prefect_db: TestDatabase, tmp_path: Path) -> None:
    """SIGTERM after a scrape: exit code 0 within 10 s, and no session left on the database."""
    dsn, password = split_password(prefect_db.exporter_dsn)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "exporter.log"
    async with running_cli(
        ["--dsn", dsn, "--listen", f"127.0.0.1:{port}"], cli_env(password), log_path
    ) as proc:
        await wait_healthy(base, proc)
        async with aiohttp.ClientSession() as http:
            scrape = await timed_scrape(http, base)
        assert scrape.all_succeeded(), collector_success(scrape.series)
        assert await count_sessions(prefect_db.admin_dsn, prefect_db.name) >= 1
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10.0)
        took = time.monotonic() - signalled

    async def gone() -> bool:
        return await count_sessions(prefect_db.admin_dsn, prefect_db.name) == 0

    closed_after = await wait_until(gone, 10.0, what="the exporter's sessions gone")
    log = log_path.read_text()
    report("SIGTERM", exit_code=code, exit_s=f"{took:.2f}", sessions_gone_after_s=f"{closed_after:.2f}")
    assert code == 0, log
    assert "Traceback" not in log, log
    assert "shutting down" in log


@pytest.mark.parametrize("prefect_db", [NEWEST], indirect=True)
async def test_sigterm_while_the_database_path_is_stalled(prefect_db: TestDatabase, tmp_path: Path) -> None:
    """SIGTERM while a scrape waits on a stalled network path: the CLI still exits 0 within 10 s."""
    dsn, password = split_password(prefect_db.exporter_dsn)
    real_port = urlsplit(dsn).port
    assert real_port is not None
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "exporter.log"
    async with TcpProxy("127.0.0.1", real_port) as proxy:
        parts = urlsplit(dsn)
        proxied = urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{real_port}", f":{proxy.port}")))
        args = ["--dsn", proxied, "--listen", f"127.0.0.1:{port}"]
        async with running_cli(args, cli_env(password), log_path) as proc:
            await wait_healthy(base, proc)
            async with aiohttp.ClientSession() as http:
                assert (await timed_scrape(http, base)).up == 1.0
                proxy.pause()
                await asyncio.sleep(16)  # past every collector's TTL: the next scrape must go to the database
                pending = asyncio.create_task(timed_scrape(http, base))
                await asyncio.sleep(1.0)
                signalled = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                try:
                    code = await asyncio.wait_for(proc.wait(), 10.0)
                finally:
                    await asyncio.gather(pending, return_exceptions=True)
                took = time.monotonic() - signalled
    log = log_path.read_text()
    report("SIGTERM while stalled", exit_code=code, exit_s=f"{took:.2f}")
    assert code == 0, log
    assert "Traceback" not in log, log
