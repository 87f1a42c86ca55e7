"""The bounded label values the exporter uses everywhere: Prefect's tables and the ``other`` bucket.

The ``relation`` label names a Prefect table or ``other``; the same list is spelled out in the SQL
files that compute it in the database (they must run as they are in psql), and
``python -m devtools.metrics_doc`` writes it there: ``tests/unit/test_labels.py`` fails when they drift.
"""

from __future__ import annotations

# The value of any label whose real value is outside its bounded set: another relation, an
# unclassified statement, or the series folded together by the series cap.
OTHER = "other"

# Every table that any supported Prefect release creates (2.x through 3.9), in the schema on the
# search path. Tables of other releases simply are not there; a name here costs nothing.
PREFECT_TABLES: tuple[str, ...] = (
    "agent", "alembic_version", "artifact", "artifact_collection", "automation", "automation_bucket",
    "automation_event_follower", "automation_held_event", "automation_related_resource", "block_document",
    "block_document_reference", "block_schema", "block_schema_reference", "block_type",
    "composite_trigger_child_firing", "concurrency_limit", "concurrency_limit_v2", "configuration",
    "csrf_token", "deployment", "deployment_schedule", "deployment_version", "event_resources", "events",
    "flow", "flow_run", "flow_run_input", "flow_run_notification_policy", "flow_run_notification_queue",
    "flow_run_state", "log", "saved_search", "task_run", "task_run_state", "task_run_state_cache",
    "variable", "work_pool", "work_queue", "worker",
)  # fmt: skip
_PREFECT_TABLE_SET = frozenset(PREFECT_TABLES)


def relation_label(table: str | None) -> str:
    """Return the ``relation`` label of a table: its name when it is Prefect's, else ``other``."""
    return table if table in _PREFECT_TABLE_SET else OTHER


def prefect_tables_sql(indent: str) -> str:
    """Return the table list as the SQL ``VALUES`` rows the collector files carry, wrapped at 100 columns."""
    lines: list[str] = []
    line = indent
    for name in PREFECT_TABLES:
        item = f"('{name}'), "
        if len(line) + len(item) > 100 and line.strip():
            lines.append(line.rstrip())
            line = indent
        line += item
    lines.append(line.rstrip().rstrip(","))
    return "\n".join(lines)
