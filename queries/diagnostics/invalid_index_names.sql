-- description: Every invalid index of the database (pg_index.indisvalid false) by name, with its table, definition and whether a CREATE INDEX is building it right now; the doctor keeps those of Prefect's tables (the invalid_indexes collector says which).
-- timeout: 2s
--
-- # The invalid_indexes collector counts them per table; the fix (REINDEX INDEX CONCURRENTLY, or DROP
-- # INDEX CONCURRENTLY) needs the name. A CONCURRENTLY build in progress is invalid until it ends:
-- # pg_stat_progress_create_index tells it apart from a cancelled one. pg_index is a small catalog.
SELECT t.relname AS relation,
       c.relname AS index_name,
       n.nspname AS schema_name,
       i.indisunique AS is_unique,
       pg_get_indexdef(i.indexrelid) AS definition,
       EXISTS (SELECT FROM pg_stat_progress_create_index AS p WHERE p.index_relid = i.indexrelid)
           AS building
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indexrelid
JOIN pg_class AS t ON t.oid = i.indrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY t.relname, c.relname
LIMIT 100;
