-- description: Client sessions of the whole server by database and application_name, with their states, to see who uses up max_connections.
-- timeout: 2s
SELECT coalesce(a.datname, '') AS database,
       coalesce(a.application_name, '') AS application_name,
       count(*) AS sessions,
       count(*) FILTER (WHERE a.state = 'active') AS active,
       count(*) FILTER (WHERE a.state = 'idle') AS idle,
       count(*) FILTER (WHERE a.state LIKE 'idle in transaction%') AS idle_in_transaction
FROM pg_stat_activity AS a
WHERE a.backend_type = 'client backend'
GROUP BY 1, 2
ORDER BY sessions DESC, database, application_name;
