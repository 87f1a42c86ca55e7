-- description: Prefect's foreman seen from the database - rows it still stores as ONLINE or READY although the heartbeat or poll they rest on has timed out (prefect#22212).
-- timeout: 5s
-- requires:
--   tables: [worker, work_queue, work_pool, deployment]
--   columns: {worker: [status, heartbeat_interval_seconds, last_heartbeat_time], work_queue: [status, last_polled], deployment: [status, last_polled, work_queue_id]}
-- metrics:
--   - name: prefect_db_foreman_stale_status_rows
--     type: gauge
--     help: Rows of a Prefect table (relation worker, work_queue or deployment) that the foreman should have marked OFFLINE or NOT_READY - workers seen within worker_recent_seconds (the 1000 most recent per pool, as prefect_db_workers counts them) stored ONLINE whose last heartbeat is older than worker_offline_multiple (default 3) heartbeat intervals (30 s when unset), queues and deployments stored READY not polled for 60 s - per work pool, in rows.
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
--
-- # Cost: work_queue is read whole (one row per queue); workers pool by pool from
-- # ix_worker__work_pool_id_last_heartbeat_time, the recent ones only (Prefect never deletes dead
-- # workers, so a scan of worker grows with every pod that ever ran); deployments from the queues
-- # that are stale now, in one bitmap scan of ix_deployment__work_queue_id (deployment has no index
-- # on status or last_polled in any release up to 3.9.1), plus those without a queue (IS NULL, same
-- # index). A healthy installation reads the deployments of its few unpolled queues; when every
-- # queue is stale the bitmap reads each heap page once, about a sequential scan. Not a join per
-- # queue: the planner's guess of how many queues are stale comes from statistics older than the
-- # last poll, and one index scan per queue would read a page per deployment. Each part is counted
-- # on its own before the three are joined to the pools.
WITH settings AS (
    SELECT coalesce(nullif(current_setting('prefect_db_exporter.worker_recent_seconds', true), '')::float8,
                    86400) AS recent_seconds,
           coalesce(nullif(current_setting('prefect_db_exporter.worker_offline_multiple', true), '')::float8,
                    3) AS offline_multiple
),
stale_workers AS (
    SELECT wp.id AS work_pool_id,
           'worker' AS relation,
           count(*) AS stale_rows,
           max(r.overdue_seconds) AS max_overdue
    FROM work_pool AS wp
    CROSS JOIN settings AS st
    CROSS JOIN LATERAL (
        SELECT w.status,
               extract(epoch FROM now() - w.last_heartbeat_time)
                   - coalesce(w.heartbeat_interval_seconds, 30) * st.offline_multiple AS overdue_seconds
        FROM worker AS w
        WHERE w.work_pool_id = wp.id
          AND w.last_heartbeat_time > now() - make_interval(secs => st.recent_seconds)
        ORDER BY w.last_heartbeat_time DESC
        LIMIT 1000
    ) AS r
    WHERE r.status = 'ONLINE' AND r.overdue_seconds > 0
    GROUP BY wp.id
),
stale_queues AS (
    -- Never polled, or not for 60 s: the queues whose deployments the foreman may have to mark.
    SELECT wq.id, wq.work_pool_id, wq.status, wq.last_polled
    FROM work_queue AS wq
    WHERE wq.last_polled IS NULL OR wq.last_polled < now() - interval '60 seconds'
),
stale_deployments AS (
    -- A deployment stays READY while its queue was polled recently, as the foreman decides.
    SELECT q.work_pool_id,
           'deployment' AS relation,
           count(*) AS stale_rows,
           max(extract(epoch FROM now() - greatest(d.last_polled, q.last_polled)) - 60) AS max_overdue
    FROM (
        -- One bitmap scan for all stale queues: each heap page is read once, however many are stale
        -- (OFFSET 0 keeps the planner from turning it into one index scan per queue).
        SELECT d.work_queue_id, d.last_polled
        FROM deployment AS d
        WHERE d.work_queue_id = ANY (ARRAY(SELECT sq.id FROM stale_queues AS sq))
          AND d.status = 'READY' AND d.last_polled < now() - interval '60 seconds'
        OFFSET 0
    ) AS d
    JOIN stale_queues AS q ON q.id = d.work_queue_id
    GROUP BY q.work_pool_id
    UNION ALL
    SELECT NULL, 'deployment', count(*), max(extract(epoch FROM now() - d.last_polled) - 60)
    FROM deployment AS d
    WHERE d.work_queue_id IS NULL
      AND d.status = 'READY' AND d.last_polled < now() - interval '60 seconds'
    HAVING count(*) > 0
),
per_pool AS (
    SELECT s.work_pool_id, s.relation, s.stale_rows, s.max_overdue
    FROM stale_workers AS s
    UNION ALL
    SELECT q.work_pool_id, 'work_queue', count(*), max(extract(epoch FROM now() - q.last_polled) - 60)
    FROM stale_queues AS q
    WHERE q.status = 'READY' AND q.last_polled IS NOT NULL
    GROUP BY q.work_pool_id
    UNION ALL
    SELECT s.work_pool_id, s.relation, s.stale_rows, s.max_overdue
    FROM stale_deployments AS s
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
