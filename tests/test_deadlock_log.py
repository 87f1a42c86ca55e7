"""Deadlocks read from real PostgreSQL server logs (stderr, csvlog, jsonlog), across rotation."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from devtools.pgcluster import PgCluster
from exporter.config import DEFAULT_OPERATIONS_FILE
from exporter.deadlock_log import DeadlockLog, statements_from_detail
from exporter.operations import load_operations

DEADLOCK_SQL = "UPDATE deployment SET last_polled = now() WHERE id = $1"


@pytest.fixture(scope="module")
def logging_cluster() -> Iterator[PgCluster]:
    """A cluster writing its log in all three formats, with rotation by file name."""
    pg = PgCluster.create(
        Path(tempfile.mkdtemp(prefix="ppe-log-")),
        settings={
            "logging_collector": "on",
            "log_destination": "stderr,csvlog,jsonlog",
            "log_directory": "log",
            "log_filename": "pg-%Y%m%d-%H%M%S.log",
            "log_rotation_age": "0",
            "log_rotation_size": "0",
        },
    )
    pg.start()
    pg.create_database("prefect")
    pg.psql("CREATE TABLE deployment (id uuid PRIMARY KEY, last_polled timestamptz)", "prefect")
    try:
        yield pg
    finally:
        pg.destroy()


async def make_deadlock(pg: PgCluster) -> None:
    """Two sessions update two deployment rows in opposite orders: one of them is chosen as victim."""
    first, second = uuid.uuid4(), uuid.uuid4()
    admin = await asyncpg.connect(pg.dsn("prefect"))
    a = await asyncpg.connect(pg.dsn("prefect"))
    b = await asyncpg.connect(pg.dsn("prefect"))
    try:
        await admin.execute("INSERT INTO deployment (id) VALUES ($1), ($2)", first, second)
        await a.execute("BEGIN")
        await b.execute("BEGIN")
        await a.execute(DEADLOCK_SQL, first)
        await b.execute(DEADLOCK_SQL, second)
        results = await asyncio.gather(
            a.execute(DEADLOCK_SQL, second), b.execute(DEADLOCK_SQL, first), return_exceptions=True
        )
        assert sum(isinstance(r, asyncpg.DeadlockDetectedError) for r in results) == 1
    finally:
        for conn in (a, b, admin):
            await conn.close()


def wait_for(log: DeadlockLog, deadlocks: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        log.poll()
        if log.deadlocks >= deadlocks:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"{log.format}: saw {log.deadlocks} deadlocks, expected {deadlocks} ({log.last_error})"
    )


@pytest.mark.parametrize("suffix", ["log", "csv", "json"])
async def test_deadlocks_are_attributed_in_every_log_format(logging_cluster: PgCluster, suffix: str) -> None:
    classifier = load_operations(DEFAULT_OPERATIONS_FILE)
    pattern = str(logging_cluster.data_dir / "log" / f"pg-*.{suffix}")
    log = DeadlockLog(pattern, classifier, database="prefect")
    log.poll(first=True)
    await make_deadlock(logging_cluster)
    wait_for(log, 1)
    assert log.deadlocks == 1
    # Both processes ran a last_polled update of deployment: one operation, counted once.
    assert {op: n for op, n in log.by_operation.items() if n} == {"deployment_last_polled_update": 1}
    # Every other operation is there at 0, so that its first deadlock is an increase rate() sees.
    assert set(log.by_operation) == set(classifier.operations)

    # Rotation: a new file is followed from its start.
    logging_cluster.psql("SELECT pg_rotate_logfile()")
    time.sleep(1.1)  # the file name has one-second resolution
    logging_cluster.psql("SELECT pg_rotate_logfile()")
    await make_deadlock(logging_cluster)
    wait_for(log, 2)
    assert log.deadlocks == 2
    assert log.following is not None and log.following.endswith(f".{suffix}")


async def test_other_databases_are_not_counted(logging_cluster: PgCluster) -> None:
    classifier = load_operations(DEFAULT_OPERATIONS_FILE)
    log = DeadlockLog(str(logging_cluster.data_dir / "log" / "pg-*.csv"), classifier, database="elsewhere")
    log.poll(first=True)
    await make_deadlock(logging_cluster)
    time.sleep(1.0)
    log.poll()
    assert log.deadlocks == 0


def test_missing_log_is_reported_not_fatal() -> None:
    log = DeadlockLog("/nonexistent/postgresql-*.log", load_operations(DEFAULT_OPERATIONS_FILE), "prefect")
    log.poll(first=True)
    assert log.last_error == "no file matches /nonexistent/postgresql-*.log"
    assert log.deadlocks == 0


def test_multi_line_statements_in_a_detail() -> None:
    detail = (
        "Process 11 waits for ShareLock on transaction 5; blocked by process 12.\n"
        "Process 12 waits for ShareLock on transaction 6; blocked by process 11.\n"
        "Process 11: UPDATE deployment\n  SET last_polled = now()\n"
        "Process 12: UPDATE work_queue SET last_polled = now()"
    )
    assert statements_from_detail(detail) == {
        11: "UPDATE deployment\nSET last_polled = now()",
        12: "UPDATE work_queue SET last_polled = now()",
    }
