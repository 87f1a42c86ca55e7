"""Alert rules: promtool checks and unit tests, conventions, documented metrics, runbooks whose SQL runs."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from helpers import Series, exporter_for, scrape, target_for, value

from devtools import alert_rules, seed
from devtools.pgcluster import TestDatabase, admin_connect
from devtools.promstack import Prometheus, find_binary

REPO_ROOT = Path(__file__).resolve().parents[1]
RULES = REPO_ROOT / "alerts" / "prefect-db-alerts.yml"
RULE_TESTS = REPO_ROOT / "alerts" / "prefect-db-alerts_test.yml"
# The prefect-db-machinery group's cases live in a file of their own.
MACHINERY_RULE_TESTS = REPO_ROOT / "alerts" / "prefect-db-machinery_test.yml"
RULE_TEST_FILES = (RULE_TESTS, MACHINERY_RULE_TESTS)
RUNBOOKS = REPO_ROOT / "docs" / "runbooks.md"
METRICS_DOC = REPO_ROOT / "docs" / "metrics.md"
SETTINGS = alert_rules.load_settings(alert_rules.SETTINGS.read_text(), str(alert_rules.SETTINGS))
RUNBOOK_BASE = SETTINGS["runbook_base"] + "#"
DASHBOARD_BASE = SETTINGS["dashboard_base"] + "/"
DASHBOARDS_DIR = REPO_ROOT / "dashboards"
ANNOTATIONS = {"summary", "description", "runbook_url", "dashboard_url"}
GROUPS = ["prefect-db-exporter", "prefect-db-postgres", "prefect-db-prefect", "prefect-db-machinery"]
SEVERITIES = {"critical", "warning", "info"}
# Labels Prometheus adds to every scraped series, and its own series the rules use.
SCRAPE_LABELS = {"job", "instance"}
PROMETHEUS_SERIES: dict[str, set[str]] = {"up": set()}
# Rule labels that tell apart several rules of one alert.
VARIANT_LABELS = ("severity", "signal")
METRIC_ROW = re.compile(r"^\| `(prefect_db_\w+)` \| (\w+) \| ([^|]*) \|", re.MULTILINE)
SELECTOR = re.compile(r"\b(prefect_db_\w+|up)\b\s*(\{[^}]*\})?")
MATCHER_LABEL = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
RANGE_FUNCTION = re.compile(r"\b(rate|irate|increase)\(\s*(prefect_db_\w+)")
TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)")
THRESHOLD = re.compile(r"(?:>=|<=|>|<)\s*([0-9][0-9.]*)")
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.MULTILINE | re.DOTALL)


def rules() -> list[dict[str, Any]]:
    """Every rule of the rule file, each with its group's name under ``group``."""
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [{**rule, "group": group["name"]} for group in groups for rule in group["rules"]]


def alert_names() -> list[str]:
    """Alert names in file order, each once."""
    return list(dict.fromkeys(rule["alert"] for rule in rules()))


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """Metric name -> (type, labels) from docs/metrics.md."""
    return {
        name: (kind, set(re.findall(r"`(\w+)`", labels)))
        for name, kind, labels in METRIC_ROW.findall(METRICS_DOC.read_text())
    }


