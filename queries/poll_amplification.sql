-- description: Worker polls' deployment updates as pg_stat_statements counts them - statements and rows - so that rows per poll measures the update amplification (prefect#23129).
-- ttl: 30s
-- timeout: 2s
-- requires:
--   tables: [pg_stat_statements]
-- metrics:
--   - name: prefect_db_deployment_poll_updates_total
--     type: counter
--     help: Executions of the worker poll's UPDATE deployment SET last_polled statement (all three shapes, Prefect 2.18.1 to 3.9) that pg_stat_statements has recorded in this database, in statements.
--     value: calls
--   - name: prefect_db_deployment_poll_updated_rows_total
--     type: counter
--     help: Deployment rows those statements updated; divided by prefect_db_deployment_poll_updates_total it is the rows each poll rewrites whether anything changed or not, in rows.
--     value: updated_rows
--
-- # Every worker poll rewrites last_polled, status and (until 3.6.10) updated of every deployment of
-- # the polled queues - unconditionally, still in 3.9.1 (prefect#23129; PR #23130 would skip recently
-- # polled rows). The statement has three shapes: `UPDATE deployment SET last_polled=..., status=...,
-- # updated=CURRENT_TIMESTAMP|now() WHERE ... OR deployment.work_queue_id IN (...)` (2.18.1 to 3.6.10),
-- # the same with `updated=deployment.updated` (3.6.11+, #19936), and `WITH locked AS (SELECT ... FOR
-- # UPDATE) UPDATE deployment SET last_polled=...` (3.7.0+, #21792). The foreman's updates by id set
-- # status only. pg_stat_statements keeps a bounded number of statements (pg_stat_statements.max);
-- # an evicted entry restarts its counters, which rate() treats as a counter reset.
SELECT coalesce(sum(s.calls), 0)::float8 AS calls,
       coalesce(sum(s.rows), 0)::float8 AS updated_rows
FROM pg_stat_statements AS s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (s.query LIKE 'UPDATE deployment SET last_polled=%'
       OR (s.query LIKE 'WITH locked AS%' AND s.query LIKE '%UPDATE deployment SET last_polled=%'));
