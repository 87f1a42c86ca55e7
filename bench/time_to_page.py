"""Time to page on the shipped defaults, measured on real Prefect: ``python -m bench.time_to_page``.

A benchmark, not a test. For each Prefect version and each trouble it builds a fresh stack, all of
it real and all of it on its shipped defaults:

* a PostgreSQL database migrated by that Prefect release, with the exporter role of
  deploy/exporter-role.sql, and ``prefect server start`` on it (UI and analytics off, nothing else
  changed);
* real ``prefect worker start --type process`` workers on the pool's one queue, with Prefect's default
  poll (10 s) and heartbeat (30 s) intervals (the healthy run on Prefect < 3.7: one worker on each
  of two pools, see below);
* the exporter as a user starts it: ``python -m exporter --dsn ...``, its DEFAULT configuration;
* Debian's Prometheus with deploy/prometheus.yml (its intervals unchanged; only the target addresses
  and the rule file's path are this machine's) evaluating alerts/prefect-db-alerts.yml;
* Debian's Alertmanager with deploy/alertmanager.yml, only the receivers' URLs pointed at a local
  recorder that notes when each notification arrives.

Then it makes the trouble for real and waits for the notification:

* ``deadlock``: 4 workers poll one queue of 20,000 READY deployments every second (Prefect 2.18.1 to
  3.6.x deadlocks on it, so 3.1.15 only). What the storm is made of: each poll's background
  ``mark_deployments_ready`` runs ``UPDATE deployment SET last_polled, status, updated=now() WHERE
  ... work_queue_id IN (...)`` over all 20,000 rows, which locks them in scan order and moves every
  row (``updated`` is indexed, so the update is not HOT); a poll that waited on another resumes on
  the old row order while the next one walks the new order, and the two deadlock. Four workers at
  1 s are the poll rate of forty at Prefect's default 10 s; four at 10 s deadlocked only while their
  first polls coincided (3 deadlocks in the first 30 s, then none in two minutes, measured). The
  rows are copied in SQL from a registered deployment, to save time, and inserted as a polled
  fleet leaves them: READY, just polled. Inserted NOT_READY (as a new deployment is), the first
  poll turns all 20,000 READY in one transaction that also builds one status event per deployment
  (several SELECTs each, in the server's Python) while it holds every row lock: on this 2-core
  machine that transaction sat idle in transaction for minutes, and every other poll waited behind
  it until its statement timeout, with no deadlock at all (measured in three earlier runs).
  Start: the first ``deadlock detected`` in the PostgreSQL server log. ``deadlock_server_log`` is
  the same with the exporter configured to read that log (its one change from the defaults).
* ``zombie``: the worker that runs a heartbeating flow run (30 s) and the run's processes are
  SIGKILLed; the run stays RUNNING. Start: the run's last heartbeat event.
* ``pending``: a run whose infrastructure never starts the flow (its command is ``sleep``) stays
  PENDING under live workers. Start: the run's PENDING state timestamp.
* ``workers_gone``: every worker is SIGKILLed right after taking two such runs. Start: the kill.
* ``crash_storm``: the processes of three RUNNING runs are SIGKILLed under live workers, which
  mark them CRASHED. Start: the first CRASHED state timestamp.
* ``healthy``: workers alive and runs flowing for ``--healthy-minutes``, a short run every minute and
  a heartbeating 10-minute run every 5 minutes: no notification at all is the target. The fleet is
  one that is healthy on the version. On Prefect >= 3.7, 4 workers on the one queue (3.7.0 locks the
  poll's deployment rows in id order, so they wait on each other and never deadlock). On Prefect
  < 3.7 (2.18.1 to 3.6.x), several workers polling one queue is Prefect's own poll-deadlock bug
  (concurrent ``mark_deployments_ready`` UPDATEs lock the same rows in different orders), and the
  exporter's ``PrefectWorkerPollContention{signal="risk"}`` ticket for several ONLINE workers on one
  pool of such a release (once a poll rewrites more than 200 deployment rows) is right to fire
  there; so the healthy fleet shares no queue: one worker on each of two pools (each pool with its
  own default queue and its own ``hello`` and ``sleeper`` deployments), the runs alternating between
  the pools.

It prints met / not met for every target, writes bench/results/time_to_page.json and the timeline
docs/img/time_to_page.png, and prints the Markdown table of docs/alerting.md. Each trouble costs two
to twelve minutes; ``--troubles`` and ``--versions`` pick a subset, whose results replace the same
trouble and version in the JSON file (the others are kept, so subsets can run one after another or
at once).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import yaml
from aiohttp import web

from devtools.capture_statements import CLIENT_PY, Prefect, Processes, ensure_overlay
from devtools.paths import ROLE_SCRIPT
from devtools.pgcluster import PgCluster, free_port
from devtools.prefect_env import REPO_ROOT, ensure_prefect, migrate
from devtools.promstack import Alertmanager, Delivery, Prometheus, WebhookReceiver
from devtools.waiting import until

ALERTS_FILE = REPO_ROOT / "alerts" / "prefect-db-alerts.yml"
ALERTMANAGER_FILE = REPO_ROOT / "deploy" / "alertmanager.yml"
PROMETHEUS_FILE = REPO_ROOT / "deploy" / "prometheus.yml"
FLOWS_DIR = REPO_ROOT / "deploy" / "compose" / "flows"
RESULTS_FILE = REPO_ROOT / "bench" / "results" / "time_to_page.json"
TIMELINE_PNG = REPO_ROOT / "docs" / "img" / "time_to_page.png"

VERSIONS = ("3.1.15", "3.9.1")
# The second pool of the healthy fleet on Prefect < 3.7 (one worker per pool, no shared queue).
POOL_B = "bench-pool-b"
TROUBLES = ("deadlock", "deadlock_server_log", "zombie", "pending", "workers_gone", "crash_storm", "healthy")
POOL = "bench-pool"
EXPORTER_ROLE = "prefect_exporter"
HEARTBEAT_SECONDS = 30  # Prefect's minimum flow-run heartbeat; 3.9.1's default is 180 s
DEPLOYMENT_COPIES = 20_000
# The deadlock storm's workers poll every second, as a busy fleet's do (Prefect's default is 10 s).
POLL_FAST = {"PREFECT_WORKER_QUERY_SECONDS": "1"}
# Prefect's server as shipped, minus what a headless benchmark does not need.
SERVER_ENV = {
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_SERVER_LEVEL": "WARNING",
}
# The exporter's default pending_stale_seconds (exporter/config.py), the PENDING target's base.
PENDING_STALE_SECONDS = 600.0
DEADLOCK_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \w+) \[\d+\] \S*@(\S+) ERROR:  deadlock detected"
)


def progress(message: str) -> None:
    """One progress line on stderr, with the wall-clock time."""
    print(f"[time_to_page {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# Results ---------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one trouble on one version produced."""

    trouble: str
    version: str
    start: float | None = None  # Unix time of the trouble's start (database truth)
    start_what: str = ""
    target_seconds: float | None = None
    target_what: str = ""
    alert: str | None = None
    severity: str | None = None
    receiver: str | None = None
    seconds: float | None = None  # first matching notification, after start
    met: bool = False
    reason: str = ""
    marks: dict[str, float] = field(default_factory=dict)  # label -> Unix time
    notifications: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)


