-- description: Invalid indexes on Prefect's tables, left by a cancelled or failed CREATE INDEX CONCURRENTLY, which the planner ignores.
-- ttl: 60s
-- timeout: 2s
-- metrics:
--   - name: prefect_db_invalid_indexes
--     type: gauge
--     help: Indexes of a Prefect table marked invalid (pg_index.indisvalid false - a cancelled or failed CREATE INDEX CONCURRENTLY or REINDEX CONCURRENTLY; the planner never uses them, though writes still maintain them), in indexes.
--     value: invalid_indexes
--     labels: [relation]
--
-- # Prefect builds several indexes CONCURRENTLY (3.6.19 ix_flow_run__schedule_id_scheduler, 3.6.21
-- # ix_task_run__state_type_start_time, 3.7.5 ix_event_resources__occurred). A build that is cancelled
-- # (a statement timeout, a restart) or fails leaves the index INVALID and the migration still marked
-- # done: queries that need it fall back to sequential scans. Prefect 3.9's migration c8d5f2a71b3e had
-- # to rebuild ix_event_resources__occurred for exactly this ("the vacuum falls back to a seq scan").
-- # pg_index is a small catalog, read by indrelid for each Prefect table that exists.
SELECT t.name AS relation,
       (SELECT count(*) FROM pg_index AS i
        WHERE i.indrelid = to_regclass(quote_ident(t.name)) AND NOT i.indisvalid) AS invalid_indexes
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
WHERE to_regclass(quote_ident(t.name)) IS NOT NULL;
