"""Load: 50 concurrent HTTP scrapers for 60 s against one exporter (real aiohttp server, real database).

The database must see at most one run of each collector per refresh period (its TTL, less the little
that the background refresh starts ahead of it) whatever the number of scrapers; the
scrape latency and the process's resident memory are measured and printed (``pytest -s``) for
docs/reliability.md. Nothing here asserts on speed: only on counts and on memory growth.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from helpers import exporter_for, parse, serving, target_for

from devtools import seed
from devtools.pgcluster import TestDatabase
from devtools.prefect_env import PREFECT_VERSIONS
from exporter.freshness import next_run

SCRAPERS = 50
DURATION = 60.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MAX_RSS_GROWTH = 10 * 1024 * 1024


def rss_bytes() -> int:
    """Return this process's resident set size, from /proc/self/statm."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE_SIZE


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


async def statement_calls(admin: asyncpg.Connection, sql: str, role: str) -> int:
    """Return how many times ``role`` ran ``sql`` here, by pg_stat_statements (queryid from EXPLAIN)."""
    plan = await admin.fetchval(f"EXPLAIN (VERBOSE, FORMAT JSON) {sql.rstrip().rstrip(';')}")
    queryid = json.loads(plan)[0]["Query Identifier"]
    calls = await admin.fetchval(
        """
        SELECT coalesce(sum(calls), 0)
        FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND userid = $1::regrole AND queryid = $2
        """,
        role,
        queryid,
    )
    return int(calls)


@pytest.mark.parametrize("prefect_db", [PREFECT_VERSIONS[-1]], indirect=True)
async def test_fifty_scrapers_for_a_minute(prefect_db: TestDatabase) -> None:
    """50 scrapers hammer /metrics for 60 s: one run per collector per refresh period, bounded memory."""
    admin = await asyncpg.connect(prefect_db.admin_dsn)
    try:
        await seed.seed_trouble(admin)
        await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await admin.execute(
            "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
            " WHERE datname = current_database()), 0)"
        )
        exporter = exporter_for(target_for(prefect_db))
        latencies: list[float] = []
        failures: list[str] = []
        memory: list[tuple[float, int]] = []
        started = time.monotonic()
        async with serving(exporter) as (http, base):
            deadline = time.monotonic() + DURATION

            async def scraper() -> None:
                while time.monotonic() < deadline:
                    tick = time.monotonic()
                    try:
                        async with http.get(f"{base}/metrics") as response:
                            await response.read()
                            if response.status != 200:
                                failures.append(f"HTTP {response.status}")
                    except (aiohttp.ClientError, TimeoutError) as error:
                        failures.append(repr(error))
                    latencies.append(time.monotonic() - tick)

            async def watch_memory() -> None:
                while time.monotonic() < deadline:
                    memory.append((time.monotonic() - started, rss_bytes()))
                    await asyncio.sleep(1.0)

            tasks = [asyncio.create_task(scraper()) for _ in range(SCRAPERS)]
            tasks.append(asyncio.create_task(watch_memory()))
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            async with http.get(f"{base}/metrics") as response:
                last = parse(await response.text())
        elapsed = time.monotonic() - started
        calls = {
            spec.name: await statement_calls(admin, spec.sql, "prefect_exporter")
            for spec in exporter.catalog.collectors
            if not spec.incremental  # its cursor setting changes what it reads, not how often
        }
    finally:
        await admin.close()

    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    runs: dict[str, float] = {}
    for (name, labels), count in last.items():
        if name == "prefect_db_exporter_queries_total":
            collector = dict(labels)["collector"]
            runs[collector] = runs.get(collector, 0.0) + count
    # A successful run is followed by the next one no sooner than this (a little ahead of the TTL).
    periods = {spec.name: next_run(spec.ttl, 0.0, "success") for spec in exporter.catalog.collectors}
    bounds = {name: math.floor(elapsed / period) + 1 for name, period in periods.items()}
    half = elapsed / 2
    second_half = [rss for at, rss in memory if at >= half]
    growth = max(second_half) - second_half[0]
    print(
        f"\n[figures] load: scrapers={SCRAPERS} duration_s={elapsed:.0f} scrapes={len(latencies)}"
        f" per_s={len(latencies) / elapsed:.0f} failures={len(failures)}"
        f" p50_ms={statistics.median(latencies) * 1000:.1f} p99_ms={percentile(latencies, 0.99) * 1000:.1f}"
        f" max_ms={max(latencies) * 1000:.1f}"
        f" rss_start_mb={memory[0][1] / 2**20:.1f} rss_mid_mb={second_half[0] / 2**20:.1f}"
        f" rss_end_mb={memory[-1][1] / 2**20:.1f} rss_growth_2nd_half_mb={growth / 2**20:.2f}"
        f"\n[figures] load: collector runs (queries_total / pg_stat_statements calls / bound):"
        + "".join(
            f"\n    {n}: {runs.get(n, 0):.0f} / {calls.get(n, '-')} / {b}" for n, b in sorted(bounds.items())
        ),
        file=sys.stderr,
    )
    assert not failures, failures[:5]
    assert len(latencies) > SCRAPERS
    for name, bound in bounds.items():
        assert 1 <= runs.get(name, 0) <= bound, (name, runs.get(name), bound)
    for name, count in calls.items():
        assert 1 <= count <= bounds[name], (name, count, bounds[name])
        assert count == runs[name], (name, count, runs[name])  # the exporter's count is the database's
    assert growth < MAX_RSS_GROWTH, [(round(at), rss // 2**20) for at, rss in memory]
