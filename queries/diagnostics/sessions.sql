-- description: Every session of the Prefect database that is not idle (or holds an advisory lock, or has no application_name), with the sessions blocking it, the lock it waits for and the age of its transaction. Returns pids and statement text, which metrics never carry.
-- timeout: 2s
WITH s AS (
    SELECT a.pid,
           coalesce(a.application_name, '') AS application_name,
           coalesce(a.usename::text, '') AS usename,
           coalesce(a.client_addr::text, '') AS client_addr,
           coalesce(a.state, 'unknown') AS state,
           a.wait_event_type,
           a.wait_event,
           left(a.query, 2000) AS query,
           extract(epoch FROM now() - a.xact_start)::float8 AS xact_age_seconds,
           extract(epoch FROM now() - a.state_change)::float8 AS state_age_seconds,
           pg_blocking_pids(a.pid) AS blocked_by
    FROM pg_stat_activity AS a
    WHERE a.datname = current_database()
      AND a.backend_type = 'client backend'
      AND a.pid <> pg_backend_pid()
      AND (a.state IS DISTINCT FROM 'idle'
           OR coalesce(a.application_name, '') = ''
           OR EXISTS (SELECT 1 FROM pg_locks AS l WHERE l.pid = a.pid AND l.locktype = 'advisory'))
)
SELECT s.*,
       w.locktype AS waiting_locktype,
       w.relation AS waiting_relation,
       w.mode AS waiting_mode
FROM s
-- The one lock a waiting session asks for; regclass names the table without locking it.
LEFT JOIN LATERAL (
    SELECT l.locktype, l.relation::regclass::text AS relation, l.mode
    FROM pg_locks AS l
    WHERE l.pid = s.pid AND NOT l.granted
    LIMIT 1
) AS w ON true
ORDER BY s.pid;
