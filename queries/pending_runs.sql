-- description: PENDING flow runs per work pool and queue, their age, and those stuck longer than pending_stale_seconds.
-- ttl: 5s
-- timeout: 5s
-- requires:
--   tables: [flow_run, work_queue, work_pool]
-- metrics:
--   - name: prefect_db_pending_runs
--     type: gauge
--     help: Flow runs in a PENDING state per work pool and queue (both empty for runs without a work queue), which hold concurrency slots and never time out, in runs.
--     value: runs
--     labels: [work_pool, work_queue]
--   - name: prefect_db_pending_runs_oldest_age_seconds
--     type: gauge
--     fold: max
--     help: Time since the oldest PENDING flow run of a work pool and queue entered its current state (no sample when none is pending), in seconds.
--     value: oldest_age_seconds
--     labels: [work_pool, work_queue]
--   - name: prefect_db_pending_runs_stale
--     type: gauge
--     help: PENDING flow runs per work pool and queue that entered their state more than pending_stale_seconds ago (default 600), in runs.
--     value: stale
--     labels: [work_pool, work_queue]
--   - name: prefect_db_pending_runs_never_started
--     type: gauge
--     help: Stale PENDING flow runs per work pool and queue whose infrastructure was never reported (infrastructure_pid not set), in runs.
--     value: never_started
--     labels: [work_pool, work_queue]
WITH settings AS (
    SELECT now() - make_interval(secs => coalesce(
               nullif(current_setting('prefect_db_exporter.pending_stale_seconds', true), '')::float8,
               600)) AS stale_before
),
pending AS (
    -- ix_flow_run__state_type: only PENDING runs are read.
    SELECT fr.work_queue_id,
           count(*) AS runs,
           extract(epoch FROM now() - least(min(fr.state_timestamp), now()))::float8 AS oldest_age_seconds,
           count(*) FILTER (WHERE fr.state_timestamp < st.stale_before) AS stale,
           count(*) FILTER (WHERE fr.state_timestamp < st.stale_before
                              AND fr.infrastructure_pid IS NULL) AS never_started
    FROM flow_run AS fr
    CROSS JOIN settings AS st
    WHERE fr.state_type = 'PENDING'
    GROUP BY fr.work_queue_id
)
SELECT wp.name AS work_pool,
       wq.name AS work_queue,
       coalesce(p.runs, 0) AS runs,
       p.oldest_age_seconds,
       coalesce(p.stale, 0) AS stale,
       coalesce(p.never_started, 0) AS never_started
FROM work_queue AS wq
JOIN work_pool AS wp ON wp.id = wq.work_pool_id
LEFT JOIN pending AS p ON p.work_queue_id = wq.id
UNION ALL
SELECT '', '', p.runs, p.oldest_age_seconds, p.stale, p.never_started
FROM pending AS p
WHERE p.work_queue_id IS NULL;
