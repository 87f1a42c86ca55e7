"""Cardinality is capped: the excess series fold into one `other` series, and the fold is reported."""

from __future__ import annotations

import asyncpg
from helpers import exporter_for, scrape, target_for, value

from devtools import seed
from devtools.pgcluster import TestDatabase
from exporter.collection import cap_series


def test_under_the_cap_nothing_changes() -> None:
    series = {("a",): 1.0, ("b",): 2.0}
    assert cap_series(series, 2, "sum") == (series, 0)


def test_the_largest_are_kept_and_the_rest_folded() -> None:
    series = {(f"q{i}", "p"): float(i) for i in range(10)}
    kept, folded = cap_series(series, 4, "sum")
    assert folded == 7
    assert kept == {("q9", "p"): 9.0, ("q8", "p"): 8.0, ("q7", "p"): 7.0, ("other", "other"): 21.0}
    kept, _ = cap_series(series, 4, "max")
    assert kept[("other", "other")] == 6.0


def test_a_real_other_series_joins_the_bucket() -> None:
    kept, folded = cap_series({("other",): 5.0, ("a",): 1.0, ("b",): 2.0}, 2, "sum")
    assert (kept, folded) == ({("other",): 8.0}, 3)


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
    exporter = exporter_for(target_for(prefect_db), include=frozenset({"work_queues"}))
    exporter.targets[0].max_series = 25
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
