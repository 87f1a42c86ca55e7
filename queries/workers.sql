-- description: Workers per work pool by status computed from their heartbeat age and by their stored status, read pool by pool from the recent heartbeats only.
-- ttl: 5s
-- timeout: 5s
-- requires:
--   tables: [worker, work_pool]
--   columns: {worker: [status, heartbeat_interval_seconds]}
-- metrics:
--   - name: prefect_db_workers
--     type: gauge
--     help: Workers of the work pool seen within worker_recent_seconds (default 86400; the 1000 most recent per pool), ONLINE when their last heartbeat is within worker_offline_multiple (default 3) heartbeat intervals (30 s when unset), else OFFLINE, in workers.
--     value: workers
--     labels: [work_pool, status]
--   - name: prefect_db_workers_stored_status
--     type: gauge
--     help: Workers of the work pool seen within worker_recent_seconds (the 1000 most recent per pool) by the status Prefect's foreman stored (worker.status), in workers.
--     value: stored_workers
--     labels: [work_pool, status]
--   - name: prefect_db_worker_rows
--     type: gauge
--     help: Worker rows stored for the work pool including long-dead workers, which Prefect never deletes, counted up to 1000, in rows.
--     value: worker_rows
--     labels: [work_pool]
--   - name: prefect_db_work_pool_worker_heartbeat_age_seconds
--     type: gauge
--     help: Time since the most recent heartbeat of any worker of the work pool, for pools with a worker seen within worker_recent_seconds, in seconds.
--     value: newest_heartbeat_age_seconds
--     labels: [work_pool]

-- No series per worker: worker names are new for every process (every Kubernetes pod), see the
-- opt-in worker_heartbeats collector. The cost grows with pools and recent workers only: each pool
-- reads its recent workers from ix_worker__work_pool_id_last_heartbeat_time, newest first, at most
-- 1000; dead rows are counted up to 1000 (enough to say "clean them up").
WITH settings AS (
    SELECT coalesce(nullif(current_setting('prefect_db_exporter.worker_recent_seconds', true), '')::float8,
                    86400) AS recent_seconds,
           coalesce(nullif(current_setting('prefect_db_exporter.worker_offline_multiple', true), '')::float8,
                    3) AS offline_multiple
),
per_pool AS (
    SELECT wp.name AS work_pool,
           count(r.*) FILTER (WHERE r.online) AS online,
           count(r.*) FILTER (WHERE NOT r.online) AS offline,
           count(r.*) FILTER (WHERE r.stored_status = 'ONLINE') AS stored_online,
           count(r.*) FILTER (WHERE r.stored_status = 'OFFLINE') AS stored_offline,
           min(r.heartbeat_age_seconds) AS newest_heartbeat_age_seconds,
           -- In index order, so that a pool of few rows is never read by a scan of everyone's.
           (SELECT count(*)
            FROM (SELECT 1 FROM worker AS w WHERE w.work_pool_id = wp.id
                  ORDER BY w.last_heartbeat_time DESC LIMIT 1000) AS capped) AS worker_rows
    FROM work_pool AS wp
    CROSS JOIN settings AS st
    LEFT JOIN LATERAL (
        SELECT w.status::text AS stored_status,
               greatest(0, extract(epoch FROM now() - w.last_heartbeat_time))::float8 AS heartbeat_age_seconds,
               w.last_heartbeat_time >= now() - make_interval(
                   secs => coalesce(w.heartbeat_interval_seconds, 30) * st.offline_multiple) AS online
        FROM worker AS w
        WHERE w.work_pool_id = wp.id
          AND w.last_heartbeat_time > now() - make_interval(secs => st.recent_seconds)
        ORDER BY w.last_heartbeat_time DESC
        LIMIT 1000
    ) AS r ON true
    GROUP BY wp.id, wp.name
)
SELECT p.work_pool,
       s.status,
       CASE s.status WHEN 'ONLINE' THEN p.online ELSE p.offline END AS workers,
       CASE s.status WHEN 'ONLINE' THEN p.stored_online ELSE p.stored_offline END AS stored_workers,
       NULL::bigint AS worker_rows,
       NULL::float8 AS newest_heartbeat_age_seconds
FROM per_pool AS p
CROSS JOIN (VALUES ('ONLINE'), ('OFFLINE')) AS s (status)
UNION ALL
SELECT p.work_pool, NULL, NULL, NULL, p.worker_rows, p.newest_heartbeat_age_seconds
FROM per_pool AS p;
