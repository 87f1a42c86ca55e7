-- description: Locks held or awaited by sessions of the Prefect database, by mode and Prefect table.
-- timeout: 2s
-- metrics:
--   - name: prefect_db_locks
--     type: gauge
--     help: Locks held (granted true) or awaited (granted false) by sessions of the current database, by lock mode and Prefect table (other for any other relation, index or non-relation lock), in locks.
--     value: locks
--     labels: [mode, granted, relation]
WITH prefect_tables AS (
    SELECT to_regclass(quote_ident(t.name))::oid AS relid,
           t.name
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
)
SELECT l.mode,
       CASE WHEN l.granted THEN 'true' ELSE 'false' END AS granted,
       coalesce(pt.name, 'other') AS relation,
       count(*) AS locks
FROM pg_locks AS l
JOIN pg_stat_activity AS a ON a.pid = l.pid
LEFT JOIN prefect_tables AS pt ON pt.relid = l.relation
WHERE a.datname = current_database()
  AND l.pid <> pg_backend_pid()
GROUP BY 1, 2, 3;
