"""What a target offers (server version, readable Prefect tables), and which collectors it can run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.catalog import Requires

# Tables whose presence means "this database holds a Prefect schema".
PREFECT_MARKER_TABLES = ("alembic_version", "flow_run", "work_pool")

FACTS_SQL = """
SELECT c.relname AS table_name, a.attname AS column_name
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE c.relkind IN ('r', 'p', 'v', 'm')
  AND c.relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname = ANY (current_schemas(false)))
  AND has_table_privilege(c.oid, 'SELECT')
"""


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


def unmet_requirement(requires: Requires, facts: TargetFacts) -> str | None:
    """Return why ``facts`` fail ``requires``, or None when the collector can run."""
    if requires.server_version_min and facts.server_version_num < requires.server_version_min:
        return f"needs PostgreSQL server_version_num >= {requires.server_version_min}"
    if requires.server_version_max and facts.server_version_num > requires.server_version_max:
        return f"needs PostgreSQL server_version_num <= {requires.server_version_max}"
    missing = [t for t in requires.tables if t not in facts.columns]
    if missing:
        return f"table missing or not readable: {', '.join(missing)}"
    for table, columns in requires.columns.items():
        absent = [c for c in columns if c not in facts.columns.get(table, frozenset())]
        if absent:
            return f"column missing or not readable: {', '.join(f'{table}.{c}' for c in absent)}"
    if requires.alembic_revisions and facts.alembic_revision not in requires.alembic_revisions:
        return f"Prefect schema revision {facts.alembic_revision or 'unknown'} is not one of " + ", ".join(
            requires.alembic_revisions
        )
    return None
