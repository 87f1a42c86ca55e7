"""Which collectors a target can run: a collector's gates (``requires:``) against the target's facts."""

from __future__ import annotations

from exporter.catalog import Requires
from exporter.facts import TargetFacts


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
    if requires.needs_prefect and not facts.has_prefect_schema:
        return "no Prefect schema (missing: " + ", ".join(facts.missing_prefect_tables()) + ")"
    return None
