-- description: Concurrency slots held with nobody to hold them - deployment and tag limits' active_slots against the runs that can hold them - and flow runs waiting in AwaitingConcurrencySlot (prefect#17415, #22597).
-- timeout: 5s
-- requires:
--   tables: [concurrency_limit_v2, deployment, flow, flow_run, task_run, work_queue, work_pool]
--   columns: {deployment: [concurrency_limit_id], task_run: [tags, state_type]}
-- metrics:
--   - name: prefect_db_concurrency_limit_slot_holders
--     type: gauge
--     help: Runs that can hold slots of an active concurrency limit now - for a deployment limit its PENDING, RUNNING and CANCELLING flow runs, for a tag:<tag> limit the RUNNING task runs with the tag (no sample for other limits, whose holders the database does not record, nor for rate limits), in runs.
--     value: holders
--     labels: [name]
--   - name: prefect_db_concurrency_limit_leaked_slots
--     type: gauge
--     help: Slots of a deployment or tag concurrency limit in use beyond the runs that can hold them (active_slots minus holders, at least 0) - slots nobody will release until their lease expires or someone resets the limit, in slots.
--     value: leaked_slots
--     labels: [name]
--   - name: prefect_db_awaiting_concurrency_slot_runs
--     type: gauge
--     help: Flow runs waiting for a concurrency slot (SCHEDULED, named AwaitingConcurrencySlot) per work pool and queue, in runs.
--     value: awaiting_runs
--     labels: [work_pool, work_queue]
--   - name: prefect_db_awaiting_concurrency_slot_oldest_seconds
--     type: gauge
--     fold: max
--     help: Time since the expected start of the flow run that has waited longest for a concurrency slot (no sample when none waits), per work pool and queue, in seconds.
--     value: oldest_seconds
--     labels: [work_pool, work_queue]
--
-- # Slots are taken when a run is proposed PENDING (deployment limits) or RUNNING (tag limits) and
-- # given back on the way out; a crash between the two leaves them taken - "zombie" slots (prefect#17415,
-- # leases since 3.4; #23183 a release that does not wake the waiters) - and repeatable read made the
-- # bookkeeping fail outright (active_slots 4 while 1,500 runs RUNNING and 2,800 waiting, prefect#22597).
-- # Deployment concurrency (deployment.concurrency_limit_id) is 3.x only: on 2.x this is skipped.
-- # Holders are counted from the non-terminal runs only (ix_flow_run__state_type, ix_task_run__state_type).
WITH limits AS (
    SELECT cl.id, cl.name, cl."limit", cl.slot_decay_per_second,
           greatest(0, cl.active_slots - floor(cl.slot_decay_per_second
                                               * extract(epoch FROM now() - cl.updated))) AS active_slots,
           -- Prefect names a deployment's limit deployment:<deployment id> (models/deployments.py, 3.0.3
           -- to 3.9.1): the deployment is then one pk_deployment probe, where a join on
           -- deployment.concurrency_limit_id (no index) would read every deployment row. Dashes where a
           -- UUID has them and hex digits elsewhere, as in concurrency_limits.
           CASE WHEN cl.name LIKE 'deployment:________-____-____-____-____________'
                 AND translate(substr(cl.name, 12), '0123456789abcdefABCDEF', '') = '----'
                THEN substr(cl.name, 12)::uuid
           END AS deployment_id
    FROM concurrency_limit_v2 AS cl
    WHERE cl.active AND cl.slot_decay_per_second = 0
),
deployment_holders AS (
    SELECT fr.deployment_id, count(*) AS holders
    FROM flow_run AS fr
    WHERE fr.state_type IN ('PENDING', 'RUNNING', 'CANCELLING')
      AND fr.deployment_id IS NOT NULL
    GROUP BY fr.deployment_id
),
tag_limits AS (
    SELECT l.id, substr(l.name, 5) AS tag FROM limits AS l WHERE l.name LIKE 'tag:%'
),
tag_holders AS (
    SELECT t.id, count(tr.id) AS holders
    FROM tag_limits AS t
    LEFT JOIN task_run AS tr ON tr.state_type = 'RUNNING' AND tr.tags ? t.tag
    GROUP BY t.id
),
held AS (
    SELECT coalesce('deployment:' || f.name || '/' || d.name, l.name) AS name,
           l.active_slots,
           CASE WHEN d.id IS NOT NULL THEN coalesce(dh.holders, 0) ELSE th.holders END AS holders
    FROM limits AS l
    LEFT JOIN deployment AS d ON d.id = l.deployment_id AND d.concurrency_limit_id = l.id
    LEFT JOIN flow AS f ON f.id = d.flow_id
    LEFT JOIN deployment_holders AS dh ON dh.deployment_id = d.id
    LEFT JOIN tag_holders AS th ON th.id = l.id
),
awaiting AS (
    -- ix_flow_run__state_type: only SCHEDULED runs are read.
    SELECT fr.work_queue_id,
           count(*) AS runs,
           min(coalesce(fr.expected_start_time, fr.state_timestamp)) AS earliest
    FROM flow_run AS fr
    WHERE fr.state_type = 'SCHEDULED' AND fr.state_name = 'AwaitingConcurrencySlot'
    GROUP BY fr.work_queue_id
)
SELECT h.name,
       NULL::text AS work_pool,
       NULL::text AS work_queue,
       h.holders,
       CASE WHEN h.holders IS NOT NULL THEN greatest(0, h.active_slots - h.holders) END AS leaked_slots,
       NULL::bigint AS awaiting_runs,
       NULL::float8 AS oldest_seconds
FROM held AS h
UNION ALL
SELECT NULL, wp.name, wq.name, NULL, NULL, coalesce(a.runs, 0),
       extract(epoch FROM now() - a.earliest)::float8
FROM work_queue AS wq
JOIN work_pool AS wp ON wp.id = wq.work_pool_id
LEFT JOIN awaiting AS a ON a.work_queue_id = wq.id
UNION ALL
SELECT NULL, '', '', NULL, NULL, a.runs, extract(epoch FROM now() - a.earliest)::float8
FROM awaiting AS a
WHERE a.work_queue_id IS NULL;
