-- description: Workers per work pool by status computed from their heartbeat age, their stored status, and each recent worker's heartbeat age.
-- ttl: 5s
-- timeout: 5s
-- requires:
--   tables: [worker, work_pool]
--   columns: {worker: [status, heartbeat_interval_seconds]}
-- metrics:
--   - name: prefect_db_workers
--     type: gauge
--     help: Workers of the work pool seen within worker_recent_seconds (default 86400), ONLINE when their last heartbeat is within worker_offline_multiple (default 3) heartbeat intervals (30 s when unset), else OFFLINE, in workers.
--     value: workers
--     labels: [work_pool, status]
--   - name: prefect_db_workers_stored_status
--     type: gauge
--     help: Workers of the work pool seen within worker_recent_seconds by the status Prefect's foreman stored (worker.status), in workers.
--     value: stored_workers
--     labels: [work_pool, status]
--   - name: prefect_db_worker_rows
--     type: gauge
--     help: Worker rows stored for the work pool including long-dead workers, which Prefect never deletes, in rows.
--     value: worker_rows
--     labels: [work_pool]
--   - name: prefect_db_worker_last_heartbeat_age_seconds
--     type: gauge
--     fold: max
--     help: Time since the worker's last heartbeat, for workers seen within worker_recent_seconds, in seconds.
--     value: heartbeat_age_seconds
--     labels: [work_pool, worker]
WITH settings AS (
    SELECT coalesce(nullif(current_setting('prefect_db_exporter.worker_recent_seconds', true), '')::float8,
                    86400) AS recent_seconds,
           coalesce(nullif(current_setting('prefect_db_exporter.worker_offline_multiple', true), '')::float8,
                    3) AS offline_multiple
),
recent AS (
    SELECT w.work_pool_id,
           w.name,
           w.status::text AS stored_status,
           greatest(0, extract(epoch FROM now() - w.last_heartbeat_time))::float8 AS heartbeat_age_seconds,
           CASE WHEN w.last_heartbeat_time >= now() - make_interval(
                         secs => coalesce(w.heartbeat_interval_seconds, 30) * st.offline_multiple)
                THEN 'ONLINE' ELSE 'OFFLINE' END AS status
    FROM worker AS w
    CROSS JOIN settings AS st
    WHERE w.last_heartbeat_time > now() - make_interval(secs => st.recent_seconds)
)
SELECT wp.name AS work_pool,
       s.status,
       NULL::text AS worker,
       (SELECT count(*) FROM recent AS r WHERE r.work_pool_id = wp.id AND r.status = s.status) AS workers,
       (SELECT count(*) FROM recent AS r
        WHERE r.work_pool_id = wp.id AND r.stored_status = s.status) AS stored_workers,
       NULL::bigint AS worker_rows,
       NULL::float8 AS heartbeat_age_seconds
FROM work_pool AS wp
CROSS JOIN (VALUES ('ONLINE'), ('OFFLINE')) AS s (status)
UNION ALL
SELECT wp.name, NULL, NULL, NULL, NULL,
       (SELECT count(*) FROM worker AS w WHERE w.work_pool_id = wp.id),
       NULL
FROM work_pool AS wp
UNION ALL
SELECT wp.name, NULL, r.name, NULL, NULL, NULL, r.heartbeat_age_seconds
FROM recent AS r
JOIN work_pool AS wp ON wp.id = r.work_pool_id;
