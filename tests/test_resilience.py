"""A database that is down, restarted or kills our sessions never takes the exporter down."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from helpers import exporter_for, parse, refresh_now, serving, target_for, value

from devtools.paths import ROLE_SCRIPT
from devtools.pgcluster import PgCluster, TestDatabase
from exporter.database import APPLICATION_NAME
from exporter.registry import Exporter


@pytest.fixture
def own_cluster(exporter_password: str) -> Iterator[PgCluster]:
    """A cluster of this test's own, which it may stop and start (no Prefect schema needed)."""
    pg = PgCluster.create(Path(tempfile.mkdtemp(prefix="ppe-own-")))
    pg.start()
    pg.create_database("prefect")
    pg.psql("", "prefect", file=ROLE_SCRIPT, variables={"exporter_password": exporter_password})
    # The throwaway clusters run with synchronous_commit=off: make the role survive an immediate stop.
    pg.psql("CHECKPOINT")
    try:
        yield pg
    finally:
        pg.destroy()


def database_on(pg: PgCluster, password: str) -> TestDatabase:
    return TestDatabase(
        name="prefect",
        prefect_version=None,
        admin_dsn=pg.dsn("prefect"),
        exporter_dsn=pg.dsn("prefect", user="prefect_exporter", password=password),
    )


async def up_value(http: object, base: str, refresh: Exporter | None = None) -> float | None:
    """Scrape ``prefect_db_up``; with ``refresh``, after running that exporter's expired collectors now."""
    if refresh is not None:
        await refresh_now(refresh)
    async with http.get(f"{base}/metrics") as response:  # type: ignore[attr-defined]
        assert response.status == 200
        return value(parse(await response.text()), "prefect_db_up")


async def test_started_against_a_stopped_database_then_it_comes_up(
    own_cluster: PgCluster, exporter_password: str
) -> None:
    own_cluster.stop()
    exporter = exporter_for(target_for(database_on(own_cluster, exporter_password)))
    async with serving(exporter) as (http, base):
        assert await up_value(http, base) == 0.0
        assert await up_value(http, base) == 0.0
        own_cluster.start()
        for _ in range(200):
            if await up_value(http, base) == 1.0:
                break
            await asyncio.sleep(0.25)
        else:
            pytest.fail("prefect_db_up never became 1 after the database started")


async def test_database_restart_while_scraping(own_cluster: PgCluster, exporter_password: str) -> None:
    exporter = exporter_for(target_for(database_on(own_cluster, exporter_password)))
    seen: list[float | None] = []
    async with serving(exporter) as (http, base):
        assert await up_value(http, base) == 1.0
        own_cluster.stop(mode="immediate")
        seen.append(await up_value(http, base, refresh=exporter))
        own_cluster.start()
        for _ in range(200):
            seen.append(await up_value(http, base))
            if seen[-1] == 1.0:
                break
            await asyncio.sleep(0.25)
    assert seen[0] == 0.0
    assert seen[-1] == 1.0, own_cluster.log_path.read_text()[-2000:]


async def test_terminated_backends_are_replaced(prefect_db: TestDatabase) -> None:
    exporter = exporter_for(target_for(prefect_db))
    async with serving(exporter) as (http, base):
        assert await up_value(http, base) == 1.0
        admin = await asyncpg.connect(prefect_db.admin_dsn)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                APPLICATION_NAME,
            )
            assert killed >= 1
            # The next refresh finds its pooled connection dead, and retries on a fresh one.
            assert await up_value(http, base, refresh=exporter) == 1.0
            sessions = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", APPLICATION_NAME
            )
            assert 1 <= sessions <= 2
        finally:
            await admin.close()
