-- description: RUNNING flow runs per work pool and queue, and how long ago each last sent a heartbeat event.
-- ttl: 5s
-- timeout: 5s
-- requires:
--   tables: [flow_run, work_queue, work_pool, events]
-- metrics:
--   - name: prefect_db_running_runs
--     type: gauge
--     help: Flow runs in a RUNNING state per work pool and queue (both empty for runs without a work queue), in runs.
--     value: runs
--     labels: [work_pool, work_queue]
--   - name: prefect_db_running_runs_oldest_age_seconds
--     type: gauge
--     fold: max
--     help: Time since the longest-running RUNNING flow run of a work pool and queue entered its state (no sample when none runs), in seconds.
--     value: oldest_age_seconds
--     labels: [work_pool, work_queue]
--   - name: prefect_db_running_runs_heartbeat_stale
--     type: gauge
--     help: RUNNING flow runs per work pool and queue silent since their last heartbeat (or start of running, if later) for three heartbeats of their own cadence (the longest gap between their last three heartbeat events, at least 20 s) or for heartbeat_stale_seconds (default 600), whichever is shorter; runs with fewer than two heartbeats by heartbeat_stale_seconds alone (no sample while no heartbeat exists within heartbeat_lookback_seconds), in runs.
--     value: heartbeat_stale
--     labels: [work_pool, work_queue]
--   - name: prefect_db_running_runs_oldest_heartbeat_age_seconds
--     type: gauge
--     fold: max
--     help: Largest time since the last heartbeat (or start of running, if later or without heartbeat) among RUNNING flow runs of a work pool and queue (no sample while no heartbeat exists within heartbeat_lookback_seconds), in seconds.
--     value: oldest_heartbeat_age_seconds
--     labels: [work_pool, work_queue]
--   - name: prefect_db_running_runs_without_heartbeat
--     type: gauge
--     help: RUNNING flow runs per work pool and queue that have not sent any heartbeat event since they entered RUNNING (no sample while no heartbeat exists within heartbeat_lookback_seconds), in runs.
--     value: without_heartbeat
--     labels: [work_pool, work_queue]
--   - name: prefect_db_flow_run_heartbeats_present
--     type: gauge
--     help: Whether any prefect.flow-run.heartbeat event occurred within heartbeat_lookback_seconds (default 3600), 1 or 0 (heartbeats need Prefect 3.1.8+ and are off by default before 3.6.22).
--     value: heartbeats_present
--   - name: prefect_db_flow_run_last_heartbeat_age_seconds
--     type: gauge
--     fold: max
--     help: Time since the most recent flow run heartbeat event of any run (no sample when the events table holds none), in seconds.
--     value: last_heartbeat_age_seconds
WITH settings AS (
    SELECT coalesce(nullif(current_setting('prefect_db_exporter.heartbeat_stale_seconds', true), '')::float8,
                    600) AS stale_seconds,
           coalesce(nullif(current_setting('prefect_db_exporter.heartbeat_lookback_seconds', true), '')::float8,
                    3600) AS lookback_seconds
),
latest AS (
    -- ix_events__event_occurred_id, backwards: one index entry.
    SELECT max(e.occurred) AS occurred
    FROM events AS e
    WHERE e.event = 'prefect.flow-run.heartbeat'
),
present AS (
    SELECT coalesce(l.occurred > now() - make_interval(secs => st.lookback_seconds), false) AS present,
           extract(epoch FROM now() - CASE WHEN l.occurred > now() THEN now() ELSE l.occurred END)::float8
               AS last_age
    FROM latest AS l
    CROSS JOIN settings AS st
),
running AS (
    -- ix_flow_run__state_type for the RUNNING runs, then per run one backward probe of
    -- ix_events__event_resource_id_occurred that stops after its last three heartbeats (LIMIT 3
    -- above the window: at most three index entries per run, whatever the events table holds).
    SELECT fr.work_queue_id,
           fr.state_timestamp AS entered,
           hb.occurred AS heartbeat,
           hb.cadence
    FROM flow_run AS fr
    LEFT JOIN LATERAL (
        -- The run's own cadence is the longest of its last two gaps (jitter and a slow API count
        -- against it, not for it); NULL with fewer than two heartbeats.
        SELECT max(h.occurred) AS occurred,
               max(h.gap) AS cadence
        FROM (
            SELECT e.occurred,
                   extract(epoch FROM lag(e.occurred) OVER (ORDER BY e.occurred DESC) - e.occurred)::float8
                       AS gap
            FROM events AS e
            WHERE e.event = 'prefect.flow-run.heartbeat'
              AND e.resource_id = 'prefect.flow-run.' || fr.id::text
            ORDER BY e.occurred DESC
            LIMIT 3
        ) AS h
    ) AS hb ON true
    WHERE fr.state_type = 'RUNNING'
),
judged AS (
    -- Stale after three missed heartbeats of the run's own cadence (Prefect's zombie automation
    -- waits as long), and never later than heartbeat_stale_seconds, which alone judges runs with
    -- fewer than two heartbeats (no cadence to learn). The 20 s floor keeps quick heartbeats from
    -- paging on the event persister's batching lag.
    SELECT r.work_queue_id,
           r.entered,
           r.heartbeat,
           greatest(r.heartbeat, r.entered)
               < now() - make_interval(secs => CASE WHEN r.cadence > 0
                                                    THEN least(3 * greatest(r.cadence, 20), st.stale_seconds)
                                                    ELSE st.stale_seconds END) AS stale
    FROM running AS r
    CROSS JOIN settings AS st
),
per_queue AS (
    -- Runs without a queue get the nil UUID as key, so that the join below is a plain (hashable) equality.
    SELECT coalesce(j.work_queue_id, '00000000-0000-0000-0000-000000000000'::uuid) AS work_queue_id,
           count(*) AS runs,
           extract(epoch FROM now() - least(min(j.entered), now()))::float8 AS oldest_age_seconds,
           count(*) FILTER (WHERE j.stale) AS heartbeat_stale,
           extract(epoch FROM now() - least(min(greatest(j.heartbeat, j.entered)), now()))::float8
               AS oldest_heartbeat_age_seconds,
           count(*) FILTER (WHERE j.heartbeat IS NULL OR j.heartbeat < j.entered) AS without_heartbeat
    FROM judged AS j
    GROUP BY 1
),
queues AS (
    SELECT wq.id AS work_queue_id,
           wp.name AS work_pool,
           wq.name AS work_queue
    FROM work_queue AS wq
    JOIN work_pool AS wp ON wp.id = wq.work_pool_id
    UNION ALL
    SELECT '00000000-0000-0000-0000-000000000000'::uuid, '', ''
    WHERE EXISTS (SELECT 1 FROM per_queue WHERE work_queue_id = '00000000-0000-0000-0000-000000000000'::uuid)
)
SELECT q.work_pool,
       q.work_queue,
       coalesce(pq.runs, 0) AS runs,
       pq.oldest_age_seconds,
       CASE WHEN p.present THEN coalesce(pq.heartbeat_stale, 0) END AS heartbeat_stale,
       CASE WHEN p.present THEN pq.oldest_heartbeat_age_seconds END AS oldest_heartbeat_age_seconds,
       CASE WHEN p.present THEN coalesce(pq.without_heartbeat, 0) END AS without_heartbeat,
       NULL::int AS heartbeats_present,
       NULL::float8 AS last_heartbeat_age_seconds
FROM queues AS q
CROSS JOIN present AS p
LEFT JOIN per_queue AS pq ON pq.work_queue_id = q.work_queue_id
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       CASE WHEN p.present THEN 1 ELSE 0 END,
       p.last_age
FROM present AS p;
