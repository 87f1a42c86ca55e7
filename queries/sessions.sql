-- description: Oldest open transaction per session state, and sessions waiting on or holding contended locks.
-- timeout: 2s
-- metrics:
--   - name: prefect_db_oldest_transaction_age_seconds
--     type: gauge
--     fold: max
--     help: Age of the oldest open transaction in the current database by session state (0 when none), excluding the exporter's own session, in seconds.
--     value: oldest_transaction_age_seconds
--     labels: [state]
--   - name: prefect_db_blocked_sessions
--     type: gauge
--     help: Sessions of the current database waiting on a heavyweight lock (wait_event_type Lock), in sessions.
--     value: blocked_sessions
--   - name: prefect_db_blocking_sessions
--     type: gauge
--     help: Distinct sessions holding or queued ahead for a lock that a session of the current database waits on (pg_blocking_pids), in sessions.
--     value: blocking_sessions
WITH activity AS (
    SELECT pid,
           coalesce(state, 'unknown') AS state,
           xact_start,
           wait_event_type
    FROM pg_stat_activity
    WHERE datname = current_database()
      AND pid <> pg_backend_pid()
),
transactions AS (
    SELECT state,
           extract(epoch FROM now() - least(min(xact_start), now()))::float8 AS age
    FROM activity
    WHERE xact_start IS NOT NULL
    GROUP BY state
)
SELECT s.state,
       coalesce(t.age, 0) AS oldest_transaction_age_seconds,
       NULL::bigint AS blocked_sessions,
       NULL::bigint AS blocking_sessions
FROM (VALUES ('active'), ('idle in transaction'), ('idle in transaction (aborted)')) AS s (state)
LEFT JOIN transactions AS t ON t.state = s.state
UNION ALL
SELECT t.state, t.age, NULL, NULL
FROM transactions AS t
WHERE t.state NOT IN ('active', 'idle in transaction', 'idle in transaction (aborted)')
UNION ALL
SELECT NULL,
       NULL,
       (SELECT count(*) FROM activity WHERE wait_event_type = 'Lock'),
       (SELECT count(DISTINCT blocker)
        FROM activity AS a
        CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS blocker
        WHERE a.wait_event_type = 'Lock');
