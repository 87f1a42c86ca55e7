-- description: Each recently seen worker's heartbeat age; opt-in, as it makes one series per worker name, which is new for every worker process.
-- enabled: false
-- timeout: 5s
-- requires:
--   tables: [worker, work_pool]
-- metrics:
--   - name: prefect_db_worker_last_heartbeat_age_seconds
--     type: gauge
--     fold: max
--     help: Time since the worker's last heartbeat, for the 50 most recent workers of each work pool seen within worker_recent_seconds, in seconds.
--     value: heartbeat_age_seconds
--     labels: [work_pool, worker]

-- Opt-in (collectors.enable: [worker_heartbeats]): worker names default to a new random name per
-- process start, so on Kubernetes every pod is a new series. Read pool by pool from
-- ix_worker__work_pool_id_last_heartbeat_time, newest first and at most 50 per pool; the series cap
-- (max_series_per_metric) bounds the rest.
WITH settings AS (
    SELECT coalesce(nullif(current_setting('prefect_db_exporter.worker_recent_seconds', true), '')::float8,
                    86400) AS recent_seconds
)
SELECT wp.name AS work_pool,
       r.name AS worker,
       r.heartbeat_age_seconds
FROM work_pool AS wp
CROSS JOIN settings AS st
CROSS JOIN LATERAL (
    SELECT w.name,
           greatest(0, extract(epoch FROM now() - w.last_heartbeat_time))::float8 AS heartbeat_age_seconds
    FROM worker AS w
    WHERE w.work_pool_id = wp.id
      AND w.last_heartbeat_time > now() - make_interval(secs => st.recent_seconds)
    ORDER BY w.last_heartbeat_time DESC
    LIMIT 50
) AS r;
