"""Build a large Prefect database on the real 3.1.15 schema and keep it as a template database.

``python -m bench.generate --scale 1.0`` fills ``bench_1_0`` with >= 1 M flow runs (4 states each on
average), 5 M logs and 2 M events (10 M event_resources rows); ``--scale 0.1`` fills ``bench_0_1``
with a tenth of the *history*. The live workload (SCHEDULED/PENDING/RUNNING runs, their heartbeats,
pools, queues, deployments, workers, limits) is the same at every scale, and history is written at
the same rate (about 11,000 runs a day), so a smaller scale is the same installation with a shorter
past: exactly what "cost must not grow with history" compares. ``--live-scale`` fills ``bench_live``:
the 0.1 history under a live installation ten times larger (50,000 deployments over 1,000 queues in
100 pools, 2,037 recently seen workers with Kubernetes pod names, 20,000 dead ones, 10,000 SCHEDULED,
1,000 PENDING and 1,000 RUNNING runs with heartbeats): what "cost must not grow with the live state"
compares.

All rows are written with set-based ``INSERT ... SELECT generate_series`` under deterministic ids
(``md5(...)::uuid``). Secondary indexes of the big tables are dropped during the load and rebuilt
afterwards from their own ``pg_get_indexdef``, so the schema ends up exactly as Prefect's migrations
made it. The database comment records the scale and the *anchor* (the "now" of the data), which
``bench.run`` uses to shift the recent rows to the present before measuring.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from string import Template

import asyncpg

from bench.cluster import (
    EXPORTER_PASSWORD,
    EXPORTER_ROLE,
    PREFECT_VERSION,
    ensure_cluster,
    progress,
)
from devtools.pgcluster import PgCluster
from devtools.prefect_env import database_comment, ensure_template

REPO_ROOT = Path(__file__).resolve().parents[1]
ROLE_SQL = REPO_ROOT / "deploy" / "exporter-role.sql"
MARKER_PREFIX = "prefect-db-exporter bench"
BIG_TABLES = ("flow_run", "flow_run_state", "log", "events", "event_resources")


@dataclass(frozen=True)
class Live:
    """The live installation: pools, queues, deployments, workers and runs that are not history yet."""

    pools: int = 50
    dead_pools: int = 2  # the last pools: no live worker, queues unpolled for a day
    queues: int = 200  # spread over the pools: each pool's default queue and q1, q2, ...
    flows: int = 500
    deployments: int = 5000
    deployment_limits: int = 300
    global_limits: int = 50
    tag_limits: int = 20
    dead_workers: int = 3000
    workers_per_live_pool: int = 2
    # Kubernetes workers are named after their pod, so every pod restart is a new worker name.
    pod_named_workers: bool = False
    scheduled: int = 3000
    pending: int = 200
    running: int = 300
    paused: int = 20
    cancelling: int = 5


# Every history scale shares one live installation ...
LIVE = Live()
# ... and the live-scale build is one installation ten times larger in everything that is not history
# (prefect#21791 reports 42k+ deployments on one queue; every Kubernetes pod is a new worker).
LIVE_SCALE = Live(
    pools=100,
    queues=1000,
    deployments=50_000,
    workers_per_live_pool=21,  # 97 live pools: 2,037 recently seen workers
    pod_named_workers=True,
    dead_workers=20_000,
    scheduled=10_000,
    pending=1000,
    running=1000,
)
LIVE_SCALE_HISTORY = 0.1


@dataclass(frozen=True)
class Build:
    """One benchmark database: a history scale and a live installation."""

    key: str  # "1.0", "0.1" or "live": the name in results and reports
    scale: float
    live: Live

    @classmethod
    def history(cls, scale: float) -> Build:
        """The build of a history scale with the common live installation."""
        return cls(f"{scale:.1f}", scale, LIVE)

    @property
    def name(self) -> str:
        """The template database name, e.g. ``bench_1_0``, ``bench_0_1`` or ``bench_live``."""
        return "bench_" + self.key.replace(".", "_")


LIVE_BUILD = Build("live", LIVE_SCALE_HISTORY, LIVE_SCALE)
HEARTBEAT_SECONDS = 30
RECENT_HEARTBEAT_HOURS = 6  # finished runs that ended this recently keep their heartbeats
# History at scale 1.0: 1 M runs over 90 days; 5 logs and 2 state events per run.
HISTORY_RUNS = 1_000_000
HISTORY_DAYS = 90
LOGS_PER_RUN = 5


def marker(build: Build, anchor: datetime) -> str:
    """Return the database comment that marks a complete build."""
    return (
        f"{MARKER_PREFIX} build={build.key} scale={build.scale:.1f} prefect={PREFECT_VERSION}"
        f" anchor={anchor.isoformat()}"
    )


def parse_marker(comment: str) -> dict[str, str] | None:
    """Read the fields of a build marker, or None when the build is missing or incomplete."""
    if not comment.startswith(MARKER_PREFIX):
        return None
    fields = dict(part.split("=", 1) for part in comment[len(MARKER_PREFIX) :].split() if "=" in part)
    return fields if {"scale", "prefect", "anchor"} <= fields.keys() else None


def build_anchor(cluster: PgCluster, name: str) -> datetime | None:
    """Return the anchor of a complete build of ``name``, or None."""
    fields = parse_marker(database_comment(cluster, name))
    if fields is None or fields["prefect"] != PREFECT_VERSION:
        return None
    return datetime.fromisoformat(fields["anchor"])


@dataclass(frozen=True)
class Sizes:
    """Row counts that depend on the scale."""

    history_runs: int
    logs: int
    span_seconds_per_run: float

    @classmethod
    def for_scale(cls, scale: float) -> Sizes:
        """History grows with the scale at a constant rate; the live part does not."""
        runs = round(HISTORY_RUNS * scale)
        return cls(
            history_runs=runs,
            logs=runs * LOGS_PER_RUN,
            span_seconds_per_run=HISTORY_DAYS * 86400 / HISTORY_RUNS,
        )


# Each step is (label, table whose row count is reported, SQL). $-placeholders are filled per build.
STEPS: list[tuple[str, str | None, str]] = [
    (
        "work pools",
        "work_pool",
        """
        INSERT INTO work_pool (id, created, updated, name, description, type, base_job_template, is_paused,
                               concurrency_limit, status, last_transitioned_status_at)
        SELECT md5('wp' || p)::uuid, $anchor - interval '200 days', $anchor - interval '1 day',
               'pool-' || p, 'Work pool ' || p,
               (ARRAY['kubernetes', 'kubernetes', 'process', 'process', 'docker'])[1 + p % 5],
               '{"job_configuration": {"command": "{{ command }}", "env": "{{ env }}",
                 "image": "{{ image }}", "namespace": "{{ namespace }}"},
                 "variables": {"type": "object", "properties": {
                   "command": {"type": "string", "title": "Command"},
                   "env": {"type": "object", "title": "Environment Variables"},
                   "image": {"type": "string", "title": "Image"},
                   "namespace": {"type": "string", "default": "prefect"}}}}'::jsonb,
               p = $pools - $dead_pools - 1,
               CASE WHEN p % 7 = 3 THEN 20 + p END,
               CASE WHEN p = $pools - $dead_pools - 1 THEN 'PAUSED'
                    WHEN p >= $pools - $dead_pools THEN 'NOT_READY' ELSE 'READY' END::work_pool_status,
               $anchor - interval '3 days'
        FROM generate_series(0, $pools - 1) AS p
        """,
    ),
    (
        "work queues",
        "work_queue",
        """
        INSERT INTO work_queue (id, created, updated, name, description, is_paused, concurrency_limit,
                                last_polled, priority, work_pool_id, status)
        SELECT md5('wq' || q)::uuid, $anchor - interval '200 days', lp.last_polled,
               CASE WHEN q < $pools THEN 'default' ELSE 'q' || (q / $pools) END,
               CASE WHEN q < $pools THEN 'The work pool''s default queue.' ELSE '' END,
               q % 37 = 5,
               CASE WHEN q % 9 = 4 THEN 5 + q % 10 END,
               lp.last_polled, 1 + q / $pools, md5('wp' || (q % $pools))::uuid,
               CASE WHEN q % 37 = 5 THEN 'PAUSED'
                    WHEN q % $pools >= $pools - $dead_pools - 1 THEN 'NOT_READY'
                    ELSE 'READY' END::work_queue_status
        FROM generate_series(0, $queues - 1) AS q
        CROSS JOIN LATERAL (
            SELECT CASE WHEN q % $pools >= $pools - $dead_pools - 1
                        THEN $anchor - make_interval(hours => 24 + q % 24)
                        ELSE $anchor - make_interval(secs => q % 11) END AS last_polled
        ) AS lp;
        UPDATE work_pool SET default_queue_id = md5('wq' || substr(name, 6))::uuid;
        """,
    ),
    (
        "flows",
        "flow",
        """
        INSERT INTO flow (id, created, updated, name, tags)
        SELECT md5('flow' || f)::uuid, $anchor - interval '300 days', $anchor - interval '30 days',
               'flow-' || f, '["prod"]'::jsonb
        FROM generate_series(0, $flows - 1) AS f
        """,
    ),
    (
        "concurrency limits",
        "concurrency_limit_v2",
        """
        INSERT INTO concurrency_limit_v2 (id, created, updated, active, name, "limit", active_slots,
                                          denied_slots, slot_decay_per_second, avg_slot_occupancy_seconds)
        SELECT md5('cl' || c)::uuid, $anchor - interval '100 days',
               $anchor - make_interval(secs => c % 600),
               c % 17 <> 0,
               CASE WHEN c < $deployment_limits THEN 'deployment:' || md5('dep' || (c * 13))::uuid
                    ELSE 'global-limit-' || c END,
               1 + c % 10, c % 4, c % 3,
               CASE WHEN c % 10 = 9 THEN 0.5 ELSE 0 END, 30 + c % 300
        FROM generate_series(0, $deployment_limits + $global_limits - 1) AS c;
        INSERT INTO concurrency_limit (id, created, updated, tag, concurrency_limit, active_slots)
        SELECT md5('tcl' || t)::uuid, $anchor - interval '100 days', $anchor - interval '1 hour',
               'tag-' || t, 5 + t,
               (SELECT coalesce(jsonb_agg(md5('tr' || t || ':' || s)::uuid::text), '[]'::jsonb)
                FROM generate_series(1, t % 4) AS s)
        FROM generate_series(0, $tag_limits - 1) AS t;
        """,
    ),
    (
        "deployments",
        "deployment",
        """
        INSERT INTO deployment (id, created, updated, name, tags, parameters, flow_id, description,
                                parameter_openapi_schema, version, infra_overrides, path, entrypoint,
                                work_queue_name, work_queue_id, pull_steps, enforce_parameter_schema,
                                last_polled, paused, status, concurrency_limit_id, labels)
        SELECT md5('dep' || d)::uuid, $anchor - interval '150 days', wq.last_polled,
               'deployment-' || d, '["prod", "etl"]'::jsonb,
               jsonb_build_object('source', 's3://data/raw/' || d, 'batch_size', 1000 + d),
               md5('flow' || (d % $flows))::uuid, 'Deployment ' || d || ' of flow ' || (d % $flows),
               '{"type": "object", "title": "Parameters", "properties": {
                 "source": {"type": "string", "position": 0}, "batch_size": {"type": "integer",
                 "position": 1}}}'::jsonb,
               'v' || (1 + d % 7), '{"image": "registry.local/etl:2025.1"}'::jsonb, '.',
               'flows/flow_' || (d % $flows) || '.py:main', wq.name, wq.id,
               '[{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/flows"}}]'::jsonb,
               true, wq.last_polled, d % 23 = 7,
               CASE WHEN wq.status = 'READY' THEN 'READY' ELSE 'NOT_READY' END::deployment_status,
               CASE WHEN d % 13 = 0 AND d / 13 < $deployment_limits THEN md5('cl' || (d / 13))::uuid END,
               '{}'::jsonb
        FROM generate_series(0, $deployments - 1) AS d
        JOIN work_queue AS wq ON wq.id = md5('wq' || (d % $queues))::uuid;
        INSERT INTO deployment_schedule (id, created, updated, schedule, active, deployment_id,
                                         max_scheduled_runs)
        SELECT md5('ds' || d)::uuid, $anchor - interval '150 days', $anchor - interval '150 days',
               jsonb_build_object('interval', 3600 * (1 + d % 24), 'anchor_date', '2025-01-01T00:00:00Z',
                                  'timezone', 'UTC'),
               d % 23 <> 7, md5('dep' || d)::uuid, NULL
        FROM generate_series(0, $deployments - 1) AS d
        """,
    ),
    (
        "workers",
        "worker",
        """
        INSERT INTO worker (id, created, updated, name, last_heartbeat_time, work_pool_id,
                            heartbeat_interval_seconds, status)
        SELECT md5('wk' || p || ':' || k)::uuid, $anchor - interval '2 days',
               $anchor - make_interval(secs => (p * 7 + k * 11) % 25),
               CASE WHEN $pod_named_workers
                    THEN 'KubernetesWorker prefect-worker-' || left(md5('rs' || p), 10) || '-'
                         || left(md5('pod' || p || ':' || k), 5)
                    ELSE (ARRAY['KubernetesWorker', 'KubernetesWorker', 'ProcessWorker', 'ProcessWorker',
                                'DockerWorker'])[1 + p % 5] || ' ' || md5('wk' || p || ':' || k)::uuid END,
               $anchor - make_interval(secs => (p * 7 + k * 11) % 25),
               md5('wp' || p)::uuid, 30, 'ONLINE'
        FROM generate_series(0, $pools - $dead_pools - 2) AS p
        CROSS JOIN generate_series(1, $workers_per_live_pool) AS k;
        -- Workers are never deleted: every restart leaves a dead row (prefect#12176).
        INSERT INTO worker (id, created, updated, name, last_heartbeat_time, work_pool_id,
                            heartbeat_interval_seconds, status)
        SELECT md5('dwk' || w)::uuid, hb.t - interval '3 days', hb.t,
               (ARRAY['KubernetesWorker', 'KubernetesWorker', 'ProcessWorker', 'ProcessWorker',
                      'DockerWorker'])[1 + (w % $pools) % 5] || ' ' || md5('dwk' || w)::uuid,
               hb.t, md5('wp' || (w % $pools))::uuid, 30,
               -- A few the foreman has not marked OFFLINE yet.
               CASE WHEN w % 500 = 0 THEN 'ONLINE' ELSE 'OFFLINE' END::worker_status
        FROM generate_series(0, $dead_workers - 1) AS w
        CROSS JOIN LATERAL (SELECT $anchor - make_interval(secs => 600 + w * 2591) AS t) AS hb
        """,
    ),
    (
        "history plan (temp)",
        None,
        """
        -- One row per finished run; outcome by i % 20: 0-13 Completed, 14-15 Completed after Late,
        -- 16-17 Failed, 18 Crashed, 19 Cancelled while Pending. 10 % are ad-hoc runs (no deployment).
        CREATE TEMP TABLE hist AS
        SELECT i,
               md5('fr' || i)::uuid AS id,
               CASE WHEN i % 10 <> 0 THEN (i * 7919) % $deployments END AS dep,
               i % 20 AS outcome,
               $anchor - make_interval(secs => i * $span_per_run) AS t_end,
               (20 + (hashtext('dur' || i) & 2047))::int AS dur
        FROM generate_series(1::bigint, $history_runs) AS i;
        ALTER TABLE hist ADD PRIMARY KEY (i);
        ANALYZE hist;
        CREATE TEMP TABLE path (outcome int, k int, type state_type, name text, at text);
        INSERT INTO path
        SELECT o, k, v.type::state_type, v.name, v.at
        FROM generate_series(0, 13) AS o,
             (VALUES (1, 'SCHEDULED', 'Scheduled', 'created'), (2, 'PENDING', 'Pending', 'pending'),
                     (3, 'RUNNING', 'Running', 'start'), (4, 'COMPLETED', 'Completed', 'end'))
                 AS v (k, type, name, at)
        UNION ALL
        SELECT o, k, v.type::state_type, v.name, v.at
        FROM generate_series(14, 15) AS o,
             (VALUES (1, 'SCHEDULED', 'Scheduled', 'created'), (2, 'SCHEDULED', 'Late', 'late'),
                     (3, 'PENDING', 'Pending', 'pending'), (4, 'RUNNING', 'Running', 'start'),
                     (5, 'COMPLETED', 'Completed', 'end')) AS v (k, type, name, at)
        UNION ALL
        SELECT o, k, v.type::state_type, v.name, v.at
        FROM generate_series(16, 17) AS o,
             (VALUES (1, 'SCHEDULED', 'Scheduled', 'created'), (2, 'PENDING', 'Pending', 'pending'),
                     (3, 'RUNNING', 'Running', 'start'), (4, 'FAILED', 'Failed', 'end'))
                 AS v (k, type, name, at)
        UNION ALL
        SELECT 18, k, v.type::state_type, v.name, v.at
        FROM (VALUES (1, 'SCHEDULED', 'Scheduled', 'created'), (2, 'PENDING', 'Pending', 'pending'),
                     (3, 'RUNNING', 'Running', 'start'), (4, 'CRASHED', 'Crashed', 'end'))
                 AS v (k, type, name, at)
        UNION ALL
        SELECT 19, k, v.type::state_type, v.name, v.at
        FROM (VALUES (1, 'SCHEDULED', 'Scheduled', 'created'), (2, 'PENDING', 'Pending', 'pending'),
                     (3, 'CANCELLED', 'Cancelled', 'end')) AS v (k, type, name, at);
        """,
    ),
    (
        "live plan (temp)",
        None,
        """
        -- The live workload, the same at every scale. Times are relative to the anchor.
        CREATE TEMP TABLE live AS
        SELECT i,
               md5('live' || i)::uuid AS id,
               (i * 7919) % $deployments AS dep,
               ((i * 7919) % $deployments) % $queues % $pools >= $pools - $dead_pools - 1 AS dead_pool,
               CASE WHEN i <= $n_sched THEN 'SCHEDULED'
                    WHEN i <= $n_sched + $n_pending THEN 'PENDING'
                    WHEN i <= $n_sched + $n_pending + $n_running THEN 'RUNNING'
                    WHEN i <= $n_sched + $n_pending + $n_running + $n_paused THEN 'PAUSED'
                    ELSE 'CANCELLING' END::state_type AS type
        FROM generate_series(1, $n_sched + $n_pending + $n_running + $n_paused + $n_cancelling) AS i;
        ALTER TABLE live ADD COLUMN name text, ADD COLUMN t_state timestamptz,
            ADD COLUMN t_created timestamptz, ADD COLUMN t_pending timestamptz,
                ADD COLUMN t_start timestamptz,
            ADD COLUMN sched timestamptz, ADD COLUMN infra_pid text, ADD COLUMN hb_until timestamptz;
        -- SCHEDULED: future runs of the next three days; those of dead pools are overdue, half marked Late.
        UPDATE live SET sched = CASE WHEN dead_pool THEN $anchor - make_interval(secs => 60 + i * 7 % 7200)
                                     ELSE $anchor + make_interval(secs => 30 + i * 86) END,
                        name = CASE WHEN dead_pool AND i % 2 = 0 THEN 'Late' ELSE 'Scheduled' END
        WHERE type = 'SCHEDULED';
        UPDATE live SET t_created = least(sched, $anchor) - interval '2 hours',
                        t_state = CASE WHEN name = 'Late' THEN sched + interval '20 seconds'
                                       ELSE least(sched, $anchor) - interval '2 hours' END
        WHERE type = 'SCHEDULED';
        -- PENDING: most handed to a worker seconds ago; stuck ones (dead pools, every 40th) for long.
        UPDATE live SET t_pending = CASE WHEN dead_pool
            THEN $anchor - make_interval(secs => 3600 + i * 13 % 7200)
                                         WHEN i % 40 = 0 THEN $anchor - interval '20 minutes'
                                         ELSE $anchor - make_interval(secs => i % 50) END,
                        infra_pid = CASE WHEN dead_pool THEN NULL ELSE 'node-' || i % 7 || ':'
                            || 1000 + i END,
                        name = 'Pending'
        WHERE type = 'PENDING';
        -- RUNNING: started up to 4 hours ago; every 30th went silent 20 minutes ago, every 60th never beat.
        UPDATE live SET t_start = $anchor - make_interval(secs => 60 + i * 37 % 14000),
                        infra_pid = 'prefect-job-' || left(md5('live' || i), 8) || ':prefect:job-' || i,
                        name = CASE WHEN i % 11 = 0 THEN 'Retrying' ELSE 'Running' END
        WHERE type IN ('RUNNING', 'PAUSED', 'CANCELLING');
        UPDATE live SET hb_until = CASE WHEN i % 60 = 1 THEN NULL
                                        WHEN i % 30 = 0 THEN $anchor - interval '20 minutes'
                                        ELSE $anchor - make_interval(secs => i % $hb_seconds) END
        WHERE type = 'RUNNING';
        UPDATE live SET t_pending = t_start - interval '8 seconds' WHERE t_start IS NOT NULL;
        UPDATE live SET t_created = t_pending - interval '2 hours' WHERE t_pending IS NOT NULL;
        UPDATE live SET t_state = t_pending WHERE type = 'PENDING';
        UPDATE live SET t_state = t_start WHERE type = 'RUNNING';
        UPDATE live SET t_state = t_start + (($anchor - t_start) / 2),
                        name = CASE WHEN type = 'PAUSED' THEN 'Suspended' ELSE 'Cancelling' END
        WHERE type IN ('PAUSED', 'CANCELLING');
        ANALYZE live;
        """,
    ),
    (
        "flow runs",
        "flow_run",
        """
        INSERT INTO flow_run (id, created, updated, name, state_type, run_count, expected_start_time,
                              next_scheduled_start_time, start_time, end_time, total_run_time, flow_version,
                              parameters, idempotency_key, context, empirical_policy, tags, auto_scheduled,
                              flow_id, deployment_id, state_id, state_name, work_queue_name, state_timestamp,
                              created_by, infrastructure_pid, work_queue_id, job_variables,
                              deployment_version, labels)
        SELECT h.id, t.created, h.t_end,
               (ARRAY['amber', 'brisk', 'crimson', 'daring', 'eager', 'fuzzy', 'gentle',
                   'hidden'])[1 + h.i % 8]
                   || '-' || (ARRAY['otter', 'lynx', 'heron', 'bison', 'gecko', 'koala', 'marten', 'quail',
                                    'raven', 'tapir'])[1 + (h.i / 8) % 10] || '-' || h.i,
               fs.type, CASE WHEN h.outcome = 19 THEN 0 ELSE 1 END, t.pending,
               NULL, CASE WHEN h.outcome <> 19 THEN t.start END, h.t_end,
               CASE WHEN h.outcome <> 19 THEN make_interval(secs => h.dur) ELSE interval '0' END,
               left(md5('flow' || fl.f), 12),
               jsonb_build_object('source', 's3://data/raw/' || coalesce(h.dep, 0), 'date',
                                  to_char(t.pending, 'YYYY-MM-DD'), 'batch_size', 1000 + h.i % 500),
               CASE WHEN h.dep IS NOT NULL THEN 'scheduled ' || md5('dep' || h.dep)::uuid || ' '
                                                || to_char(t.pending, 'YYYY-MM-DD"T"HH24:MI:SS') END,
               '{}'::jsonb,
               '{"retries": 0, "resuming": false, "pause_keys": [], "retry_type": null, "max_retries": 0,
                 "retry_delay": 0, "retry_delay_seconds": 0.0}'::jsonb,
               '["prod", "etl"]'::jsonb, h.dep IS NOT NULL, md5('flow' || fl.f)::uuid,
               md5('dep' || h.dep)::uuid, md5('frs' || h.i || ':' || fs.k)::uuid, fs.name, wq.name, h.t_end,
               CASE WHEN h.dep IS NOT NULL THEN jsonb_build_object(
                   'id', md5('ds' || h.dep)::uuid, 'type', 'SCHEDULE', 'display_value', 'interval') END,
               CASE WHEN h.outcome <> 19 THEN 'prefect-job-' || left(md5('fr' || h.i), 8)
                   || ':prefect:job' END,
               wq.id, '{}'::jsonb, CASE WHEN h.dep IS NOT NULL THEN 'v1' END, '{}'::jsonb
        FROM hist AS h
        CROSS JOIN LATERAL (
            SELECT h.t_end - make_interval(secs => h.dur) AS start,
                   CASE WHEN h.outcome = 19 THEN h.t_end - interval '10 seconds'
                        ELSE h.t_end - make_interval(secs => h.dur + 5) END AS pending,
                   h.t_end - make_interval(secs => h.dur + 7205) AS created
        ) AS t
        CROSS JOIN LATERAL (SELECT coalesce(h.dep, h.i) % $flows AS f) AS fl
        JOIN path AS fs ON fs.outcome = h.outcome
                       AND fs.k = CASE WHEN h.outcome IN (14, 15) THEN 5 WHEN h.outcome = 19 THEN 3 ELSE 4 END
        LEFT JOIN work_queue AS wq ON wq.id = md5('wq' || (h.dep % $queues))::uuid;
        INSERT INTO flow_run (id, created, updated, name, state_type, run_count, expected_start_time,
                              next_scheduled_start_time, start_time, end_time, total_run_time, flow_version,
                              parameters, idempotency_key, context, empirical_policy, tags, auto_scheduled,
                              flow_id, deployment_id, state_id, state_name, work_queue_name, state_timestamp,
                              created_by, infrastructure_pid, work_queue_id, job_variables,
                              deployment_version, labels)
        SELECT l.id, l.t_created, l.t_state, 'live-run-' || l.i, l.type,
               CASE WHEN l.t_start IS NOT NULL THEN 1 ELSE 0 END,
               coalesce(l.sched, l.t_pending), l.sched, l.t_start, NULL,
               CASE WHEN l.type IN ('PAUSED', 'CANCELLING') THEN l.t_state - l.t_start ELSE interval '0' END,
               left(md5('flow' || (l.dep % $flows)), 12),
               jsonb_build_object('source', 's3://data/raw/' || l.dep, 'date',
                                  to_char(coalesce(l.sched, l.t_pending), 'YYYY-MM-DD'), 'batch_size', 1000),
               'scheduled ' || md5('dep' || l.dep)::uuid || ' ' || l.i,
               '{}'::jsonb,
               '{"retries": 0, "resuming": false, "pause_keys": [], "retry_type": null, "max_retries": 0,
                 "retry_delay": 0, "retry_delay_seconds": 0.0}'::jsonb,
               '["prod", "etl"]'::jsonb, true, md5('flow' || (l.dep % $flows))::uuid, md5('dep'
                   || l.dep)::uuid,
               md5('lfrs' || l.i || ':' || (SELECT count(*) FROM live_path AS lp WHERE lp.i = l.i))::uuid,
               l.name, wq.name, l.t_state,
               jsonb_build_object('id', md5('ds' || l.dep)::uuid, 'type', 'SCHEDULE', 'display_value',
                   'interval'),
               l.infra_pid, wq.id, '{}'::jsonb, 'v1', '{}'::jsonb
        FROM live AS l
        JOIN work_queue AS wq ON wq.id = md5('wq' || (l.dep % $queues))::uuid;
        """,
    ),
    (
        "flow run states",
        "flow_run_state",
        """
        INSERT INTO flow_run_state (id, created, updated, type, timestamp, name, message, state_details,
                                    flow_run_id)
        SELECT md5('frs' || h.i || ':' || p.k)::uuid, ts.t, ts.t, p.type, ts.t, p.name,
               CASE WHEN p.type = 'FAILED' THEN 'Flow run encountered an exception: ValueError'
                    WHEN p.type = 'CRASHED'
                        THEN 'Flow run infrastructure exited with non-zero status code 137.'
                    WHEN p.type = 'COMPLETED' THEN 'All states completed.' END,
               jsonb_build_object('flow_run_id', h.id, 'scheduled_time',
                                  CASE WHEN p.type = 'SCHEDULED'
                                      THEN h.t_end - make_interval(secs => h.dur + 5) END,
                                  'pause_reschedule', false, 'untrackable_result', false),
               h.id
        FROM hist AS h
        JOIN path AS p ON p.outcome = h.outcome
        CROSS JOIN LATERAL (
            SELECT CASE p.at
                       WHEN 'created' THEN h.t_end - make_interval(secs => h.dur + 7205)
                       WHEN 'late' THEN h.t_end - make_interval(secs => h.dur + 25)
                       WHEN 'pending' THEN CASE WHEN h.outcome = 19 THEN h.t_end - interval '10 seconds'
                                                ELSE h.t_end - make_interval(secs => h.dur + 5) END
                       WHEN 'start' THEN h.t_end - make_interval(secs => h.dur)
                       ELSE h.t_end END AS t
        ) AS ts;
        INSERT INTO flow_run_state (id, created, updated, type, timestamp, name, state_details, flow_run_id)
        SELECT md5('lfrs' || lp.i || ':' || lp.k)::uuid, lp.t, lp.t, lp.type, lp.t, lp.name,
               jsonb_build_object('flow_run_id', l.id, 'scheduled_time', l.sched), l.id
        FROM live_path AS lp
        JOIN live AS l ON l.i = lp.i;
        """,
    ),
    (
        "logs",
        "log",
        """
        INSERT INTO log (id, created, updated, name, level, flow_run_id, task_run_id, message, timestamp)
        SELECT md5('log' || g)::uuid, ts.t + interval '80 milliseconds', ts.t + interval '80 milliseconds',
               CASE WHEN g % $logs_per_run IN (1, 2) THEN 'prefect.task_runs' ELSE 'prefect.flow_runs' END,
               CASE WHEN g % $logs_per_run = 0 AND h.outcome IN (16, 17, 18) THEN 40 ELSE 20 END,
               h.id, CASE WHEN g % $logs_per_run IN (1, 2) THEN md5('tr' || g)::uuid END,
               CASE g % $logs_per_run
                   WHEN 1 THEN 'Beginning flow run ''' || h.i || ''' for flow ''flow-' || coalesce(h.dep, 0)
                               || ''''
                   WHEN 2 THEN 'Created task run ''load-' || g || ''' for task ''load'''
                   WHEN 3 THEN 'Finished in state Completed() after reading ' || (g % 9973) || ' rows from '
                               || 's3://data/raw/' || coalesce(h.dep, 0)
                   WHEN 4 THEN 'Wrote batch ' || (g % 97) || ' to the warehouse in ' || (g % 3000) || ' ms'
                   ELSE CASE WHEN h.outcome IN (16, 17, 18)
                             THEN 'Encountered exception during execution: ValueError(''bad row '
                                  || (g % 100000) || ''')'
                             ELSE 'Finished in state Completed()' END
               END,
               ts.t
        FROM generate_series(1, $logs) AS g
        JOIN hist AS h ON h.i = (g - 1) / $logs_per_run + 1
        CROSS JOIN LATERAL (
            SELECT h.t_end - make_interval(secs => h.dur * ($logs_per_run - g % $logs_per_run)::float8
                                                  / $logs_per_run) AS t
        ) AS ts;
        INSERT INTO log (id, created, updated, name, level, flow_run_id, message, timestamp)
        SELECT md5('llog' || l.i || ':' || k)::uuid, ts.t, ts.t, 'prefect.flow_runs', 20, l.id,
               'Still working on batch ' || k, ts.t
        FROM live AS l
        CROSS JOIN generate_series(1, 20) AS k
        CROSS JOIN LATERAL (SELECT l.t_start + (($anchor - l.t_start) * k / 20) AS t) AS ts
        WHERE l.type = 'RUNNING';
        """,
    ),
    (
        "state events",
        "events",
        """
        -- Two events per finished run: its Running (or Pending) transition and its final state.
        INSERT INTO events (occurred, event, resource_id, resource, related_resource_ids, related, payload,
                            received, recorded, id, created, updated)
        SELECT ev.t, 'prefect.flow-run.' || ev.name, 'prefect.flow-run.' || h.id,
               jsonb_build_object('prefect.resource.id', 'prefect.flow-run.' || h.id,
                                  'prefect.resource.name', 'run-' || h.i, 'prefect.state-message', '',
                                  'prefect.state-name', ev.name, 'prefect.state-timestamp', ev.t,
                                  'prefect.state-type', ev.type),
               rel.ids, rel.related,
               jsonb_build_object('intended', jsonb_build_object('from', ev.prev, 'to', ev.type),
                                  'initial_state', jsonb_build_object('type', ev.prev, 'name',
                                      initcap(ev.prev)),
                                  'validated_state', jsonb_build_object('type', ev.type, 'name', ev.name)),
               ev.t + interval '15 milliseconds', ev.t + interval '40 milliseconds',
               md5('ev' || h.i || ':' || ev.n)::uuid, ev.t + interval '40 milliseconds',
               ev.t + interval '40 milliseconds'
        FROM hist AS h
        CROSS JOIN LATERAL (
            SELECT 1 AS n,
                   CASE WHEN h.outcome = 19 THEN h.t_end - interval '10 seconds'
                        ELSE h.t_end - make_interval(secs => h.dur) END AS t,
                   CASE WHEN h.outcome = 19 THEN 'Pending' ELSE 'Running' END AS name,
                   CASE WHEN h.outcome = 19 THEN 'PENDING' ELSE 'RUNNING' END AS type,
                   CASE WHEN h.outcome = 19 THEN 'SCHEDULED' ELSE 'PENDING' END AS prev
            UNION ALL
            SELECT 2, h.t_end,
                   (ARRAY['Completed', 'Failed', 'Crashed', 'Cancelled'])[
                       CASE WHEN h.outcome < 16 THEN 1 WHEN h.outcome < 18 THEN 2 WHEN h.outcome = 18 THEN 3
                            ELSE 4 END],
                   (ARRAY['COMPLETED', 'FAILED', 'CRASHED', 'CANCELLED'])[
                       CASE WHEN h.outcome < 16 THEN 1 WHEN h.outcome < 18 THEN 2 WHEN h.outcome = 18 THEN 3
                            ELSE 4 END],
                   CASE WHEN h.outcome = 19 THEN 'PENDING' ELSE 'RUNNING' END
        ) AS ev
        CROSS JOIN LATERAL (
            SELECT jsonb_agg(r.id ORDER BY r.ord) AS ids,
                   jsonb_agg(jsonb_build_object('prefect.resource.id', r.id, 'prefect.resource.role', r.role,
                                                'prefect.resource.name', r.name) ORDER BY r.ord) AS related
            FROM (VALUES (1, 'prefect.flow.' || md5('flow' || (coalesce(h.dep, h.i) % $flows))::uuid, 'flow',
                          'flow-' || (coalesce(h.dep, h.i) % $flows)),
                         (2, CASE WHEN h.dep IS NOT NULL THEN 'prefect.deployment.' || md5('dep'
                             || h.dep)::uuid END,
                          'deployment', 'deployment-' || h.dep),
                         (3, CASE WHEN h.dep IS NOT NULL
                                  THEN 'prefect.work-queue.' || md5('wq' || (h.dep % $queues))::uuid END,
                          'work-queue', 'q' || (h.dep % $queues)),
                         (4, CASE WHEN h.dep IS NOT NULL
                                  THEN 'prefect.work-pool.' || md5('wp'
                                      || (h.dep % $queues % $pools))::uuid END,
                          'work-pool', 'pool-' || (h.dep % $queues % $pools))) AS r (ord, id, role, name)
            WHERE r.id IS NOT NULL
        ) AS rel
        """,
    ),
    (
        "heartbeat events",
        "events",
        """
        -- Heartbeats every 30 s: for the RUNNING runs, and for finished runs of the last hours.
        CREATE TEMP TABLE beats AS
        SELECT l.id AS run_id, l.i AS run_i, l.dep, 'live' AS kind,
               l.t_start + make_interval(secs => k * $hb_seconds) AS t, k
        FROM live AS l
        CROSS JOIN LATERAL generate_series(
            0, floor(extract(epoch FROM l.hb_until - l.t_start) / $hb_seconds)::int) AS k
        WHERE l.type = 'RUNNING' AND l.hb_until IS NOT NULL
        UNION ALL
        SELECT h.id, h.i, h.dep, 'hist', h.t_end - make_interval(secs => h.dur) + make_interval(
                   secs => k * $hb_seconds), k
        FROM hist AS h
        CROSS JOIN LATERAL generate_series(0, h.dur / $hb_seconds - 1) AS k
        WHERE h.t_end > $anchor - make_interval(hours => $recent_hb_hours) AND h.outcome <> 19;
        INSERT INTO events (occurred, event, resource_id, resource, related_resource_ids, related, payload,
                            received, recorded, id, created, updated)
        SELECT b.t, 'prefect.flow-run.heartbeat', 'prefect.flow-run.' || b.run_id,
               jsonb_build_object('prefect.resource.id', 'prefect.flow-run.' || b.run_id,
                                  'prefect.resource.name', b.kind || '-run-' || b.run_i,
                                      'prefect.run-count', '1'),
               rel.ids, rel.related, '{}'::jsonb,
               b.t + interval '20 milliseconds', b.t + interval '60 milliseconds',
               md5('hb' || b.kind || b.run_i || ':' || b.k)::uuid, b.t + interval '60 milliseconds',
               b.t + interval '60 milliseconds'
        FROM beats AS b
        CROSS JOIN LATERAL (
            SELECT jsonb_agg(r.id ORDER BY r.ord) AS ids,
                   jsonb_agg(jsonb_build_object('prefect.resource.id', r.id, 'prefect.resource.role', r.role,
                                                'prefect.resource.name', r.name) ORDER BY r.ord) AS related
            FROM (VALUES (1, 'prefect.flow.' || md5('flow' || (coalesce(b.dep, b.run_i) % $flows))::uuid,
                'flow',
                          'flow-' || (coalesce(b.dep, b.run_i) % $flows)),
                         (2, CASE WHEN b.dep IS NOT NULL THEN 'prefect.deployment.' || md5('dep'
                             || b.dep)::uuid END,
                          'deployment', 'deployment-' || b.dep),
                         (3, 'prefect.tag.prod', 'tag', 'prod')) AS r (ord, id, role, name)
            WHERE r.id IS NOT NULL
        ) AS rel;
        -- A few other event kinds the server emits.
        INSERT INTO events (occurred, event, resource_id, resource, related_resource_ids, related, payload,
                            received, recorded, id, created, updated)
        SELECT t, ev.event, ev.rid, jsonb_build_object('prefect.resource.id', ev.rid), '[]'::jsonb,
            '[]'::jsonb,
               '{}'::jsonb, t, t, md5('oev' || g)::uuid, t, t
        FROM generate_series(1, 20000) AS g
        CROSS JOIN LATERAL (SELECT $anchor - make_interval(secs => g * 97) AS t) AS tt
        CROSS JOIN LATERAL (
            SELECT (ARRAY['prefect.work-queue.ready', 'prefect.work-queue.not-ready',
                          'prefect.deployment.ready', 'prefect.deployment.not-ready',
                          'prefect.work-pool.ready', 'prefect.worker.started'])[1 + g % 6] AS event,
                   (ARRAY['prefect.work-queue.', 'prefect.work-queue.', 'prefect.deployment.',
                          'prefect.deployment.', 'prefect.work-pool.', 'prefect.worker.'])[1 + g % 6]
                       || md5('x' || g % 300)::uuid AS rid
        ) AS ev
        """,
    ),
    (
        "event resources",
        "event_resources",
        """
        -- One row per resource of each event: the primary resource (role '') and every related one.
        INSERT INTO event_resources (occurred, resource_id, resource_role, resource, event_id, id, created,
                                     updated)
        SELECT e.occurred, r.rid, r.role, r.res::json, e.id,
               md5(e.id::text || ':' || r.ord)::uuid, e.recorded, e.recorded
        FROM events AS e
        CROSS JOIN LATERAL (
            SELECT 0::bigint AS ord, e.resource_id AS rid, '' AS role, e.resource AS res
            UNION ALL
            SELECT x.ord, x.res ->> 'prefect.resource.id', x.res ->> 'prefect.resource.role', x.res
            FROM jsonb_array_elements(e.related) WITH ORDINALITY AS x (res, ord)
        ) AS r
        """,
    ),
]

LIVE_PATH_SQL = """
CREATE TEMP TABLE live_path AS
SELECT l.i, v.k, v.type::state_type AS type, v.name, v.t
FROM live AS l
CROSS JOIN LATERAL (
    SELECT 1 AS k, 'SCHEDULED' AS type, 'Scheduled' AS name, l.t_created AS t
    UNION ALL SELECT 2, 'SCHEDULED', 'Late', l.t_state WHERE l.name = 'Late'
    UNION ALL SELECT 2, 'PENDING', 'Pending', l.t_pending WHERE l.t_pending IS NOT NULL
    UNION ALL SELECT 3, 'RUNNING', CASE WHEN l.type = 'RUNNING' THEN l.name ELSE 'Running' END, l.t_start
        WHERE l.t_start IS NOT NULL
    UNION ALL SELECT 4, l.type::text, l.name, l.t_state WHERE l.type IN ('PAUSED', 'CANCELLING')
) AS v;
"""


def substitutions(build: Build, anchor: datetime) -> dict[str, str]:
    """Return the values of the $-placeholders of the generation SQL."""
    sizes = Sizes.for_scale(build.scale)
    live = build.live
    return {
        "anchor": f"'{anchor.isoformat()}'::timestamptz",
        "pools": str(live.pools),
        "dead_pools": str(live.dead_pools),
        "queues": str(live.queues),
        "flows": str(live.flows),
        "deployments": str(live.deployments),
        "deployment_limits": str(live.deployment_limits),
        "global_limits": str(live.global_limits),
        "tag_limits": str(live.tag_limits),
        "dead_workers": str(live.dead_workers),
        "workers_per_live_pool": str(live.workers_per_live_pool),
        "pod_named_workers": "true" if live.pod_named_workers else "false",
        "history_runs": str(sizes.history_runs),
        "span_per_run": repr(sizes.span_seconds_per_run),
        "logs": str(sizes.logs),
        "logs_per_run": str(LOGS_PER_RUN),
        "n_sched": str(live.scheduled),
        "n_pending": str(live.pending),
        "n_running": str(live.running),
        "n_paused": str(live.paused),
        "n_cancelling": str(live.cancelling),
        "hb_seconds": str(HEARTBEAT_SECONDS),
        "recent_hb_hours": str(RECENT_HEARTBEAT_HOURS),
    }


def renice(pid: int, niceness: int = 10) -> None:
    """Lower the CPU priority of a server backend (the machine is shared)."""
    subprocess.run(["renice", "-n", str(niceness), "-p", str(pid)], capture_output=True, check=False)


class Builder:
    """Fills one database, step by step, printing row counts and elapsed times."""

    def __init__(self, conn: asyncpg.Connection, build: Build, anchor: datetime) -> None:
        self.conn = conn
        self.values = substitutions(build, anchor)
        self.started = time.monotonic()

    def log(self, message: str) -> None:
        """Print a progress line with the elapsed time since the build started."""
        progress(f"[{time.monotonic() - self.started:7.1f} s] {message}")

    async def execute(self, sql: str) -> None:
        """Run SQL after filling its $-placeholders."""
        await self.conn.execute(Template(sql).substitute(self.values))

    async def count(self, table: str) -> int:
        """Return the exact row count of a table."""
        value: int = await self.conn.fetchval(f"SELECT count(*) FROM {table}")
        return value

    async def drop_secondary_indexes(self) -> list[tuple[str, str, str]]:
        """Drop the big tables' indexes that back no constraint; return (table, name, definition)."""
        rows = await self.conn.fetch(
            """
            SELECT c.relname AS table_name, i.relname AS index_name, pg_get_indexdef(i.oid) AS definition
            FROM pg_index AS x
            JOIN pg_class AS i ON i.oid = x.indexrelid
            JOIN pg_class AS c ON c.oid = x.indrelid
            WHERE c.relname = ANY($1::text[])
              AND c.relnamespace = 'public'::regnamespace
              AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.oid)
            ORDER BY c.relname, i.relname
            """,
            list(BIG_TABLES),
        )
        saved = [(r["table_name"], r["index_name"], r["definition"]) for r in rows]
        for _, index, _ in saved:
            await self.conn.execute(f'DROP INDEX "{index}"')
        self.log(f"dropped {len(saved)} secondary indexes of {', '.join(BIG_TABLES)} for the load")
        return saved

    async def rebuild_indexes(self, saved: list[tuple[str, str, str]]) -> None:
        """Recreate the dropped indexes from their own definitions."""
        for table, index, definition in saved:
            step = time.monotonic()
            await self.conn.execute(definition)
            self.log(f"index {table}.{index} rebuilt in {time.monotonic() - step:.1f} s")

    async def run(self) -> None:
        """Run every generation step."""
        saved = await self.drop_secondary_indexes()
        for label, table, sql in STEPS:
            step = time.monotonic()
            await self.execute(sql)
            if label == "live plan (temp)":
                await self.execute(LIVE_PATH_SQL)
            rows = f"{table}: {await self.count(table):,} rows" if table else "done"
            self.log(f"{label}: {rows} ({time.monotonic() - step:.1f} s)")
        await self.rebuild_indexes(saved)
        await self.conn.execute("DROP TABLE hist, path, live, live_path, beats")


async def fill(dsn: str, build: Build, anchor: datetime) -> None:
    """Connect as superuser and fill the database at ``dsn``."""
    conn = await asyncpg.connect(dsn, command_timeout=None)
    try:
        renice(await conn.fetchval("SELECT pg_backend_pid()"))
        for setting in (
            # No foreign-key triggers during the load: ids are consistent by construction.
            "SET session_replication_role = replica",
            "SET synchronous_commit = off",
            "SET work_mem = '256MB'",
            "SET maintenance_work_mem = '1GB'",
            # One core: the machine is shared.
            "SET max_parallel_workers_per_gather = 0",
            "SET max_parallel_maintenance_workers = 0",
            "SET jit = off",
        ):
            await conn.execute(setting)
        builder = Builder(conn, build, anchor)
        await builder.run()
        builder.log("VACUUM (FREEZE, ANALYZE)")
        await conn.execute("RESET session_replication_role")
        await conn.execute("VACUUM (FREEZE, ANALYZE)")
        builder.log("vacuumed and analyzed")
    finally:
        await conn.close()


def report_sizes(cluster: PgCluster, name: str) -> str:
    """Return a one-line summary of table sizes in the database."""
    out = cluster.psql(
        "SELECT string_agg(format('%s %s rows %s', relname, reltuples::bigint,"
        " pg_size_pretty(pg_total_relation_size(oid))), '; ' ORDER BY relname)"
        " FROM pg_class WHERE relkind = 'r' AND relname = ANY"
        " ('{flow_run,flow_run_state,log,events,event_resources,deployment,worker}');"
        " SELECT 'database ' || pg_size_pretty(pg_database_size(current_database()));",
        name,
    )
    return out.strip().replace("\n", "; ")


def ensure_database(cluster: PgCluster, build: Build, *, force: bool = False) -> tuple[str, datetime]:
    """Return the name and anchor of a benchmark database, building it if needed."""
    name = build.name
    anchor = build_anchor(cluster, name)
    if anchor is not None and not force:
        progress(f"reusing {name} (built with anchor {anchor.isoformat()}); --force rebuilds it")
        return name, anchor
    started = time.monotonic()
    template = ensure_template(cluster, PREFECT_VERSION)
    progress(f"building {name} ({build}) on the prefect {PREFECT_VERSION} schema ({template})")
    cluster.drop_database(name)
    cluster.create_database(name, template=template)
    anchor = datetime.now(UTC).replace(microsecond=0)
    asyncio.run(fill(cluster.dsn(name), build, anchor))
    cluster.psql(
        "",
        name,
        variables={"exporter_password": EXPORTER_PASSWORD, "exporter_role": EXPORTER_ROLE},
        file=ROLE_SQL,
    )
    cluster.psql(
        'ALTER DATABASE :"db" WITH IS_TEMPLATE true;\n'
        "COMMENT ON DATABASE :\"db\" IS :'marker';\n"
        "CHECKPOINT;\n",
        variables={"db": name, "marker": marker(build, anchor)},
    )
    progress(f"built {name} in {time.monotonic() - started:.0f} s: {report_sizes(cluster, name)}")
    return name, anchor


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``python -m bench.generate --scale 1.0 [--live-scale] [--force]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="history size: 1.0 = 1 M flow runs")
    parser.add_argument(
        "--live-scale",
        action="store_true",
        help=f"build bench_live instead: history {LIVE_SCALE_HISTORY}, a live installation ten times larger",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if a complete build exists")
    args = parser.parse_args(argv)
    os.nice(10)
    cluster = ensure_cluster()
    ensure_database(cluster, LIVE_BUILD if args.live_scale else Build.history(args.scale), force=args.force)


if __name__ == "__main__":
    main()
