-- description: Sessions connected to the Prefect database, by state and wait event type.
-- timeout: 2s
-- metrics:
--   - name: prefect_db_connections
--     type: gauge
--     help: Sessions connected to the current database by state (unknown for background processes) and wait event type (none when not waiting), in sessions.
--     value: sessions
--     labels: [state, wait_event_type]
SELECT coalesce(state, 'unknown') AS state,
       coalesce(wait_event_type, 'none') AS wait_event_type,
       count(*) AS sessions
FROM pg_stat_activity
WHERE datname = current_database()
GROUP BY 1, 2;
