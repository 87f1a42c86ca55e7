"""Tests of the test infrastructure: throwaway cluster, Prefect templates, exporter role."""

from __future__ import annotations

import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from devtools.paths import ROLE_SCRIPT
from devtools.pgcluster import (
    PgCluster,
    PgClusterError,
    TestDatabase,
    admin_connect,
    exporter_connect,
)
from exporter.config import DEFAULT_RELEASES_FILE
from exporter.releases import load_releases

EXPECTED_ALEMBIC_HEADS = {"3.1.15": "5d03c01be85e", "3.9.1": "91e2b8f3d6a4"}
PREFECT_TABLES = ("flow_run", "deployment", "work_queue", "worker", "events")

# What a session of the exporter role is expected to run with, per the role script.
EXPORTER_SESSION_SETTINGS = {
    "default_transaction_read_only": "on",
    "statement_timeout": "10s",
    "lock_timeout": "1s",
    "idle_in_transaction_session_timeout": "30s",
}

GRANTS_SQL = """
SELECT table_name, privilege_type
  FROM information_schema.role_table_grants
 WHERE grantee = 'prefect_exporter'
 ORDER BY 1, 2
"""


async def test_superuser_connects(cluster: PgCluster) -> None:
    conn = await asyncpg.connect(cluster.dsn())
    try:
        assert await conn.fetchval("SELECT current_user") == "postgres"
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    finally:
        await conn.close()


async def test_pg_stat_statements_is_preloaded(plain_db: TestDatabase) -> None:
    conn = await admin_connect(plain_db)
    try:
        assert "pg_stat_statements" in await conn.fetchval("SHOW shared_preload_libraries")
        await conn.execute("CREATE EXTENSION pg_stat_statements")
        assert await conn.fetchval("SELECT count(*) FROM pg_stat_statements") >= 0
    finally:
        await conn.close()


async def test_lock_wait_logging_settings(plain_db: TestDatabase) -> None:
    conn = await admin_connect(plain_db)
    try:
        assert await conn.fetchval("SHOW log_lock_waits") == "on"
        assert await conn.fetchval("SHOW deadlock_timeout") == "200ms"
    finally:
        await conn.close()


async def test_template_has_prefect_schema(prefect_db: TestDatabase) -> None:
    assert prefect_db.prefect_version is not None
    conn = await admin_connect(prefect_db)
    try:
        head = await conn.fetchval("SELECT version_num FROM alembic_version")
        assert head == EXPECTED_ALEMBIC_HEADS[prefect_db.prefect_version]
        # queries/prefect_releases.yaml knows the head, and whether that release's polls deadlock.
        release = load_releases(DEFAULT_RELEASES_FILE).describe(head)
        assert release is not None and release.first_release != "unknown"
        fixed = tuple(map(int, prefect_db.prefect_version.split("."))) >= (3, 7, 0)
        assert release.poll_deadlocks == ("false" if fixed else "true")
        for table in PREFECT_TABLES:
            assert await conn.fetchval("SELECT to_regclass($1)", f"public.{table}"), table
    finally:
        await conn.close()


async def test_exporter_role_reads_prefect_tables(prefect_db: TestDatabase) -> None:
    conn = await exporter_connect(prefect_db)
    try:
        assert await conn.fetchval("SELECT current_user") == "prefect_exporter"
        assert await conn.fetchval("SELECT count(*) FROM flow_run") == 0
        for name, value in EXPORTER_SESSION_SETTINGS.items():
            assert await conn.fetchval(f"SHOW {name}") == value
        assert await conn.fetchval("SELECT pg_has_role('pg_monitor', 'MEMBER')")
    finally:
        await conn.close()


async def test_exporter_role_cannot_write(prefect_db: TestDatabase) -> None:
    conn = await exporter_connect(prefect_db)
    try:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("INSERT INTO flow_run DEFAULT VALUES")
        # Even with read-only switched off, the role has no write privilege.
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with conn.transaction(readonly=False):
                await conn.execute("SET TRANSACTION READ WRITE")
                await conn.execute("INSERT INTO flow_run DEFAULT VALUES")
    finally:
        await conn.close()


async def test_exporter_role_gets_no_other_tables(prefect_db: TestDatabase) -> None:
    conn = await exporter_connect(prefect_db)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetchval("SELECT count(*) FROM block_document")
    finally:
        await conn.close()


async def test_exporter_role_rejects_wrong_password(cluster: PgCluster, plain_db: TestDatabase) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(cluster.dsn(plain_db.name, "prefect_exporter", "wrong"))


async def test_role_script_is_idempotent(
    cluster: PgCluster, prefect_db: TestDatabase, exporter_password: str
) -> None:
    before = cluster.psql(GRANTS_SQL, prefect_db.name)
    variables = {"exporter_password": exporter_password}
    for _ in range(2):
        cluster.psql("", prefect_db.name, file=ROLE_SCRIPT, variables=variables)
    assert cluster.psql(GRANTS_SQL, prefect_db.name) == before
    assert "flow_run|SELECT" in before.splitlines()
    conn = await exporter_connect(prefect_db)
    await conn.close()


async def test_role_script_on_database_without_prefect(cluster: PgCluster, plain_db: TestDatabase) -> None:
    assert cluster.psql(GRANTS_SQL, plain_db.name) == ""
    conn = await exporter_connect(plain_db)
    try:
        assert await conn.fetchval("SELECT pg_has_role('pg_monitor', 'MEMBER')")
        assert await conn.fetchval("SELECT has_schema_privilege('public', 'USAGE')")
    finally:
        await conn.close()


def test_role_script_requires_a_password(cluster: PgCluster, plain_db: TestDatabase) -> None:
    with pytest.raises(PgClusterError, match="exporter_password"):
        cluster.psql("", plain_db.name, file=ROLE_SCRIPT)


async def test_dsn_quotes_the_password(cluster: PgCluster, plain_db: TestDatabase) -> None:
    password = "p@ss:w/rd?#%'"
    cluster.psql(
        "DROP ROLE IF EXISTS dsn_probe; CREATE ROLE dsn_probe LOGIN PASSWORD :'pw';",
        variables={"pw": password},
    )
    dsn = cluster.dsn(plain_db.name, "dsn_probe", password)
    assert urlsplit(dsn).port == cluster.port
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT current_user") == "dsn_probe"
    finally:
        await conn.close()


async def test_drop_database_terminates_sessions(cluster: PgCluster) -> None:
    cluster.create_database("t_drop_probe")
    conn = await asyncpg.connect(cluster.dsn("t_drop_probe"))
    try:
        cluster.drop_database("t_drop_probe")
        assert not cluster.database_exists("t_drop_probe")
    finally:
        conn.terminate()


def test_create_with_custom_settings_and_destroy() -> None:
    base_dir = Path(tempfile.mkdtemp(prefix="ppe-pg-"))
    pg = PgCluster.create(base_dir, settings={"work_mem": "7MB", "max_connections": "20"})
    try:
        pg.start()
        assert pg.psql("SHOW work_mem; SHOW max_connections;").split() == ["7MB", "20"]
        assert "database system is ready" in pg.log_path.read_text()
    finally:
        pg.destroy()
    assert not base_dir.exists()


async def test_stop_and_start(cluster: PgCluster) -> None:
    cluster.stop()
    assert not cluster.is_running()
    cluster.start()
    assert cluster.is_running()
    cluster.restart()
    conn = await asyncpg.connect(cluster.dsn())
    try:
        assert await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()
