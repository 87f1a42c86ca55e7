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
    -- deployment is small (one row per deployment) and has no index on status: read it whole.
    SELECT d.work_queue_id,
           d.status::text AS status,
           count(*) AS deployments,
           count(*) FILTER (WHERE d.paused) AS paused
    FROM deployment AS d
    GROUP BY 1, 2
),
queues AS (
    SELECT wq.id AS work_queue_id,
           wq.work_pool_id,
           wp.name AS work_pool,
           wq.name AS work_queue
    FROM work_queue AS wq
    JOIN work_pool AS wp ON wp.id = wq.work_pool_id
    UNION ALL
    SELECT NULL, NULL, '', ''
    WHERE EXISTS (SELECT 1 FROM counts WHERE work_queue_id IS NULL)
)
SELECT q.work_pool,
       q.work_queue,
       s.status,
       coalesce(c.deployments, 0) AS deployments,
       NULL::bigint AS paused,
       NULL::bigint AS updates_per_poll
FROM queues AS q
CROSS JOIN (VALUES ('READY'), ('NOT_READY')) AS s (status)
LEFT JOIN counts AS c ON c.work_queue_id IS NOT DISTINCT FROM q.work_queue_id AND c.status = s.status
UNION ALL
SELECT q.work_pool,
       q.work_queue,
       NULL,
       NULL,
       coalesce((SELECT sum(c.paused) FROM counts AS c
                 WHERE c.work_queue_id IS NOT DISTINCT FROM q.work_queue_id), 0)::bigint,
       NULL
FROM queues AS q
UNION ALL
SELECT wp.name,
       NULL,
       NULL,
       NULL,
       NULL,
       coalesce((SELECT sum(c.deployments)
                 FROM counts AS c
                 JOIN work_queue AS wq ON wq.id = c.work_queue_id
                 WHERE wq.work_pool_id = wp.id), 0)::bigint
FROM work_pool AS wp;
