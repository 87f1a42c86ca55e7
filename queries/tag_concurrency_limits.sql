-- description: Task-run tag concurrency limits of the v1 table (until Prefect 3.4.19 moved them into global concurrency limits named tag:<tag>).
-- timeout: 5s
-- requires:
--   tables: [concurrency_limit]
-- metrics:
--   - name: prefect_db_tag_concurrency_limit_slots
--     type: gauge
--     help: Slots of the task-run tag concurrency limit (name tag:<tag>), in slots.
--     value: slots
--     labels: [name]
--   - name: prefect_db_tag_concurrency_limit_active_slots
--     type: gauge
--     help: Slots of the task-run tag concurrency limit held by task runs now, in slots.
--     value: active_slots
--     labels: [name]
SELECT 'tag:' || cl.tag AS name,
       cl.concurrency_limit AS slots,
       CASE WHEN jsonb_typeof(cl.active_slots) = 'array' THEN jsonb_array_length(cl.active_slots) END
           AS active_slots
FROM concurrency_limit AS cl;
