"""The live trouble scene that the dashboards are shown on: the demo's seeded rows plus trouble happening now.

``tests/test_live_queries.py`` evaluates every panel on it, and ``devtools/pictures.py`` (``make pictures``)
records it for the README's pictures. On top of :func:`devtools.seed.seed_trouble` it adds two RUNNING runs
to crash later, a late run behind a full queue, and a session idle in transaction holding a deployment row
with ``pollers`` worker polls (Prefect 3.7+'s statement) waiting behind it, a worker polling the live
"critical" queue every second, and Prefect's stalled services (:func:`machinery_trouble`); :func:`deadlock`
makes two last_polled updates deadlock for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import asyncpg

from devtools import seed

T = TypeVar("T")

# Prefect 3.7+ poll: lock the queue's deployment rows in id order, then update last_polled.
POLL_DEPLOYMENTS: Final = (
    "WITH locked AS (SELECT deployment.id AS id, deployment.status AS status FROM deployment "
    "WHERE deployment.id IN (NULL) AND (1 != 1) OR deployment.work_queue_id IN ($3::UUID) "
    "ORDER BY deployment.id FOR UPDATE) UPDATE deployment SET last_polled=$1::TIMESTAMP WITH TIME ZONE, "
    "status=$2::deployment_status, updated=deployment.updated "
    "WHERE deployment.id IN (SELECT locked.id FROM locked) RETURNING deployment.id"
)
# The operation the sampler and the log follower give those polls.
POLL_OPERATION: Final = "deployment_last_polled_update"


class SceneError(RuntimeError):
    """The scene could not be built (a wait for the database timed out)."""


@dataclass
class Trouble:
    """A session for changes while Prometheus scrapes, the runs to crash and the rows to deadlock on."""

    setup: asyncpg.Connection
    running: tuple[uuid.UUID, ...]
    deadlock_rows: tuple[uuid.UUID, uuid.UUID]


def in_background(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run ``work`` as a task whose failure is always retrieved."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Poll ``check`` until it is true; raise :class:`SceneError` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise SceneError(f"{what}: not within {timeout:g}s")
        await asyncio.sleep(0.02)


async def queue_id(conn: asyncpg.Connection, pool: str, queue: str) -> uuid.UUID:
    """The id of a work queue of the demo scene."""
    found = await conn.fetchval(
        "SELECT wq.id FROM work_queue AS wq JOIN work_pool AS wp ON wp.id = wq.work_pool_id"
        " WHERE wp.name = $1 AND wq.name = $2",
        pool,
        queue,
    )
    if not isinstance(found, uuid.UUID):
        raise SceneError(f"no work queue {pool}/{queue}: seed the demo scene first")
    return found


async def deployments_of(conn: asyncpg.Connection, queue: uuid.UUID) -> list[asyncpg.Record]:
    """The deployments of a work queue, in id order (the order a 3.7+ poll locks them)."""
    return list(
        await conn.fetch("SELECT id, flow_id FROM deployment WHERE work_queue_id = $1 ORDER BY id", queue)
    )


async def waiting(observer: asyncpg.Connection, pid: int) -> bool:
    """Whether backend ``pid`` waits on a heavyweight lock."""
    event: str | None = await observer.fetchval(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
    )
    return event == "Lock"


async def machinery_trouble(conn: asyncpg.Connection, flow: uuid.UUID, queue: uuid.UUID) -> None:
    """What the prefect-db-machinery alerts watch: Prefect's services stalled (tests/test_machinery.py)."""
    # Late marking stalled: a run still Scheduled 400 s past its start.
    await seed.create_flow_run(
        conn, flow_id=flow, queue_id=queue, state_type="SCHEDULED", next_scheduled_in=-400
    )
    # Foreman stalled: a worker stored ONLINE that has been silent for 10 minutes.
    pool = await conn.fetchval("SELECT work_pool_id FROM work_queue WHERE id = $1", queue)
    await seed.create_worker(conn, pool, "stuck-online", heartbeat_ago=600, status="ONLINE")
    # Retention behind: an event 10 days old; cancellation stuck: a run CANCELLING for 10 minutes.
    done = await seed.create_flow_run(
        conn, flow_id=flow, queue_id=queue, state_type="COMPLETED", state_age=86400
    )
    await seed.add_heartbeat(conn, done, ago=10 * 86400)
    await seed.create_flow_run(conn, flow_id=flow, queue_id=queue, state_type="CANCELLING", state_age=600)
    # A run waiting 90 s for a concurrency slot (the Awaiting panels; not late, Prefect reschedules it).
    await seed.create_flow_run(
        conn,
        flow_id=flow,
        queue_id=queue,
        state_type="SCHEDULED",
        state_name="AwaitingConcurrencySlot",
        state_age=90,
        next_scheduled_in=-90,
    )
    # An invalid index: a unique index built concurrently over duplicates fails and stays INVALID. It
    # waits for every open transaction, so it runs before the lock holder begins.
    with contextlib.suppress(asyncpg.UniqueViolationError):
        await conn.execute("CREATE UNIQUE INDEX CONCURRENTLY ix_flow_run__dup_flow ON flow_run (flow_id)")