class RecordingHook(WebhookReceiver):
    """The webhook receiver, noting when each notification arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[tuple[float, Delivery]] = []

    async def _handle(self, request: web.Request) -> web.Response:
        # aiohttp keeps the body, so the receiver's own handler can read it again.
        payload = await request.json()
        self.arrivals.append((time.time(), Delivery(request.path, payload)))
        return await super()._handle(request)

    def firing(self) -> list[tuple[float, str, str, str]]:
        """(arrival, alertname, severity, receiver) of every firing alert notified."""
        return [
            (at, a["labels"].get("alertname", ""), a["labels"].get("severity", ""), d.receiver)
            for at, d in self.arrivals
            for a in d.alerts
            if a.get("status") == "firing"
        ]


# The stack ----------------------------------------------------------------------------------------


def prometheus_config(exporter: str, alertmanager: str) -> dict[str, Any]:
    """deploy/prometheus.yml with this machine's addresses and rule path; intervals unchanged."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    config["rule_files"] = [str(ALERTS_FILE)]
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "prefect-db"]
    jobs[0]["static_configs"] = [{"targets": [exporter]}]
    config["scrape_configs"] = jobs
    return config


def alertmanager_config(hook: WebhookReceiver) -> dict[str, Any]:
    """deploy/alertmanager.yml with every webhook URL at the recorder; nothing else changed."""
    config: dict[str, Any] = yaml.safe_load(ALERTMANAGER_FILE.read_text(encoding="utf-8"))
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = hook.url(f"/{receiver['name']}")
    return config


def sleeper_job_variables(version: str, venv: Path) -> dict[str, Any]:
    """Job variables that make the sleeper's run heartbeat every HEARTBEAT_SECONDS on ``version``."""
    if version.startswith(("3.1.", "3.2.", "3.3.", "3.4.", "3.5.")):
        # Before 3.6.13 only a Runner sends heartbeats; a worker's default command does not.
        sleeper_vars: dict[str, Any] = {
            "command": f"{venv / 'bin' / 'prefect'} flow-run execute",
            "env": {"PREFECT_RUNNER_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)},
        }
    else:
        sleeper_vars = {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}}
    return sleeper_vars


def deployments(version: str, venv: Path) -> dict[str, Any]:
    """The pool and deployments register.py creates: sleeper (heartbeats), hello, stuck."""
    sleeper_vars = sleeper_job_variables(version, venv)
    return {
        "pool": POOL,
        "deployments": [
            {"name": "sleeper", "entrypoint": "flows.py:sleeper", "job_variables": sleeper_vars},
            {"name": "hello", "entrypoint": "flows.py:hello"},
            # Infrastructure that never starts the flow: the run stays PENDING ("Submitting").
            {"name": "stuck", "entrypoint": "flows.py:hello", "job_variables": {"command": "sleep 3000"}},
        ],
    }


