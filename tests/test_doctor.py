"""``doctor`` against real trouble on the real Prefect schemas: the finding, its evidence, the exit status."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import socket
import tempfile
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import bcrypt
import jsonschema
import pytest
from aiohttp.test_utils import TestServer
from helpers import eventually, exporter_for, split_password, target_for

from devtools import seed
from devtools.pgcluster import PgCluster, TestDatabase
from exporter.config import TargetConfig
from exporter.doctor import command
from exporter.doctor.findings import Finding, Report, Severity
from exporter.doctor.jsonreport import SCHEMA_FILE, report_dict
from exporter.doctor.rules import DoctorThresholds
from exporter.doctor.run import diagnose
from exporter.web import make_app
from exporter.webconfig import WebConfig

T = TypeVar("T")
SCHEMA = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@asynccontextmanager
async def sessions(db: TestDatabase, count: int) -> AsyncIterator[list[asyncpg.Connection]]:
    """``count`` superuser sessions, terminated afterwards."""
    conns = [await asyncpg.connect(db.admin_dsn) for _ in range(count)]
    try:
        yield conns
    finally:
        for conn in conns:
            conn.terminate()


def in_background(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """A task whose failure is always retrieved."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


async def wait_until_waiting(observer: asyncpg.Connection, pid: int) -> None:
    async def waiting() -> bool:
        event = await observer.fetchval("SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid)
        return event == "Lock"

    await eventually(waiting, timeout=10, interval=0.05)


async def doctor(db: TestDatabase, thresholds: DoctorThresholds | None = None) -> Report:
    """Diagnose ``db`` once, as the command does, and check the JSON form against its schema."""
    exporter = exporter_for(target_for(db), sampler=False)
    try:
        report, _ = await diagnose(
            exporter, doctor=thresholds or DoctorThresholds(deadlock_window_seconds=0.1)
        )
    finally:
        await exporter.close()
    jsonschema.validate(report_dict(report), SCHEMA, format_checker=jsonschema.FormatChecker())
    return report


def findings(report: Report, code: str) -> list[Finding]:
    return [f for f in report.targets[0].findings if f.code == code]


def only(report: Report, code: str) -> Finding:
    found = findings(report, code)
    assert len(found) == 1, [f.code for f in report.targets[0].findings]
    return found[0]


# Healthy -----------------------------------------------------------------------------------------


async def test_healthy_database_has_nothing_above_info(prefect_db: TestDatabase) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        pool = await seed.create_work_pool(conn, "pool-ok", default_queue_last_polled_ago=5)
        await seed.create_worker(conn, pool.id, "worker-ok", heartbeat_ago=5)
        flow = await seed.create_flow(conn, "flow")
        await seed.create_deployment(conn, flow, pool.default_queue_id, "dep", last_polled_ago=5)
        await seed.create_flow_run(conn, flow_id=flow, queue_id=pool.default_queue_id, state_type="COMPLETED")
        report = await doctor(prefect_db)
    target = report.targets[0]
    assert target.reachable and target.prefect_release is not None
    assert [f.title for f in target.findings if f.severity is not Severity.INFO] == []
    assert report.exit_code == 0
    assert target.incomplete == ()


def test_doctor_command_on_a_healthy_database_exits_0_with_json(
    prefect_db: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    dsn, password = split_password(prefect_db.exporter_dsn)
    monkeypatch.setenv("PGPASSWORD", password or "")
    out, err = io.StringIO(), io.StringIO()
    assert command.main(["--dsn", dsn, "--json"], "postgresql://unused@localhost/none", out, err) == 0
    document = json.loads(out.getvalue())
    jsonschema.validate(document, SCHEMA, format_checker=jsonschema.FormatChecker())
    assert document["exit_code"] == 0 and document["targets"][0]["status"] == "healthy"
    assert err.getvalue() == ""


def test_doctor_against_a_stopped_database_exits_3_with_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    # A port nobody listens on: what a stopped server looks like to a client.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out, err = io.StringIO(), io.StringIO()
    code = command.main(["--dsn", f"postgresql://prefect@127.0.0.1:{port}/prefect"], "unused", out, err)
    assert code == 3
    lines = err.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"prefect-db-exporter doctor: prefect: cannot connect to postgresql://prefect@127.0.0.1:{port}/prefect"
    )
    assert "Traceback" not in err.getvalue() and out.getvalue() == ""
    # Nothing else reaches the real stderr either (no log line, no traceback).
    assert capfd.readouterr().err == ""


# Locks -------------------------------------------------------------------------------------------


async def test_access_exclusive_lock_with_three_waiters_names_the_holder_as_root(
    prefect_db: TestDatabase,
) -> None:
    async with sessions(prefect_db, 5) as (observer, holder, first, second, third):
        await holder.execute("BEGIN; LOCK TABLE flow_run IN ACCESS EXCLUSIVE MODE")
        waiters = []
        for conn, statement in (
            # A migration's DDL queued behind the holder: every later reader queues behind both.
            (first, "LOCK TABLE flow_run IN ACCESS EXCLUSIVE MODE"),
            (second, "SELECT count(*) FROM flow_run"),
            (third, "SELECT count(*) FROM flow_run"),
        ):
            waiters.append(in_background(conn.execute(f"BEGIN; {statement}")))
            await wait_until_waiting(observer, conn.get_server_pid())
        report = await doctor(
            prefect_db, DoctorThresholds(lock_wait_seconds=0.0, deadlock_window_seconds=0.1)
        )
        tree = only(report, "lock_tree")
        assert tree.data["root_pid"] == holder.get_server_pid()
        assert tree.data["terminate"] == f"SELECT pg_terminate_backend({holder.get_server_pid()});"
        pids = {s["pid"]: s for s in tree.data["sessions"]}
        assert set(pids) == {c.get_server_pid() for c in (holder, first, second, third)}
        assert pids[holder.get_server_pid()]["depth"] == 0
        assert pids[holder.get_server_pid()]["state"] == "idle in transaction"
        assert pids[first.get_server_pid()]["depth"] == 1
        for conn in (second, third):
            # Blocked by the holder and by the DDL queued ahead: it hangs under the DDL.
            assert set(pids[conn.get_server_pid()]["blocked_by"]) == {
                holder.get_server_pid(),
                first.get_server_pid(),
            }
            assert pids[conn.get_server_pid()]["depth"] == 2
        for conn in (first, second, third):
            assert pids[conn.get_server_pid()]["waiting_relation"] == "flow_run"
        assert "ROOT BLOCKER" in tree.evidence[0]
        # The doctor's own flow_run queries gave up (lock_timeout) instead of joining the queue.
        assert any("lock_timeout" in line for line in report.targets[0].incomplete)
        assert report.exit_code >= 1
        await holder.execute("ROLLBACK")
        await asyncio.wait_for(waiters[0], 10)
        await first.execute("ROLLBACK")
        await asyncio.wait_for(asyncio.gather(*waiters[1:]), 10)


async def test_deadlock_between_two_sessions_on_deployment_rows_is_a_storm(prefect_db: TestDatabase) -> None:
    update = "UPDATE deployment SET last_polled = now() WHERE id = $1"
    async with sessions(prefect_db, 3) as (setup, a, b):
        pool = await seed.create_work_pool(setup, "pool-d", default_queue_last_polled_ago=5)
        flow = await seed.create_flow(setup, "flow")
        d1, d2 = [
            await seed.create_deployment(setup, flow, pool.default_queue_id, f"dep-{i}", last_polled_ago=5)
            for i in range(2)
        ]
        exporter = exporter_for(target_for(prefect_db), sampler=False)
        try:
            # The doctor samples the deadlock counter now and again 8 s later; the deadlock happens between.
            running = in_background(diagnose(exporter, doctor=DoctorThresholds(deadlock_window_seconds=8.0)))
            await asyncio.sleep(0.5)
            for conn, own in ((a, d1), (b, d2)):
                await conn.execute("BEGIN")
                await conn.execute(update, own)
            crossing = in_background(a.execute(update, d2))
            await wait_until_waiting(setup, a.get_server_pid())
            outcomes = await asyncio.gather(crossing, b.execute(update, d1), return_exceptions=True)
            assert any(isinstance(o, asyncpg.DeadlockDetectedError) for o in outcomes), outcomes
            for conn in (a, b):
                await conn.execute("ROLLBACK")
                await conn.execute("SELECT pg_stat_force_next_flush()")
            report, _ = await running
        finally:
            await exporter.close()
    jsonschema.validate(report_dict(report), SCHEMA)
    storm = only(report, "deadlock_storm")
    assert storm.severity is Severity.CRITICAL and storm.data["deadlocks"] == 1
    assert storm.data["prefect_release"] == report.targets[0].prefect_release
    expected = "true" if prefect_db.prefect_version == "3.1.15" else "false"
    assert storm.data["poll_deadlocks"] == expected
    if expected == "true":
        assert "3.7.0" in storm.action and "PREFECT_WORKER_QUERY_SECONDS" in storm.action
    assert report.exit_code == 2


@pytest.fixture(scope="module")
def logging_cluster() -> Iterator[PgCluster]:
    """A cluster writing its server log to files (csvlog), with a deployment table."""
    pg = PgCluster.create(
        Path(tempfile.mkdtemp(prefix="ppe-doctor-log-")),
        settings={"logging_collector": "on", "log_destination": "csvlog", "log_directory": "log"},
    )
    pg.start()
    pg.create_database("prefect")
    pg.psql("CREATE TABLE deployment (id uuid PRIMARY KEY, last_polled timestamptz)", "prefect")
    try:
        yield pg
    finally:
        pg.destroy()


async def test_deadlock_storm_names_the_operations_from_the_server_log(logging_cluster: PgCluster) -> None:
    update = "UPDATE deployment SET last_polled = now() WHERE id = $1"
    first, second = uuid.uuid4(), uuid.uuid4()
    pattern = str(logging_cluster.data_dir / "log" / "*.csv")
    target = TargetConfig(name="logged", dsn=logging_cluster.dsn("prefect"), server_log=pattern)
    exporter = exporter_for(target, sampler=False)
    a, b = [await asyncpg.connect(logging_cluster.dsn("prefect")) for _ in range(2)]
    try:
        await a.execute("INSERT INTO deployment (id) VALUES ($1), ($2)", first, second)
        running = in_background(diagnose(exporter, doctor=DoctorThresholds(deadlock_window_seconds=6.0)))
        await asyncio.sleep(0.5)
        await a.execute("BEGIN"), await b.execute("BEGIN")
        await a.execute(update, first), await b.execute(update, second)
        outcomes = await asyncio.gather(
            a.execute(update, second), b.execute(update, first), return_exceptions=True
        )
        assert sum(isinstance(o, asyncpg.DeadlockDetectedError) for o in outcomes) == 1, outcomes
        for conn in (a, b):
            await conn.execute("ROLLBACK")
            await conn.execute("SELECT pg_stat_force_next_flush()")
        report, _ = await running
    finally:
        a.terminate(), b.terminate()
        await exporter.close()
    storm = only(report, "deadlock_storm")
    assert storm.data["by_operation"] == {"deployment_last_polled_update": 1}
    assert "deployment_last_polled_update 1" in storm.evidence[1]
    # Without a Prefect schema the release is not known: the doctor says so instead of guessing.
    assert storm.data["prefect_release"] == "unknown" and storm.data["poll_deadlocks"] is None
    assert only(report, "no_prefect_schema").severity is Severity.WARNING


async def test_idle_in_transaction_session_is_listed_by_pid(prefect_db: TestDatabase) -> None:
    async with sessions(prefect_db, 2) as (observer, idle):
        await idle.execute("BEGIN; SELECT count(*) FROM deployment")
        pid = idle.get_server_pid()

        async def idle_long_enough() -> bool:
            age = await observer.fetchval(
                "SELECT extract(epoch FROM now() - state_change) FROM pg_stat_activity WHERE pid = $1",
                idle.get_server_pid(),
            )
            return age is not None and age > 0.6

        await eventually(idle_long_enough, timeout=10, interval=0.1)
        report = await doctor(
            prefect_db, DoctorThresholds(idle_in_transaction_seconds=0.5, deadlock_window_seconds=0.1)
        )
    finding = only(report, "idle_in_transaction")
    assert finding.data["pids"] == [pid]
    assert finding.severity is Severity.WARNING
    assert "SELECT count(*) FROM deployment" in finding.evidence[0]
    assert report.exit_code == 1


# Runs --------------------------------------------------------------------------------------------


async def test_pending_runs_of_a_pool_whose_workers_went_stale(prefect_db: TestDatabase) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        pool = await seed.create_work_pool(conn, "pool-stale", default_queue_last_polled_ago=3000)
        await seed.create_worker(conn, pool.id, "worker-gone", heartbeat_ago=3600)
        flow = await seed.create_flow(conn, "flow")
        stranded = [
            await seed.create_flow_run(
                conn, flow_id=flow, queue_id=pool.default_queue_id, state_type="PENDING", state_age=age
            )
            for age in (1800, 1200)
        ]
        # Pending for a minute only: not stranded yet.
        await seed.create_flow_run(
            conn, flow_id=flow, queue_id=pool.default_queue_id, state_type="PENDING", state_age=60
        )
        report = await doctor(prefect_db)
    finding = only(report, "stranded_pending")
    assert [r["id"] for r in finding.data["runs"]] == [str(r) for r in stranded]
    (queue,) = finding.data["queues"]
    assert queue == {"work_pool": "pool-stale", "work_queue": "default", "live_workers": 0, "runs": 2}
    assert finding.data["pools_without_live_workers"] == ["pool-stale"]
    assert finding.severity is Severity.CRITICAL
    assert "No live worker serves pool-stale: start one first" in finding.action
    assert str(stranded[0]) in finding.evidence[1]
    assert report.exit_code == 2


async def test_running_run_whose_heartbeats_stopped_is_a_zombie(prefect_db: TestDatabase) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        pool = await seed.create_work_pool(conn, "pool-z", default_queue_last_polled_ago=5)
        await seed.create_worker(conn, pool.id, "worker-z", heartbeat_ago=5)
        flow = await seed.create_flow(conn, "flow")
        zombie = await seed.create_flow_run(
            conn,
            flow_id=flow,
            queue_id=pool.default_queue_id,
            state_type="RUNNING",
            state_age=3000,
            infrastructure_pid="host-a:4242",
        )
        for ago in (1000, 940, 880):
            await seed.add_heartbeat(conn, zombie, ago)
        alive = await seed.create_flow_run(
            conn, flow_id=flow, queue_id=pool.default_queue_id, state_type="RUNNING", state_age=3000
        )
        for ago in (70, 10):
            await seed.add_heartbeat(conn, alive, ago)
        report = await doctor(prefect_db)
    finding = only(report, "zombie_runs")
    (run,) = finding.data["runs"]
    assert run["id"] == str(zombie) and run["infrastructure_pid"] == "host-a:4242"
    assert 880 <= run["last_heartbeat_age_seconds"] < 900
    assert run["cadence_seconds"] == pytest.approx(60, abs=1)
    assert finding.severity is Severity.CRITICAL and report.exit_code == 2


async def test_worker_still_online_without_heartbeats_and_a_queue_nobody_polls(
    prefect_db: TestDatabase,
) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        pool = await seed.create_work_pool(conn, "pool-w", default_queue_last_polled_ago=3600)
        # The foreman would have marked it OFFLINE after 90 s: it is not running.
        await seed.create_worker(conn, pool.id, "worker-ghost", heartbeat_ago=1200, status="ONLINE")
        flow = await seed.create_flow(conn, "flow")
        await seed.create_deployment(conn, flow, pool.default_queue_id, "dep", last_polled_ago=3600)
        report = await doctor(prefect_db)
    workers = only(report, "foreman_stalled")
    (ghost,) = workers.data["workers"]
    assert ghost["worker"] == "worker-ghost" and ghost["work_pool"] == "pool-w"
    assert 1200 <= ghost["heartbeat_age_seconds"] < 1230
    assert workers.data["stale_rows"] == {"worker": 1, "work_queue": 0, "deployment": 0}
    queues = only(report, "unpolled_queues")
    (queue,) = queues.data["queues"]
    assert queue["work_queue"] == "default" and queue["deployments"] == 1 and queue["live_workers"] == 0
    assert report.exit_code == 1


async def test_late_runs_say_why(prefect_db: TestDatabase) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        pool = await seed.create_work_pool(conn, "pool-late", default_queue_last_polled_ago=5)
        await seed.create_worker(conn, pool.id, "worker-l", heartbeat_ago=5)
        full = await seed.create_work_queue(conn, pool.id, "full", last_polled_ago=5, concurrency_limit=1)
        flow = await seed.create_flow(conn, "flow")
        await seed.create_flow_run(conn, flow_id=flow, queue_id=full, state_type="RUNNING", state_age=30)
        late = await seed.create_flow_run(
            conn,
            flow_id=flow,
            queue_id=full,
            state_type="SCHEDULED",
            state_name="Late",
            next_scheduled_in=-900,
        )
        report = await doctor(prefect_db)
    finding = only(report, "late_runs")
    (queue,) = finding.data["queues"]
    assert queue["work_queue"] == "full"
    assert queue["reasons"] == ["queue concurrency limit full: 1 of 1 slots held by RUNNING or PENDING runs"]
    assert queue["examples"][0].startswith(str(late))
    assert finding.severity is Severity.CRITICAL


# In the running exporter ---------------------------------------------------------------------------


async def test_doctor_endpoint_behind_basic_auth_serves_html_and_json(prefect_db: TestDatabase) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        pool = await seed.create_work_pool(conn, "pool-web", default_queue_last_polled_ago=3000)
        flow = await seed.create_flow(conn, "flow")
        run = await seed.create_flow_run(
            conn, flow_id=flow, queue_id=pool.default_queue_id, state_type="PENDING", state_age=1800
        )
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    exporter = exporter_for(target_for(prefect_db), sampler=False)
    server = TestServer(make_app(exporter, WebConfig(users={"ops": hashed})), host="127.0.0.1")
    await server.start_server()
    try:
        base = str(server.make_url("")).rstrip("/")
        auth = {"Authorization": "Basic " + base64.b64encode(b"ops:s3cret").decode()}
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/doctor") as refused:
                assert refused.status == 401
            async with http.get(f"{base}/", headers=auth) as index:
                assert "href='/doctor'" in await index.text()
            async with http.get(f"{base}/doctor", headers=auth) as page:
                assert page.status == 200 and page.content_type == "text/html"
                assert str(run) in await page.text()
            headers = {"Accept": "application/json"}
            async with http.get(f"{base}/doctor?target=test", headers={**auth, **headers}) as answer:
                assert answer.content_type == "application/json"
                document = await answer.json()
            async with http.get(f"{base}/doctor?target=nope", headers=auth) as unknown:
                assert unknown.status == 400
    finally:
        await server.close()
    jsonschema.validate(document, SCHEMA, format_checker=jsonschema.FormatChecker())
    (target,) = document["targets"]
    assert document["exit_code"] == 2 and target["target"] == "test"
    stranded = next(f for f in target["findings"] if f["code"] == "stranded_pending")
    assert [r["id"] for r in stranded["data"]["runs"]] == [str(run)]
