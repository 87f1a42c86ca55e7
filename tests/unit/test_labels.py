"""Bounded label values have one source: the Prefect table list and the server-log formats."""

from __future__ import annotations

import pytest

from devtools.table_lists import files_with_lists, synced
from exporter.config import DEFAULT_QUERY_DIR, SERVER_LOG_FORMATS
from exporter.deadlock_log import _PARSERS
from exporter.labels import OTHER, PREFECT_TABLES, relation_label


def test_the_collectors_that_spell_out_prefect_tables_carry_exporter_labels_list() -> None:
    files = files_with_lists()
    assert {p.name for p in files} >= {"locks.sql", "tables.sql"}
    stale = [p.name for p in files if synced(p.read_text(encoding="utf-8")) != p.read_text(encoding="utf-8")]
    assert not stale, f"run `make docs` to rewrite the table lists in {stale}"


def test_no_other_collector_writes_its_own_table_list() -> None:
    # A VALUES list of Prefect table names outside the marked blocks would be a second source.
    marked = {p.name for p in files_with_lists()}
    for path in sorted(DEFAULT_QUERY_DIR.glob("*.sql")):
        if path.name not in marked:
            assert "('flow_run'), ('flow_run_input')" not in path.read_text(encoding="utf-8"), path.name


@pytest.mark.parametrize("table", ["deployment", "work_queue", "events", "agent", "automation_held_event"])
def test_prefect_tables_are_their_own_relation(table: str) -> None:
    assert relation_label(table) == table


@pytest.mark.parametrize("table", [None, "pg_class", "my_table", ""])
def test_anything_else_is_other(table: str | None) -> None:
    assert relation_label(table) == OTHER


def test_the_table_list_has_no_duplicates() -> None:
    assert len(set(PREFECT_TABLES)) == len(PREFECT_TABLES)


def test_every_server_log_format_the_config_accepts_has_a_parser() -> None:
    assert tuple(_PARSERS) == SERVER_LOG_FORMATS
