-- exporter-role.sql: create or update the least-privilege role used by the
-- Prefect PostgreSQL exporter.
--
-- Run it against the Prefect database, as a role that may create roles (a superuser,
-- or a role with CREATEROLE) and that owns the Prefect tables or may grant on them:
--
--   psql "$PREFECT_DB_URL" -v exporter_password="$PASSWORD" -f deploy/exporter-role.sql
--
-- Optional: -v exporter_role=name (default: prefect_exporter).
--
-- The script is idempotent: run it again after a Prefect upgrade (new tables) or to
-- rotate the password. It converges the role to exactly this state:
--   * LOGIN, NOSUPERUSER NOCREATEDB NOCREATEROLE (and no replication/RLS bypass);
--   * member of pg_monitor, to read pg_stat_activity, pg_locks, pg_stat_statements and
--     the other statistics views with full details;
--   * CONNECT on this database and USAGE on schema public;
--   * SELECT on the Prefect tables the exporter's queries read, and on nothing else in
--     schema public. On a database without Prefect tables, no table is granted.
--   * session defaults that keep a misbehaving exporter from harming Prefect.
-- Everything runs in one transaction, so a failure leaves the role as it was.

\set ON_ERROR_STOP on

-- The Prefect tables the exporter's queries read (comma-separated, no spaces).
\set exporter_tables 'alembic_version,concurrency_limit,concurrency_limit_v2,deployment,event_resources,events,flow,flow_run,flow_run_state,pg_stat_statements,task_run,work_pool,work_queue,worker'

\if :{?exporter_role}
\else
  \set exporter_role prefect_exporter
\endif

\if :{?exporter_password}
\else
  \echo 'exporter-role.sql: pass the password with -v exporter_password=...'
  -- An explicit error, so that psql exits non-zero instead of quietly doing nothing.
  DO $$ BEGIN RAISE EXCEPTION 'psql variable exporter_password is not set'; END $$;
\endif

BEGIN;

-- Keep the password out of the server log and pg_stat_statements where we can: both
-- settings need superuser, so other roles just skip this step.
DO $$
BEGIN
  SET LOCAL log_statement = 'none';
  SET LOCAL pg_stat_statements.track_utility = off;
EXCEPTION WHEN OTHERS THEN
  NULL;
END
$$;

-- CREATE ROLE has no IF NOT EXISTS: generate the statement only when the role is missing.
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION'
              ' NOBYPASSRLS', :'exporter_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'exporter_role')
\gexec

-- Set the password on every run so that re-running the script rotates it. (SUPERUSER,
-- REPLICATION and BYPASSRLS are not repeated here: only superusers may even mention
-- them in ALTER ROLE; the check below covers them instead.)
ALTER ROLE :"exporter_role" WITH LOGIN NOCREATEDB NOCREATEROLE PASSWORD :'exporter_password';

-- Refuse to hand out a powerful role: these attributes can only have been set by hand.
SELECT format('DO $check$ BEGIN RAISE EXCEPTION %L; END $check$',
              'role ' || rolname || ' is a superuser or has REPLICATION/BYPASSRLS;'
              ' remove those attributes or choose another exporter_role')
  FROM pg_roles
 WHERE rolname = :'exporter_role' AND (rolsuper OR rolreplication OR rolbypassrls)
\gexec

-- Read access to the statistics views (pg_stat_activity query texts, pg_locks, ...).
SELECT format('GRANT pg_monitor TO %I', :'exporter_role')
 WHERE NOT pg_has_role(:'exporter_role', 'pg_monitor', 'MEMBER')
\gexec

SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'exporter_role')
\gexec

GRANT USAGE ON SCHEMA public TO :"exporter_role";

-- "Exactly these tables": first drop every table privilege granted to the role directly
-- in schema public (say, by an earlier version of this script), then grant SELECT anew.
-- Looking at the ACLs avoids a warning for every table the role never had access to.
SELECT format('REVOKE ALL ON TABLE %I.%I FROM %I', n.nspname, c.relname, :'exporter_role')
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public'
   AND EXISTS (SELECT 1
                 FROM aclexplode(c.relacl) AS acl
                 JOIN pg_roles r ON r.oid = acl.grantee
                WHERE r.rolname = :'exporter_role')
 ORDER BY c.relname
\gexec

-- Grant only on the tables that exist, so the script works on any Prefect version and on
-- a database that has no Prefect schema at all.
SELECT format('GRANT SELECT ON TABLE %I.%I TO %I', table_schema, table_name, :'exporter_role')
  FROM information_schema.tables
 WHERE table_schema = 'public'
   AND table_name = ANY (string_to_array(:'exporter_tables', ','))
 ORDER BY table_name
\gexec

-- Defence in depth, applied to every session of the role:
-- the exporter only reads, so any write attempt is a bug and must fail;
ALTER ROLE :"exporter_role" SET default_transaction_read_only = on;
-- a slow collector query must not hog a connection or the CPU of the Prefect database;
ALTER ROLE :"exporter_role" SET statement_timeout = '10s';
-- never queue behind Prefect's own locks (e.g. a migration) and stall its writers;
ALTER ROLE :"exporter_role" SET lock_timeout = '1s';
-- never hold a snapshot open, which would keep VACUUM from cleaning Prefect's busy tables.
ALTER ROLE :"exporter_role" SET idle_in_transaction_session_timeout = '30s';

COMMIT;

\echo 'exporter-role.sql: role' :exporter_role 'is ready in database' :DBNAME
