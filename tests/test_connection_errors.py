"""How the exporter files each way a real server drops it: a lost connection is retried and, when the
server stays gone, reported as ``connection`` with ``prefect_db_up 0``; never as a failed query.

Each scenario makes the trouble for real while a collector's query is running (a collector that sleeps),
then asserts the outcome in the self-metrics.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from helpers import Series, eventually, exporter_for, samples, scrape, target_for, value

from devtools.paths import ROLE_SCRIPT
from devtools.pgcluster import PgCluster, TestDatabase
from exporter.database import APPLICATION_NAME
from exporter.registry import Exporter

SLEEPER = """\
-- description: Sleeps, so that the trouble can be made while its query runs.
-- ttl: 1s
-- timeout: 8s
-- metrics:
--   - name: test_sleeper_value
--     type: gauge
--     help: Always 1, after a sleep.
--     value: v
SELECT 1 AS v FROM pg_sleep(3);
"""
INCLUDE = frozenset({"sleeper", "connections"})


@pytest.fixture
def own_cluster(exporter_password: str) -> Iterator[PgCluster]:
    """A cluster of this test's own, which it may stop, and a database ``prefect`` with the exporter role."""
    pg = PgCluster.create(Path(tempfile.mkdtemp(prefix="ppe-connerr-")), settings={"max_connections": "12"})
    pg.start()
    pg.create_database("prefect")
    pg.psql("", "prefect", file=ROLE_SCRIPT, variables={"exporter_password": exporter_password})
    pg.psql("CHECKPOINT")
    try:
        yield pg
    finally:
        pg.destroy()


def database_on(pg: PgCluster, password: str, name: str = "prefect") -> TestDatabase:
    return TestDatabase(
        name=name,
        prefect_version=None,
        admin_dsn=pg.dsn(name),
        exporter_dsn=pg.dsn(name, user="prefect_exporter", password=password),
    )


def sleeper_exporter(db: TestDatabase, directory: Path, **target: object) -> Exporter:
    (directory / "sleeper.sql").write_text(SLEEPER)
    return exporter_for(
        target_for(db, connect_timeout=2.0, **target),
        extra_dir=directory,
        include=INCLUDE,
        scrape_timeout=12.0,
        ttl=0.001,  # every scrape runs the sleeper again
        sampler=False,
    )


def statuses(series: Series, collector: str) -> dict[str, float]:
    """``queries_total`` of one collector, by status."""
    found = samples(series, "prefect_db_exporter_queries_total", collector=collector)
    return {dict(labels)["status"]: count for labels, count in found.items()}


@asynccontextmanager
async def while_sleeping(exporter: Exporter, admin_dsn: str) -> AsyncIterator[asyncio.Task[Series]]:
    """Start a scrape and yield once the sleeper's query is running on the server."""
    admin = await asyncpg.connect(admin_dsn)
    try:
        running = asyncio.create_task(scrape(exporter))

        async def sleeping() -> bool:
            count = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = $1 AND state = 'active' AND query LIKE '%pg_sleep%'",
                APPLICATION_NAME,
            )
            return bool(count)

        await eventually(sleeping, timeout=20)
    finally:
        await admin.close()
    yield running


def counted(found: dict[str, float], **at_least: float) -> bool:
    """``found`` has exactly the statuses of ``at_least``, each at least that often.

    Background refresh may run the collector once more than the scrapes asked for (its TTL is
    a millisecond), so counts are lower bounds; which statuses appear is exact.
    """
    return found.keys() == at_least.keys() and all(found[k] >= n for k, n in at_least.items())


def reason(exporter: Exporter) -> str:
    (target,) = exporter.status().targets
    return target.last_error or ""


async def test_a_backend_killed_by_an_admin_mid_query_is_retried_and_counted_as_a_success(
    plain_db: TestDatabase, tmp_path: Path
) -> None:
    exporter = sleeper_exporter(plain_db, tmp_path)
    try:
        assert value(await scrape(exporter), "prefect_db_up") == 1.0
        async with while_sleeping(exporter, plain_db.admin_dsn) as running:
            admin = await asyncpg.connect(plain_db.admin_dsn)
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = $1 AND query LIKE '%pg_sleep%'",
                APPLICATION_NAME,
            )
            await admin.close()
            series = await running
    finally:
        await exporter.close()
    assert killed == 1
    # 57P01 (AdminShutdownError) mid-query: the query ran again on a fresh connection.
    assert counted(statuses(series, "sleeper"), success=2), statuses(series, "sleeper")
    assert value(series, "prefect_db_up") == 1.0


