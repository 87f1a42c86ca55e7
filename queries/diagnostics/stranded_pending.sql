-- description: PENDING flow runs older than pending_stale_seconds (default 600), oldest first, with their pool and queue and whether a live worker serves the pool. Returns run ids and names, which metrics never carry.
-- timeout: 2s
-- requires:
--   tables: [flow_run, work_queue, work_pool, worker]
--   columns: {worker: [heartbeat_interval_seconds]}
WITH settings AS (
    SELECT now() - make_interval(secs => coalesce(
               nullif(current_setting('prefect_db_exporter.pending_stale_seconds', true), '')::float8,
               600)) AS stale_before,
           coalesce(nullif(current_setting('prefect_db_exporter.worker_offline_multiple', true), '')::float8,
                    3) AS offline_multiple
),
live AS (
    -- Live = heartbeat within worker_offline_multiple intervals (30 s when unset), as Prefect's foreman decides.
    SELECT w.work_pool_id,
           count(*) AS live_workers
    FROM worker AS w
    CROSS JOIN settings AS st
    WHERE w.last_heartbeat_time >= now() - make_interval(
              secs => coalesce(w.heartbeat_interval_seconds, 30) * st.offline_multiple)
    GROUP BY w.work_pool_id
)
-- ix_flow_run__state_type: only PENDING runs are read.
SELECT fr.id::text AS run_id,
       fr.name AS run_name,
       coalesce(wp.name, '') AS work_pool,
       coalesce(wq.name, '') AS work_queue,
       extract(epoch FROM now() - fr.state_timestamp)::float8 AS age_seconds,
       fr.infrastructure_pid,
       coalesce(l.live_workers, 0) AS live_workers
FROM flow_run AS fr
CROSS JOIN settings AS st
LEFT JOIN work_queue AS wq ON wq.id = fr.work_queue_id
LEFT JOIN work_pool AS wp ON wp.id = wq.work_pool_id
LEFT JOIN live AS l ON l.work_pool_id = wp.id
WHERE fr.state_type = 'PENDING'
  AND fr.state_timestamp < st.stale_before
ORDER BY fr.state_timestamp
LIMIT 500;