@dataclass
class Stack:
    """One version's running stack."""

    version: str
    prefect: Prefect
    procs: Processes
    conn: asyncpg.Connection
    prometheus: Prometheus
    hook: RecordingHook
    cluster: PgCluster
    database: str
    ids: dict[str, str]
    workers: list[str] = field(default_factory=list)

    def register(self, config: dict[str, Any]) -> dict[str, str]:
        argv = [str(self.prefect.venv / "bin" / "python"), str(FLOWS_DIR / "register.py"), json.dumps(config)]
        result = subprocess.run(
            argv,
            env=self.procs.tagged_env({**self.prefect.client_env(), "PYTHONDONTWRITEBYTECODE": "1"}),
            cwd=self.prefect.workdir,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"register.py failed:\n{result.stdout}{result.stderr[-3000:]}")
        ids: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
        return ids

    def start_worker(self, name: str, settings: dict[str, str] | None = None, pool: str = POOL) -> None:
        """A process worker on ``pool`` with Prefect's default intervals, or ``settings``."""
        env = {**self.prefect.client_env(), "PREFECT_LOGGING_LEVEL": "INFO", **(settings or {})}
        argv = [str(self.prefect.venv / "bin" / "prefect"), "worker", "start"]
        argv += ["--pool", pool, "--name", name, "--type", "process"]
        self.procs.start(name, argv, env, self.prefect.workdir)
        self.workers.append(name)

    async def runs(self, deployment: str, count: int) -> list[str]:
        created: list[str] = await asyncio.to_thread(
            self.prefect.client, "runs", {"deployment_id": self.ids[deployment], "count": count}
        )
        return created

    async def states(self, ids: list[str]) -> dict[str, tuple[str, float]]:
        rows = await self.conn.fetch(
            "SELECT id::text AS id, state_type::text AS type, extract(epoch FROM state_timestamp) AS at"
            " FROM flow_run WHERE id = ANY($1::uuid[])",
            ids,
        )
        return {r["id"]: (r["type"], float(r["at"])) for r in rows}

    async def until_states(self, ids: list[str], wanted: str, timeout: float) -> dict[str, tuple[str, float]]:
        async def check() -> dict[str, tuple[str, float]] | None:
            states = await self.states(ids)
            ok = len(states) == len(ids) and all(t == wanted for t, _ in states.values())
            return states if ok else None

        found: dict[str, tuple[str, float]] = await until(f"runs {wanted}", check, timeout)
        return found

    async def online_workers(self) -> int:
        count = await self.conn.fetchval(
            "SELECT count(*) FROM worker WHERE last_heartbeat_time > now() - interval '60 seconds'"
        )
        return int(count)

    async def heartbeats(self, run_id: str) -> list[float]:
        rows = await self.conn.fetch(
            "SELECT extract(epoch FROM occurred) AS at FROM events"
            " WHERE event = 'prefect.flow-run.heartbeat' AND resource_id = $1 ORDER BY occurred",
            f"prefect.flow-run.{run_id}",
        )
        return [float(r["at"]) for r in rows]

    def kill_worker(self, name: str) -> None:
        self.procs.stop(name, grace=0)


def flow_run_pids(flow_run_id: str) -> list[int]:
    """Live processes started for a flow run (the worker gives them PREFECT__FLOW_RUN_ID)."""
    needle = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    pids.append(int(entry.name))
    return pids


def parent_of(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1])


def kill_flow_run(flow_run_id: str) -> list[int]:
    """SIGKILL a flow run's processes."""
    pids = flow_run_pids(flow_run_id)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def worker_of(stack: Stack, flow_run_id: str) -> str | None:
    """The started worker that is an ancestor of the run's processes."""
    by_pid = {stack.procs.started[name].pid: name for name in stack.workers}
    for pid in flow_run_pids(flow_run_id):
        seen = 0
        current: int | None = pid
        while current and current > 1 and seen < 20:
            if current in by_pid:
                return by_pid[current]
            current = parent_of(current)
            seen += 1
    return None


