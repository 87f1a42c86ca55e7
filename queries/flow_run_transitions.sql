-- description: Flow run state transitions per work pool and new state type, counted once each from new flow_run_state rows.
-- timeout: 5s
-- requires:
--   tables: [flow_run_state, flow_run, work_queue, work_pool]
-- mode: incremental
-- incremental:
--   key: id
--   cursor: updated
--   overlap: 60s
--   limit: 10000
-- metrics:
--   - name: prefect_db_flow_run_transitions_total
--     type: counter
--     help: Flow run state transitions since the exporter started, by work pool (empty for runs without a work queue) and the type of the state entered, in transitions.
--     labels: [work_pool, state_type]
SELECT s.id::text AS id,
       s.updated,
       coalesce(wp.name, '') AS work_pool,
       s.type::text AS state_type
FROM flow_run_state AS s  -- ix_flow_run_state__updated: rows newer than the cursor only
LEFT JOIN flow_run AS fr ON fr.id = s.flow_run_id
LEFT JOIN work_queue AS wq ON wq.id = fr.work_queue_id
LEFT JOIN work_pool AS wp ON wp.id = wq.work_pool_id
WHERE s.updated > coalesce(nullif(current_setting('prefect_db_exporter.cursor', true), '')::timestamptz,
                           now() - interval '1 minute')
ORDER BY s.updated
LIMIT 10000;
