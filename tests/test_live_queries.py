"""Every dashboard panel and alert expression, evaluated by a real Prometheus scraping a real exporter."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import pytest
import yaml
from helpers import eventually, exporter_for, serving, target_for

from devtools import promstack, seed
from devtools.pgcluster import PgCluster, TestDatabase

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((REPO_ROOT / "dashboards").glob("*.json"))
ALERTS_FILE = REPO_ROOT / "alerts" / "prefect-db-alerts.yml"
TARGET = "live"
JOB = "prefect-db"  # the job name the alert rules' `up` expressions expect
# Grafana's variables as the dashboards are opened with "All" pools, on the scenario's target.
SUBSTITUTIONS = (
    ("${target}", TARGET),
    ("$target", TARGET),
    ("${work_pool}", ".*"),
    ("$work_pool", ".*"),
    ("${__rate_interval}", "1m"),
    ("$__rate_interval", "1m"),
    ("${__interval}", "15s"),
    ("$__interval", "15s"),
    ("${__range}", "5m"),
    ("$__range", "5m"),
)
# Prefect 3.7+ poll: lock the queue's deployment rows in id order, then update last_polled.
POLL_DEPLOYMENTS = (
    "WITH locked AS (SELECT deployment.id AS id, deployment.status AS status FROM deployment "
    "WHERE deployment.id IN (NULL) AND (1 != 1) OR deployment.work_queue_id IN ($3::UUID) "
    "ORDER BY deployment.id FOR UPDATE) UPDATE deployment SET last_polled=$1::TIMESTAMP WITH TIME ZONE, "
    "status=$2::deployment_status, updated=deployment.updated "
    "WHERE deployment.id IN (SELECT locked.id FROM locked) RETURNING deployment.id"
)
POLL = "deployment_last_polled_update"  # the operation the sampler and the log follower give polls
DEADLOCKS = 3  # more than PrefectPostgresDeadlocks' threshold of 2
# Polls waiting on a locked row: enough that rate(...[5m]) of their waits passes
# PrefectWorkerPollContention's 0.1 after half a minute of samples.
POLLERS = 3

# Expressions that return nothing in this scenario, each with the reason. Every other expression must
# return data, and an entry here that returns data fails too (the list must not go stale).
EXPECTED_EMPTY: dict[str, str] = {
    # Dashboards.
    "postgres.json: Time since last autovacuum: A": (
        "autovacuum has not visited the tables of a database created seconds ago (no sample when never)"
    ),
    "work-pools.json: Tag concurrency limits (v1): A": (
        "Prefect 3.9.1 keeps tag limits in concurrency_limit_v2 (tag:…); its v1 table is empty"
    ),
    "work-pools.json: Tag concurrency limits (v1): B": "as A: the v1 table is empty on Prefect 3.9.1",
    # Alert rules whose condition is false in this scenario.
    "alert PrefectDbExporterDown": "Prometheus scrapes the exporter",
    "alert PrefectDbExporterAbsent": "the prefect-db job has a target",
    "alert PrefectDbCollectorFailing": "every collector succeeds",
    "alert PrefectDbPrefectSchemaMissing": "the database holds Prefect's schema",
    "alert PrefectDbServerLogUnreadable": "the server log is readable",
    "alert PrefectPostgresDown": "the database answers",
    "alert PrefectPostgresTooManyConnections (1)": "a handful of connections out of max_connections",
    "alert PrefectPostgresTooManyConnections (2)": "a handful of connections out of max_connections",
    "alert PrefectPostgresIdleInTransaction": "the lock holder is idle in transaction for seconds, not 5m",
    "alert PrefectPostgresLongTransaction": "no transaction is 30 minutes old",
    "alert PrefectPostgresLockWaitLong": "the blocked poll waits seconds, not a minute",
    "alert PrefectPostgresManyBlockedSessions": f"{POLLERS} blocked sessions, not 5 on average",
    "alert PrefectPostgresXidWraparound (1)": "a fresh cluster's transaction IDs are young",
    "alert PrefectPostgresXidWraparound (2)": "a fresh cluster's transaction IDs are young",
    "alert PrefectPostgresAutovacuumStarved": "no table has 10,000 dead tuples",
    "alert PrefectPostgresDeadTuplesHigh": "no table has 10,000 dead tuples",
    "alert PrefectFlowRunsRunningTooLong": "heartbeats are present, so the fallback stays quiet",
    "alert PrefectWorkerPollContention (1)": "Prefect 3.9.1's schema revision does not deadlock on polls",
    "alert PrefectWorkPoolConcurrencySaturated": "no pool's active runs reach its limit",
}

Board = dict[str, Any]


@dataclass(frozen=True)
class Expression:
    """A PromQL expression to evaluate, named by where it comes from."""

    key: str
    expr: str


def substitute(text: str) -> str:
    """Replace Grafana's variables as a dashboard opened on the scenario's target would."""
    for variable, value in SUBSTITUTIONS:
        text = text.replace(variable, value)
    return text


def panels(board: Board) -> list[Board]:
    """Every non-row panel, including those of collapsed rows."""
    found = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return [p for p in found if p["type"] != "row"]


def dashboard_expressions() -> list[Expression]:
    """Every target of every committed dashboard."""
    return [
        Expression(f"{path.name}: {panel['title']}: {target['refId']}", substitute(target["expr"]))
        for path in DASHBOARDS
        for panel in panels(json.loads(path.read_text(encoding="utf-8")))
        for target in panel["targets"]
    ]


def variable_queries() -> list[tuple[str, str, str]]:
    """(key, metric selector, label) of every label_values() variable."""
    found = []
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text(encoding="utf-8"))["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", substitute(variable["query"]))
            assert match, f"{path.name}: variable {variable['name']}: not label_values(selector, label)"
            found.append((f"{path.name}: variable {variable['name']}", match.group(1), match.group(2)))
    return found


def alert_expressions() -> list[Expression]:
    """Every alert rule's expression; rules sharing a name (severities) are numbered in file order."""
    rules = [
        rule
        for group in yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    names = [rule["alert"] for rule in rules]
    seen: dict[str, int] = {}
    found = []
    for rule in rules:
        name = rule["alert"]
        seen[name] = seen.get(name, 0) + 1
        key = f"alert {name} ({seen[name]})" if names.count(name) > 1 else f"alert {name}"
        found.append(Expression(key, rule["expr"]))
    return found


def in_background(work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run ``work`` as a task whose failure is always retrieved."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda done: done.cancelled() or done.exception())
    return task


# The scenario -------------------------------------------------------------------------------------


@dataclass
class Trouble:
    """A session for changes while Prometheus scrapes, the runs to crash and the rows to deadlock on."""

    setup: asyncpg.Connection
    running: tuple[uuid.UUID, ...]
    deadlock_rows: tuple[uuid.UUID, uuid.UUID]


async def queue_id(conn: asyncpg.Connection, pool: str, queue: str) -> uuid.UUID:
    """The id of a work queue of the demo scene."""
    found = await conn.fetchval(
        "SELECT wq.id FROM work_queue AS wq JOIN work_pool AS wp ON wp.id = wq.work_pool_id"
        " WHERE wp.name = $1 AND wq.name = $2",
        pool,
        queue,
    )
    assert isinstance(found, uuid.UUID)
    return found


async def deployments_of(conn: asyncpg.Connection, queue: uuid.UUID) -> list[asyncpg.Record]:
    """The deployments of a work queue, in id order (the order a 3.7+ poll locks them)."""
    return list(
        await conn.fetch("SELECT id, flow_id FROM deployment WHERE work_queue_id = $1 ORDER BY id", queue)
    )


@asynccontextmanager
async def trouble(db: TestDatabase) -> AsyncIterator[Trouble]:
    """Seed the demo scene plus what the remaining panels need; hold a lock with worker polls behind it."""
    setup, holder, *pollers = [await asyncpg.connect(db.admin_dsn) for _ in range(2 + POLLERS)]
    try:
        await seed.seed_trouble(setup)
        k8s, etl = seed.DEMO_POOLS
        default = await queue_id(setup, k8s, "default")
        critical = await queue_id(setup, k8s, "critical")
        polled = await deployments_of(setup, default)
        deadlocking = await deployments_of(setup, await queue_id(setup, etl, "nightly"))
        limited = (await deployments_of(setup, critical))[0]
        # Three RUNNING runs to crash after the first scrape (three within 10 minutes: the crash storm
        # of PrefectFlowRunsCrashing), and a late run behind the full "critical" queue
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
        # A session idle in transaction holding a deployment row, and worker polls of its queue waiting.
        await holder.execute("BEGIN")
        await holder.fetch("SELECT id FROM deployment WHERE id = $1 FOR UPDATE", polled[-1]["id"])
        for poller in pollers:
            in_background(poller.fetch(POLL_DEPLOYMENTS, datetime.now(UTC), "READY", default))
            await eventually(lambda: waiting(setup, poller.get_server_pid()), timeout=10, interval=0.05)  # noqa: B023
        yield Trouble(setup, tuple(running), (deadlocking[0]["id"], deadlocking[1]["id"]))
    finally:
        for conn in (setup, holder, *pollers):
            conn.terminate()


async def waiting(observer: asyncpg.Connection, pid: int) -> bool:
    """Whether backend ``pid`` waits on a heavyweight lock."""
    event: str | None = await observer.fetchval(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
    )
    return event == "Lock"


async def deadlock(db: TestDatabase, rows: tuple[uuid.UUID, uuid.UUID]) -> None:
    """Two last_polled updates that lock two deployment rows in opposite order: one of them deadlocks."""
    update = "UPDATE deployment SET last_polled = clock_timestamp() WHERE id = $1"
    a, b = await asyncpg.connect(db.admin_dsn), await asyncpg.connect(db.admin_dsn)
    try:
        for conn, own in ((a, rows[0]), (b, rows[1])):
            await conn.execute("BEGIN")
            await conn.execute(update, own)
        crossing = in_background(a.execute(update, rows[1]))
        await eventually(lambda: waiting(b, a.get_server_pid()), timeout=10, interval=0.02)
        outcomes = await asyncio.gather(crossing, b.execute(update, rows[0]), return_exceptions=True)
        assert any(isinstance(o, asyncpg.DeadlockDetectedError) for o in outcomes), outcomes
        for conn in (a, b):
            await conn.execute("ROLLBACK")
            await conn.execute("SELECT pg_stat_force_next_flush()")
    finally:
        a.terminate()
        b.terminate()


# Prometheus --------------------------------------------------------------------------------------


def prometheus_config(exporter_url: str) -> dict[str, Any]:
    """Scrape the exporter every second and evaluate the alert rules every second."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS_FILE)],
        "scrape_configs": [
            {"job_name": JOB, "static_configs": [{"targets": [urlsplit(exporter_url).netloc]}]}
        ],
    }


async def wait_for(prom: promstack.Prometheus, expr: str, timeout: float = 30.0) -> None:
    """Poll until ``expr`` returns data."""
    deadline = time.monotonic() + timeout
    while not await prom.query(expr):
        if time.monotonic() > deadline:
            raise AssertionError(f"no data within {timeout:g}s: {expr}")
        await asyncio.sleep(0.25)


async def complete_scrape(prom: promstack.Prometheus, timeout: float = 10.0) -> float:
    """A moment whose latest scrape holds every enabled collector's results.

    A collector whose TTL expired is left out of a scrape until its refresh ends, and the exporter
    answers after 0.5 s of Prometheus' 1 s timeout: on two busy cores some scrapes miss the Prefect
    collectors, and Prometheus marks their series stale until the next one.
    """
    complete = (
        f'count(prefect_db_exporter_collector_success{{target="{TARGET}"}})'
        f' == count(prefect_db_exporter_collector_enabled{{target="{TARGET}"}} == 1)'
    )
    deadline = time.monotonic() + timeout
    while True:
        at = time.time()
        if await prom.query(complete, at=at):
            return at
        if time.monotonic() > deadline:
            raise AssertionError(f"no complete scrape within {timeout:g}s")
        await asyncio.sleep(0.2)


async def evaluate(prom: promstack.Prometheus, expressions: list[Expression], at: float) -> list[str]:
    """Problems of the expressions evaluated at ``at``: errors, no data unless allowed, stale allowances."""
    failures = []
    for expression in expressions:
        try:
            empty = not await prom.query(expression.expr, at=at)
        except promstack.PromStackError as exc:
            failures.append(f"{expression.key}: {exc}\n    {expression.expr}")
            continue
        if empty and expression.key not in EXPECTED_EMPTY:
            failures.append(
                f"{expression.key}: no data, but the scenario makes it true\n    {expression.expr}"
            )
        elif not empty and expression.key in EXPECTED_EMPTY:
            failures.append(
                f"{expression.key}: has data, but the allow-list says: {EXPECTED_EMPTY[expression.key]}"
            )
    return failures


async def check_variables(prom: promstack.Prometheus) -> list[str]:
    """Every label_values() variable offers at least one value."""
    failures = []
    for key, selector, label in variable_queries():
        body = await prom.request("GET", f"/api/v1/label/{label}/values", params={"match[]": selector})
        if not body["data"]:
            failures.append(f"{key}: label_values({selector}, {label}) is empty")
    return failures


async def check_rules(prom: promstack.Prometheus, count: int) -> list[str]:
    """Every rule of the file is loaded and has been evaluated without error."""
    rules = [rule for group in await prom.rules() for rule in group["rules"]]
    failures = [
        f"rule {r['name']}: {r['health']}: {r.get('lastError', '')}" for r in rules if r["health"] != "ok"
    ]
    if len(rules) != count:
        failures.append(f"Prometheus loaded {len(rules)} rules, {ALERTS_FILE.name} has {count}")
    return failures


# The test ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefect_db", ["3.9.1"], indirect=True)
async def test_every_panel_and_alert_expression(prefect_db: TestDatabase, cluster: PgCluster) -> None:
    alerts = alert_expressions()
    expressions = dashboard_expressions() + alerts
    unknown = set(EXPECTED_EMPTY) - {e.key for e in expressions}
    assert not unknown, f"allow-list entries that name no expression: {sorted(unknown)}"
    started = time.monotonic()
    async with trouble(prefect_db) as scene:
        exporter = exporter_for(target_for(prefect_db, name=TARGET, server_log=str(cluster.log_path)))
        async with (
            serving(exporter) as (_, exporter_url),
            promstack.Prometheus(prometheus_config(exporter_url)) as prom,
        ):
            # Counters appear with their first increment, which rate() cannot see: each kind of trouble
            # happens once before Prometheus has the series and again after.
            await wait_for(
                prom, 'prefect_db_exporter_collector_success{collector="flow_run_transitions"} == 1'
            )
            await seed.set_flow_run_state(scene.setup, scene.running[0], "CRASHED")
            await deadlock(prefect_db, scene.deadlock_rows)
            # The next refresh of the 15 s collectors counts them.
            await wait_for(prom, 'prefect_db_flow_run_transitions_total{state_type="CRASHED"}')
            await wait_for(prom, "prefect_db_deadlocks_total > 0")
            await seed.set_flow_run_state(scene.setup, scene.running[1], "CRASHED")
            for _ in range(DEADLOCKS - 1):
                await deadlock(prefect_db, scene.deadlock_rows)
            await wait_for(
                prom, 'increase(prefect_db_flow_run_transitions_total{state_type="CRASHED"}[1m]) > 0'
            )
            # A third crash once the second is counted: the crash storm of PrefectFlowRunsCrashing.
            await seed.set_flow_run_state(scene.setup, scene.running[2], "CRASHED")
            await wait_for(prom, 'prefect_db_flow_run_transitions_total{state_type="CRASHED"} >= 3')
            await wait_for(prom, f"prefect_db_deadlocks_total >= {DEADLOCKS}")
            await wait_for(
                prom, f'increase(prefect_db_deadlocks_by_operation_total{{operation="{POLL}"}}[1m]) > 0'
            )
            failures = await evaluate(prom, expressions, at=await complete_scrape(prom))
            failures += await check_variables(prom)
            failures += await check_rules(prom, len(alerts))
    assert not failures, "\n".join(failures)
    print(f"{len(expressions)} expressions evaluated after {time.monotonic() - started:.1f}s")
