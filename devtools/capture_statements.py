"""Capture the SQL statements a real Prefect server sends to PostgreSQL.

``python -m devtools.capture_statements --version 3.1.15 --seconds 120`` starts a throwaway
cluster that logs every statement (csvlog), migrates a ``prefect`` database, runs a real
``prefect server start`` plus two process workers from that release's virtualenv, drives a
small workload through the API (work pool with queues, deployments, late/immediate/scheduled
flow runs, concurrency limits, logs, artifacts, an automation, a cancellation, a worker killed
part-way so the foreman marks it OFFLINE, all workers stopped at the end so queues, deployments
and the pool go NOT_READY), stops everything and writes one JSON line per distinct statement
shape to ``tests/data/prefect_statements/<version>.jsonl``, most frequent first. A run takes
about ``--seconds`` plus 40 s.

Only the ``prefect`` database's statements logged after a marker (so not the migrations) are
kept; this script's own sessions, transaction control and driver chatter (asyncpg type
introspection, SQLAlchemy catalog lookups) are dropped. Shapes are deduplicated on collapsed
whitespace with ``$n`` numbers, parameter lists, ``IN (...)`` literal lists and repeated
``VALUES`` rows erased. Statement texts depend on the SQLAlchemy release too (2.0 labels
selected columns ``AS table_column``, 2.1 does not); 3.1.15 runs with SQLAlchemy 2.0 layered
over its shared virtualenv, see ``OVERLAYS``.

``--keep`` keeps the work directory; ``--from-log DIR`` re-parses the csv logs of a kept run
(``<workdir>/pg/data/log``) without running Prefect.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
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
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from devtools.pgcluster import PgCluster, free_port
from devtools.prefect_env import REPO_ROOT, cache_dir, ensure_prefect, file_lock, migrate, prefect_env
from exporter.config import DEFAULT_OPERATIONS_FILE
from exporter.operations import load_operations

OUT_DIR = REPO_ROOT / "tests" / "data" / "prefect_statements"
APP_NAME = "capture"
# Sessions opened by this script (asyncpg with APP_NAME, PgCluster.psql) are not Prefect's.
OWN_APP_NAMES = frozenset({APP_NAME, "psql", "pg_isready"})
DB_NAME = "prefect"
BEGIN_MARKER = "ppe-capture-begin"
TOKEN_VAR = "PPE_CAPTURE_TOKEN"
MAX_STATEMENT_CHARS = 4000
MAX_EXAMPLE_CHARS = 600
POOL = "capture-pool"
TAIL_SECONDS = 35.0

CLUSTER_SETTINGS: dict[str, str] = {
    "log_statement": "all",
    "log_min_duration_statement": "-1",
    "log_destination": "csvlog",
    "logging_collector": "on",
    "log_directory": "log",
    "log_filename": "postgresql-%Y%m%d-%H%M%S.log",
    "log_rotation_age": "0",
    "log_rotation_size": "0",
    # Bind parameters go to the DETAIL field; event payloads can be long.
    "log_parameter_max_length": "200",
}

# Server-side settings that make the periodic services show their SQL within a short run.
SERVER_SETTINGS: dict[str, str] = {
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "5",
    "PREFECT_SERVER_SERVICES_FOREMAN_FALLBACK_HEARTBEAT_INTERVAL_SECONDS": "5",
    "PREFECT_SERVER_SERVICES_FOREMAN_DEPLOYMENT_LAST_POLLED_TIMEOUT_SECONDS": "10",
    "PREFECT_SERVER_SERVICES_FOREMAN_WORK_QUEUE_LAST_POLLED_TIMEOUT_SECONDS": "10",
    "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "10",
    "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_SCHEDULED_TIME": "PT5M",
    "PREFECT_LOGGING_SERVER_LEVEL": "INFO",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "2",
    # 3.9.1 only (older releases ignore unknown settings): event trimming by db_vacuum.
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs,orphans",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS": "20",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ORPHAN_CLEANUP_LOOP_SECONDS": "30",
    "PREFECT_SERVER_EVENTS_RETENTION_PERIOD": "PT60S",
}

# Packages layered (via PYTHONPATH) over a release's shared virtualenv because that holds
# versions the release predates. 3.1.15 allows any SQLAlchemy < 3, but with 2.1 its scheduler
# fails silently on every loop ("Can't evaluate bulk DML statement; please supply a bulk_dml
# decorated function" from the FlowRun.state hybrid), so no scheduled runs are ever inserted.
OVERLAYS: dict[str, tuple[str, ...]] = {"3.1.15": ("sqlalchemy>=2.0,<2.1",)}

WORKER_SETTINGS: dict[str, str] = {
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
    "PREFECT_LOGGING_LEVEL": "INFO",
}

FLOWS_PY = '''\
"""Flows deployed by devtools.capture_statements."""

import time

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.concurrency.sync import concurrency
from prefect.variables import Variable


@task(tags=["capture-tag"])
def tagged(i: int) -> int:
    get_run_logger().info("tagged task %d", i)
    return i * 2


@task
def plain(i: int) -> int:
    return i + 1


@flow
def fast(n: int = 3) -> int:
    logger = get_run_logger()
    for i in range(n):
        logger.info("fast flow line %d", i)
    with concurrency("capture-gcl", occupy=1):
        total = sum(tagged(i) for i in range(2)) + plain(1)
    Variable.get("capture_var", default="none")
    create_markdown_artifact("# captured", key="capture-artifact")
    return total


@flow
def slow(seconds: float = 50) -> None:
    logger = get_run_logger()
    with concurrency("capture-gcl", occupy=1):
        time.sleep(1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        logger.info("slow flow still running")
        time.sleep(5)


@flow(retries=1, retry_delay_seconds=2)
def flaky() -> None:
    get_run_logger().warning("flaky flow is about to fail")
    raise ValueError("capture: planned failure")
'''

CLIENT_PY = '''\
"""API client steps run by devtools.capture_statements with the Prefect virtualenv's python."""

