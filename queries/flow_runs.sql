-- description: Flow runs in non-terminal states per work pool and work queue (0 for every queue without any).
-- timeout: 5s
-- requires:
--   tables: [flow_run, work_queue, work_pool]
-- metrics:
--   - name: prefect_db_flow_runs
--     type: gauge
--     help: Flow runs currently in a non-terminal state type per work pool and queue (both empty for runs without a work queue, such as served or ad-hoc runs), in runs.
--     value: runs
--     labels: [work_pool, work_queue, state_type]
WITH counts AS (
    -- ix_flow_run__state_type: only live runs are read, never the terminal history.
    SELECT fr.work_queue_id,
           fr.state_type::text AS state_type,
           count(*) AS runs
    FROM flow_run AS fr
    WHERE fr.state_type IN ('SCHEDULED', 'PENDING', 'RUNNING', 'PAUSED', 'CANCELLING')
    GROUP BY 1, 2
)
SELECT wp.name AS work_pool,
       wq.name AS work_queue,
       s.state_type,
       coalesce(c.runs, 0) AS runs
FROM work_queue AS wq
JOIN work_pool AS wp ON wp.id = wq.work_pool_id
CROSS JOIN (VALUES ('SCHEDULED'), ('PENDING'), ('RUNNING'), ('PAUSED'), ('CANCELLING')) AS s (state_type)
LEFT JOIN counts AS c ON c.work_queue_id = wq.id AND c.state_type = s.state_type
UNION ALL
SELECT '', '', c.state_type, c.runs
FROM counts AS c
WHERE c.work_queue_id IS NULL;
