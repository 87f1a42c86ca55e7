-- description: Flow runs CANCELLING for more than 300 s, oldest first, by id and name with their work pool and queue and infrastructure pid (the cancelling_runs collector counts them).
-- timeout: 2s
-- requires:
--   tables: [flow_run, work_queue, work_pool]
--
-- # prefect#15231: cancellation cleanup that cannot keep up leaves runs CANCELLING for good (3.7.5
-- # gives up after 300 s, #22238). The fix is per run (prefect flow-run cancel <id>), so the doctor
-- # names them. ix_flow_run__state_type: only CANCELLING runs are read.
SELECT fr.id::text AS run_id,
       fr.name AS run_name,
       wp.name AS work_pool,
       wq.name AS work_queue,
       fr.infrastructure_pid,
       extract(epoch FROM now() - fr.state_timestamp)::float8 AS age_seconds
FROM flow_run AS fr
LEFT JOIN work_queue AS wq ON wq.id = fr.work_queue_id
LEFT JOIN work_pool AS wp ON wp.id = wq.work_pool_id
WHERE fr.state_type = 'CANCELLING'
  AND fr.state_timestamp < now() - interval '300 seconds'
ORDER BY fr.state_timestamp
LIMIT 50;