@contextlib.asynccontextmanager
async def running_stack(
    cluster: PgCluster, version: str, workdir: Path, server_log: bool = False
) -> AsyncIterator[Stack]:
    """Database, Prefect server, exporter, Prometheus, Alertmanager and recorder for one trouble.

    The exporter runs on its defaults (``--dsn``), or with ``server_log`` a configuration file that
    only adds the cluster's server log (deadlock attribution).
    """
    venv = await asyncio.to_thread(ensure_prefect, version)
    database = f"ttp_{uuid.uuid4().hex[:10]}"
    cluster.create_database(database)
    await asyncio.to_thread(migrate, version, cluster.dsn(database))
    password = secrets.token_hex(12)
    cluster.psql("", database, file=ROLE_SCRIPT, variables={"exporter_password": password})
    for sub in ("home", "logs"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    (workdir / "client.py").write_text(CLIENT_PY)
    procs = Processes(workdir / "logs")
    overlay = await asyncio.to_thread(ensure_overlay, version, venv)
    prefect = Prefect(version, venv, workdir, cluster.dsn(database), free_port(), procs, overlay)
    try:
        await asyncio.to_thread(prefect.start_server, 240, SERVER_ENV)
        exporter_port = free_port()
        exporter_env = {**os.environ, "PGPASSWORD": password}
        dsn = cluster.dsn(database, user=EXPORTER_ROLE)
        argv = [sys.executable, "-m", "exporter", "--dsn", dsn, "--listen", f"127.0.0.1:{exporter_port}"]
        if server_log:
            config = {
                "targets": [
                    {
                        "name": "bench",
                        "dsn": dsn,
                        "password_env": "PGPASSWORD",
                        "server_log": str(cluster.log_path),
                        "server_log_format": "stderr",
                    }
                ]
            }
            (workdir / "exporter.yaml").write_text(yaml.safe_dump(config))
            argv = [sys.executable, "-m", "exporter", "--config", str(workdir / "exporter.yaml")]
            argv += ["--listen", f"127.0.0.1:{exporter_port}"]
        procs.start("exporter", argv, exporter_env, REPO_ROOT)
        async with RecordingHook() as hook, Alertmanager(alertmanager_config(hook)) as alertmanager:
            address = alertmanager.url.split("//")[1]
            async with Prometheus(prometheus_config(f"127.0.0.1:{exporter_port}", address)) as prometheus:
                conn = await asyncpg.connect(cluster.dsn(database))
                try:
                    stack = Stack(version, prefect, procs, conn, prometheus, hook, cluster, database, {})
                    stack.ids = await asyncio.to_thread(stack.register, deployments(version, venv))
                    await until("Prometheus scrapes the exporter", lambda: scraped(prometheus), 120, 2)
                    progress(f"{version}: stack up (database {database})")
                    yield stack
                finally:
                    await conn.close()
    finally:
        await asyncio.to_thread(kill_everything, procs)
        with contextlib.suppress(Exception):
            cluster.drop_database(database)


async def scraped(prometheus: Prometheus) -> bool:
    result = await prometheus.query('up{job="prefect-db"} == 1 and on () prefect_db_up == 1')
    return bool(result)


def kill_everything(procs: Processes) -> None:
    for name in list(procs.started):
        with contextlib.suppress(Exception):
            procs.stop(name, grace=0)
    with contextlib.suppress(Exception):
        procs.sweep()


# Watching -------------------------------------------------------------------------------------------


class AlertWatch:
    """Polls Prometheus' alerts: first pending and first firing time of each (alertname, severity)."""

    def __init__(self, prometheus: Prometheus) -> None:
        self.prometheus = prometheus
        self.pending: dict[tuple[str, str], float] = {}
        self.firing: dict[tuple[str, str], float] = {}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                for alert in await self.prometheus.alerts():
                    key = (alert["labels"]["alertname"], alert["labels"].get("severity", ""))
                    active = parse_time(alert.get("activeAt"))
                    self.pending.setdefault(key, active or time.time())
                    if alert["state"] == "firing":
                        self.firing.setdefault(key, time.time())
            await asyncio.sleep(1)

    def __enter__(self) -> AlertWatch:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    # Prometheus gives nanoseconds; fromisoformat takes at most microseconds.
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00"))
    return datetime.fromisoformat(trimmed).timestamp()


async def first_sample(
    prometheus: Prometheus, selector: str, accept: Callable[[float], bool], after: float
) -> float | None:
    """Unix time of the first scraped sample of ``selector`` at or after ``after`` that ``accept``s."""
    result = await prometheus.query(f"{selector}[2h]")
    times = [
        float(t)
        for series in result
        for t, v in series.get("values", [])
        if float(t) >= after and accept(float(v))
    ]
    return min(times) if times else None


async def wait_notification(
    stack: Stack, alert: str, severity: str | None, timeout: float
) -> tuple[float, str, str] | None:
    """(arrival, severity, receiver) of the first firing notification of ``alert``."""

    async def check() -> tuple[float, str, str] | None:
        for at, name, sev, receiver in stack.hook.firing():
            if name == alert and (severity is None or sev == severity):
                return at, sev, receiver
        return None

    with contextlib.suppress(TimeoutError):
        found: tuple[float, str, str] = await until(f"notification {alert}", check, timeout)
        return found
    return None


def finish(outcome: Outcome, stack: Stack, watch: AlertWatch, found: tuple[float, str, str] | None) -> None:
    """Fill in the notification, the marks and met / not met."""
    outcome.notifications = [
        {"at": at, "alert": name, "severity": sev, "receiver": receiver}
        for at, name, sev, receiver in stack.hook.firing()
    ]
    for (name, sev), at in watch.pending.items():
        outcome.marks[f"pending {name} {sev}"] = at
    for (name, sev), at in watch.firing.items():
        outcome.marks[f"firing {name} {sev}"] = at
    if found is None:
        outcome.reason = f"no {outcome.alert} notification within the wait"
        return
    at, outcome.severity, outcome.receiver = found
    outcome.marks["delivered"] = at
    assert outcome.start is not None and outcome.target_seconds is not None
    outcome.seconds = round(at - outcome.start, 1)
    outcome.met = outcome.seconds <= outcome.target_seconds and outcome.receiver == "pager"
    if outcome.receiver != "pager":
        outcome.reason = f"reached {outcome.receiver}, not the pager"
    elif not outcome.met:
        outcome.reason = f"{outcome.seconds:.0f} s > target {outcome.target_seconds:.0f} s"
    else:
        outcome.reason = f"{outcome.seconds:.0f} s <= {outcome.target_seconds:.0f} s, on the pager"


# The troubles -------------------------------------------------------------------------------------


async def two_workers(stack: Stack) -> None:
    for name in ("worker-1", "worker-2"):
        stack.start_worker(name)
    await until("2 workers online", lambda: workers_at_least(stack, 2), 180, 2)


async def workers_at_least(stack: Stack, count: int) -> bool:
    return await stack.online_workers() >= count


async def trouble_deadlock(stack: Stack, outcome: Outcome) -> None:
    copies = await copy_deployments(stack, DEPLOYMENT_COPIES)
    outcome.facts["deployments_on_the_queue"] = copies
    # Polls every second: four workers at 1 s poll as often as forty at the default 10 s. At 10 s
    # the four deadlocked only while their first polls coincided (3, then none; measured).
    outcome.facts["runs_on_the_queue"] = 0
    outcome.facts["worker_settings"] = POLL_FAST
    outcome.facts["deployment_status_at_start"] = "READY"
    log_offset = stack.cluster.log_path.stat().st_size
    with AlertWatch(stack.prometheus) as watch:
        for n in range(1, 5):
            stack.start_worker(f"worker-{n}", POLL_FAST)
        outcome.marks["workers started"] = time.time()
        first: float | None = await until(
            "first deadlock", lambda: first_deadlock(stack, log_offset), 420, 0.5
        )
        assert first is not None
        outcome.start, outcome.start_what = first, "first 'deadlock detected' in the server log"
        outcome.target_seconds, outcome.target_what = 90.0, "first deadlock + 90 s"
        outcome.alert = "PrefectPostgresDeadlocks"
        found = await wait_notification(stack, outcome.alert, "critical", 240)
        outcome.marks["metric crosses"] = (
            await first_sample(stack.prometheus, "prefect_db_deadlocks_total", lambda v: v >= 2, first - 1)
            or 0.0
        )
        outcome.facts["deadlocks_by_end"] = await stack.conn.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
        finish(outcome, stack, watch, found)


async def first_deadlock(stack: Stack, offset: int) -> float | None:
    with stack.cluster.log_path.open("rb") as log:
        log.seek(offset)
        for raw in log:
            match = DEADLOCK_LINE.match(raw.decode(errors="replace"))
            if match and match.group(2) == stack.database:
                return datetime.strptime(
                    match.group(1).replace(" UTC", "+0000"), "%Y-%m-%d %H:%M:%S.%f%z"
                ).timestamp()
    return None


async def copy_deployments(stack: Stack, count: int) -> int:
    """Copy the sleeper deployment ``count`` times onto its queue (the poll rewrites them all).

    The copies are READY and just polled, as the deployments of a queue that workers poll are. As
    NOT_READY, the first poll would flip them all in one transaction that builds a status event per
    deployment while it holds all their row locks (minutes here): every other poll then fails by
    statement timeout behind it, and nothing deadlocks.
    """
    columns = [
        r["column_name"]
        for r in await stack.conn.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = 'deployment' ORDER BY ordinal_position"
        )
    ]
    fresh = {
        "id": "gen_random_uuid()",
        "name": "'copy-' || n",
        "status": "'READY'::deployment_status",
        "last_polled": "now()",
    }
    select = ", ".join(fresh.get(c, f'd."{c}"') for c in columns)
    quoted = ", ".join(f'"{c}"' for c in columns)
    await stack.conn.execute(
        f"INSERT INTO deployment ({quoted}) SELECT {select}"
        " FROM deployment AS d CROSS JOIN generate_series(1, $2) AS n WHERE d.id = $1::uuid",
        stack.ids["sleeper"],
        count,
    )
    await stack.conn.execute("ANALYZE deployment")
    total: int = await stack.conn.fetchval("SELECT count(*) FROM deployment")
    progress(f"{stack.version}: {total} deployments on the queue")
    return total


