"""How long a scrape takes while Prefect's busiest tables are locked: ``python -m bench.lock_scrape``.

A throwaway cluster with the real Prefect schema (Prefect's own migrations) and the demo's trouble
seeded; the exporter (built-in catalog, default settings) is served over HTTP in this process and
scraped twice a second. After a warm-up, a second session holds ``ACCESS EXCLUSIVE`` on ``flow_run``
and ``deployment`` for 25 s while the scrapes go on. Printed: the scrape latencies under the lock
(median, p99, slowest), the collectors left out as ``locked``, the longest lock wait of any exporter
backend (sampled from pg_stat_activity), and the target — slowest scrape under 1 s — met or not met.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from devtools import seed
from devtools.paths import ROLE_SCRIPT
from devtools.pgcluster import PgCluster
from devtools.prefect_env import PREFECT_VERSIONS, ensure_template
from exporter.config import Config, TargetConfig
from exporter.database import APPLICATION_NAME
from exporter.registry import Exporter
from exporter.web import make_app

LOCKED_TABLES = ("flow_run", "deployment")
TARGET_SECONDS = 1.0
PASSWORD = "bench-lock-password"


@dataclass(frozen=True)
class Figures:
    """What one run measured."""

    latencies: list[float]
    locked_runs: dict[str, float]
    longest_lock_wait: float
    lock_timeout: float


def percentile(values: list[float], fraction: float) -> float:
    """Return the nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def locked_runs(text: str) -> dict[str, float]:
    """Return prefect_db_exporter_queries_total{status="locked"} by collector."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "prefect_db_exporter_queries_total" and sample.labels["status"] == "locked":
                found[sample.labels["collector"]] = sample.value
    return found


async def measure(cluster: PgCluster, dbname: str, lock_seconds: float, warmup: float) -> Figures:
    """Scrape twice a second through warm-up and the held lock; return the figures."""
    admin = await asyncpg.connect(cluster.dsn(dbname))
    await seed.seed_trouble(admin)
    locker = await asyncpg.connect(cluster.dsn(dbname))
    dsn = cluster.dsn(dbname, user="prefect_exporter", password=PASSWORD)
    exporter = Exporter.from_config(Config(targets=(TargetConfig(name="bench", dsn=dsn),)))
    lock_timeout = exporter.targets["bench"].settings.target.lock_timeout
    server = TestServer(make_app(exporter), host="127.0.0.1")
    await server.start_server()
    url = str(server.make_url("/metrics"))
    latencies: list[float] = []
    longest_wait = 0.0
    try:
        async with aiohttp.ClientSession() as http:

            async def scrape() -> str:
                started = time.monotonic()
                async with http.get(url) as response:
                    text = await response.text()
                    assert response.status == 200, text
                latencies.append(time.monotonic() - started)
                return text

            stop_at = time.monotonic() + warmup
            while time.monotonic() < stop_at:
                await scrape()
                await asyncio.sleep(0.5)
            latencies.clear()
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute(f"LOCK TABLE {', '.join(LOCKED_TABLES)} IN ACCESS EXCLUSIVE MODE")
            stop_at = time.monotonic() + lock_seconds
            text = ""
            while time.monotonic() < stop_at:
                tick = time.monotonic()
                text = await scrape()
                waited = await admin.fetchval(
                    """
                    SELECT max(extract(epoch FROM clock_timestamp() - query_start))::float8
                    FROM pg_stat_activity
                    WHERE application_name = $1 AND datname = current_database() AND wait_event_type = 'Lock'
                    """,
                    APPLICATION_NAME,
                )
                longest_wait = max(longest_wait, waited or 0.0)
                await asyncio.sleep(max(0.0, 0.5 - (time.monotonic() - tick)))
            await transaction.rollback()
    finally:
        await server.close()
        await locker.close()
        await admin.close()
    return Figures(latencies, locked_runs(text), longest_wait, lock_timeout)


def main() -> None:
    """Build the cluster, measure, print the figures and the verdict, remove the cluster."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock-seconds", type=float, default=25.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--prefect", default=PREFECT_VERSIONS[-1], choices=PREFECT_VERSIONS)
    args = parser.parse_args()
    # The exporter logs each collector it leaves out; the figures below say it once.
    logging.getLogger("exporter").setLevel(logging.ERROR)
    cluster = PgCluster.create(Path(tempfile.mkdtemp(prefix="ppe-bench-lock-")))
    cluster.start()
    try:
        template = ensure_template(cluster, args.prefect)
        dbname = f"lock_{uuid.uuid4().hex[:8]}"
        cluster.create_database(dbname, template=template)
        cluster.psql("", dbname, file=ROLE_SCRIPT, variables={"exporter_password": PASSWORD})
        figures = asyncio.run(measure(cluster, dbname, args.lock_seconds, args.warmup))
    finally:
        cluster.destroy()
    ms = sorted(1000 * t for t in figures.latencies)
    slowest = ms[-1] / 1000
    print(
        f"ACCESS EXCLUSIVE on {', '.join(LOCKED_TABLES)} for {args.lock_seconds:g} s, scraped twice a second"
        f" (Prefect {args.prefect} schema):\n"
        f"  scrapes {len(ms)}, median {statistics.median(ms):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms,"
        f" slowest {ms[-1]:.1f} ms\n"
        f"  collectors left out as locked (runs): {figures.locked_runs}\n"
        f"  longest lock wait of an exporter backend: {figures.longest_lock_wait:.2f} s"
        f" (lock_timeout {figures.lock_timeout:g} s)\n"
        f"  target slowest scrape < {TARGET_SECONDS:g} s: {'met' if slowest < TARGET_SECONDS else 'NOT MET'}"
    )


if __name__ == "__main__":
    main()