import asyncio
import json
import sys
import time
import traceback
from datetime import datetime, timedelta, timezone

import prefect.main  # noqa: F401  (3.1.15 needs its models fully built before States are made)
from prefect import flow, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, WorkPoolCreate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
    LogFilter,
)
from prefect.client.schemas.objects import StateType
from prefect.states import Cancelling, Scheduled
from prefect.variables import Variable
from prefect.workers.process import ProcessWorker

POOL = "capture-pool"


def now():
    try:
        import pendulum
    except ImportError:
        return datetime.now(timezone.utc)
    return pendulum.now("UTC")


def note(message):
    print(f"[client] {message}", file=sys.stderr, flush=True)


async def attempt(what, coro):
    try:
        return await coro
    except Exception as exc:  # keep going: one failing call must not end the capture
        note(f"{what} failed: {exc!r}")
        return None


async def setup_api():
    async with get_client() as client:
        template = ProcessWorker.get_default_base_job_template()
        await client.create_work_pool(
            work_pool=WorkPoolCreate(
                name=POOL, type="process", base_job_template=template, concurrency_limit=4
            )
        )
        await client.create_work_queue(name="fast", work_pool_name=POOL)
        await client.create_work_queue(name="slow", work_pool_name=POOL, concurrency_limit=2)
        await client.create_global_concurrency_limit(
            concurrency_limit=GlobalConcurrencyLimitCreate(name="capture-gcl", limit=2)
        )
        await client.create_concurrency_limit(tag="capture-tag", concurrency_limit=1)


async def create_automation():
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    trigger = EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        expect={"prefect.flow-run.*"},
        match={"prefect.resource.id": ["prefect.flow-run.*"]},
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=90),
    )
    action = ChangeFlowRunState(state=StateType.CRASHED, message="no heartbeat (capture)")
    automation = AutomationCore(name="capture-zombies", trigger=trigger, actions=[action])
    async with get_client() as client:
        await client.create_automation(automation)


