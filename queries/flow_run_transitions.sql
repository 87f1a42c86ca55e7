-- description: Flow run state transitions per work pool and new state type, each committed flow_run_state row counted exactly once, whatever its commit delay up to max_commit_delay (10 min; see docs/collectors.md).
-- timeout: 5s
-- requires:
--   server_version_min: 130000  # pg_current_snapshot()
--   tables: [flow_run_state, flow_run, work_queue, work_pool]
-- mode: incremental
-- incremental:
--   key: id
--   cursor: updated
--   limit: 10000
-- metrics:
--   - name: prefect_db_flow_run_transitions_total
--     type: counter
--     help: Flow run state transitions since the exporter started, by work pool (empty for runs without a work queue) and the type of the state entered, in transitions.
--     labels: [work_pool, state_type]

-- One page of one pass (docs/collectors.md, "Incremental collectors"): the state rows from `since` on,
-- written by transactions from `min_xid` on, after the previous page's last row, in (updated, id)
-- order. Without the setting (as in psql): the last minute's rows.
WITH pass AS (
    SELECT coalesce((p ->> 'since')::timestamptz, now() - interval '1 minute') AS since,
           coalesce((p ->> 'min_xid')::numeric, 0) AS min_xid,
           (p ->> 'after_cursor')::timestamptz AS after_cursor,
           (p ->> 'after_key')::uuid AS after_key,
           -- The next transaction id of this query's snapshot: every row it sees has an older one.
           pg_snapshot_xmax(pg_current_snapshot())::text::numeric AS next_xid
    FROM (SELECT nullif(current_setting('prefect_db_exporter.incremental', true), '')::jsonb AS p) AS setting
),
candidate AS (
    SELECT s.id, s.updated, s.flow_run_id, s.type,
           -- xmin is the low 32 bits of the id of the transaction that wrote the row (0 to 2: frozen,
           -- long visible to all). The full id is the one below next_xid with those low bits at most
           -- 2^31 away, since PostgreSQL freezes every older row: exact across the 32-bit wraparound.
           CASE WHEN s.xmin::text::numeric >= 3 THEN
               p.next_xid - mod(mod(p.next_xid, 4294967296) - s.xmin::text::numeric + 4294967296, 4294967296)
           END AS xid
    FROM flow_run_state AS s  -- ix_flow_run_state__updated: the range from `since` on
    CROSS JOIN pass AS p
    -- A scalar subquery, not p's column: the planner then makes it an index condition whatever its
    -- estimates (joined to the one-row CTE, it read the whole index at 4 M state rows).
    WHERE s.updated >= (SELECT greatest(since, after_cursor) FROM pass)
      -- A row created before `since` is an old state updated, not a new one.
      AND s.created >= p.since
      AND (p.after_cursor IS NULL OR (s.updated, s.id) > (p.after_cursor, p.after_key))
),
page AS (
    SELECT c.id, c.updated, c.flow_run_id, c.type, c.xid
    FROM candidate AS c
    CROSS JOIN pass AS p
    WHERE coalesce(c.xid, 0) >= p.min_xid
    ORDER BY c.updated, c.id
    LIMIT 10000
)
SELECT w.id::text AS id,
       w.updated,
       w.xid::bigint AS xid,
       coalesce(wp.name, '') AS work_pool,
       w.type::text AS state_type
FROM page AS w
LEFT JOIN flow_run AS fr ON fr.id = w.flow_run_id
LEFT JOIN work_queue AS wq ON wq.id = fr.work_queue_id
LEFT JOIN work_pool AS wp ON wp.id = wq.work_pool_id
ORDER BY w.updated, w.id;
