-- description: Transaction isolation Prefect's sessions get by default - the database's and each connected role's default_transaction_isolation when it is not read committed (prefect#22597).
-- ttl: 60s
-- timeout: 2s
-- metrics:
--   - name: prefect_db_default_transaction_isolation_not_read_committed
--     type: gauge
--     help: 1 when new sessions on the Prefect database default to an isolation level other than read committed (ALTER DATABASE ... SET default_transaction_isolation, else the server setting), else 0.
--     value: database_not_read_committed
--   - name: prefect_db_sessions_isolation_not_read_committed
--     type: gauge
--     help: Client sessions on the Prefect database (the exporter's excluded) whose role and database defaults give an isolation level other than read committed, in sessions.
--     value: sessions_not_read_committed
--
-- # Under repeatable read, concurrency_limit_v2 updates fail with serialization errors: runs stuck
-- # RUNNING, set_state answering 503, active_slots far below the real count (prefect#22597, 3.7.7).
-- # Prefect forces READ COMMITTED only from 3.8.0 (#22531); older releases, and 2.x, inherit whatever
-- # the database or role default is. A session's own SET or BEGIN ISOLATION LEVEL is not visible from
-- # outside it: this reads the defaults, in PostgreSQL's order (role in database, role, database, server).
WITH dbid AS (
    SELECT oid FROM pg_database WHERE datname = current_database()
),
settings AS (
    SELECT s.setdatabase, s.setrole, split_part(c.item, '=', 2) AS level
    FROM pg_db_role_setting AS s
    CROSS JOIN LATERAL unnest(s.setconfig) AS c (item)
    WHERE split_part(c.item, '=', 1) = 'default_transaction_isolation'
),
server AS (
    -- This session's own value when it came from the server (its source tells); otherwise the
    -- built-in default, read committed.
    SELECT CASE WHEN source IN ('default', 'configuration file', 'command line', 'environment variable')
                THEN setting ELSE boot_val END AS level
    FROM pg_settings
    WHERE name = 'default_transaction_isolation'
),
database_default AS (
    SELECT coalesce((SELECT s.level FROM settings AS s, dbid
                     WHERE s.setdatabase = dbid.oid AND s.setrole = 0),
                    (SELECT level FROM server)) AS level
),
sessions AS (
    SELECT coalesce(
               (SELECT s.level FROM settings AS s, dbid WHERE s.setdatabase = dbid.oid AND s.setrole = a.usesysid),
               (SELECT s.level FROM settings AS s WHERE s.setdatabase = 0 AND s.setrole = a.usesysid),
               (SELECT level FROM database_default)) AS level
    FROM pg_stat_activity AS a
    WHERE a.datname = current_database()
      AND a.backend_type = 'client backend'
      AND a.application_name NOT LIKE 'prefect-db-exporter%'
)
SELECT (SELECT CASE WHEN lower(level) <> 'read committed' THEN 1 ELSE 0 END FROM database_default)
           AS database_not_read_committed,
       (SELECT count(*) FROM sessions WHERE lower(level) <> 'read committed') AS sessions_not_read_committed;