async def trouble_zombie(stack: Stack, outcome: Outcome) -> None:
    await two_workers(stack)
    (run,) = await stack.runs("sleeper", 1)
    await stack.until_states([run], "RUNNING", 240)
    await until("3 heartbeats", lambda: enough_heartbeats(stack, run, 3), 240, 2)
    with AlertWatch(stack.prometheus) as watch:
        worker = worker_of(stack, run)
        victims = [worker] if worker else list(stack.workers)
        for name in victims:
            stack.kill_worker(name)
        killed = kill_flow_run(run)
        outcome.marks["killed"] = time.time()
        outcome.facts.update({"killed_workers": victims, "killed_pids": killed})
        await asyncio.sleep(3)
        beats = await stack.heartbeats(run)
        gaps = [b - a for a, b in itertools.pairwise(beats)]
        cadence = max(gaps[-2:]) if gaps else float(HEARTBEAT_SECONDS)
        outcome.start, outcome.start_what = beats[-1], "the run's last heartbeat event"
        outcome.target_seconds = round(3 * cadence + 60, 1)
        outcome.target_what = f"3 missed heartbeats ({cadence:.0f} s cadence) + 60 s"
        outcome.facts["cadence_seconds"] = round(cadence, 1)
        outcome.alert = "PrefectFlowRunsHeartbeatStale"
        found = await wait_notification(stack, outcome.alert, None, outcome.target_seconds + 150)
        outcome.facts["state_at_end"] = (await stack.states([run]))[run][0]
        outcome.marks["metric crosses"] = (
            await first_sample(
                stack.prometheus, "prefect_db_running_runs_heartbeat_stale", lambda v: v > 0, beats[-1]
            )
            or 0.0
        )
        finish(outcome, stack, watch, found)


