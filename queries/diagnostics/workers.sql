-- description: Workers that Prefect still stores as ONLINE although their last heartbeat is older than worker_offline_multiple (default 3) heartbeat intervals (30 s when unset), so the foreman that marks them OFFLINE is not running.
-- timeout: 2s
-- requires:
--   tables: [worker, work_pool]
--   columns: {worker: [status, heartbeat_interval_seconds]}
WITH settings AS (
    SELECT coalesce(nullif(current_setting('prefect_db_exporter.worker_offline_multiple', true), '')::float8,
                    3) AS offline_multiple
)
SELECT wp.name AS work_pool,
       w.name AS worker,
       extract(epoch FROM now() - w.last_heartbeat_time)::float8 AS heartbeat_age_seconds,
       coalesce(w.heartbeat_interval_seconds, 30) AS heartbeat_interval_seconds
FROM worker AS w
JOIN work_pool AS wp ON wp.id = w.work_pool_id
CROSS JOIN settings AS st
WHERE w.status = 'ONLINE'
  AND w.last_heartbeat_time < now() - make_interval(
          secs => coalesce(w.heartbeat_interval_seconds, 30) * st.offline_multiple)
ORDER BY w.last_heartbeat_time
LIMIT 200;
