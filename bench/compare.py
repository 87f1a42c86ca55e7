"""Compare a proposed collector file with the built-in one on a benchmark database.

``python -m bench.compare path/to/deployments.sql [--db bench_1_0] [--runs 50]`` checks that the
proposal returns exactly the same rows as ``queries/<same name>.sql`` (both run in one transaction, so
``now()`` and the snapshot are the same), times both in alternation as the exporter role with the
exporter's session settings, and prints the proposal's EXPLAIN (ANALYZE, BUFFERS).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from bench.cluster import ensure_cluster, progress
from bench.run import exporter_connection, plan_check, target_database
from exporter.catalog import load_catalog
from exporter.config import DEFAULT_QUERY_DIR


def sort_key(row: tuple[Any, ...]) -> tuple[tuple[bool, str], ...]:
    """Order rows whose columns may be NULL."""
    return tuple((value is None, str(value)) for value in row)


async def compare(proposal: Path, dbname: str, runs: int) -> None:
    """Check and time ``proposal`` against the built-in collector of the same name."""
    current = load_catalog([DEFAULT_QUERY_DIR]).get(proposal.stem)
    proposed = load_catalog([proposal.parent]).get(proposal.stem)
    cluster = ensure_cluster()
    conn = await exporter_connection(cluster, dbname, target_database(cluster, dbname))
    try:
        async with conn.transaction():
            old = sorted((tuple(r) for r in await conn.fetch(current.sql)), key=sort_key)
            new = sorted((tuple(r) for r in await conn.fetch(proposed.sql)), key=sort_key)
        same = "same rows" if old == new else "DIFFERENT rows"
        print(f"{proposal.stem}: {same} ({len(old)} current, {len(new)} proposed)")
        times: dict[str, list[float]] = {"current": [], "proposed": []}
        for _ in range(runs):
            for label, sql in (("current", current.sql), ("proposed", proposed.sql)):
                started = time.perf_counter()
                await conn.fetch(sql)
                times[label].append((time.perf_counter() - started) * 1000)
        for label, values in times.items():
            print(f"{label:8s} median {statistics.median(values):6.2f} ms over {runs} alternating runs")
        for label, sql in (("current", current.sql), ("proposed", proposed.sql)):
            plan = plan_check(await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql))
            print(f"{label:8s} plan ok={plan['ok']} indexes={', '.join(plan['indexes']) or '-'}")
        rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + proposed.sql)
        print("\n".join(r[0] for r in rows))
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("proposal", type=Path, help="a collector file named like the built-in one")
    parser.add_argument("--db", default="bench_1_0", help="benchmark database (default bench_1_0)")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args(argv)
    progress(f"comparing {args.proposal} with queries/{args.proposal.name} on {args.db}")
    asyncio.run(compare(args.proposal, args.db, args.runs))


if __name__ == "__main__":
    main()
