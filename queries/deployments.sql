-- description: Deployments per work queue and stored status, and how many deployment rows one worker poll of a pool rewrites.
-- timeout: 5s
-- requires:
--   tables: [deployment, work_queue, work_pool]
--   columns: {deployment: [status, work_queue_id]}
-- metrics:
--   - name: prefect_db_deployments
--     type: gauge
--     help: Deployments per work pool, work queue (both empty for deployments without a queue) and status stored by Prefect, in deployments.
--     value: deployments
--     labels: [work_pool, work_queue, status]
--   - name: prefect_db_deployments_paused
--     type: gauge
--     help: Paused deployments per work pool and work queue (both empty for deployments without a queue), in deployments.
--     value: paused
--     labels: [work_pool, work_queue]
--   - name: prefect_db_deployment_updates_per_poll
--     type: gauge
--     help: Deployment rows that one worker poll of all queues of the work pool rewrites (its UPDATE of deployment.last_polled covers every deployment of the polled queues on Prefect 2.18.1 to 3.9), in rows.
--     value: updates_per_poll
--     labels: [work_pool]
WITH counts AS (
    -- deployment is small (one row per deployment) and has no index on status: read it whole, once.
    SELECT d.work_queue_id,
           count(*) FILTER (WHERE d.status = 'READY') AS ready,
           count(*) FILTER (WHERE d.status = 'NOT_READY') AS not_ready,
           count(*) FILTER (WHERE d.paused) AS paused,
           count(*) AS total
    FROM deployment AS d
    GROUP BY d.work_queue_id
),
queues AS (
    -- Plain equality joins (hashable), the deployments without a queue as one extra row.
    SELECT wq.id AS work_queue_id,
           wq.work_pool_id,
           wp.name AS work_pool,
           wq.name AS work_queue,
           coalesce(c.ready, 0) AS ready,
           coalesce(c.not_ready, 0) AS not_ready,
           coalesce(c.paused, 0) AS paused,
           coalesce(c.total, 0) AS total
    FROM work_queue AS wq
    JOIN work_pool AS wp ON wp.id = wq.work_pool_id
    LEFT JOIN counts AS c ON c.work_queue_id = wq.id
    UNION ALL
    SELECT NULL, NULL, '', '', c.ready, c.not_ready, c.paused, c.total
    FROM counts AS c
    WHERE c.work_queue_id IS NULL
)
SELECT q.work_pool,
       q.work_queue,
       s.status,
       s.deployments,
       NULL::bigint AS paused,
       NULL::bigint AS updates_per_poll
FROM queues AS q
CROSS JOIN LATERAL (VALUES ('READY', q.ready), ('NOT_READY', q.not_ready)) AS s (status, deployments)
UNION ALL
SELECT q.work_pool, q.work_queue, NULL, NULL, q.paused, NULL
FROM queues AS q
UNION ALL
SELECT wp.name, NULL, NULL, NULL, NULL, coalesce(sum(q.total), 0)::bigint
FROM work_pool AS wp
LEFT JOIN queues AS q ON q.work_pool_id = wp.id
GROUP BY wp.id, wp.name;