def runbook_sections() -> dict[str, str]:
    """Runbook text by ``## Heading``."""
    parts = re.split(r"^## (\S+)\n", RUNBOOKS.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def promtool() -> str:
    """Path of promtool (fails with an install hint when missing)."""
    return find_binary(("promtool",), "prometheus")


def test_rules_are_valid(promtool: str) -> None:
    result = run([promtool, "check", "rules", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("tests_file", RULE_TEST_FILES, ids=lambda path: path.name)
def test_rule_unit_tests_pass(promtool: str, tests_file: Path) -> None:
    result = run([promtool, "test", "rules", str(tests_file)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_file_is_rendered_from_its_source_and_settings() -> None:
    # The committed rule file is what `python -m devtools.alert_rules` makes of the source and
    # alerts/settings.yml: the job selector and the URL bases are set there, in one place.
    assert RULES.read_text() == alert_rules.rendered(), "run: python -m devtools.alert_rules"
    assert "@@" not in RULES.read_text()
    assert f"up{{{SETTINGS['job_selector']}}}" in RULES.read_text()


def test_groups_hold_only_alerts() -> None:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    names = [g["name"] for g in groups]
    assert names == GROUPS
    assert all("alert" in rule and "record" not in rule for rule in rules())
    assert all(name.startswith("Prefect") for name in alert_names())


@pytest.mark.parametrize("rule", rules(), ids=lambda r: f"{r['alert']}-{r['labels'].get('severity')}")
def test_rule_is_labelled_and_annotated(rule: dict[str, Any]) -> None:
    labels, annotations = rule["labels"], rule["annotations"]
    assert labels.get("severity") in SEVERITIES
    assert set(annotations) == ANNOTATIONS
    assert annotations["summary"].endswith("."), "summary is a sentence"
    assert "{{" not in annotations["summary"], "summary is the same for every instance of the alert"
    assert "{{ $value" in annotations["description"]
    assert annotations["runbook_url"] == RUNBOOK_BASE + rule["alert"].lower()
    assert annotations["dashboard_url"].startswith(DASHBOARD_BASE)
    uid = annotations["dashboard_url"].removeprefix(DASHBOARD_BASE)
    uids = {json.loads(f.read_text())["uid"] for f in DASHBOARDS_DIR.glob("*.json")}
    assert uid in uids, f"{rule['alert']}: no dashboard with uid {uid}"
    first_metric = SELECTOR.search(rule["expr"])
    assert first_metric is not None
    metric_labels = documented_metrics().get(first_metric.group(1), ("", set()))[1]
    for label in ("target", "work_pool", "work_queue"):
        if label in metric_labels:
            assert f"$labels.{label}" in annotations["description"], f"description names the {label}"


def test_rules_of_one_alert_differ_in_severity_or_signal() -> None:
    seen: dict[str, set[tuple[str, ...]]] = {}
    for rule in rules():
        variant = tuple(rule["labels"].get(label, "") for label in VARIANT_LABELS)
        assert variant not in seen.setdefault(rule["alert"], set()), rule["alert"]
        seen[rule["alert"]].add(variant)


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    tests = [t for path in RULE_TEST_FILES for t in yaml.safe_load(path.read_text())["tests"]]
    firing: dict[str, set[tuple[str, ...]]] = {}
    silent: set[str] = set()
    for case in (c for t in tests for c in t.get("alert_rule_test", [])):
        if not case["exp_alerts"]:
            silent.add(case["alertname"])
        for expected in case["exp_alerts"]:
            assert ANNOTATIONS <= set(expected.get("exp_annotations", {}))
            variant = tuple(expected["exp_labels"].get(label, "") for label in VARIANT_LABELS)
            firing.setdefault(case["alertname"], set()).add(variant)
    for rule in rules():
        variant = tuple(rule["labels"].get(label, "") for label in VARIANT_LABELS)
        assert variant in firing.get(rule["alert"], set()), f"no firing case for {rule['alert']} {variant}"
    assert set(alert_names()) <= silent, f"no silent case for {set(alert_names()) - silent}"


def test_every_alert_has_a_runbook_section() -> None:
    sections = runbook_sections()
    assert set(sections) == set(alert_names())
    for rule in rules():
        section = sections[rule["alert"]]
        assert "**Threshold.**" in section and "**What to do.**" in section, rule["alert"]
        if rule["group"] != "prefect-db-exporter":
            assert "```sql" in section, f"{rule['alert']}: no SQL to confirm it"
        for number in THRESHOLD.findall(rule["expr"]):
            if number not in {"0", "1"}:
                assert number in section, f"{rule['alert']}: runbook does not mention threshold {number}"


def test_rules_use_documented_metrics_and_labels() -> None:
    metrics = {name: labels for name, (_, labels) in documented_metrics().items()}
    metrics.update(PROMETHEUS_SERIES)
    for rule in rules():
        expr = rule["expr"]
        known: set[str] = set(SCRAPE_LABELS)
        for name, matchers in SELECTOR.findall(expr):
            assert name in metrics, f"{rule['alert']}: {name} is not in docs/metrics.md"
            known |= metrics[name]
            for label in MATCHER_LABEL.findall(matchers):
                assert label in metrics[name] | SCRAPE_LABELS, f"{rule['alert']}: {name} has no label {label}"
        for grouping in GROUPING.findall(expr):
            for label in filter(None, (part.strip() for part in grouping.split(","))):
                assert label in known, f"{rule['alert']}: no metric of the rule has label {label}"
        for label in TEMPLATE_LABEL.findall(str(rule["annotations"])):
            assert label in known | set(rule["labels"]), f"{rule['alert']}: $labels.{label} never set"


def test_rate_and_increase_only_on_counters() -> None:
    kinds = {name: kind for name, (kind, _) in documented_metrics().items()}
    for rule in rules():
        for function, name in RANGE_FUNCTION.findall(rule["expr"]):
            assert kinds[name] == "counter", f"{rule['alert']}: {function}() of gauge {name}"


async def test_rules_load_and_evaluate_in_prometheus() -> None:
    config = {"global": {"evaluation_interval": "1s"}, "rule_files": [str(RULES)]}
    async with Prometheus(config) as prometheus:
        deadline = time.monotonic() + 30
        while True:
            evaluated = [r for g in await prometheus.rules() for r in g["rules"]]
            pending = [r["name"] for r in evaluated if r["lastEvaluation"].startswith("0001-")]
            if evaluated and not pending:
                break
            assert time.monotonic() < deadline, f"rules never evaluated: {pending}"
            await asyncio.sleep(0.5)
        assert len(evaluated) == len(rules())
        broken = {r["name"]: r.get("lastError") for r in evaluated if r["health"] != "ok"}
        assert not broken
        # Nothing is scraped, so only the absent() rule can be pending.
        assert {a["labels"]["alertname"] for a in await prometheus.alerts()} <= {"PrefectDbExporterAbsent"}


def runbook_queries() -> Iterator[tuple[str, str]]:
    """(section, SQL) for every read-only SQL block of the runbooks."""
    for section, text in runbook_sections().items():
        for block in SQL_BLOCK.findall(text):
            if not block.lstrip().startswith("-- change:"):
                yield section, block


async def test_runbook_sql_runs_on_the_prefect_schema(prefect_db: TestDatabase) -> None:
    queries = list(runbook_queries())
    assert len(queries) >= 20
    failures = []
    conn = await admin_connect(prefect_db)
    try:
        for section, sql in queries:
            try:
                async with conn.transaction(readonly=True):
                    await conn.execute("SET LOCAL statement_timeout = '10s'")
                    await conn.execute(sql)
            except asyncpg.PostgresError as error:
                failures.append(f"{section}: {type(error).__name__}: {error}")
    finally:
        await conn.close()
    assert not failures, "\n".join(failures)


# The alerts' inputs: what the exporter counts, on the real schemas ----------------------------------

QUERIES = REPO_ROOT / "queries"


async def _scrape(db: TestDatabase, *collectors: str) -> Series:
    exporter = exporter_for(target_for(db), include=frozenset(collectors))
    try:
        return await scrape(exporter)
    finally:
        await exporter.close()


async def test_zombie_input_judges_each_run_by_its_own_heartbeat_cadence(prefect_db: TestDatabase) -> None:
    # PrefectFlowRunsHeartbeatStale pages on this count: three missed heartbeats of the run's own
    # cadence (at most heartbeat_stale_seconds, 600 s), not one fixed 600 s for every run.
    conn = await admin_connect(prefect_db)
    try:
        pool = await seed.create_work_pool(conn, "pool-z", default_queue_last_polled_ago=5)
        flow = await seed.create_flow(conn, "flow")

        async def running(heartbeats: tuple[float, ...]) -> None:
            run_id = await seed.create_flow_run(
                conn, flow_id=flow, queue_id=pool.default_queue_id, state_type="RUNNING", state_age=900
            )
            for ago in heartbeats:
                await seed.add_heartbeat(conn, run_id, ago)

        await running((160, 130, 100))  # 30 s cadence, silent 100 s > 3 x 30: stale
        await running((120, 90, 60))  # 30 s cadence, silent 60 s: alive
        await running((760, 580, 400))  # 180 s cadence (Prefect's default), silent 400 s < 540: alive
        await running((880, 700, 560))  # 180 s cadence, silent 560 s > 540: stale
        await running((500,))  # one heartbeat, no cadence: 500 s < heartbeat_stale_seconds
    finally:
        await conn.close()
    series = await _scrape(prefect_db, "running_heartbeats")
    pool_queue = {"work_pool": "pool-z", "work_queue": "default"}
    assert value(series, "prefect_db_running_runs", **pool_queue) == 5.0
    assert value(series, "prefect_db_running_runs_heartbeat_stale", **pool_queue) == 2.0


def _plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


async def test_zombie_input_reads_heartbeats_through_the_events_index(prefect_db: TestDatabase) -> None:
    # Bounded, indexed reads: with 20,000 heartbeat events of 200 runs, the collector probes
    # ix_events__event_resource_id_occurred per RUNNING run and never scans the events table.
    conn = await admin_connect(prefect_db)
    try:
        pool = await seed.create_work_pool(conn, "pool-i", default_queue_last_polled_ago=5)
        flow = await seed.create_flow(conn, "flow")
        first = await seed.create_flow_run(
            conn, flow_id=flow, queue_id=pool.default_queue_id, state_type="RUNNING", state_age=600
        )
        template = await seed.add_heartbeat(conn, first, 30)
        await conn.execute(
            """
            INSERT INTO events (id, occurred, event, resource_id, resource, related_resource_ids, related,
                                payload, received, recorded, follows)
            SELECT gen_random_uuid(), now() - make_interval(secs => n % 3600), e.event,
                   'prefect.flow-run.' || gen_random_uuid()::text, e.resource, e.related_resource_ids,
                   e.related, e.payload, e.received, e.recorded, e.follows
            FROM events AS e CROSS JOIN generate_series(1, 20000) AS n
            WHERE e.id = $1
            """,
            template,
        )
        await conn.execute("ANALYZE events")
        sql = (QUERIES / "running_heartbeats.sql").read_text()
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql.rstrip().rstrip(';')}")
    finally:
        await conn.close()
    nodes = list(_plan_nodes(json.loads(plan)[0]["Plan"]))
    on_events = [n for n in nodes if n.get("Relation Name") == "events"]
    assert on_events, "the plan reads no events"
    assert not [n for n in on_events if n["Node Type"] == "Seq Scan"], on_events
    assert any(n.get("Index Name") == "ix_events__event_resource_id_occurred" for n in on_events), on_events


async def test_waiting_runs_input_counts_runs_that_need_a_worker_now(prefect_db: TestDatabase) -> None:
    # PrefectWorkPoolNoOnlineWorkers pages only while runs wait: PENDING, or SCHEDULED and due, in
    # unpaused queues. Future runs and runs of a paused queue wait for nobody.
    conn = await admin_connect(prefect_db)
    try:
        pool = await seed.create_work_pool(conn, "pool-w", default_queue_last_polled_ago=5)
        held = await seed.create_work_queue(conn, pool.id, "held", paused=True)
        idle = await seed.create_work_pool(conn, "pool-idle", default_queue_last_polled_ago=5)
        flow = await seed.create_flow(conn, "flow")

        async def run(queue_id: Any, state_type: str, next_scheduled_in: float | None = None) -> None:
            await seed.create_flow_run(
                conn,
                flow_id=flow,
                queue_id=queue_id,
                state_type=state_type,
                next_scheduled_in=next_scheduled_in,
            )

        await run(pool.default_queue_id, "PENDING")
        await run(pool.default_queue_id, "SCHEDULED", -30)  # due
        await run(pool.default_queue_id, "SCHEDULED", 600)  # later
        await run(pool.default_queue_id, "RUNNING")
        await run(held, "PENDING")
        await run(idle.default_queue_id, "SCHEDULED", 3600)
    finally:
        await conn.close()
    series = await _scrape(prefect_db, "work_pools")
    assert value(series, "prefect_db_work_pool_waiting_runs", work_pool="pool-w") == 2.0
    assert value(series, "prefect_db_work_pool_waiting_runs", work_pool="pool-idle") == 0.0
