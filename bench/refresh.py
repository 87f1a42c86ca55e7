"""Bring a benchmark database's recent rows to the present before measuring.

The data is generated relative to an *anchor* ("now" at generation time). Minutes or days later the
live runs would look hours PENDING, every heartbeat would be stale and no state row would be recent,
which changes what the collectors read. So before each benchmark the rows of the last hours before
the anchor (all live runs with all their states, heartbeats and other recent events, workers seen
recently, and every queue, deployment, pool and limit timestamp) are shifted by ``now() - anchor``,
and the anchor moves to now. Older history and long-dead workers are left alone: they simply get a
gap. ``event_resources`` and ``log`` are not shifted (no collector reads them, and shifting them would
rewrite millions of rows).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import asyncpg

from bench.cluster import progress
from bench.generate import Build, marker

RECENT_WINDOW = timedelta(hours=8)
MIN_SHIFT = timedelta(seconds=30)

SHIFT_SQL = """
-- Every state of the shifted runs moves with them. (flow_run_id, timestamp) is unique and checked row
-- by row, so the states first go a millennium ahead and then come back: no transient collision.
UPDATE flow_run_state
SET "timestamp" = "timestamp" + interval '1000 years', created = created + $1, updated = updated + $1
WHERE flow_run_id IN (SELECT id FROM flow_run
                      WHERE state_type IN ('SCHEDULED', 'PENDING', 'RUNNING', 'PAUSED', 'CANCELLING')
                         OR end_time > $2);
UPDATE flow_run_state SET "timestamp" = "timestamp" - interval '1000 years' + $1
WHERE flow_run_id IN (SELECT id FROM flow_run
                      WHERE state_type IN ('SCHEDULED', 'PENDING', 'RUNNING', 'PAUSED', 'CANCELLING')
                         OR end_time > $2);
UPDATE flow_run
SET created = created + $1, updated = updated + $1, expected_start_time = expected_start_time + $1,
    next_scheduled_start_time = next_scheduled_start_time + $1, start_time = start_time + $1,
    end_time = end_time + $1, state_timestamp = state_timestamp + $1
WHERE state_type IN ('SCHEDULED', 'PENDING', 'RUNNING', 'PAUSED', 'CANCELLING') OR end_time > $2;
UPDATE events
SET occurred = occurred + $1, received = received + $1, recorded = recorded + $1,
    created = created + $1, updated = updated + $1
WHERE occurred > $2;
-- Like Prefect, touch only the workers that still beat (or died recently): the dead rows stay put.
UPDATE worker
SET created = created + $1, updated = updated + $1, last_heartbeat_time = last_heartbeat_time + $1
WHERE last_heartbeat_time > $2;
UPDATE work_queue SET updated = updated + $1, last_polled = last_polled + $1;
UPDATE deployment SET updated = updated + $1, last_polled = last_polled + $1;
UPDATE work_pool SET last_transitioned_status_at = last_transitioned_status_at + $1;
UPDATE concurrency_limit_v2 SET updated = updated + $1;
UPDATE concurrency_limit SET updated = updated + $1;
"""


async def shift_to_now(dsn: str, build: Build, anchor: datetime) -> datetime:
    """Shift the recent rows of a benchmark database by now() - anchor; return the new anchor."""
    name = build.name
    conn = await asyncpg.connect(dsn, command_timeout=None)
    try:
        now: datetime = await conn.fetchval("SELECT date_trunc('second', now())")
        delta = now - anchor
        if delta < MIN_SHIFT:
            return anchor
        started = time.monotonic()
        progress(f"{name}: shifting the rows of the last {RECENT_WINDOW} by {delta} to the present")
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            for statement in filter(None, (s.strip() for s in SHIFT_SQL.split(";"))):
                args = (delta, anchor - RECENT_WINDOW) if "$2" in statement else (delta,)
                await conn.execute(statement, *args)
            new_marker = marker(build, now).replace("'", "''")
            await conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{new_marker}'")
        await conn.execute(
            "VACUUM (ANALYZE) flow_run, flow_run_state, events, worker, work_queue, deployment, work_pool,"
            " concurrency_limit_v2, concurrency_limit"
        )
        progress(f"{name}: shifted and vacuumed in {time.monotonic() - started:.1f} s")
        return now
    finally:
        await conn.close()
