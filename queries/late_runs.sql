-- description: Late flow runs per work pool and queue - marked Late by Prefect, or Scheduled and overdue by more than late_after_seconds.
-- timeout: 5s
-- requires:
--   tables: [flow_run, work_queue, work_pool]
-- metrics:
--   - name: prefect_db_late_runs
--     type: gauge
--     help: SCHEDULED flow runs per work pool and queue that are Late or still Scheduled more than late_after_seconds (default 15) past their start time (AwaitingRetry and AwaitingConcurrencySlot excluded), in runs.
--     value: runs
--     labels: [work_pool, work_queue]
--   - name: prefect_db_late_runs_max_lateness_seconds
--     type: gauge
--     fold: max
--     help: Time since the scheduled start of the most overdue late flow run of a work pool and queue (no sample when none is late), in seconds.
--     value: max_lateness_seconds
--     labels: [work_pool, work_queue]
WITH settings AS (
    SELECT now() - make_interval(secs => coalesce(
               nullif(current_setting('prefect_db_exporter.late_after_seconds', true), '')::float8,
               15)) AS late_before
),
late AS (
    -- ix_flow_run__state_type: only SCHEDULED runs are read.
    SELECT fr.work_queue_id,
           count(*) AS runs,
           min(coalesce(fr.next_scheduled_start_time, fr.expected_start_time)) AS earliest
    FROM flow_run AS fr
    CROSS JOIN settings AS st
    WHERE fr.state_type = 'SCHEDULED'
      AND (fr.state_name = 'Late'
           OR (fr.state_name = 'Scheduled' AND fr.next_scheduled_start_time < st.late_before))
    GROUP BY fr.work_queue_id
)
SELECT wp.name AS work_pool,
       wq.name AS work_queue,
       coalesce(l.runs, 0) AS runs,
       extract(epoch FROM now() - l.earliest)::float8 AS max_lateness_seconds
FROM work_queue AS wq
JOIN work_pool AS wp ON wp.id = wq.work_pool_id
LEFT JOIN late AS l ON l.work_queue_id = wq.id
UNION ALL
SELECT '', '', l.runs, extract(epoch FROM now() - l.earliest)::float8
FROM late AS l
WHERE l.work_queue_id IS NULL;
