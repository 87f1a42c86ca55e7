-- description: Work queue polling age, stored status, pause flag, concurrency limit and the runs that occupy it.
-- timeout: 5s
-- requires:
--   tables: [work_queue, work_pool, flow_run]
--   columns: {work_queue: [status, last_polled]}
-- metrics:
--   - name: prefect_db_work_queue_last_polled_age_seconds
--     type: gauge
--     fold: max
--     help: Time since a worker last polled the work queue (no sample when never polled), in seconds.
--     value: last_polled_age_seconds
--     labels: [work_pool, work_queue]
--   - name: prefect_db_work_queue_status
--     type: gauge
--     help: Status of the work queue as stored by Prefect (1 for the current status, 0 for the others; it lags up to the foreman loop), as a flag.
--     value: is_status
--     labels: [work_pool, work_queue, status]
--   - name: prefect_db_work_queue_paused
--     type: gauge
--     help: Whether the work queue is paused, 1 or 0.
--     value: paused
--     labels: [work_pool, work_queue]
--   - name: prefect_db_work_queue_concurrency_limit
--     type: gauge
--     help: Concurrency limit of the work queue (no sample when unlimited), in runs.
--     value: concurrency_limit
--     labels: [work_pool, work_queue]
--   - name: prefect_db_work_queue_active_runs
--     type: gauge
--     help: Flow runs of the work queue in RUNNING or PENDING states, which occupy its concurrency slots, in runs.
--     value: active_runs
--     labels: [work_pool, work_queue]
--   - name: prefect_db_work_queue_priority
--     type: gauge
--     help: Priority of the work queue within its pool (1 is polled first), as a number.
--     value: priority
--     labels: [work_pool, work_queue]
WITH active AS (
    -- ix_flow_run__state_type: only RUNNING and PENDING runs are read, as Prefect's poll does.
    SELECT fr.work_queue_id,
           count(*) AS runs
    FROM flow_run AS fr
    WHERE fr.state_type IN ('RUNNING', 'PENDING')
    GROUP BY fr.work_queue_id
),
queues AS (
    SELECT wq.id,
           wp.name AS work_pool,
           wq.name AS work_queue,
           wq.status::text AS status,
           extract(epoch FROM now() - CASE WHEN wq.last_polled > now() THEN now() ELSE wq.last_polled END
                   )::float8 AS last_polled_age_seconds,
           CASE WHEN wq.is_paused THEN 1 ELSE 0 END AS paused,
           wq.concurrency_limit,
           coalesce(a.runs, 0) AS active_runs,
           wq.priority
    FROM work_queue AS wq
    JOIN work_pool AS wp ON wp.id = wq.work_pool_id
    LEFT JOIN active AS a ON a.work_queue_id = wq.id
)
SELECT q.work_pool,
       q.work_queue,
       NULL::text AS status,
       NULL::int AS is_status,
       q.last_polled_age_seconds,
       q.paused,
       q.concurrency_limit,
       q.active_runs,
       q.priority
FROM queues AS q
UNION ALL
SELECT q.work_pool,
       q.work_queue,
       s.status,
       CASE WHEN q.status = s.status THEN 1 ELSE 0 END,
       NULL, NULL, NULL, NULL, NULL
FROM queues AS q
CROSS JOIN (VALUES ('READY'), ('NOT_READY'), ('PAUSED')) AS s (status);
