-- description: RUNNING flow runs whose last heartbeat (or start of running, if later or without heartbeat) is older than heartbeat_stale_seconds (default 600), with their heartbeat cadence; empty while no heartbeat exists within heartbeat_lookback_seconds (default 3600). Returns run ids and names.
-- timeout: 2s
-- requires:
--   tables: [flow_run, work_queue, work_pool, events]
WITH settings AS (
    SELECT coalesce(nullif(current_setting('prefect_db_exporter.heartbeat_stale_seconds', true), '')::float8,
                    600) AS stale_seconds,
           coalesce(nullif(current_setting('prefect_db_exporter.heartbeat_lookback_seconds', true), '')::float8,
                    3600) AS lookback_seconds
),
present AS (
    -- ix_events__event_occurred_id, backwards: one index entry.
    SELECT coalesce(max(e.occurred) > now() - make_interval(secs => st.lookback_seconds), false) AS present
    FROM events AS e
    CROSS JOIN settings AS st
    WHERE e.event = 'prefect.flow-run.heartbeat'
    GROUP BY st.lookback_seconds
),
running AS (
    -- ix_flow_run__state_type, then per run a backward probe of ix_events__event_resource_id_occurred
    -- for its last three heartbeats (the cadence is the mean gap between them).
    SELECT fr.id,
           fr.name,
           fr.work_queue_id,
           fr.infrastructure_pid,
           fr.state_timestamp AS entered,
           hb.last_heartbeat,
           hb.cadence_seconds
    FROM flow_run AS fr
    LEFT JOIN LATERAL (
        SELECT max(h.occurred) AS last_heartbeat,
               CASE WHEN count(*) > 1
                    THEN extract(epoch FROM max(h.occurred) - min(h.occurred))::float8 / (count(*) - 1)
               END AS cadence_seconds
        FROM (
            SELECT e.occurred
            FROM events AS e
            WHERE e.event = 'prefect.flow-run.heartbeat'
              AND e.resource_id = 'prefect.flow-run.' || fr.id::text
            ORDER BY e.occurred DESC
            LIMIT 3
        ) AS h
    ) AS hb ON true
    WHERE fr.state_type = 'RUNNING'
)
SELECT r.id::text AS run_id,
       r.name AS run_name,
       coalesce(wp.name, '') AS work_pool,
       coalesce(wq.name, '') AS work_queue,
       r.infrastructure_pid,
       extract(epoch FROM now() - r.entered)::float8 AS running_seconds,
       extract(epoch FROM now() - r.last_heartbeat)::float8 AS last_heartbeat_age_seconds,
       r.cadence_seconds
FROM running AS r
CROSS JOIN settings AS st
JOIN present AS p ON p.present
LEFT JOIN work_queue AS wq ON wq.id = r.work_queue_id
LEFT JOIN work_pool AS wp ON wp.id = wq.work_pool_id
WHERE greatest(r.last_heartbeat, r.entered) < now() - make_interval(secs => st.stale_seconds)
ORDER BY greatest(r.last_heartbeat, r.entered)
LIMIT 500;
