"""Capture ``doctor``'s real output: on the demo database, then during a deadlock storm on deployment rows.

``python -m devtools.doctor_demo`` builds a throwaway cluster with the demo's Prefect database
(devtools/demo.py), runs ``prefect-db-exporter doctor`` against it, then lets two pairs of sessions
deadlock on deployment rows over and over while ``doctor`` samples the deadlock counter.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from devtools.demo import DEMO_VERSION, prepare_database, progress
from devtools.pgcluster import PgCluster
from exporter.doctor import command

UPDATE = "UPDATE deployment SET last_polled = now(), updated = now() WHERE id = $1"


async def _deadlock_pairs(dsn: str, seconds: float) -> int:
    """Make two sessions take two deployment rows in opposite orders until ``seconds`` pass."""
    a, b = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    ids = [r["id"] for r in await a.fetch("SELECT id FROM deployment ORDER BY id LIMIT 2")]
    deadlocks, stop = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < stop:
            await a.execute("BEGIN"), await b.execute("BEGIN")
            await a.execute(UPDATE, ids[0]), await b.execute(UPDATE, ids[1])
            outcomes = await asyncio.gather(
                a.execute(UPDATE, ids[1]), b.execute(UPDATE, ids[0]), return_exceptions=True
            )
            deadlocks += sum(isinstance(o, asyncpg.DeadlockDetectedError) for o in outcomes)
            for conn in (a, b):
                await conn.execute("ROLLBACK")
                await conn.execute("SELECT pg_stat_force_next_flush()")
    finally:
        await a.close(), await b.close()
    return deadlocks


def main(argv: list[str] | None = None) -> int:
    """Print doctor's report on the demo database, then during a deadlock storm."""
    parser = argparse.ArgumentParser(prog="python -m devtools.doctor_demo", description=__doc__)
    parser.add_argument("--prefect-version", default=DEMO_VERSION, help=f"default {DEMO_VERSION}")
    args = parser.parse_args(argv)
    cluster = PgCluster.create(Path(tempfile.mkdtemp(prefix="ppe-doctor-")))
    try:
        cluster.start()
        password = secrets.token_urlsafe(18)
        prepare_database(cluster, args.prefect_version, password)
        os.environ["PGPASSWORD"] = password
        dsn = cluster.dsn("prefect", user="prefect_exporter")
        progress("$ prefect-db-exporter doctor --dsn " + dsn)
        started = time.monotonic()
        code = command.main(["--dsn", dsn], dsn)
        progress(f"exit status {code}, {time.monotonic() - started:.2f}s")
        progress("deadlock storm: two sessions taking two deployment rows in opposite orders, for 8 s")

        async def storm() -> int:
            work = asyncio.create_task(_deadlock_pairs(cluster.dsn("prefect"), 8.0))
            await asyncio.sleep(2.5)
            # The command runs in a thread: it has its own event loop (asyncio.run).
            result = await asyncio.to_thread(command.main, ["--dsn", dsn], dsn)
            await work
            return result

        progress(f"exit status {asyncio.run(storm())}")
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
