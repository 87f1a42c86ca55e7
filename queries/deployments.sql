-- description: Deployments per work queue and stored status, and how many deployment rows one worker poll of a pool rewrites.
-- ttl: 60s
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
--
-- # The one collector that reads every deployment row: the stored status has no index in any release
-- # up to 3.9.1, and it is near the end of a wide row (status, paused and last_polled were added by
-- # migrations after the jsonb columns), so each row is decoded almost whole (24 ms of server time
-- # at 50,000 deployments on the benchmark machine). Counting by ix_deployment__work_queue_id
-- # instead would still visit every row for its status, and in random order; polls rewrite these
-- # rows constantly, so an index-only count would not stay index-only either. Hence the longer TTL:
-- # these counts change when deployments are created or deleted and when a queue's deployments
-- # change status (on a poll, or when the foreman marks them), and the signal that needs to be quick
-- # - READY rows the foreman should have marked - is the foreman collector's, every 15 s, from the
-- # stale queues only. The one alert reading this collector (PrefectWorkerPollContention) waits 15
-- # minutes.
WITH counts AS (
    -- deployment has no index on status: read it whole, once.
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
