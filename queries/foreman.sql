-- description: Prefect's foreman seen from the database - rows it still stores as ONLINE or READY although the heartbeat or poll they rest on has timed out (prefect#22212).
-- timeout: 5s
-- requires:
--   tables: [worker, work_queue, work_pool, deployment]
--   columns: {worker: [status, heartbeat_interval_seconds, last_heartbeat_time], work_queue: [status, last_polled], deployment: [status, last_polled, work_queue_id]}
-- metrics:
--   - name: prefect_db_foreman_stale_status_rows
--     type: gauge
--     help: Rows of a Prefect table (relation worker, work_queue or deployment) that the foreman should have marked OFFLINE or NOT_READY - workers stored ONLINE whose last heartbeat is older than worker_offline_multiple (default 3) heartbeat intervals (30 s when unset), queues and deployments stored READY not polled for 60 s - per work pool, in rows.
--     value: stale_rows
--     labels: [work_pool, relation]
--   - name: prefect_db_foreman_stale_status_max_overdue_seconds
--     type: gauge
--     fold: max
--     help: How long past its timeout the most overdue of those rows is (the foreman runs every 15 s, so more than a minute means it has stalled; no sample when none), per work pool and relation, in seconds.
--     value: max_overdue_seconds
--     labels: [work_pool, relation]
--
-- # The foreman (every 15 s) marks workers OFFLINE after 3 missed heartbeats, and queues and
-- # deployments NOT_READY after 60 s without a poll (PREFECT_API_SERVICES_FOREMAN_*; the same rules
-- # as services/foreman.py). Since 3.6 it is a docket task: after a Redis fault workers stayed
-- # ONLINE for hours while the database looked healthy (prefect#22212, on 3.6.29 and 3.7.4). This is
-- # the disagreement between what Prefect stores and what its own rules say, per pool.
WITH settings AS (
    SELECT coalesce(nullif(current_setting('prefect_db_exporter.worker_offline_multiple', true), '')::float8,
                    3) AS offline_multiple
),
stale AS (
    -- worker is one row per worker and pool (ix_worker__work_pool_id_last_heartbeat_time).
    SELECT w.work_pool_id,
           'worker' AS relation,
           extract(epoch FROM now() - w.last_heartbeat_time)
               - coalesce(w.heartbeat_interval_seconds, 30) * st.offline_multiple AS overdue_seconds
    FROM worker AS w
    CROSS JOIN settings AS st
    WHERE w.status = 'ONLINE'
      AND w.last_heartbeat_time < now() - make_interval(
              secs => coalesce(w.heartbeat_interval_seconds, 30) * st.offline_multiple)
    UNION ALL
    SELECT wq.work_pool_id, 'work_queue', extract(epoch FROM now() - wq.last_polled) - 60
    FROM work_queue AS wq
    WHERE wq.status = 'READY' AND wq.last_polled < now() - interval '60 seconds'
    UNION ALL
    -- deployment is small (one row per deployment) and has no index on status: read it whole.
    -- A deployment stays READY while its queue was polled recently, as the foreman decides.
    SELECT wq.work_pool_id,
           'deployment',
           extract(epoch FROM now() - greatest(d.last_polled, wq.last_polled)) - 60
    FROM deployment AS d
    LEFT JOIN work_queue AS wq ON wq.id = d.work_queue_id
    WHERE d.status = 'READY'
      AND d.last_polled < now() - interval '60 seconds'
      AND (wq.last_polled IS NULL OR wq.last_polled < now() - interval '60 seconds')
),
per_pool AS (
    SELECT s.work_pool_id, s.relation, count(*) AS stale_rows, max(s.overdue_seconds) AS max_overdue
    FROM stale AS s
    GROUP BY s.work_pool_id, s.relation
)
SELECT wp.name AS work_pool,
       r.relation,
       coalesce(p.stale_rows, 0) AS stale_rows,
       (CASE WHEN p.max_overdue IS NOT NULL THEN greatest(0, p.max_overdue) END)::float8 AS max_overdue_seconds
FROM work_pool AS wp
CROSS JOIN (VALUES ('worker'), ('work_queue'), ('deployment')) AS r (relation)
LEFT JOIN per_pool AS p ON p.work_pool_id = wp.id AND p.relation = r.relation
UNION ALL
SELECT '', p.relation, p.stale_rows, (CASE WHEN p.max_overdue IS NOT NULL THEN greatest(0, p.max_overdue) END)::float8
FROM per_pool AS p
WHERE p.work_pool_id IS NULL;
