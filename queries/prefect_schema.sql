-- description: Alembic revision of the Prefect schema, which identifies the Prefect release that migrated it.
-- ttl: 60s
-- timeout: 2s
-- requires:
--   tables: [alembic_version]
-- metrics:
--   - name: prefect_db_prefect_schema_info
--     type: gauge
--     help: Alembic revision of the Prefect schema (alembic_version.version_num) as a label, always 1.
--     value: info
--     labels: [alembic_revision]
SELECT DISTINCT version_num::text AS alembic_revision,
       1 AS info
FROM alembic_version;
