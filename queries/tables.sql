-- description: Size, tuples, write activity and vacuum age of Prefect's tables in the schema on the search path.
-- ttl: 60s
-- timeout: 5s
-- metrics:
--   - name: prefect_db_table_size_bytes
--     type: gauge
--     help: Total disk size of a Prefect table including its indexes and TOAST data (no sample while an ACCESS EXCLUSIVE lock is held or awaited on it), in bytes.
--     value: size_bytes
--     labels: [relation]
--   - name: prefect_db_table_estimated_rows
--     type: gauge
--     help: Row count of a Prefect table estimated by the planner (pg_class.reltuples; no sample before the first VACUUM or ANALYZE on PostgreSQL 14+), in rows.
--     value: estimated_rows
--     labels: [relation]
--   - name: prefect_db_table_live_tuples
--     type: gauge
--     help: Estimated live tuples of a Prefect table (pg_stat_user_tables.n_live_tup), in tuples.
--     value: live_tuples
--     labels: [relation]
--   - name: prefect_db_table_dead_tuples
--     type: gauge
--     help: Estimated dead tuples of a Prefect table waiting for vacuum (pg_stat_user_tables.n_dead_tup), in tuples.
--     value: dead_tuples
--     labels: [relation]
--   - name: prefect_db_table_inserts_total
--     type: counter
--     help: Rows inserted into a Prefect table since statistics were reset, in rows.
--     value: inserts
--     labels: [relation]
--   - name: prefect_db_table_updates_total
--     type: counter
--     help: Rows updated in a Prefect table since statistics were reset, including HOT updates, in rows.
--     value: updates
--     labels: [relation]
--   - name: prefect_db_table_hot_updates_total
--     type: counter
--     help: Rows updated in a Prefect table without touching its indexes (HOT updates) since statistics were reset, in rows.
--     value: hot_updates
--     labels: [relation]
--   - name: prefect_db_table_deletes_total
--     type: counter
--     help: Rows deleted from a Prefect table since statistics were reset, in rows.
--     value: deletes
--     labels: [relation]
--   - name: prefect_db_table_seq_scans_total
--     type: counter
--     help: Sequential scans started on a Prefect table since statistics were reset, in scans.
--     value: seq_scans
--     labels: [relation]
--   - name: prefect_db_table_seq_scan_rows_total
--     type: counter
--     help: Rows read by sequential scans of a Prefect table since statistics were reset, in rows.
--     value: seq_scan_rows
--     labels: [relation]
--   - name: prefect_db_table_last_autovacuum_age_seconds
--     type: gauge
--     fold: max
--     help: Time since autovacuum last vacuumed a Prefect table (no sample when never), in seconds.
--     value: last_autovacuum_age_seconds
--     labels: [relation]
--   - name: prefect_db_table_last_autoanalyze_age_seconds
--     type: gauge
--     fold: max
--     help: Time since autovacuum last analyzed a Prefect table (no sample when never), in seconds.
--     value: last_autoanalyze_age_seconds
--     labels: [relation]
WITH prefect_tables AS (
    SELECT t.name,
           to_regclass(quote_ident(t.name)) AS relid
    FROM (VALUES -- the Prefect tables of exporter/labels.py (make docs writes this list)
            ('agent'), ('alembic_version'), ('artifact'), ('artifact_collection'), ('automation'),
            ('automation_bucket'), ('automation_event_follower'), ('automation_held_event'),
            ('automation_related_resource'), ('block_document'), ('block_document_reference'),
            ('block_schema'), ('block_schema_reference'), ('block_type'),
            ('composite_trigger_child_firing'), ('concurrency_limit'), ('concurrency_limit_v2'),
            ('configuration'), ('csrf_token'), ('deployment'), ('deployment_schedule'),
            ('deployment_version'), ('event_resources'), ('events'), ('flow'), ('flow_run'),
            ('flow_run_input'), ('flow_run_notification_policy'), ('flow_run_notification_queue'),
            ('flow_run_state'), ('log'), ('saved_search'), ('task_run'), ('task_run_state'),
            ('task_run_state_cache'), ('variable'), ('work_pool'), ('work_queue'), ('worker')
    ) AS t (name)
),
exclusive_locks AS (
    SELECT DISTINCT relation
    FROM pg_locks
    WHERE mode = 'AccessExclusiveLock'
      AND locktype = 'relation'
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT pt.name AS relation,
       CASE WHEN EXISTS (SELECT 1
                         FROM exclusive_locks AS x
                         WHERE x.relation = c.oid
                            OR x.relation = c.reltoastrelid
                            OR x.relation IN (SELECT i.indexrelid FROM pg_index AS i WHERE i.indrelid = c.oid))
            THEN NULL
            ELSE pg_total_relation_size(c.oid)
       END AS size_bytes,
       CASE WHEN c.reltuples >= 0 THEN c.reltuples::float8 END AS estimated_rows,
       s.n_live_tup AS live_tuples,
       s.n_dead_tup AS dead_tuples,
       s.n_tup_ins AS inserts,
       s.n_tup_upd AS updates,
       s.n_tup_hot_upd AS hot_updates,
       s.n_tup_del AS deletes,
       s.seq_scan AS seq_scans,
       s.seq_tup_read AS seq_scan_rows,
       extract(epoch FROM now() - s.last_autovacuum)::float8 AS last_autovacuum_age_seconds,
       extract(epoch FROM now() - s.last_autoanalyze)::float8 AS last_autoanalyze_age_seconds
FROM prefect_tables AS pt
JOIN pg_class AS c ON c.oid = pt.relid
LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'p');
