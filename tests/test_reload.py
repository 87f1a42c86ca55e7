"""Reloading the configuration rebuilds only the targets whose settings changed."""

from __future__ import annotations

from dataclasses import replace

import asyncpg
import pytest
from helpers import exporter_for, scrape, target_for, value

from devtools.pgcluster import TestDatabase
from devtools.prefect_env import PREFECT_VERSIONS
from exporter.database import APPLICATION_NAME


async def backend_pids(db: TestDatabase) -> set[int]:
    """Return the pids of the exporter's pooled sessions on ``db``, as PostgreSQL sees them."""
    conn = await asyncpg.connect(db.admin_dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND datname = $2",
            APPLICATION_NAME,
            db.name,
        )
    finally:
        await conn.close()
    return {row["pid"] for row in rows}


def runs(series: dict, target: str, collector: str = "connections") -> float | None:  # type: ignore[type-arg]
    return value(
        series, "prefect_db_exporter_queries_total", target=target, collector=collector, status="success"
    )


@pytest.mark.parametrize("prefect_db", [PREFECT_VERSIONS[-1]], indirect=True)
async def test_a_reload_that_changes_one_target_keeps_the_other_ones_pool_and_results(
    prefect_db: TestDatabase, plain_db: TestDatabase
) -> None:
    kept, changed = target_for(prefect_db, name="kept"), target_for(plain_db, name="changed")
    # No sampler: its own connection would come and go with the rebuilt target and blur the pids.
    exporter = exporter_for(kept, changed, sampler=False)
    try:
        before = await scrape(exporter)
        kept_pids, changed_pids = await backend_pids(prefect_db), await backend_pids(plain_db)
        assert kept_pids and changed_pids

        await exporter.reload(replace(exporter.config, targets=(kept, replace(changed, lock_timeout=0.4))))
        after = await scrape(exporter)  # within every TTL: only a rebuilt target runs its queries again

        assert await backend_pids(prefect_db) == kept_pids
        assert runs(after, "kept") == runs(before, "kept")
        assert value(after, "prefect_db_up", target="kept") == 1.0
        # The changed target has new connections, ran again, and carried its counters over.
        assert not (await backend_pids(plain_db)) & changed_pids
        assert (runs(after, "changed") or 0) == (runs(before, "changed") or 0) + 1
    finally:
        await exporter.close()
