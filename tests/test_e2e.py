"""End to end: real Prefect 3.9.1 server and workers break down; the alerts reach a webhook.

One scenario, on the session's throwaway cluster, with every part real:

* a Prefect 3.9.1 server (``prefect server start``) on its own migrated database, the exporter role
  from ``deploy/exporter-role.sql``, a process work pool with its one (default) queue and two
  deployments registered by ``deploy/compose/flows/register.py`` (the compose stack's script);
* two ``prefect worker start`` process workers on that queue, polling every second;
* the exporter in process, configured from ``deploy/compose/exporter.yaml`` with low thresholds;
* Debian's Prometheus scraping it every second with a copy of ``alerts/prefect-db-alerts.yml``, and
  Debian's Alertmanager with a copy of ``deploy/alertmanager.yml`` (see ``rewrite_rules`` and
  ``rewrite_alertmanager`` for exactly what the copies change), notifying a webhook receiver.

The copies are SHORTENED for speed (1 s scrapes, 5 s ``for:``, lower thresholds, 1 s grouping): this
test proves that the alerts are delivered to the right receiver, not how fast. Time to page on the
shipped defaults is measured by ``python -m bench.time_to_page`` (docs/alerting.md).

Then: a flow-run process is SIGKILLed while its worker lives (the worker marks the run CRASHED);
both workers are SIGKILLed while two runs are PENDING (their infrastructure, ``sleep``, never starts
the flow) and one is RUNNING, and those processes are killed too. Nothing is left to advance the
runs: they stay PENDING and RUNNING, the RUNNING one's heartbeats stop, and nobody polls the queue.

The test asserts on ``/metrics`` along the way (2 workers ONLINE then 0, the CRASHED transition,
stale PENDING, stale heartbeat, queue poll age) and that the webhook receives PrefectFlowRunsCrashing
(one crash: a warning, on the ticket receiver) and PrefectFlowRunsStuckPending,
PrefectFlowRunsHeartbeatStale and PrefectWorkPoolNoOnlineWorkers (runs hurt now: critical, on the pager);
PrefectWorkQueueNotPolled fires in Prometheus. The sleeper sends heartbeats, so the documented
fallback for servers without any (PrefectFlowRunsRunningTooLong, gated on heartbeats present = 0) must
stay silent although its lowered threshold is exceeded. Every wait polls with a deadline; the whole
test is bounded by ``OVERALL_SECONDS`` and kills every process it started (and their flow-run
processes, some in their own sessions) even when it fails. It prints its timeline.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import yaml
from aiohttp import ClientSession
from conftest import EXPORTER_ROLE, apply_role_script, uncaptured
from helpers import Series, parse, serving, target_for, value

from devtools import waiting
from devtools.capture_statements import CLIENT_PY, SERVER_SETTINGS, Prefect, Processes, tail
from devtools.pgcluster import PgCluster, TestDatabase, free_port
from devtools.prefect_env import ensure_prefect, migrate
from devtools.promstack import Alertmanager, Delivery, Prometheus, WebhookReceiver
from exporter.config import Config, Thresholds, parse_config
from exporter.registry import Exporter

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[1]
ALERTS_FILE = REPO_ROOT / "alerts" / "prefect-db-alerts.yml"
ALERTMANAGER_FILE = REPO_ROOT / "deploy" / "alertmanager.yml"
PROMETHEUS_FILE = REPO_ROOT / "deploy" / "prometheus.yml"
COMPOSE_EXPORTER_FILE = REPO_ROOT / "deploy" / "compose" / "exporter.yaml"
FLOWS_DIR = REPO_ROOT / "deploy" / "compose" / "flows"

VERSION = "3.9.1"
POOL = "e2e-pool"
QUEUE = "default"  # the pool's own queue: the only one, so both workers poll it
OVERALL_SECONDS = 480.0

# Heartbeats every 30 s (Prefect's minimum; 3.9.1's default is 180 s): the exporter learns that cadence
# and counts the killed run stale three missed heartbeats (90 s) after its last one.
HEARTBEAT_SECONDS = 30
THRESHOLDS = Thresholds(pending_stale_seconds=20, heartbeat_stale_seconds=40)
DEPLOYMENTS: dict[str, Any] = {
    "pool": POOL,
    "deployments": [
        {
            "name": "sleeper",
            "entrypoint": "flows.py:sleeper",
            "job_variables": {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}},
        },
        # Infrastructure that never starts the flow: the worker has claimed the run (PENDING,
        # "Submitting") and watches a process that never reports RUNNING, as a slow image pull would.
        {"name": "stuck", "entrypoint": "flows.py:hello", "job_variables": {"command": "sleep 600"}},
    ],
}
# capture_statements' fast foreman and event flushing, without its 60 s event retention (db_vacuum
# would delete the heartbeat events this test watches age).
SERVER_ENV = {k: v for k, v in SERVER_SETTINGS.items() if "DB_VACUUM" not in k and "RETENTION" not in k}

# The rule and Alertmanager copies (documented in rewrite_rules and rewrite_alertmanager).
SHORT_FOR = "5s"
POLL_AGE_SECONDS = 20
RUNNING_AGE_SECONDS = 30
EXPR_REWRITES = {
    "PrefectWorkQueueNotPolled": ("prefect_db_work_queue_last_polled_age_seconds > 600", POLL_AGE_SECONDS),
    "PrefectFlowRunsRunningTooLong": (
        "prefect_db_running_runs_oldest_age_seconds > 86400",
        RUNNING_AGE_SECONDS,
    ),
}

T = TypeVar("T")


# Timeline ----------------------------------------------------------------------------------------


@dataclass
class Timeline:
    """When each step of the scenario finished, printed as it goes and summed up at the end."""

    started: float = field(default_factory=time.monotonic)
    marks: list[tuple[str, float]] = field(default_factory=list)

    def mark(self, what: str) -> None:
        """Record and print that ``what`` just happened."""
        now = time.monotonic() - self.started
        previous = self.marks[-1][1] if self.marks else 0.0
        self.marks.append((what, now))
        print(f"[e2e] {now:6.1f}s (+{now - previous:5.1f}s) {what}", file=sys.stderr, flush=True)

    def summary(self) -> str:
        """The whole timeline, one line per step."""
        lines, previous = [], 0.0
        for what, at in self.marks:
            lines.append(f"  {at:6.1f}s  +{at - previous:5.1f}s  {what}")
            previous = at
        total = time.monotonic() - self.started
        return "[e2e] timeline:\n" + "\n".join(lines) + f"\n  total {total:.1f}s"


async def until(
    what: str, check: Callable[[], Awaitable[T | None]], timeout: float, interval: float = 1.0
) -> T:
    """Await ``check()`` until it returns something truthy; fail after ``timeout``."""
    return await waiting.until(what, check, timeout, interval, AssertionError)


# Copies of the rules and the Alertmanager config ---------------------------------------------------


def rewrite_rules(source: str) -> tuple[str, list[str]]:
    """The alert rules with test-sized durations and thresholds, and a list of what changed.

    * every ``for:`` becomes ``SHORT_FOR`` (5s);
    * PrefectWorkQueueNotPolled: last poll older than ``POLL_AGE_SECONDS`` (20 s) instead of 600 s;
    * PrefectFlowRunsRunningTooLong (the fallback when no heartbeats exist): RUNNING for more than
      ``RUNNING_AGE_SECONDS`` (30 s) instead of a day, so that its silence shows the heartbeat gate.
    """
    document = yaml.safe_load(source)
    changes: list[str] = []
    rewritten: set[str] = set()
    for group in document["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert")
            if "for" in rule:
                changes.append(f"{name}: for {rule['for']} -> {SHORT_FOR}")
                rule["for"] = SHORT_FOR
            if name in EXPR_REWRITES:
                old, threshold = EXPR_REWRITES[name]
                assert rule["expr"].count(old) == 1, f"{name} no longer says {old!r}: update this test"
                new = f"{old.rpartition('>')[0]}> {threshold}"
                rule["expr"] = rule["expr"].replace(old, new)
                changes.append(f"{name}: {old!r} -> {new!r}")
                rewritten.add(name)
    assert rewritten == set(EXPR_REWRITES), f"rules not found: {set(EXPR_REWRITES) - rewritten}"
    return yaml.safe_dump(document, sort_keys=False), changes


def rewrite_alertmanager(source: str, hook: WebhookReceiver) -> tuple[dict[str, Any], list[str]]:
    """The Alertmanager config with every webhook at the test receiver and quick grouping.

    * each receiver's webhook URLs point at ``<hook>/<receiver name>`` (so /pager, /ticket);
    * every route that sets them waits 1s before the first notification of a group (group_wait) and
      1s between updates (group_interval). Matchers, receivers and inhibitions are unchanged.
    """
    config: dict[str, Any] = copy.deepcopy(yaml.safe_load(source))
    changes = []
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            url = hook.url(f"/{receiver['name']}")
            changes.append(f"receiver {receiver['name']}: {webhook['url']} -> {url}")
            webhook["url"] = url
    routes = [config["route"], *config["route"].get("routes", [])]
    for number, route in enumerate(routes):
        for key in ("group_wait", "group_interval"):
            if key in route:
                changes.append(f"route {number} ({route.get('receiver')}).{key}: {route[key]} -> 1s")
                route[key] = "1s"
    return config, changes


# Processes -----------------------------------------------------------------------------------------


def flow_run_pids(flow_run_id: str) -> list[int]:
    """The live processes started for a flow run (the worker gives them PREFECT__FLOW_RUN_ID)."""
    needle = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def kill_flow_run(flow_run_id: str) -> list[int]:
    """SIGKILL a flow run's processes (their whole process group when they lead one)."""
    pids = flow_run_pids(flow_run_id)
    own_group = os.getpgid(0)
    for pid in pids:
        try:
            group = os.getpgid(pid)
            if group == pid and group != own_group:
                os.killpg(group, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def kill_everything(procs: Processes) -> None:
    """SIGKILL every process group started here, then every process that inherited our token."""
    for name in list(procs.started):
        try:
            procs.stop(name, grace=0)
        except Exception as error:  # keep going: the sweep below still has to run
            print(f"[e2e] stopping {name}: {error!r}", file=sys.stderr)
    procs.sweep()


def register(prefect: Prefect, config: dict[str, Any]) -> dict[str, str]:
    """Run the compose stack's register.py with Prefect's python; return deployment ids by name."""
    argv = [str(prefect.venv / "bin" / "python"), str(FLOWS_DIR / "register.py"), json.dumps(config)]
    result = subprocess.run(
        argv,
        env=prefect.procs.tagged_env({**prefect.client_env(), "PYTHONDONTWRITEBYTECODE": "1"}),
        cwd=prefect.workdir,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"register.py failed:\n{result.stdout}{result.stderr[-3000:]}"
    ids: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    return ids


# The scenario --------------------------------------------------------------------------------------


@dataclass
class Stack:
    """Everything the scenario talks to."""

    prefect: Prefect
    http: ClientSession
    metrics_url: str
    prometheus: Prometheus
    hook: WebhookReceiver
    timeline: Timeline
    conn: asyncpg.Connection

    async def metrics(self) -> Series:
        """Scrape the exporter's /metrics over HTTP."""
        async with self.http.get(self.metrics_url) as response:
            assert response.status == 200
            return parse(await response.text())

    async def until_metrics(self, what: str, check: Callable[[Series], bool], timeout: float) -> Series:
        """Scrape until ``check(series)`` holds; mark the timeline."""
        last: list[Series] = [{}]

        async def probe() -> Series | None:
            last[0] = await self.metrics()
            return last[0] if check(last[0]) else None

        try:
            series = await until(what, probe, timeout)
        except AssertionError as error:
            shown = {
                f"{n}{dict(ls)}": v
                for (n, ls), v in last[0].items()
                if n.startswith(
                    (
                        "prefect_db_workers",
                        "prefect_db_pending",
                        "prefect_db_running",
                        "prefect_db_work_queue_last",
                        "prefect_db_flow_run",
                    )
                )
            }
            raise AssertionError(f"{error}; last values: {json.dumps(shown, indent=1)}") from None
        self.timeline.mark(what)
        return series

    async def states(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """(state_type, state_name) of flow runs by id."""
        rows = await self.conn.fetch(
            "SELECT id::text AS id, state_type::text AS type, state_name AS name"
            " FROM flow_run WHERE id = ANY($1::uuid[])",
            ids,
        )
        return {r["id"]: (r["type"], r["name"]) for r in rows}

    async def until_states(self, what: str, ids: list[str], wanted: str, timeout: float) -> None:
        """Wait until every run of ``ids`` is in state type ``wanted``."""

        async def check() -> bool:
            states = await self.states(ids)
            return len(states) == len(ids) and all(t == wanted for t, _ in states.values())

        try:
            await until(what, check, timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}; states: {await self.states(ids)}") from None
        self.timeline.mark(what)

    async def until_delivered(self, what: str, alertnames: set[str], timeout: float) -> Delivery:
        """Wait until the webhook received a firing notification for one of ``alertnames``."""

        def matches(delivery: Delivery) -> bool:
            firing = {a["labels"]["alertname"] for a in delivery.alerts if a.get("status") == "firing"}
            return bool(firing & alertnames)

        delivery = await self.hook.wait_for(matches, timeout)
        self.timeline.mark(f"webhook {delivery.path}: {what}")
        return delivery


async def test_prefect_trouble_reaches_the_webhook(
    cluster: PgCluster, exporter_password: str, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    timeline = Timeline()
    tmp_path.chmod(0o755)
    for sub in ("home", "logs"):
        (tmp_path / sub).mkdir()
    (tmp_path / "client.py").write_text(CLIENT_PY)
    procs = Processes(tmp_path / "logs")
    name = f"e2e_{uuid.uuid4().hex[:12]}"
    with uncaptured(pytestconfig):
        try:
            async with asyncio.timeout(OVERALL_SECONDS):
                await scenario(cluster, exporter_password, tmp_path, procs, name, timeline)
        except BaseException:
            for log in sorted((tmp_path / "logs").glob("*.log")):
                print(f"[e2e] --- {log.name} (last lines)\n{tail(log, 25)}", file=sys.stderr)
            raise
        finally:
            await asyncio.to_thread(kill_everything, procs)
            timeline.mark("every process killed")
            if cluster.database_exists(name):
                cluster.drop_database(name)
            print(timeline.summary(), file=sys.stderr, flush=True)


async def scenario(
    cluster: PgCluster, password: str, workdir: Path, procs: Processes, name: str, timeline: Timeline
) -> None:
    """Set everything up, break it, and check what the exporter, Prometheus and Alertmanager say."""
    venv = await asyncio.to_thread(ensure_prefect, VERSION)
    cluster.create_database(name)
    await asyncio.to_thread(migrate, VERSION, cluster.dsn(name))
    apply_role_script(cluster, name, password)
    db = TestDatabase(
        name=name,
        prefect_version=VERSION,
        admin_dsn=cluster.dsn(name),
        exporter_dsn=cluster.dsn(name, user=EXPORTER_ROLE, password=password),
    )
    timeline.mark(f"database {name} migrated by prefect {VERSION}, exporter role set up")

    prefect = Prefect(VERSION, venv, workdir, db.admin_dsn, free_port(), procs)
    await asyncio.to_thread(prefect.start_server, 180, SERVER_ENV)
    timeline.mark("prefect server healthy")
    ids = await asyncio.to_thread(register, prefect, DEPLOYMENTS)
    timeline.mark(f"work pool {POOL} and deployments {sorted(ids)} registered")

    rules, rule_changes = rewrite_rules(ALERTS_FILE.read_text(encoding="utf-8"))
    rules_file = workdir / "prefect-db-alerts.yml"
    rules_file.write_text(rules)
    print("[e2e] rule copy:\n  " + "\n  ".join(rule_changes), file=sys.stderr)

    # The exporter exactly as compose configures it, but for this database and with low thresholds.
    exporter = Exporter.from_config(
        replace(
            load_compose_exporter_config(),
            targets=(target_for(db, name="e2e"),),
            thresholds=THRESHOLDS,
        )
    )
    async with (
        serving(exporter) as (http, base),
        WebhookReceiver() as hook,
    ):
        am_config, am_changes = rewrite_alertmanager(ALERTMANAGER_FILE.read_text(encoding="utf-8"), hook)
        print("[e2e] alertmanager copy:\n  " + "\n  ".join(am_changes), file=sys.stderr)
        async with Alertmanager(am_config) as alertmanager:
            scrape_job = prefect_db_scrape_job(base)
            prometheus_config = {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules_file)],
                "alerting": {
                    "alertmanagers": [{"static_configs": [{"targets": [alertmanager.url.split("//")[1]]}]}]
                },
                "scrape_configs": [scrape_job],
            }
            async with Prometheus(prometheus_config) as prometheus:
                conn = await asyncpg.connect(db.admin_dsn)
                try:
                    stack = Stack(prefect, http, f"{base}/metrics", prometheus, hook, timeline, conn)
                    timeline.mark("exporter, prometheus, alertmanager and webhook receiver up")
                    await break_prefect(stack, ids)
                finally:
                    await conn.close()


def load_compose_exporter_config() -> Config:
    """deploy/compose/exporter.yaml parsed by the exporter (its secret file exists only in compose)."""
    text = COMPOSE_EXPORTER_FILE.read_text(encoding="utf-8")
    secret = REPO_ROOT / "deploy" / "compose" / "secrets" / "prefect_exporter_password"
    text = text.replace("/run/secrets/prefect_exporter_password", str(secret))
    return parse_config(text, str(COMPOSE_EXPORTER_FILE))


def prefect_db_scrape_job(base_url: str) -> dict[str, Any]:
    """deploy/prometheus.yml's exporter job, scraping the in-process exporter every second."""
    jobs = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))["scrape_configs"]
    (job,) = [j for j in jobs if j["job_name"] == "prefect-db"]
    address = base_url.split("//")[1]
    return {
        **job,
        "scrape_interval": "1s",
        "scrape_timeout": "1s",
        "static_configs": [{"targets": [address]}],
    }