async def enough_heartbeats(stack: Stack, run: str, count: int) -> bool:
    return len(await stack.heartbeats(run)) >= count


async def trouble_pending(stack: Stack, outcome: Outcome) -> None:
    await two_workers(stack)
    with AlertWatch(stack.prometheus) as watch:
        (run,) = await stack.runs("stuck", 1)
        states = await stack.until_states([run], "PENDING", 240)
        outcome.start, outcome.start_what = states[run][1], "the run's PENDING state timestamp"
        outcome.target_seconds = PENDING_STALE_SECONDS + 60
        outcome.target_what = "pending_stale_seconds (600) + 60 s"
        outcome.alert = "PrefectFlowRunsStuckPending"
        found = await wait_notification(stack, outcome.alert, None, PENDING_STALE_SECONDS + 240)
        outcome.facts["online_workers_at_end"] = await stack.online_workers()
        outcome.marks["metric crosses"] = (
            await first_sample(
                stack.prometheus, "prefect_db_pending_runs_stale", lambda v: v > 0, outcome.start
            )
            or 0.0
        )
        finish(outcome, stack, watch, found)


async def trouble_workers_gone(stack: Stack, outcome: Outcome) -> None:
    await two_workers(stack)
    runs = await stack.runs("stuck", 2)
    await stack.until_states(runs, "PENDING", 240)
    with AlertWatch(stack.prometheus) as watch:
        for name in list(stack.workers):
            stack.kill_worker(name)
        for run in runs:
            kill_flow_run(run)
        outcome.start, outcome.start_what = time.time(), "SIGKILL of the last worker"
        last_beat = await stack.conn.fetchval(
            "SELECT extract(epoch FROM max(last_heartbeat_time)) FROM worker"
        )
        outcome.marks["last worker heartbeat"] = float(last_beat)
        outcome.target_seconds, outcome.target_what = 180.0, "last worker died + 180 s"
        outcome.alert = "PrefectWorkPoolNoOnlineWorkers"
        found = await wait_notification(stack, outcome.alert, None, 360)
        outcome.facts["states_at_end"] = sorted(t for t, _ in (await stack.states(runs)).values())
        outcome.marks["metric crosses"] = (
            await first_sample(
                stack.prometheus, 'prefect_db_workers{status="ONLINE"}', lambda v: v == 0, outcome.start
            )
            or 0.0
        )
        finish(outcome, stack, watch, found)


async def trouble_crash_storm(stack: Stack, outcome: Outcome) -> None:
    await two_workers(stack)
    runs = await stack.runs("sleeper", 3)
    await stack.until_states(runs, "RUNNING", 300)
    await until("run processes", lambda: all_have_pids(runs), 60, 1)
    with AlertWatch(stack.prometheus) as watch:
        for run in runs:
            kill_flow_run(run)
        outcome.marks["killed"] = time.time()
        states = await stack.until_states(runs, "CRASHED", 180)
        crashes = sorted(at for _, at in states.values())
        outcome.start, outcome.start_what = crashes[0], "the first CRASHED state timestamp"
        outcome.marks["third crash"] = crashes[-1]
        outcome.target_seconds = round(crashes[-1] - crashes[0] + 90, 1)
        outcome.target_what = "third crash + 90 s (this project's own target)"
        outcome.alert = "PrefectFlowRunsCrashing"
        found = await wait_notification(stack, outcome.alert, "critical", 300)
        outcome.marks["metric crosses"] = (
            await first_sample(
                stack.prometheus,
                'prefect_db_flow_run_transitions_total{state_type="CRASHED"}',
                lambda v: v >= 3,
                0,
            )
            or 0.0
        )
        finish(outcome, stack, watch, found)


async def all_have_pids(runs: list[str]) -> bool:
    return all(flow_run_pids(run) for run in runs)


def polls_deadlock(version: str) -> bool:
    """Whether several workers polling one queue deadlock on ``version`` (fixed in 3.7.0)."""
    major, minor = (int(p) for p in version.split(".")[:2])
    return (major, minor) < (3, 7)


