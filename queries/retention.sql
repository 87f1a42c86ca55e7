-- description: Whether Prefect's retention keeps up - the age of the oldest events, event_resources and terminal top-level flow_run row, read through indexes only (prefect#20746, #22874, #23079).
-- ttl: 60s
-- timeout: 5s
-- requires:
--   tables: [events, event_resources, flow_run]
--   columns: {events: [occurred], event_resources: [occurred], flow_run: [end_time, parent_task_run_id]}
-- metrics:
--   - name: prefect_db_retention_oldest_row_age_seconds
--     type: gauge
--     fold: max
--     help: Age of the oldest row of a Prefect table (relation events and event_resources by occurred, against PREFECT_EVENTS_RETENTION_PERIOD, default 7 days; flow_run the oldest terminal top-level run by end_time, against db_vacuum's flow-run retention, default 90 days, when enabled). No sample for an empty table, nor for event_resources without a valid ix_event_resources__occurred index (Prefect before 3.7.5), which would take a full scan; in seconds.
--     value: oldest_age_seconds
--     labels: [relation]
--
-- # db_vacuum (3.6.19+, prefect#20746) deletes events and event_resources older than the events
-- # retention (7 d) every hour, and terminal top-level flow runs older than 90 d when flow_runs is
-- # enabled. At scale it falls behind (prefect#22874: an orphan-log anti-join per batch;
-- # prefect#23079: 357 M log rows), and an oldest row far older than the retention says so. Growth per
-- # day comes from prefect_db_table_inserts_total / _deletes_total (tables.sql), not from here.
-- # Every bound is a min() that PostgreSQL answers from one end of a btree index (ix_events__occurred,
-- # ix_event_resources__occurred, ix_flow_run__end_time_desc). event_resources has no such index before
-- # 3.7.5 (and a cancelled CONCURRENTLY build leaves it INVALID, fixed by 3.9's c8d5f2a71b3e), so its
-- # min() is only evaluated when a valid index exists; the CASE keeps the subquery from running.
SELECT 'events' AS relation,
       extract(epoch FROM now() - (SELECT min(e.occurred) FROM events AS e))::float8 AS oldest_age_seconds
UNION ALL
SELECT 'event_resources',
       CASE WHEN EXISTS (
                SELECT FROM pg_index AS i
                JOIN pg_class AS c ON c.oid = i.indexrelid
                JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                WHERE i.indrelid = to_regclass('event_resources')
                  AND i.indisvalid AND a.attname = 'occurred' AND c.relam = (
                      SELECT oid FROM pg_am WHERE amname = 'btree'))
            THEN extract(epoch FROM now() - (SELECT min(er.occurred) FROM event_resources AS er))::float8
       END
UNION ALL
SELECT 'flow_run',
       extract(epoch FROM now() - (
           SELECT min(fr.end_time)
           FROM flow_run AS fr
           WHERE fr.end_time IS NOT NULL
             AND fr.parent_task_run_id IS NULL
             AND fr.state_type IN ('COMPLETED', 'FAILED', 'CANCELLED', 'CRASHED')))::float8;
