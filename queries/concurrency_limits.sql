-- description: Active global concurrency limits (tag, deployment and named limits) with their slots in use, decayed as Prefect decays them.
-- timeout: 5s
-- requires:
--   tables: [concurrency_limit_v2, deployment, flow]
-- metrics:
--   - name: prefect_db_concurrency_limit_slots
--     type: gauge
--     help: Slots of the active global concurrency limit (deployment limits named deployment:<flow>/<deployment>), in slots.
--     value: slots
--     labels: [name]
--   - name: prefect_db_concurrency_limit_active_slots
--     type: gauge
--     help: Slots of the active global concurrency limit in use now, after the slot decay Prefect applies to rate limits, in slots.
--     value: active_slots
--     labels: [name]
--   - name: prefect_db_concurrency_limit_denied_slots
--     type: gauge
--     help: Slot requests recently denied by the active global concurrency limit, as stored (Prefect decays it at the next acquisition), in slots.
--     value: denied_slots
--     labels: [name]
--   - name: prefect_db_concurrency_limit_slot_decay_per_second
--     type: gauge
--     help: Slots the active global concurrency limit frees per second (above 0 only for rate limits), in slots per second.
--     value: slot_decay_per_second
--     labels: [name]
WITH limits AS (
    SELECT cl.*,
           -- deployment:<uuid>: dashes where a UUID has them and hex digits everywhere else (a
           -- regular expression costs ten times as much per row).
           CASE WHEN cl.name LIKE 'deployment:________-____-____-____-____________'
                 AND translate(substr(cl.name, 12), '0123456789abcdefABCDEF', '') = '----'
                THEN substr(cl.name, 12)::uuid
           END AS deployment_id
    FROM concurrency_limit_v2 AS cl
    WHERE cl.active
)
SELECT coalesce('deployment:' || f.name || '/' || d.name, l.name) AS name,
       l."limit" AS slots,
       greatest(0, l.active_slots - floor(l.slot_decay_per_second
                                          * extract(epoch FROM now() - l.updated)))::float8 AS active_slots,
       l.denied_slots,
       l.slot_decay_per_second
FROM limits AS l
LEFT JOIN deployment AS d ON d.id = l.deployment_id
LEFT JOIN flow AS f ON f.id = d.flow_id;