def setup(cfg):
    asyncio.run(setup_api())
    Variable.set("capture_var", "captured", overwrite=True)
    ids = {}
    for spec in cfg["deployments"]:
        source = flow.from_source(source=cfg["flows_dir"], entrypoint=spec["entrypoint"])
        ids[spec["name"]] = str(
            source.deploy(
                name=spec["name"],
                work_pool_name=POOL,
                work_queue_name=spec["queue"],
                job_variables=spec.get("job_variables") or {},
                interval=spec.get("interval"),
                concurrency_limit=spec.get("concurrency_limit"),
                tags=["capture"],
                build=False,
                push=False,
                print_next_steps=False,
            )
        )
    asyncio.run(attempt("automation", create_automation()))
    return ids


async def runs(cfg):
    created = []
    async with get_client() as client:
        for _ in range(cfg["count"]):
            state = None
            if cfg.get("past_seconds"):
                state = Scheduled(scheduled_time=now() - timedelta(seconds=cfg["past_seconds"]))
            run = await client.create_flow_run_from_deployment(
                cfg["deployment_id"], state=state, tags=["capture"]
            )
            created.append(str(run.id))
    return created


async def wait_late(cfg):
    deadline = time.monotonic() + cfg["timeout"]
    late = []
    async with get_client() as client:
        while time.monotonic() < deadline:
            late = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"]))
                )
            )
            if len(late) >= cfg["count"]:
                break
            await asyncio.sleep(1)
    return len(late)


async def mid(cfg):
    async with get_client() as client:
        pools = await attempt("read_work_pools", client.read_work_pools()) or []
        queues = await attempt("read_work_queues", client.read_work_queues(work_pool_name=POOL)) or []
        for queue in queues:
            await attempt("read_work_queue_status", client.read_work_queue_status(queue.id))
        await attempt("read_workers", client.read_workers_for_work_pool(POOL))
        await attempt("read_deployments", client.read_deployments())
        await attempt(
            "read_flow_runs",
            client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])
                    )
                ),
                limit=50,
            ),
        )
        await attempt("read_logs", client.read_logs(LogFilter(), limit=50))
        await attempt("events filter", client._client.post("/events/filter", json={"limit": 20}))
        await attempt(
            "flow run history",
            client._client.post(
                "/flow_runs/history",
                json={
                    "history_start": (now() - timedelta(hours=1)).isoformat(),
                    "history_end": now().isoformat(),
                    "history_interval_seconds": 600,
                },
            ),
        )
        default = [q for q in queues if q.name == "default"]
        if default:
            await attempt("pause queue", client.update_work_queue(default[0].id, is_paused=True))
            await attempt("resume queue", client.update_work_queue(default[0].id, is_paused=False))
    return {"pools": len(pools), "queues": len(queues)}


async def cancel(cfg):
    deadline = time.monotonic() + cfg["timeout"]
    running_filter = FlowRunFilter(
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
    )
    async with get_client() as client:
        while True:
            running = await client.read_flow_runs(flow_run_filter=running_filter, limit=20)
            if running:
                break
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(1)
        preferred = [r for r in running if str(r.deployment_id) == cfg["deployment_id"]]
        target = (preferred or running)[0]
        await client.set_flow_run_state(target.id, Cancelling())
        return str(target.id)


async def status(cfg):
    async with get_client() as client:
        workers = await client.read_workers_for_work_pool(POOL)
        pools = await client.read_work_pools()
        queues = await client.read_work_queues(work_pool_name=POOL)
        deployments = await client.read_deployments(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=cfg["deployment_ids"]))
        )
        flow_runs = await client.read_flow_runs(limit=200)
    states = {}
    for run in flow_runs:
        name = run.state.name if run.state else "None"
        states[name] = states.get(name, 0) + 1
    return {
        "workers": {w.name: str(w.status.value if w.status else None) for w in workers},
        "pool": {p.name: str(p.status.value if p.status else None) for p in pools},
        "queues": {q.name: str(q.status.value if q.status else None) for q in queues},
        "deployments": {d.name: str(d.status.value if d.status else None) for d in deployments},
        "flow_runs": states,
    }


