"""``make demo``: the exporter on a throwaway PostgreSQL with the real Prefect schema and seeded trouble."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import sys
import tempfile
from pathlib import Path

import asyncpg
from aiohttp import ClientSession, web
from prometheus_client.parser import text_string_to_metric_families

from devtools.paths import ROLE_SCRIPT
from devtools.pgcluster import PgCluster
from devtools.prefect_env import ensure_prefect, migrate
from devtools.seed import seed_trouble
from exporter.config import Config, TargetConfig
from exporter.logs import setup_logging
from exporter.registry import Exporter
from exporter.web import make_app

PASSWORD_ENV = "PREFECT_DB_EXPORTER_DEMO_PASSWORD"
DEMO_VERSION = "3.9.1"

# What the demo prints after its first scrape: (metric, what it means).
HIGHLIGHTS = (
    ("prefect_db_up", "database reachable"),
    ("prefect_db_pending_runs_stale", "PENDING runs older than 10 minutes"),
    ("prefect_db_late_runs", "late runs"),
    ("prefect_db_running_runs_heartbeat_stale", "RUNNING runs whose heartbeats stopped"),
    ("prefect_db_work_queue_last_polled_age_seconds", "oldest work-queue poll, seconds ago (max)"),
    ("prefect_db_workers", "workers ONLINE"),
    ("prefect_db_concurrency_limit_active_slots", "concurrency slots in use"),
)


def progress(message: str) -> None:
    """Print one progress line for a slow step."""
    print(f"[demo] {message}", file=sys.stderr, flush=True)


def prepare_database(cluster: PgCluster, version: str, password: str) -> None:
    """Create the ``prefect`` database with Prefect's own migrations, the exporter role and trouble."""
    ensure_prefect(version)
    cluster.create_database("prefect")
    progress(f"creating the Prefect {version} schema with Prefect's own migrations")
    migrate(version, cluster.dsn("prefect"))
    cluster.psql("", "prefect", file=ROLE_SCRIPT, variables={"exporter_password": password})

    async def seed() -> None:
        conn = await asyncpg.connect(cluster.dsn("prefect"))
        try:
            await seed_trouble(conn)
        finally:
            await conn.close()

    progress("seeding trouble: stale PENDING runs, late runs, silent heartbeats, dead workers")
    asyncio.run(seed())


def summarize(text: str) -> list[str]:
    """Return the highlight lines for one exposition."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "prefect_db_workers" and sample.labels.get("status") != "ONLINE":
                continue
            if sample.name == "prefect_db_work_queue_last_polled_age_seconds":
                totals[sample.name] = max(totals.get(sample.name, 0.0), sample.value)
            else:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return [f"  {name} = {totals.get(name, float('nan')):g}   ({meaning})" for name, meaning in HIGHLIGHTS]


async def serve(exporter: Exporter, once: bool) -> int:
    """Serve the exporter, print where to look and a few values; wait for Ctrl-C unless ``once``."""
    runner = web.AppRunner(make_app(exporter), access_log=None, handle_signals=False)
    await runner.setup()
    config = exporter.config
    await web.TCPSite(runner, config.listen_host, config.listen_port).start()
    base = f"http://{config.listen_host}:{config.listen_port}"
    try:
        async with ClientSession() as http, http.get(f"{base}/metrics") as response:
            text = await response.text()
        print(f"\nprefect-db-exporter demo is serving {base}/metrics  (status page: {base}/)")
        print("A few values from the first scrape:")
        print("\n".join(summarize(text)))
        if once:
            return 0
        print("\nPress Ctrl-C to stop; the throwaway database is removed on exit.", flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await stop.wait()
        return 0
    finally:
        await runner.cleanup()


async def collector_timings(exporter: Exporter, runs: int) -> None:
    """Run every collector ``runs`` times and print its median and worst latency."""
    (target,) = exporter.targets.values()
    await target.refresh(exporter.config.scrape_timeout)
    print(f"\n{'collector':<24}{'rows':>6}{'median ms':>12}{'max ms':>10}")
    for collector in target.status().collectors:
        if not collector.enabled:
            continue
        durations, rows = [], 0
        for _ in range(runs):
            result = await target.run_once(collector.name)
            durations.append(result.duration * 1000)
            rows = result.rows
        print(f"{collector.name:<24}{rows:>6}{statistics.median(durations):>12.2f}{max(durations):>10.2f}")
    await exporter.close()


def main(argv: list[str] | None = None) -> int:
    """Run the demo."""
    parser = argparse.ArgumentParser(prog="python -m devtools.demo", description=__doc__)
    parser.add_argument("--port", type=int, default=9650, help="port to serve on (default 9650)")
    parser.add_argument("--prefect-version", default=DEMO_VERSION, help=f"default {DEMO_VERSION}")
    parser.add_argument("--once", action="store_true", help="print the first scrape's values and exit")
    parser.add_argument("--timings", type=int, metavar="N", help="time every collector N times, then exit")
    args = parser.parse_args(argv)
    setup_logging("warning", "logfmt")
    cluster = PgCluster.create(Path(tempfile.mkdtemp(prefix="ppe-demo-")))
    try:
        cluster.start()
        password = secrets.token_urlsafe(18)
        prepare_database(cluster, args.prefect_version, password)
        os.environ[PASSWORD_ENV] = password
        target = TargetConfig(
            name="demo", dsn=cluster.dsn("prefect", user="prefect_exporter"), password_env=PASSWORD_ENV
        )
        config = Config(targets=(target,), listen_host="127.0.0.1", listen_port=args.port, source="demo")
        if args.timings:
            asyncio.run(collector_timings(Exporter.from_config(config), args.timings))
            return 0
        return asyncio.run(serve(Exporter.from_config(config), args.once))
    finally:
        cluster.destroy()


if __name__ == "__main__":
    sys.exit(main())
