-- description: Client sessions on the Prefect database per application_name, and the most from one client address - against Prefect's pool of 5 + 10 overflow per process (prefect#17344, #16299).
-- timeout: 2s
-- metrics:
--   - name: prefect_db_application_connections
--     type: gauge
--     help: Client sessions on the Prefect database per application_name (empty when unset, as Prefect's are by default), in sessions.
--     value: sessions
--     labels: [application]
--   - name: prefect_db_application_connections_per_client_max
--     type: gauge
--     fold: max
--     help: The most client sessions one client address holds on the Prefect database for one application_name (a Prefect server process pools up to 5 connections plus 10 overflow by default), in sessions.
--     value: per_client_max
--     labels: [application]
--
-- # Prefect's application_name is unset by default (the setting arrived only in 3.1.13, #16690;
-- # PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_APPLICATION_NAME), so its sessions, its LISTEN
-- # connection (prefect#19077) and anybody's psql look alike: the sampler's operation attribution and
-- # the runbooks then cannot tell who holds the connections ("remaining connection slots are reserved",
-- # prefect#17344; idle ROLLBACK sessions with an empty application_name, prefect#16299). Client
-- # addresses are not labels (unbounded); a Unix-socket client counts as one address.
WITH per_client AS (
    SELECT a.application_name AS application,
           a.client_addr,
           count(*) AS sessions
    FROM pg_stat_activity AS a
    WHERE a.datname = current_database()
      AND a.backend_type = 'client backend'
    GROUP BY 1, 2
)
SELECT application,
       sum(sessions)::bigint AS sessions,
       max(sessions) AS per_client_max
FROM per_client
GROUP BY 1;
