"""Every dashboard panel and alert expression, evaluated by a real Prometheus scraping a real exporter."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import yaml
from helpers import exporter_for, serving, target_for

from devtools import grafana, pictures, promstack, scene, seed
from devtools.pgcluster import PgCluster, TestDatabase

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((REPO_ROOT / "dashboards").glob("*.json"))
ALERTS_FILE = REPO_ROOT / "alerts" / "prefect-db-alerts.yml"
TARGET = "live"
JOB = "prefect-db"  # the job name the alert rules' `up` expressions expect
# Grafana's variables as the dashboards are opened with "All" instances and pools, on the scenario's target.
VARIABLES = grafana.Variables(job=JOB, target=TARGET)
POLL = scene.POLL_OPERATION
DEADLOCKS = 3  # more than PrefectPostgresDeadlocks' threshold of 2
# Polls waiting on a locked row: enough that rate(...[5m]) of their waits passes
# PrefectWorkerPollContention's 0.1 after half a minute of samples.
POLLERS = 3
ROWS_PER_POLL = "postgres.json: Deployment rows updated per worker poll: A"

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
    # Annotations of events the scenario does not cause; tests/test_dashboards.py has promtool evaluate
    # them on series in which the event happens.
    "annotation PostgreSQL restarts": "PostgreSQL does not restart during the scenario",
    "annotation Prefect schema changes": "the schema is not migrated during the scenario",
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
    "alert PrefectIsolationNotReadCommitted (1)": "repeatable read would turn the scenario's deadlocks into "
    "serialization failures; tests/test_machinery.py makes it true",
    "alert PrefectIsolationNotReadCommitted (2)": "as (1)",
}

Board = dict[str, Any]


@dataclass(frozen=True)
class Expression:
    """A PromQL expression to evaluate, named by where it comes from."""

    key: str
    expr: str


def substitute(text: str) -> str:
    """Replace Grafana's variables as a dashboard opened on the scenario's target would."""
    return VARIABLES.substitute(text)


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


def annotation_expressions() -> list[Expression]:
    """Every distinct annotation query of the committed dashboards (each board marks the same events)."""
    found: dict[str, Expression] = {}
    for path in DASHBOARDS:
        for annotation in json.loads(path.read_text(encoding="utf-8"))["annotations"]["list"]:
            key = f"annotation {annotation['name']}"
            expression = Expression(key, substitute(annotation["expr"]))
            assert found.setdefault(key, expression) == expression, f"{path.name}: {key} differs"
    return list(found.values())


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
async def test_every_panel_and_alert_expression(
    prefect_db: TestDatabase, cluster: PgCluster, tmp_path: Path
) -> None:
    alerts = alert_expressions()
    annotations = annotation_expressions()
    expressions = dashboard_expressions() + annotations + alerts
    unknown = set(EXPECTED_EMPTY) - {e.key for e in expressions}
    assert not unknown, f"allow-list entries that name no expression: {sorted(unknown)}"
    started = time.monotonic()
    async with scene.trouble(prefect_db.admin_dsn, POLLERS) as trouble:
        # The opt-in per-worker collector too, for the dashboard lines that show it when it is on.
        exporter = exporter_for(
            target_for(prefect_db, name=TARGET, server_log=str(cluster.log_path)),
            enable=frozenset({"worker_heartbeats"}),
        )
        async with (
            serving(exporter) as (_, exporter_url),
            promstack.Prometheus(prometheus_config(exporter_url)) as prom,
        ):
            drawing_from = time.time()
            # Counters appear with their first increment, which rate() cannot see: each kind of trouble
            # happens once before Prometheus has the series and again after.
            await wait_for(
                prom, 'prefect_db_exporter_collector_success{collector="flow_run_transitions"} == 1'
            )
            await seed.set_flow_run_state(trouble.setup, trouble.running[0], "CRASHED")
            await scene.deadlock(prefect_db.admin_dsn, trouble.deadlock_rows)
            # The next refresh of the 15 s collectors counts them.
            await wait_for(prom, 'prefect_db_flow_run_transitions_total{state_type="CRASHED"}')
            await wait_for(prom, "prefect_db_deadlocks_total > 0")
            await seed.set_flow_run_state(trouble.setup, trouble.running[1], "CRASHED")
            for _ in range(DEADLOCKS - 1):
                await scene.deadlock(prefect_db.admin_dsn, trouble.deadlock_rows)
            await wait_for(
                prom, 'increase(prefect_db_flow_run_transitions_total{state_type="CRASHED"}[1m]) > 0'
            )
            # A third crash once the second is counted: the crash storm of PrefectFlowRunsCrashing.
            await seed.set_flow_run_state(trouble.setup, trouble.running[2], "CRASHED")
            await wait_for(prom, 'prefect_db_flow_run_transitions_total{state_type="CRASHED"} >= 3')
            await wait_for(prom, f"prefect_db_deadlocks_total >= {DEADLOCKS}")
            await wait_for(
                prom, f'increase(prefect_db_deadlocks_by_operation_total{{operation="{POLL}"}}[1m]) > 0'
            )
            # The live worker's polls, counted by pg_stat_statements (a 30 s collector): the rows-per-poll
            # panel divides by their rate, which is 0 (and the quotient NaN) until two scrapes differ.
            await wait_for(prom, "rate(prefect_db_deployment_poll_updates_total[1m]) > 0", timeout=60.0)
            # A reload marks the boards (the "Exporter reloads" annotation, for one $__interval).
            await exporter.reload(exporter.config)
            (reloaded,) = [a.expr for a in annotations if a.key == "annotation Exporter reloads"]
            await wait_for(prom, reloaded)
            at = await complete_scrape(prom)
            failures = await evaluate(prom, expressions, at=at)
            (per_poll,) = [e.expr for e in expressions if e.key == ROWS_PER_POLL]
            rows_per_poll = [float(r["value"][1]) for r in await prom.query(per_poll, at=at)]
            polled = await scene.deployments_of(
                trouble.setup, await scene.queue_id(trouble.setup, seed.DEMO_POOLS[0], "critical")
            )
            failures += await check_variables(prom)
            failures += await check_rules(prom, len(alerts))
            # The README's pictures are drawn this way (make pictures): every board, from this Prometheus.
            # Graphs end one step past `at`, so that their last step sees the scrape `at` saw; the rest is
            # read at `at`, the complete scrape.
            window = pictures.Window(drawing_from, at + 1.0, step=1.0, at=at)
            drawn = await pictures.draw_all(pictures.Source(prom, VARIABLES, window), tmp_path)
            source = pictures.Source(prom, VARIABLES, window)
            marked = await pictures.events(source, grafana.load(DASHBOARDS[0]))
    assert not failures, "\n".join(failures)
    # Only the live worker's polls complete (the others wait on the held row): each rewrites its queue.
    assert rows_per_poll == [len(polled)], (rows_per_poll, len(polled))
    assert {m.name for m in marked} == {"Exporter reloads"}, marked
    assert [d.path.name for d in drawn] == [f"{p.stem}.png" for p in DASHBOARDS]
    allowed_empty = {tuple(key.split(": ")[:2]) for key in EXPECTED_EMPTY}
    for board in drawn:
        assert board.path.stat().st_size > 50_000, board.path
        empty = {(f"{board.path.stem}.json", title) for title in board.without_data}
        assert empty <= allowed_empty, f"{board.path.name}: no data for {sorted(empty - allowed_empty)}"
    print(f"{len(expressions)} expressions evaluated after {time.monotonic() - started:.1f}s")
