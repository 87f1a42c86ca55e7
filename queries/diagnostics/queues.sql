-- description: Every work queue with what decides whether its runs start (paused flags, concurrency limits against active runs, last poll, live workers of its pool, deployments, and its late runs (count, worst lateness, the first ten ids and names)).
-- timeout: 2s
-- requires:
--   tables: [flow_run, work_queue, work_pool, worker, deployment]
--   columns: {worker: [heartbeat_interval_seconds]}
WITH settings AS (
    SELECT now() - make_interval(secs => coalesce(
               nullif(current_setting('prefect_db_exporter.late_after_seconds', true), '')::float8,
               15)) AS late_before,
           coalesce(nullif(current_setting('prefect_db_exporter.worker_offline_multiple', true), '')::float8,
                    3) AS offline_multiple
),
active AS (
    -- ix_flow_run__state_type: RUNNING and PENDING hold the slots, as Prefect's poll counts them.
    SELECT fr.work_queue_id, count(*) AS runs
    FROM flow_run AS fr
    WHERE fr.state_type IN ('RUNNING', 'PENDING')
    GROUP BY fr.work_queue_id
),
late AS (
    SELECT fr.id,
           fr.name,
           fr.work_queue_id,
           coalesce(fr.next_scheduled_start_time, fr.expected_start_time) AS due
    FROM flow_run AS fr
    CROSS JOIN settings AS st
    WHERE fr.state_type = 'SCHEDULED'
      AND (fr.state_name = 'Late'
           OR (fr.state_name = 'Scheduled' AND fr.next_scheduled_start_time < st.late_before))
),
workers AS (
    SELECT w.work_pool_id,
           count(*) AS worker_rows,
           count(*) FILTER (WHERE w.last_heartbeat_time >= now() - make_interval(
                                secs => coalesce(w.heartbeat_interval_seconds, 30) * st.offline_multiple))
               AS live_workers
    FROM worker AS w
    CROSS JOIN settings AS st
    GROUP BY w.work_pool_id
)
SELECT wp.name AS work_pool,
       wq.name AS work_queue,
       wp.type AS pool_type,
       wp.is_paused AS pool_paused,
       wq.is_paused AS queue_paused,
       wp.concurrency_limit AS pool_limit,
       (SELECT coalesce(sum(a.runs), 0) FROM active AS a
        JOIN work_queue AS q ON q.id = a.work_queue_id
        WHERE q.work_pool_id = wp.id)::bigint AS pool_active,
       wq.concurrency_limit AS queue_limit,
       coalesce((SELECT a.runs FROM active AS a WHERE a.work_queue_id = wq.id), 0) AS queue_active,
       extract(epoch FROM now() - least(wq.last_polled, now()))::float8 AS last_polled_age_seconds,
       coalesce(w.worker_rows, 0) AS worker_rows,
       coalesce(w.live_workers, 0) AS live_workers,
       (SELECT count(*) FROM deployment AS d WHERE d.work_queue_id = wq.id) AS deployments,
       (SELECT count(*) FROM late AS l WHERE l.work_queue_id = wq.id) AS late_runs,
       (SELECT extract(epoch FROM now() - min(l.due))::float8 FROM late AS l
        WHERE l.work_queue_id = wq.id) AS max_lateness_seconds,
       ARRAY(SELECT l.id::text || ' ' || l.name FROM late AS l
             WHERE l.work_queue_id = wq.id ORDER BY l.due LIMIT 10) AS late_examples
FROM work_queue AS wq
JOIN work_pool AS wp ON wp.id = wq.work_pool_id
LEFT JOIN workers AS w ON w.work_pool_id = wp.id
ORDER BY wp.name, wq.priority, wq.name;