async def keep_polling(conn: asyncpg.Connection, queue: uuid.UUID, every: float = 1.0) -> None:
    """A live worker: poll ``queue`` with Prefect 3.7+'s statement every ``every`` seconds, until cancelled.

    These polls complete, so pg_stat_statements counts them (the rows-per-poll panel) while the
    blocked ones never do.
    """
    while True:
        await conn.fetch(POLL_DEPLOYMENTS, datetime.now(UTC), "READY", queue)
        await asyncio.sleep(every)


@asynccontextmanager
async def trouble(dsn: str, pollers: int = 3) -> AsyncIterator[Trouble]:
    """Seed the demo scene plus what the remaining panels need; hold a lock with worker polls behind it."""
    setup, holder, worker, *polling = [await asyncpg.connect(dsn) for _ in range(3 + pollers)]
    live: asyncio.Task[None] | None = None
    try:
        await seed.seed_trouble(setup)
        k8s, etl = seed.DEMO_POOLS
        default = await queue_id(setup, k8s, "default")
        critical = await queue_id(setup, k8s, "critical")
        polled = await deployments_of(setup, default)
        deadlocking = await deployments_of(setup, await queue_id(setup, etl, "nightly"))
        limited = (await deployments_of(setup, critical))[0]
        # Three RUNNING runs to crash later (three within 10 minutes: the crash storm of
        # PrefectFlowRunsCrashing), and a late run behind the full "critical" queue
        # (PrefectWorkQueueConcurrencySaturated).
        row = polled[0]
        running = [
            await seed.create_flow_run(
                setup, flow_id=row["flow_id"], queue_id=default, deployment_id=row["id"], state_type="RUNNING"
            )
            for _ in range(3)
        ]
        await seed.create_flow_run(
            setup,
            flow_id=limited["flow_id"],
            queue_id=critical,
            deployment_id=limited["id"],
            state_type="SCHEDULED",
            state_name="Late",
            state_age=700,
        )
        await machinery_trouble(setup, row["flow_id"], default)
        # A session idle in transaction holding a deployment row, and worker polls of its queue waiting.
        await holder.execute("BEGIN")
        await holder.fetch("SELECT id FROM deployment WHERE id = $1 FOR UPDATE", polled[-1]["id"])
        for poller in polling:
            in_background(poller.fetch(POLL_DEPLOYMENTS, datetime.now(UTC), "READY", default))
            pid = poller.get_server_pid()
            await until(lambda: waiting(setup, pid), f"poll of backend {pid} waiting on the held row")  # noqa: B023
        # A worker of the live "critical" queue polling as Prefect does (its rows are not held).
        live = in_background(keep_polling(worker, critical))
        yield Trouble(setup, tuple(running), (deadlocking[0]["id"], deadlocking[1]["id"]))
    finally:
        if live is not None:
            live.cancel()
        for conn in (setup, holder, worker, *polling):
            conn.terminate()


async def deadlock(dsn: str, rows: tuple[uuid.UUID, uuid.UUID]) -> None:
    """Two last_polled updates that lock two deployment rows in opposite order: one of them deadlocks."""
    update = "UPDATE deployment SET last_polled = clock_timestamp() WHERE id = $1"
    a, b = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        for conn, own in ((a, rows[0]), (b, rows[1])):
            await conn.execute("BEGIN")
            await conn.execute(update, own)
        crossing = in_background(a.execute(update, rows[1]))
        await until(lambda: waiting(b, a.get_server_pid()), "the crossing update waiting")
        outcomes = await asyncio.gather(crossing, b.execute(update, rows[0]), return_exceptions=True)
        if not any(isinstance(o, asyncpg.DeadlockDetectedError) for o in outcomes):
            raise SceneError(f"no deadlock detected: {outcomes}")
        for conn in (a, b):
            await conn.execute("ROLLBACK")
            await conn.execute("SELECT pg_stat_force_next_flush()")
    finally:
        a.terminate()
        b.terminate()
