-- description: PostgreSQL server version, connection capacity, and size and transaction ID age of the Prefect database.
-- ttl: 60s
-- timeout: 2s
-- metrics:
--   - name: prefect_db_server_info
--     type: gauge
--     help: PostgreSQL server version as a label, always 1.
--     value: info
--     labels: [server_version]
--   - name: prefect_db_server_version_num
--     type: gauge
--     help: PostgreSQL server_version_num, for example 150020 for 15.20.
--     value: server_version_num
--   - name: prefect_db_max_connections
--     type: gauge
--     help: The max_connections setting of the PostgreSQL server, in connections.
--     value: max_connections
--   - name: prefect_db_reserved_connections
--     type: gauge
--     help: Connections reserved for superusers (superuser_reserved_connections), to subtract from max_connections.
--     value: reserved_connections
--   - name: prefect_db_server_connections
--     type: gauge
--     help: Client backends connected to the whole PostgreSQL server (all databases), in connections.
--     value: server_connections
--   - name: prefect_db_database_size_bytes
--     type: gauge
--     help: Disk size of the current database, in bytes.
--     value: database_size_bytes
--   - name: prefect_db_xid_age
--     type: gauge
--     help: Age of the oldest unfrozen transaction ID of the current database (age of datfrozenxid), in transactions.
--     value: xid_age
--   - name: prefect_db_postmaster_start_time_seconds
--     type: gauge
--     help: Time the PostgreSQL server started, in seconds since the Unix epoch.
--     value: postmaster_start_time_seconds
SELECT split_part(current_setting('server_version'), ' ', 1) AS server_version,
       1 AS info,
       current_setting('server_version_num')::int AS server_version_num,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS reserved_connections,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS server_connections,
       pg_database_size(d.oid) AS database_size_bytes,
       age(d.datfrozenxid) AS xid_age,
       extract(epoch FROM pg_postmaster_start_time())::float8 AS postmaster_start_time_seconds
FROM pg_database d
WHERE d.datname = current_database();
