-- description: Work pool stored status, pause flag, concurrency limit and the runs that occupy it.
-- ttl: 5s
-- timeout: 5s
-- requires:
--   tables: [work_pool, work_queue, flow_run]
--   columns: {work_pool: [status]}
-- metrics:
--   - name: prefect_db_work_pool_status
--     type: gauge
--     help: Status of the work pool as stored by Prefect (1 for the current status, 0 for the others; it lags up to the foreman loop), as a flag.
--     value: is_status
--     labels: [work_pool, status]
--   - name: prefect_db_work_pool_paused
--     type: gauge
--     help: Whether the work pool is paused, 1 or 0.
--     value: paused
--     labels: [work_pool]
--   - name: prefect_db_work_pool_concurrency_limit
--     type: gauge
--     help: Concurrency limit of the work pool (no sample when unlimited), in runs.
--     value: concurrency_limit
--     labels: [work_pool]
--   - name: prefect_db_work_pool_active_runs
--     type: gauge
--     help: Flow runs of the work pool's unpaused queues in RUNNING or PENDING states, which occupy its concurrency slots as Prefect counts them, in runs.
--     value: active_runs
--     labels: [work_pool]
--   - name: prefect_db_work_pool_queues
--     type: gauge
--     help: Work queues defined in the work pool, in queues.
--     value: queues
--     labels: [work_pool]
--   - name: prefect_db_work_pool_waiting_runs
--     type: gauge
--     help: Flow runs of the work pool's unpaused queues that wait for a worker now, PENDING or SCHEDULED with their start time reached, in runs.
--     value: waiting_runs
--     labels: [work_pool]
WITH active AS (
    -- ix_flow_run__state_type: only RUNNING and PENDING runs are read, as Prefect's poll does.
    SELECT wq.work_pool_id,
           count(*) AS runs
    FROM flow_run AS fr
    JOIN work_queue AS wq ON wq.id = fr.work_queue_id
    -- Like Prefect's own slot count, runs of paused queues do not count against the pool's limit.
    WHERE fr.state_type IN ('RUNNING', 'PENDING')
      AND wq.is_paused IS FALSE
    GROUP BY wq.work_pool_id
),
waiting AS (
    -- What a pool without workers leaves undone right now: claimed runs whose infrastructure never
    -- reported, and runs that are due. ix_flow_run__state_type (PENDING) and
    -- ix_flow_run__next_scheduled_start_time_asc (due SCHEDULED runs): future runs are not read.
    SELECT wq.work_pool_id,
           count(*) AS runs
    FROM flow_run AS fr
    JOIN work_queue AS wq ON wq.id = fr.work_queue_id
    WHERE (fr.state_type = 'PENDING'
           OR (fr.state_type = 'SCHEDULED' AND fr.next_scheduled_start_time <= now()))
      AND wq.is_paused IS FALSE
    GROUP BY wq.work_pool_id
),
pools AS (
    SELECT wp.name AS work_pool,
           wp.status::text AS status,
           CASE WHEN wp.is_paused THEN 1 ELSE 0 END AS paused,
           wp.concurrency_limit,
           coalesce(a.runs, 0) AS active_runs,
           coalesce(w.runs, 0) AS waiting_runs,
           (SELECT count(*) FROM work_queue AS wq WHERE wq.work_pool_id = wp.id) AS queues
    FROM work_pool AS wp
    LEFT JOIN active AS a ON a.work_pool_id = wp.id
    LEFT JOIN waiting AS w ON w.work_pool_id = wp.id
)
SELECT p.work_pool,
       NULL::text AS status,
       NULL::int AS is_status,
       p.paused,
       p.concurrency_limit,
       p.active_runs,
       p.queues,
       p.waiting_runs
FROM pools AS p
UNION ALL
SELECT p.work_pool,
       s.status,
       CASE WHEN p.status = s.status THEN 1 ELSE 0 END,
       NULL, NULL, NULL, NULL, NULL
FROM pools AS p
CROSS JOIN (VALUES ('READY'), ('NOT_READY'), ('PAUSED')) AS s (status);
