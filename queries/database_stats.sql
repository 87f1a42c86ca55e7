-- description: Cumulative deadlocks, commits, rollbacks and temporary file use of the Prefect database (pg_stat_database).
-- timeout: 2s
-- metrics:
--   - name: prefect_db_deadlocks_total
--     type: counter
--     help: Deadlocks detected in the current database since statistics were reset, in deadlocks.
--     value: deadlocks
--   - name: prefect_db_xact_commit_total
--     type: counter
--     help: Transactions committed in the current database since statistics were reset, in transactions.
--     value: xact_commit
--   - name: prefect_db_xact_rollback_total
--     type: counter
--     help: Transactions rolled back in the current database since statistics were reset (Prefect's read-only sessions end in ROLLBACK, so this exceeds commits when healthy), in transactions.
--     value: xact_rollback
--   - name: prefect_db_temp_bytes_total
--     type: counter
--     help: Data written to temporary files by queries of the current database since statistics were reset, in bytes.
--     value: temp_bytes
--   - name: prefect_db_conflicts_total
--     type: counter
--     help: Queries of the current database cancelled by recovery conflicts on a standby since statistics were reset, in queries.
--     value: conflicts
--   - name: prefect_db_stats_reset_time_seconds
--     type: gauge
--     help: Time the statistics of the current database were last reset (no sample when never), in seconds since the Unix epoch.
--     value: stats_reset_seconds
SELECT deadlocks,
       xact_commit,
       xact_rollback,
       temp_bytes,
       conflicts,
       extract(epoch FROM stats_reset)::float8 AS stats_reset_seconds
FROM pg_stat_database
WHERE datname = current_database();
