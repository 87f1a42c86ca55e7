-- description: Flow runs stuck CANCELLING longer than 300 s per work pool and queue - cancellation cleanup that cannot keep up (prefect#15231).
-- timeout: 5s
-- requires:
--   tables: [flow_run, work_queue, work_pool]
-- metrics:
--   - name: prefect_db_cancelling_runs_stale
--     type: gauge
--     help: Flow runs in a CANCELLING state for more than 300 s per work pool and queue (Prefect 3.7.5 and later give up on them after 300 s), in runs.
--     value: stale_runs
--     labels: [work_pool, work_queue]
--   - name: prefect_db_cancelling_runs_oldest_age_seconds
--     type: gauge
--     fold: max
--     help: Time the oldest CANCELLING flow run of a work pool and queue has spent in that state (no sample when none is CANCELLING), in seconds.
--     value: oldest_age_seconds
--     labels: [work_pool, work_queue]
--
-- # A CANCELLING run waits for its worker to kill the infrastructure, and the cancellation-cleanup
-- # service to cancel its subflows; with 50 k subflows that loop pegged the CPU (prefect#15231, open)
-- # and runs sat in CANCELLING for good, holding concurrency slots. 3.7.5 added a 300 s timeout
-- # (#22238); before it nothing ends them. ix_flow_run__state_type: only CANCELLING runs are read.
WITH cancelling AS (
    SELECT fr.work_queue_id,
           count(*) FILTER (WHERE fr.state_timestamp < now() - interval '300 seconds') AS stale_runs,
           min(fr.state_timestamp) AS earliest
    FROM flow_run AS fr
    WHERE fr.state_type = 'CANCELLING'
    GROUP BY fr.work_queue_id
)
SELECT wp.name AS work_pool,
       wq.name AS work_queue,
       coalesce(c.stale_runs, 0) AS stale_runs,
       extract(epoch FROM now() - c.earliest)::float8 AS oldest_age_seconds
FROM work_queue AS wq
JOIN work_pool AS wp ON wp.id = wq.work_pool_id
LEFT JOIN cancelling AS c ON c.work_queue_id = wq.id
UNION ALL
SELECT '', '', c.stale_runs, extract(epoch FROM now() - c.earliest)::float8
FROM cancelling AS c
WHERE c.work_queue_id IS NULL;
