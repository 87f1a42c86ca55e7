-- description: Prefect's late-run marking seen from the database - overdue SCHEDULED runs it has not marked Late, and runs marked Late more than once (prefect#22139).
-- timeout: 5s
-- requires:
--   tables: [flow_run, flow_run_state, work_queue, work_pool]
--   columns: {flow_run: [state_type, state_name, next_scheduled_start_time]}
-- metrics:
--   - name: prefect_db_late_marking_overdue_runs
--     type: gauge
--     help: SCHEDULED flow runs still named Scheduled more than 60 s past their start time, which Prefect's late-runs service marks Late after 15 s (a count above 0 for minutes means the service has stalled), per work pool and queue, in runs.
--     value: overdue_runs
--     labels: [work_pool, work_queue]
--   - name: prefect_db_late_marking_oldest_overdue_seconds
--     type: gauge
--     fold: max
--     help: Time since the scheduled start of the most overdue flow run the late-runs service has not marked Late (no sample when none), per work pool and queue, in seconds.
--     value: oldest_overdue_seconds
--     labels: [work_pool, work_queue]
--   - name: prefect_db_late_marking_repeated_late_runs
--     type: gauge
--     help: Flow runs now Late whose state history holds more than one Late state (duplicate Late-to-Late transitions, Prefect 3.6.7 to 3.7.5), per work pool and queue, in runs.
--     value: repeated_late_runs
--     labels: [work_pool, work_queue]
--
-- # Prefect's late-runs service (every 5 s) moves SCHEDULED runs more than 15 s past their start to
-- # Late. It became a docket perpetual task in 3.6.7 (prefect#19722) and regressed: it stalls when
-- # docket/Redis does, and re-marked Late runs Late again, flooding the triggers (prefect#22139,
-- # fixed in 3.7.6 by #22316). 60 s leaves the service four loops of slack before a run counts.
WITH overdue AS (
    -- ix_flow_run__state_type: only SCHEDULED runs are read.
    SELECT fr.work_queue_id,
           count(*) AS runs,
           min(fr.next_scheduled_start_time) AS earliest
    FROM flow_run AS fr
    WHERE fr.state_type = 'SCHEDULED'
      AND fr.state_name = 'Scheduled'
      AND fr.next_scheduled_start_time < now() - interval '60 seconds'
    GROUP BY fr.work_queue_id
),
repeated AS (
    -- The Late runs only, then each one's state rows through
    -- uq_flow_run_state__flow_run_id_timestamp(_desc): bounded by the runs late now.
    SELECT fr.work_queue_id, count(*) AS runs
    FROM flow_run AS fr
    WHERE fr.state_type = 'SCHEDULED'
      AND fr.state_name = 'Late'
      AND (SELECT count(*) FROM flow_run_state AS s
           WHERE s.flow_run_id = fr.id AND s.name = 'Late') > 1
    GROUP BY fr.work_queue_id
),
per_queue AS (
    SELECT coalesce(o.work_queue_id, r.work_queue_id) AS work_queue_id,
           coalesce(o.runs, 0) AS overdue_runs,
           o.earliest,
           coalesce(r.runs, 0) AS repeated_late_runs
    FROM overdue AS o
    FULL JOIN repeated AS r ON r.work_queue_id = o.work_queue_id
)
SELECT wp.name AS work_pool,
       wq.name AS work_queue,
       coalesce(q.overdue_runs, 0) AS overdue_runs,
       extract(epoch FROM now() - q.earliest)::float8 AS oldest_overdue_seconds,
       coalesce(q.repeated_late_runs, 0) AS repeated_late_runs
FROM work_queue AS wq
JOIN work_pool AS wp ON wp.id = wq.work_pool_id
LEFT JOIN per_queue AS q ON q.work_queue_id = wq.id
UNION ALL
SELECT '', '', q.overdue_runs, extract(epoch FROM now() - q.earliest)::float8, q.repeated_late_runs
FROM per_queue AS q
WHERE q.work_queue_id IS NULL;
