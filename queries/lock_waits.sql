-- description: Longest current wait for a heavyweight lock in the Prefect database (needs pg_locks.waitstart, PostgreSQL 14+).
-- timeout: 2s
-- requires:
--   server_version_min: 140000
-- metrics:
--   - name: prefect_db_lock_wait_max_seconds
--     type: gauge
--     fold: max
--     help: Longest time a session of the current database has been waiting for a lock right now (0 when none waits), in seconds.
--     value: lock_wait_max_seconds
SELECT coalesce(extract(epoch FROM now() - least(min(l.waitstart), now())), 0)::float8 AS lock_wait_max_seconds
FROM pg_locks AS l
JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE NOT l.granted
  AND a.datname = current_database();
