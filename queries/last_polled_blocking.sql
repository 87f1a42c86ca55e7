-- description: Sessions stuck on a lock while running Prefect's last_polled update of deployment or work_queue rows (worker polls colliding).
-- timeout: 2s
-- metrics:
--   - name: prefect_db_last_polled_blocked_sessions
--     type: gauge
--     help: Sessions of the current database waiting on a lock while running a worker poll's last_polled UPDATE of the deployment or work_queue table, in sessions.
--     value: sessions
--     labels: [relation]
WITH waiting AS (
    SELECT CASE
               -- Prefect 2.18.1-3.6: UPDATE deployment SET last_polled=..., status=... WHERE ...
               WHEN a.query ~* '^\s*UPDATE\s+"?deployment"?\s+SET\s+"?last_polled"?\s*='
                   THEN 'deployment'
               -- Prefect 3.7+: WITH locked AS (SELECT deployment.id AS id, deployment.status AS status
               -- FROM deployment WHERE deployment.id IN (NULL) AND (1 != 1) OR deployment.work_queue_id
               -- IN (...) ORDER BY deployment.id FOR UPDATE) SELECT ... / UPDATE deployment SET last_polled=...
               -- Matched by its start: pg_stat_activity keeps only the first 1 kB of a long statement. The
               -- empty deployment-id list "IN (NULL) AND (1 != 1)" tells a poll from the foreman's update.
               WHEN a.query ~* '^\s*WITH\s+locked\s+AS\s*\(\s*SELECT\s+deployment\.id\s+AS\s+id,\s*deployment\.status\s+AS\s+status\s+FROM\s+deployment\s+WHERE\s+deployment\.id\s+IN\s*\([^)]*\)\s+AND\s+\('
                   THEN 'deployment'
               -- Every version: UPDATE work_queue SET last_polled=... WHERE work_queue.id IN (...)
               WHEN a.query ~* '^\s*UPDATE\s+"?work_queue"?\s+SET\s+"?last_polled"?\s*='
                   THEN 'work_queue'
           END AS relation
    FROM pg_stat_activity AS a
    WHERE a.datname = current_database()
      AND a.wait_event_type = 'Lock'
      AND a.pid <> pg_backend_pid()
)
SELECT r.relation,
       (SELECT count(*) FROM waiting AS w WHERE w.relation = r.relation) AS sessions
FROM (VALUES ('deployment'), ('work_queue')) AS r (relation);
