"""Cardinality is capped on a real database: the excess folds into one `other` series, and is reported.

The capping itself is unit-tested in tests/unit/test_samples.py.
"""

from __future__ import annotations

import asyncpg
from helpers import exporter_for, scrape, target_for, value

from devtools import seed
from devtools.pgcluster import TestDatabase


async def test_many_work_queues_are_capped(prefect_db: TestDatabase) -> None:
    conn = await asyncpg.connect(prefect_db.admin_dsn)
    try:
        pool = await seed.create_work_pool(conn, "wide")
        await conn.execute(
            "INSERT INTO work_queue (name, work_pool_id, priority) "
            "SELECT 'queue-' || i, $1, i FROM generate_series(1, 60) AS i",
            pool.id,
        )
    finally:
        await conn.close()
    exporter = exporter_for(target_for(prefect_db), include=frozenset({"work_queues"}), max_series=25)
    try:
        series = await scrape(exporter)
    finally:
        await exporter.close()
    paused = [labels for (name, labels) in series if name == "prefect_db_work_queue_paused"]
    assert len(paused) == 25
    assert value(series, "prefect_db_work_queue_paused", work_pool="other", work_queue="other") == 0.0
    # 61 queues (60 + the pool's default queue): 24 kept, 37 folded.
    folded = value(series, "prefect_db_exporter_series_folded", metric="prefect_db_work_queue_paused")
    assert folded == 37.0