STEPS = {"runs": runs, "wait_late": wait_late, "mid": mid, "cancel": cancel, "status": status}


def main():
    step, cfg = sys.argv[1], json.loads(sys.argv[2])
    try:
        result = setup(cfg) if step == "setup" else asyncio.run(STEPS[step](cfg))
    except Exception:
        traceback.print_exc()
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def progress(message: str) -> None:
    """Print one progress line to stderr."""
    print(f"[capture] {message}", file=sys.stderr, flush=True)


class CaptureError(RuntimeError):
    """The Prefect server, a worker or a client step failed."""


@dataclass
class Processes:
    """Processes started by this script, each in its own session and tagged with a token."""

    log_dir: Path
    token: str = field(default_factory=lambda: secrets.token_hex(8))
    started: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def tagged_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """Return ``env`` plus the token that marks every descendant as ours."""
        return {**env, TOKEN_VAR: self.token}

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        """Start a long-running process with its output in ``<log_dir>/<name>.log``."""
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.started[name] = subprocess.Popen(
                list(argv),
                env=self.tagged_env(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        progress(f"started {name} (pid {self.started[name].pid})")

    def alive(self, name: str) -> bool:
        """Tell whether a started process is still running."""
        return self.started[name].poll() is None

    def stop(self, name: str, grace: float = 5.0) -> None:
        """Stop one process group: SIGTERM, then SIGKILL after ``grace`` seconds (0: at once)."""
        proc = self.started.get(name)
        if proc is None:
            return
        if grace > 0:
            signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Always SIGKILL the group: members may outlive (or ignore) what the leader did.
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        progress(f"stopped {name} (pid {proc.pid})")

    def tagged_pids(self) -> list[int]:
        """Return the ids of live processes whose environment carries our token."""
        needle = f"{TOKEN_VAR}={self.token}".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if needle in environ.split(b"\0"):
                pids.append(int(entry.name))
        return pids

    def sweep(self) -> None:
        """SIGKILL every remaining process that inherited our token (flow runs, runners)."""
        for _ in range(5):
            pids = self.tagged_pids()
            if not pids:
                return
            progress(f"killing leftover processes {pids}")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        raise CaptureError(f"processes survived SIGKILL: {self.tagged_pids()}")

    def stop_all(self) -> None:
        """Stop every started process group, then sweep up their descendants."""
        for name in list(self.started):
            self.stop(name)
        self.sweep()


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send a signal to a process group that may already be gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def ensure_overlay(version: str, venv: Path) -> Path | None:
    """Return the directory of packages layered over a version's virtualenv, installing it."""
    requirements = OVERLAYS.get(version)
    if not requirements:
        return None
    target = cache_dir() / "capture-overlay" / version
    marker = target / ".ppe-complete"
    wanted = "\n".join(requirements) + "\n"
    with file_lock(target.parent / f"{version}.lock"):
        if not marker.exists() or marker.read_text() != wanted:
            progress(f"installing {' '.join(requirements)} into {target}")
            shutil.rmtree(target, ignore_errors=True)
            argv = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
            result = subprocess.run(
                [*argv, "--target", str(target), *requirements],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise CaptureError(f"overlay install failed:\n{result.stdout}{result.stderr}")
            marker.write_text(wanted)
    return target


def tail(path: Path, lines: int = 40) -> str:
    """Return the last lines of a text file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


@dataclass
class Prefect:
    """A running Prefect server of one version and the means to drive it."""

    version: str
    venv: Path
    workdir: Path
    dsn: str
    port: int
    procs: Processes
    overlay: Path | None = None

    @property
    def api_url(self) -> str:
        """The server's API base URL."""
        return f"http://127.0.0.1:{self.port}/api"

    def base_env(self) -> dict[str, str]:
        """Environment shared by server, workers and clients."""
        env = prefect_env(self.dsn, self.workdir / "home")
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env.pop("PYTHONPATH", None)
        if self.overlay is not None:
            env["PYTHONPATH"] = str(self.overlay)
        return env

    def client_env(self) -> dict[str, str]:
        """Environment for API clients and workers: the API URL, no database URL."""
        env = self.base_env()
        del env["PREFECT_API_DATABASE_CONNECTION_URL"]
        env["PREFECT_API_URL"] = self.api_url
        return env

    def start_server(self, timeout: float = 180, settings: Mapping[str, str] = SERVER_SETTINGS) -> None:
        """Start ``prefect server start`` with ``settings`` in its environment; wait for ``/api/health``."""
        env = {**self.base_env(), **settings}
        argv = [str(self.venv / "bin" / "prefect"), "server", "start"]
        argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        self.procs.start("server", argv, env, self.workdir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.procs.alive("server"):
                raise CaptureError(f"server exited:\n{tail(self.procs.log_dir / 'server.log')}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        progress(f"prefect {self.version} server healthy at {self.api_url}")
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(1)
        raise CaptureError(f"server not healthy after {timeout} s")

    def start_worker(self, name: str, pool: str = POOL) -> None:
        """Start a process worker on ``pool``, polling every second."""
        env = {**self.client_env(), **WORKER_SETTINGS}
        argv = [str(self.venv / "bin" / "prefect"), "worker", "start"]
        argv += ["--pool", pool, "--name", name, "--type", "process"]
        self.procs.start(name, argv, env, self.workdir)

    def client(self, step: str, cfg: Mapping[str, Any], *, optional: bool = False) -> Any:
        """Run one client-script step; return its JSON result (None if an optional step failed)."""
        script = self.workdir / "client.py"
        argv = [str(self.venv / "bin" / "python"), str(script), step, json.dumps(cfg)]
        started = time.monotonic()
        result = subprocess.run(
            argv,
            env=self.procs.tagged_env(self.client_env()),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        with (self.procs.log_dir / "client.log").open("a") as log:
            log.write(f"$ {step} {json.dumps(cfg)}\n{result.stdout}{result.stderr}\n")
        if result.returncode != 0:
            if optional:
                progress(f"client {step} failed (ignored): {result.stderr.strip().splitlines()[-1:]}")
                return None
            raise CaptureError(f"client step {step} failed:\n{result.stderr[-3000:]}")
        lines = result.stdout.strip().splitlines()
        value = json.loads(lines[-1]) if lines else None
        progress(f"client {step}: {json.dumps(value)[:200]} ({time.monotonic() - started:.1f} s)")
        return value


def deployment_specs(version: str, venv: Path) -> list[dict[str, Any]]:
    """Return the deployments to create: fast (scheduled), slow (heartbeats), flaky."""
    slow_vars: dict[str, Any] = {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30"}}
    if version.startswith(("2.", "3.0.", "3.1.", "3.2.", "3.3.", "3.4.", "3.5.")):
        # Before 3.6.13 only a Runner sends heartbeats; a worker's default command does not.
        slow_vars = {
            "command": f"{venv / 'bin' / 'prefect'} flow-run execute",
            "env": {"PREFECT_RUNNER_HEARTBEAT_FREQUENCY": "30"},
        }
    return [
        {"name": "capture-fast", "entrypoint": "flows.py:fast", "queue": "fast", "interval": 60},
        {
            "name": "capture-slow",
            "entrypoint": "flows.py:slow",
            "queue": "slow",
            "job_variables": slow_vars,
            "concurrency_limit": 1,
        },
        {"name": "capture-flaky", "entrypoint": "flows.py:flaky", "queue": "fast"},
    ]


async def mark_begin(dsn: str) -> None:
    """Log the marker statement after which the capture starts (migrations come before)."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": APP_NAME})
    try:
        await conn.execute(f"SELECT '{BEGIN_MARKER}'")
    finally:
        await conn.close()


@dataclass(frozen=True)
class Step:
    """One scheduled action of the workload, ``at`` seconds after the workers start."""

    at: float
    name: str
    action: Callable[[], None]


def workload(prefect: Prefect, ids: Mapping[str, str], seconds: float) -> list[Step]:
    """Return the timed actions of the capture phase."""
    fast, slow, flaky = ids["capture-fast"], ids["capture-slow"], ids["capture-flaky"]

    def runs(deployment_id: str, count: int) -> Callable[[], None]:
        return lambda: prefect.client("runs", {"deployment_id": deployment_id, "count": count})

    def cancel() -> None:
        prefect.client("cancel", {"deployment_id": slow, "timeout": 20}, optional=True)

    def status() -> None:
        prefect.client("status", {"deployment_ids": list(ids.values())}, optional=True)

    tail_start = max(seconds - TAIL_SECONDS, seconds * 0.6)
    return [
        Step(0, "worker-a", lambda: prefect.start_worker("worker-a")),
        Step(0, "worker-b", lambda: prefect.start_worker("worker-b")),
        Step(3, "fast runs", runs(fast, 3)),
        Step(3, "slow runs", runs(slow, 2)),
        Step(3, "flaky run", runs(flaky, 1)),
        Step(seconds * 0.25, "reads", lambda: prefect.client("mid", {}, optional=True)),
        Step(seconds * 0.25, "more fast runs", runs(fast, 2)),
        Step(seconds * 0.25, "more slow runs", runs(slow, 1)),
        Step(seconds * 0.3, "cancel", cancel),
        Step(seconds * 0.4, "kill worker-b", lambda: prefect.procs.stop("worker-b", grace=0)),
        Step(tail_start, "kill worker-a", lambda: prefect.procs.stop("worker-a", grace=0)),
        Step(seconds, "status", status),
    ]


def run_capture(version: str, seconds: float, workdir: Path) -> Path:
    """Run cluster, server, workers and workload; return the cluster's csv log directory."""
    venv = ensure_prefect(version)
    workdir.chmod(0o755)  # the postgres OS user must traverse it
    for sub in ("home", "flows", "logs"):
        (workdir / sub).mkdir()
    (workdir / "flows" / "flows.py").write_text(FLOWS_PY)
    (workdir / "client.py").write_text(CLIENT_PY)
    cluster = PgCluster.create(workdir / "pg", settings=CLUSTER_SETTINGS)
    procs = Processes(workdir / "logs")
    cluster.start()
    try:
        cluster.create_database(DB_NAME)
        dsn = cluster.dsn(DB_NAME)
        progress(f"migrating with prefect {version}")
        migrate(version, dsn)
        asyncio.run(mark_begin(dsn))
        overlay = ensure_overlay(version, venv)
        prefect = Prefect(version, venv, workdir, dsn, free_port(), procs, overlay)
        prefect.start_server()
        specs = deployment_specs(version, venv)
        ids = prefect.client("setup", {"flows_dir": str(workdir / "flows"), "deployments": specs})
        prefect.client("runs", {"deployment_id": ids["capture-fast"], "count": 3, "past_seconds": 120})
        prefect.client("wait_late", {"count": 3, "timeout": 40})
        started = time.monotonic()
        for step in workload(prefect, ids, seconds):
            delay = step.at - (time.monotonic() - started)
            if delay > 0:
                time.sleep(delay)
            progress(f"t={time.monotonic() - started:5.1f}s {step.name}")
            step.action()
    finally:
        procs.stop_all()
        if cluster.is_running():
            cluster.stop()
    return cluster.data_dir / "log"


# ---------------------------------------------------------------- log parsing

# csvlog columns (stable since PostgreSQL 9.0 for these positions).
COL_LOG_TIME, COL_DATABASE, COL_PID, COL_SEVERITY = 0, 2, 3, 11
COL_MESSAGE, COL_DETAIL, COL_APP = 13, 14, 22

STATEMENT_MESSAGE = re.compile(r"^(?:statement|execute(?: fetch from)? \S+?): (?P<sql>.*)\Z", re.DOTALL)
CHATTER = re.compile(
    r"^(?:BEGIN|START TRANSACTION|COMMIT|END|ROLLBACK|ABORT|SAVEPOINT|RELEASE|SET|SHOW|RESET|DISCARD"
    r"|DEALLOCATE|CLOSE|UNLISTEN)\b"
    r"|^SELECT 1;?$"
    r"|^SELECT pg_catalog\.version\(\)"
    r"|^SELECT current_schema\(\)"
    # asyncpg's type introspection (with jit switched off around it) and SQLAlchemy's
    # catalog lookups (has_table and friends).
    r"|^SELECT\s+current_setting\('jit'\)"
    r"|^SELECT\s+set_config\('jit'"
    r"|^WITH RECURSIVE typeinfo_tree\b"
    r"|\bFROM pg_catalog\.",
    re.IGNORECASE,
)
TYPE_NAME = r"(?:TIMESTAMP WITH(?:OUT)? TIME ZONE|DOUBLE PRECISION|CHARACTER VARYING|[A-Za-z_][\w.]*)"
CAST = rf"(?:::{TYPE_NAME}(?:\[\])?)?"
PARAM = r"\$n" + CAST
PARAM_LIST = re.compile(rf"\(\s*{PARAM}(?:\s*,\s*{PARAM})*\s*\)")
LITERAL = r"(?:'(?:[^']|'')*'" + CAST + r"|-?\d+(?:\.\d+)?|NULL)"
LITERAL_IN_LIST = re.compile(rf"\bIN \(\s*{LITERAL}(?:\s*,\s*{LITERAL})*\s*\)", re.IGNORECASE)
REPEATED_GROUP = re.compile(r"(\((?:[^()]|\([^()]*\))*\))(?:\s*,\s*\1)+")
# insertmanyvalues rows end in a literal sentinel counter: ($n…, 0), ($n…, 1), …
SENTINEL_ROW = re.compile(r"\(\$n…, \d+\)")


def normalize(sql: str) -> str:
    """Return the dedupe key: whitespace collapsed, parameter and IN-list lengths erased."""
    key = re.sub(r"\s+", " ", sql).strip().rstrip(";").strip()
    key = re.sub(r"\$\d+", "$n", key)
    key = PARAM_LIST.sub("($n…)", key)
    key = LITERAL_IN_LIST.sub("IN (…)", key)
    key = SENTINEL_ROW.sub("($n…, k)", key)
    return REPEATED_GROUP.sub(r"\1", key)


def is_chatter(sql: str) -> bool:
    """Tell whether a statement is transaction control or driver/session chatter."""
    return bool(CHATTER.search(sql.strip()))


CLASSIFIER = load_operations(DEFAULT_OPERATIONS_FILE)


@dataclass
class Shape:
    """One distinct statement shape and how often it was executed."""

    statement: str
    example_log_line: str
    count: int = 0
    apps: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        """Return the JSON object written for this shape, with the operation it classifies as today."""
        return {
            # Review this field in the diff: tests/test_operations.py holds the classifier to it.
            "operation": CLASSIFIER.classify(self.statement[:MAX_STATEMENT_CHARS]),
            "statement": self.statement[:MAX_STATEMENT_CHARS],
            "count": self.count,
            "application_name": self.apps.most_common(1)[0][0],
            "example_log_line": self.example_log_line,
        }


@dataclass
class Parsed:
    """Statement shapes and server errors found in a log."""

    shapes: dict[str, Shape] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    dropped: int = 0


def read_csvlog(log_dir: Path) -> Iterator[list[str]]:
    """Yield the rows of every csv log file in ``log_dir``, oldest file first."""
    files = sorted(log_dir.glob("*.csv"))
    if not files:
        raise CaptureError(f"no csv logs in {log_dir}")
    for path in files:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            yield from csv.reader(handle)


def parse_log(log_rows: Iterable[list[str]]) -> Parsed:
    """Collect Prefect's statements logged after the begin marker."""
    rows = [r for r in log_rows if len(r) > COL_APP]
    begin = next(
        (i for i, r in enumerate(rows) if r[COL_APP] == APP_NAME and BEGIN_MARKER in r[COL_MESSAGE]), -1
    )
    if begin < 0:
        progress("begin marker not found: parsing the whole log")
    parsed = Parsed()
    for row in rows[begin + 1 :]:
        if row[COL_DATABASE] != DB_NAME or row[COL_APP] in OWN_APP_NAMES:
            continue
        if row[COL_SEVERITY] in ("ERROR", "FATAL", "PANIC"):
            parsed.errors[row[COL_MESSAGE][:120]] += 1
            continue
        match = STATEMENT_MESSAGE.match(row[COL_MESSAGE])
        if match is None:
            continue
        sql = match.group("sql")
        if is_chatter(sql):
            parsed.dropped += 1
            continue
        key = normalize(sql)
        shape = parsed.shapes.get(key)
        if shape is None:
            example = f"{row[COL_LOG_TIME]} [{row[COL_PID]}] LOG: {row[COL_MESSAGE]}"
            if row[COL_DETAIL]:
                example += f" DETAIL: {row[COL_DETAIL]}"
            shape = parsed.shapes[key] = Shape(sql.strip(), example[:MAX_EXAMPLE_CHARS])
        elif len(shape.statement) > MAX_STATEMENT_CHARS and len(sql.strip()) < len(shape.statement):
            # Keep the first example unless the cap would cut it; then the shortest one seen.
            shape.statement = sql.strip()
        shape.count += 1
        shape.apps[row[COL_APP]] += 1
    return parsed


def ordered(parsed: Parsed) -> list[Shape]:
    """Return the shapes by count descending, then by text."""
    return sorted(parsed.shapes.values(), key=lambda s: (-s.count, s.statement))


def write_jsonl(shapes: Sequence[Shape], path: Path) -> None:
    """Write one JSON object per shape."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for shape in shapes:
            out.write(json.dumps(shape.as_json(), ensure_ascii=False) + "\n")


def summarize(version: str, parsed: Parsed, shapes: Sequence[Shape], path: Path) -> None:
    """Print the distinct count, total and the top 20 shapes."""
    total = sum(s.count for s in shapes)
    print(f"prefect {version}: {len(shapes)} distinct statements, {total} executed -> {path}")
    print(f"  (dropped {parsed.dropped} transaction-control/driver statements)")
    for shape in shapes[:20]:
        text = re.sub(r"\s+", " ", shape.statement)[:100]
        print(f"  {shape.count:7d}  {text}")
    for message, count in parsed.errors.most_common(10):
        print(f"  server error x{count}: {message}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", required=True, help="Prefect release, e.g. 3.1.15")
    parser.add_argument("--seconds", type=float, default=120, help="length of the workload phase")
    parser.add_argument("--out", type=Path, help="output file (default: tests/data/prefect_statements/)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, cluster)")
    parser.add_argument("--from-log", type=Path, help="re-parse the csv logs in this directory instead")
    args = parser.parse_args(argv)
    if args.seconds < 60 and args.from_log is None:
        parser.error("--seconds must be at least 60 (the foreman needs time to mark workers OFFLINE)")
    out: Path = args.out or OUT_DIR / f"{args.version}.jsonl"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    log_dir: Path | None = args.from_log
    workdir: Path | None = None
    try:
        if log_dir is None:
            workdir = Path(tempfile.mkdtemp(prefix="ppe-capture-", dir="/tmp"))
            progress(f"work directory {workdir}")
            log_dir = run_capture(args.version, args.seconds, workdir)
        parsed = parse_log(read_csvlog(log_dir))
    except BaseException:
        if workdir is not None:
            progress(f"failed; kept {workdir} (logs in {workdir / 'logs'})")
        raise
    if workdir is not None and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    shapes = ordered(parsed)
    write_jsonl(shapes, out)
    summarize(args.version, parsed, shapes, out)
    progress(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
