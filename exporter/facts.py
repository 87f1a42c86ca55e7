"""What a target database offers the exporter's role: server version, readable tables and columns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Tables whose presence means "this database holds a Prefect schema".
PREFECT_MARKER_TABLES = ("alembic_version", "flow_run", "work_pool")

VERSION_SQL = (
    "SELECT current_setting('server_version_num')::int AS num, current_setting('server_version') AS v"
)
# Every readable table or view on the search path, with its columns.
COLUMNS_SQL = """
SELECT c.relname AS table_name, a.attname AS column_name
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'v', 'm')
  AND c.relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname = ANY (current_schemas(false)))
  AND has_table_privilege(c.oid, 'SELECT')
"""
REVISION_SQL = "SELECT version_num FROM alembic_version LIMIT 1"


@dataclass(frozen=True)
class TargetFacts:
    """What one database offers the exporter's role."""

    server_version_num: int
    server_version: str
    columns: Mapping[str, frozenset[str]]
    alembic_revision: str | None

    @property
    def has_prefect_schema(self) -> bool:
        """True when Prefect's core tables exist and are readable."""
        return all(table in self.columns for table in PREFECT_MARKER_TABLES)

    def missing_prefect_tables(self) -> list[str]:
        """Return the Prefect marker tables that are absent or unreadable."""
        return [table for table in PREFECT_MARKER_TABLES if table not in self.columns]