async def test_a_fast_server_shutdown_mid_query_is_a_lost_connection_and_up_0(
    own_cluster: PgCluster, exporter_password: str, tmp_path: Path
) -> None:
    db = database_on(own_cluster, exporter_password)
    exporter = sleeper_exporter(db, tmp_path)
    try:
        assert value(await scrape(exporter), "prefect_db_up") == 1.0
        async with while_sleeping(exporter, db.admin_dsn) as running:
            await asyncio.to_thread(own_cluster.stop, "fast")
            during = await running
        after = await scrape(exporter)
        down_reason = reason(exporter)
        own_cluster.start()
        recovered = await eventually(lambda: _up_again(exporter), timeout=60, interval=0.5)
    finally:
        await exporter.close()
    assert counted(statuses(during, "sleeper"), success=1, connection=1), statuses(during, "sleeper")
    assert value(after, "prefect_db_up") == 0.0
    assert "cannot connect" in down_reason, down_reason
    assert isinstance(recovered, dict) and value(recovered, "prefect_db_up") == 1.0
    assert "error" not in statuses(recovered, "sleeper")


async def _up_again(exporter: Exporter) -> Series | None:
    series = await scrape(exporter)
    return series if value(series, "prefect_db_up") == 1.0 else None


async def test_the_database_dropped_under_a_query_is_a_lost_connection_with_its_reason(
    own_cluster: PgCluster, exporter_password: str, tmp_path: Path
) -> None:
    own_cluster.create_database("doomed")
    own_cluster.psql("", "doomed", file=ROLE_SCRIPT, variables={"exporter_password": exporter_password})
    db = database_on(own_cluster, exporter_password, "doomed")
    exporter = sleeper_exporter(db, tmp_path)
    try:
        assert value(await scrape(exporter), "prefect_db_up") == 1.0
        async with while_sleeping(exporter, db.admin_dsn) as running:
            await asyncio.to_thread(own_cluster.drop_database, "doomed")
            during = await running
        after = await scrape(exporter)
        down_reason = reason(exporter)
    finally:
        await exporter.close()
    assert counted(statuses(during, "sleeper"), success=1, connection=1), statuses(during, "sleeper")
    assert value(after, "prefect_db_up") == 0.0
    assert "does not exist" in down_reason and "3D000" in down_reason, down_reason


async def test_sessions_closed_by_idle_session_timeout_are_replaced_without_a_failure(
    own_cluster: PgCluster, exporter_password: str, tmp_path: Path
) -> None:
    if own_cluster.major_version < 14:
        pytest.skip("idle_session_timeout is PostgreSQL 14 or later")
    db = database_on(own_cluster, exporter_password)
    own_cluster.psql("ALTER ROLE prefect_exporter SET idle_session_timeout = '200ms'")
    (tmp_path / "sleeper.sql").write_text(SLEEPER.replace("pg_sleep(3)", "pg_sleep(0)"))
    exporter = exporter_for(
        target_for(db, connect_timeout=2.0), extra_dir=tmp_path, include=INCLUDE, ttl=0.001, sampler=False
    )
    try:
        runs = []
        for _ in range(4):
            runs.append(await scrape(exporter))
            await asyncio.sleep(0.6)  # every pooled session is closed by the server (57P05) meanwhile
    finally:
        await exporter.close()
    assert all(value(series, "prefect_db_up") == 1.0 for series in runs)
    assert counted(statuses(runs[-1], "sleeper"), success=4), statuses(runs[-1], "sleeper")
    assert "idle-session timeout" in own_cluster.log_path.read_text()  # the server did close them


async def test_too_many_connections_is_a_connect_failure_with_its_reason(
    own_cluster: PgCluster, exporter_password: str, tmp_path: Path
) -> None:
    db = database_on(own_cluster, exporter_password)
    fillers: list[asyncpg.Connection] = []
    try:
        while len(fillers) < 20:
            try:
                fillers.append(await asyncpg.connect(db.exporter_dsn))
            except asyncpg.TooManyConnectionsError:
                break
        exporter = sleeper_exporter(db, tmp_path)
        try:
            series = await scrape(exporter)
            down_reason = reason(exporter)
        finally:
            await exporter.close()
    finally:
        for conn in fillers:
            await conn.close()
    assert 0 < len(fillers) < 20
    assert value(series, "prefect_db_up") == 0.0
    assert "53300" in down_reason, down_reason
    assert statuses(series, "sleeper") == {}  # no query ran: nothing filed as a failed query