def online(series: Series) -> float | None:
    """Workers of the pool that the exporter counts ONLINE."""
    return value(series, "prefect_db_workers", work_pool=POOL, status="ONLINE")


def crashed(series: Series) -> float:
    """CRASHED transitions of the pool counted since the exporter started."""
    return value(series, "prefect_db_flow_run_transitions_total", work_pool=POOL, state_type="CRASHED") or 0.0


def queue_value(series: Series, metric: str) -> float | None:
    """The pool's queue's sample of ``metric``."""
    return value(series, metric, work_pool=POOL, work_queue=QUEUE)


async def break_prefect(stack: Stack, ids: dict[str, str]) -> None:
    """Start workers and runs, crash one, kill everything that could move the rest, check the alerts."""
    prefect, timeline = stack.prefect, stack.timeline
    series = await stack.metrics()
    assert online(series) == 0 and crashed(series) == 0

    for worker in ("worker-a", "worker-b"):
        prefect.start_worker(worker, pool=POOL)
    await stack.until_metrics("exporter: 2 workers ONLINE", lambda s: online(s) == 2, 90)

    async def runs(deployment: str, count: int) -> list[str]:
        created: list[str] = await asyncio.to_thread(
            prefect.client, "runs", {"deployment_id": ids[deployment], "count": count}
        )
        return created

    sleepers, stuck = await asyncio.gather(runs("sleeper", 2), runs("stuck", 2))
    crash_run, zombie_run = sleepers
    timeline.mark("flow runs created: 2 sleeper, 2 stuck")

    await stack.until_states("sleeper runs RUNNING", sleepers, "RUNNING", 90)
    await stack.until_states("stuck runs PENDING", stuck, "PENDING", 30)
    print(f"[e2e] stuck runs: {sorted((await stack.states(stuck)).values())}", file=sys.stderr)
    for flow_run in (*sleepers, *stuck):
        await until(
            f"process of flow run {flow_run}", lambda f=flow_run: async_value(flow_run_pids(f)), 30, 0.2
        )

    async def heartbeat_stored() -> bool:
        count = await stack.conn.fetchval(
            "SELECT count(*) FROM events WHERE event = 'prefect.flow-run.heartbeat' AND resource_id = $1",
            f"prefect.flow-run.{zombie_run}",
        )
        return bool(count)

    await until("a heartbeat of the RUNNING run stored", heartbeat_stored, 60)
    timeline.mark("heartbeat events stored")

    # 1. A flow-run process dies under a live worker: the worker marks the run CRASHED.
    killed = kill_flow_run(crash_run)
    assert killed, "no process for the run to crash"
    await stack.until_states(
        f"worker marked run CRASHED after SIGKILL of {killed}", [crash_run], "CRASHED", 30
    )
    await stack.until_metrics("exporter: CRASHED transition counted", lambda s: crashed(s) >= 1, 60)

    # 2. Both workers die while two runs are PENDING and one RUNNING; then their processes die too.
    for worker in ("worker-a", "worker-b"):
        await asyncio.to_thread(prefect.procs.stop, worker, 0)
    # The sleeper's process runs in its own session (Prefect's workspace supervisor) and survives its
    # worker; the stuck runs' `sleep` (a configured command) shares the worker's process group and
    # died with it. Kill whatever is left, so that no process can report a state any more.
    assert kill_flow_run(zombie_run), f"the process of RUNNING run {zombie_run} did not survive its worker"
    for flow_run in stuck:
        kill_flow_run(flow_run)
    timeline.mark("both workers and their flow-run processes SIGKILLed")
    await asyncio.sleep(2)  # give a survivor the chance to report a state, then check none did
    states = await stack.states([zombie_run, *stuck])
    assert states[zombie_run][0] == "RUNNING", states
    assert all(states[f][0] == "PENDING" for f in stuck), states

    series = await stack.until_metrics("exporter: 0 workers ONLINE", lambda s: online(s) == 0, 90)
    assert value(series, "prefect_db_workers", work_pool=POOL, status="OFFLINE") == 2
    series = await stack.until_metrics(
        "exporter: 2 PENDING runs stale",
        lambda s: (queue_value(s, "prefect_db_pending_runs_stale") or 0) >= 2,
        60,
    )
    assert queue_value(series, "prefect_db_pending_runs") == 2
    series = await stack.until_metrics(
        f"exporter: queue not polled for over {POLL_AGE_SECONDS}s",
        lambda s: (queue_value(s, "prefect_db_work_queue_last_polled_age_seconds") or 0) > POLL_AGE_SECONDS,
        60,
    )
    # The sleeper sent heartbeats, so the heartbeat rule is the one to fire; its fallback for servers
    # without heartbeats (PrefectFlowRunsRunningTooLong, lowered to 30 s) must stay silent.
    assert value(series, "prefect_db_flow_run_heartbeats_present") == 1
    series = await stack.until_metrics(
        "exporter: RUNNING run's heartbeat stale",
        lambda s: (queue_value(s, "prefect_db_running_runs_heartbeat_stale") or 0) >= 1,
        150,
    )
    assert (queue_value(series, "prefect_db_running_runs_oldest_age_seconds") or 0) > RUNNING_AGE_SECONDS

    # 3. The alerts reach the webhook: one crash is a ticket; runs stranded, dead or without a worker
    #    page (critical: the pager receiver).
    expected = {
        "PrefectFlowRunsCrashing": ("/ticket", "warning"),
        "PrefectFlowRunsStuckPending": ("/pager", "critical"),
        "PrefectFlowRunsHeartbeatStale": ("/pager", "critical"),
        "PrefectWorkPoolNoOnlineWorkers": ("/pager", "critical"),
    }
    for alertname, (path, severity) in expected.items():
        delivery = await stack.until_delivered(alertname, {alertname}, 90)
        assert delivery.path == path and delivery.receiver == path.strip("/"), (alertname, delivery.path)
        for alert in delivery.alerts:
            assert alert["labels"]["target"] == "e2e" and alert["labels"]["work_pool"] == POOL, alert
            assert alert["labels"]["severity"] == severity
            assert alert["annotations"]["runbook_url"].endswith(alert["labels"]["alertname"].lower())
            assert alert["annotations"]["dashboard_url"]

    # In Prometheus: the unpolled queue fires too (Alertmanager may inhibit it behind the pool's page);
    # the no-heartbeat fallback is not even pending; every rule evaluates without error.
    active = {(a["labels"]["alertname"], a["state"]) for a in await stack.prometheus.alerts()}
    assert ("PrefectWorkQueueNotPolled", "firing") in active, active
    assert not {name for name, _ in active} & {"PrefectFlowRunsRunningTooLong", "PrefectDbExporterDown"}
    broken = [
        (r.get("name"), r.get("lastError"))
        for group in await stack.prometheus.rules()
        for r in group["rules"]
        if r.get("health") == "err"
    ]
    assert not broken, broken
    received = sorted({a["labels"]["alertname"] for d in stack.hook.deliveries for a in d.alerts})
    timeline.mark(f"alerts received: {', '.join(received)}")


async def async_value(result: T) -> T:
    """Wrap a plain value for ``until``."""
    return result