def healthy_fleet(version: str) -> list[tuple[str, str]]:
    """(worker, pool) of the healthy run on ``version``: a fleet that is healthy on that release.

    Prefect >= 3.7 locks the poll's deployment rows in id order: 4 workers share the one queue.
    Before 3.7 workers sharing a queue is Prefect's poll-deadlock bug (and the exporter's
    PrefectWorkerPollContention risk ticket, rightly), so one worker on each of two pools.
    """
    if polls_deadlock(version):
        return [("worker-a", POOL), ("worker-b", POOL_B)]
    return [(f"worker-{n}", POOL) for n in range(1, 5)]


async def trouble_healthy(stack: Stack, outcome: Outcome, minutes: float) -> None:
    # The version's healthy fleet (healthy_fleet), a short run every minute and a heartbeating
    # 10-minute run started every 5 minutes, alternating between the pools when there are two.
    fleet = healthy_fleet(stack.version)
    pools = sorted({pool for _, pool in fleet}, key=lambda p: (p != POOL, p))
    runs_of = {POOL: ("hello", "sleeper")}
    if POOL_B in pools:
        config = {
            "pool": POOL_B,
            "deployments": [
                {
                    "name": "sleeper-b",
                    "entrypoint": "flows.py:sleeper",
                    "job_variables": sleeper_job_variables(stack.version, stack.prefect.venv),
                },
                {"name": "hello-b", "entrypoint": "flows.py:hello"},
            ],
        }
        stack.ids.update(await asyncio.to_thread(stack.register, config))
        runs_of[POOL_B] = ("hello-b", "sleeper-b")
    for name, pool in fleet:
        stack.start_worker(name, pool=pool)
    await until(f"{len(fleet)} workers online", lambda: workers_at_least(stack, len(fleet)), 180, 2)
    outcome.start = time.time()
    outcome.start_what = f"{len(fleet)} workers online"
    if len(pools) > 1:
        outcome.start_what += f", one on each of {len(pools)} pools"
    outcome.target_seconds, outcome.target_what = 0.0, f"0 notifications in {minutes:g} minutes"
    outcome.facts["fleet"] = {name: pool for name, pool in fleet}
    end = outcome.start + minutes * 60
    minute = 0
    created: list[str] = []
    with AlertWatch(stack.prometheus) as watch:
        while time.time() < end:
            hello, _ = runs_of[pools[minute % len(pools)]]
            created += await stack.runs(hello, 1)
            if minute % 5 == 0:
                _, sleeper = runs_of[pools[(minute // 5) % len(pools)]]
                created += await stack.runs(sleeper, 1)
            minute += 1
            await asyncio.sleep(max(0.0, min(60.0, end - time.time())))
        await asyncio.sleep(30)  # one group_wait for anything that fired at the very end
        outcome.facts["completed_runs"] = await stack.conn.fetchval(
            "SELECT count(*) FROM flow_run WHERE state_type = 'COMPLETED'"
        )
        outcome.facts["runs_by_state"] = {
            r["type"]: r["n"]
            for r in await stack.conn.fetch(
                "SELECT state_type::text AS type, count(*) AS n FROM flow_run"
                " WHERE id = ANY($1::uuid[]) GROUP BY 1 ORDER BY 1",
                created,
            )
        }
        outcome.facts["deadlocks"] = await stack.conn.fetchval(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        )
        finish(outcome, stack, watch, None)
    count = len(outcome.notifications)
    outcome.met = count == 0
    outcome.seconds = None
    names = sorted({n["alert"] for n in outcome.notifications})
    outcome.reason = "no notification" if count == 0 else f"{count} notifications: {', '.join(names)}"


async def run_one(cluster: PgCluster, version: str, trouble: str, healthy_minutes: float) -> Outcome:
    outcome = Outcome(trouble, version)
    with tempfile.TemporaryDirectory(prefix=f"ppe-ttp-{trouble}-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        try:
            async with running_stack(cluster, version, workdir, trouble == "deadlock_server_log") as stack:
                if trouble == "healthy":
                    await trouble_healthy(stack, outcome, healthy_minutes)
                else:
                    await TROUBLE_FUNCTIONS[trouble](stack, outcome)
        except Exception as error:  # a broken run is a result too: say why
            outcome.reason = f"harness error: {type(error).__name__}: {error}"[:500]
            for log in sorted((workdir / "logs").glob("*.log")):
                text = log.read_text(errors="replace").splitlines()[-15:]
                progress(f"--- {log.name}\n" + "\n".join(text))
    return outcome


TROUBLE_FUNCTIONS: dict[str, Callable[[Stack, Outcome], Awaitable[None]]] = {
    "deadlock": trouble_deadlock,
    "deadlock_server_log": trouble_deadlock,
    "zombie": trouble_zombie,
    "pending": trouble_pending,
    "workers_gone": trouble_workers_gone,
    "crash_storm": trouble_crash_storm,
}


def applies(trouble: str, version: str) -> str | None:
    """Why a trouble is not run on a version, or None."""
    if trouble.startswith("deadlock") and not polls_deadlock(version):
        return "Prefect 3.7.0 locks the poll's rows in id order: several workers wait, never deadlock"
    return None


# Reporting ------------------------------------------------------------------------------------------


def table(outcomes: list[Outcome]) -> str:
    """The Markdown table of docs/alerting.md."""
    lines = [
        "| trouble | Prefect | start (database truth) | first notification | alert | receiver | target"
        " | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        seconds = "none" if o.seconds is None else f"{o.seconds:.0f} s"
        if o.trouble == "healthy":
            seconds = f"{len(o.notifications)} notifications"
        target = o.target_what or "-"
        met = "met" if o.met else f"NOT met: {o.reason}"
        lines.append(
            f"| {o.trouble} | {o.version} | {o.start_what or '-'} | {seconds} | {o.alert or '-'}"
            f" | {o.receiver or '-'} | {target} | {met} |"
        )
    return "\n".join(lines)


def timeline_png(outcomes: list[Outcome], path: Path) -> None:
    """One row per trouble and version: seconds after the start of each mark, and the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = [o for o in outcomes if o.start is not None and o.trouble != "healthy"]
    if not rows:
        return
    figure, axes = plt.subplots(figsize=(11, 0.7 * len(rows) + 1.8))
    styles = {
        "metric crosses": ("o", "tab:blue"),
        "pending": ("^", "tab:orange"),
        "firing": ("s", "tab:red"),
        "delivered": ("*", "tab:green"),
    }
    for y, o in enumerate(rows):
        assert o.start is not None
        axes.plot([0], [y], "|", color="black", markersize=14)
        if o.target_seconds is not None:
            axes.plot([o.target_seconds], [y], "|", color="grey", markersize=18, mew=3)
        for label, at in o.marks.items():
            kind = next((k for k in styles if label.startswith(k)), None)
            if kind is None or not at:
                continue
            if kind in ("pending", "firing") and o.alert and o.alert not in label:
                continue
            marker, colour = styles[kind]
            axes.plot([at - o.start], [y], marker, color=colour, markersize=9)
    axes.set_yticks(range(len(rows)), [f"{o.trouble} {o.version}" for o in rows])
    axes.set_xlabel("seconds after the trouble started (database truth); grey bar: target")
    handles = [Line2D([], [], marker=m, color=c, linestyle="", label=k) for k, (m, c) in styles.items()]
    axes.legend(handles=handles, loc="lower right", fontsize=8)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def report(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        verdict = "met" if o.met else "NOT MET"
        print(f"{o.trouble:13} {o.version:7} {verdict:8} {o.reason}")
    print()
    print(table(outcomes))


def load_previous() -> list[Outcome]:
    if not RESULTS_FILE.exists():
        return []
    data = json.loads(RESULTS_FILE.read_text())
    return [Outcome(**item) for item in data.get("outcomes", [])]


def save(outcomes: list[Outcome]) -> list[Outcome]:
    """Write these outcomes over the same trouble and version in the JSON file; return them all.

    The file is re-read on every save, so that benchmarks of different troubles can run at once.
    """
    mine = {(o.trouble, o.version) for o in outcomes}
    merged = [o for o in load_previous() if (o.trouble, o.version) not in mine] + outcomes
    order = {(t, v): i for i, (t, v) in enumerate((t, v) for t in TROUBLES for v in VERSIONS)}
    merged.sort(key=lambda o: order.get((o.trouble, o.version), 99))
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "bench/time_to_page.py",
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "outcomes": [asdict(o) for o in merged],
    }
    RESULTS_FILE.write_text(json.dumps(document, indent=1) + "\n")
    timeline_png(merged, TIMELINE_PNG)
    return merged


async def main_async(args: argparse.Namespace) -> int:
    if args.report:
        saved = load_previous()
        timeline_png(saved, TIMELINE_PNG)
        report(saved)
        return 0
    versions = [v.strip() for v in args.versions.split(",") if v.strip()]
    troubles = [t.strip() for t in args.troubles.split(",") if t.strip()]
    unknown = set(troubles) - set(TROUBLES)
    if unknown:
        print(f"unknown troubles {sorted(unknown)}; known: {', '.join(TROUBLES)}", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="ppe-ttp-pg-"))
    base.chmod(0o755)  # the cluster runs as the postgres user when we are root
    cluster = PgCluster.create(base / "pg", settings={"deadlock_timeout": "1s"})
    cluster.start()
    outcomes: list[Outcome] = []
    try:
        for trouble in troubles:
            for version in versions:
                why_not = applies(trouble, version)
                if why_not:
                    progress(f"{trouble} on {version}: skipped ({why_not})")
                    continue
                progress(f"{trouble} on {version}: starting")
                outcome = await run_one(cluster, version, trouble, args.healthy_minutes)
                progress(f"{trouble} on {version}: {'met' if outcome.met else 'NOT met'}: {outcome.reason}")
                outcomes.append(outcome)
                save(outcomes)
    finally:
        with contextlib.suppress(Exception):
            cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)
    report(save(outcomes) if outcomes else load_previous())
    return 0 if all(o.met for o in outcomes) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--troubles", default=",".join(TROUBLES))
    parser.add_argument("--healthy-minutes", type=float, default=30.0)
    parser.add_argument("--report", action="store_true", help="print the saved results and redraw the PNG")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
