"""Diagnostic queries are their own files, never collectors; the lock tree picks the right root."""

from __future__ import annotations

from exporter.catalog import load_catalog
from exporter.config import DEFAULT_QUERY_DIR
from exporter.doctor.locktree import lock_forest
from exporter.doctor.queries import DIAGNOSTICS_DIR, load_diagnostics


def test_diagnostic_queries_load_and_are_not_collectors() -> None:
    diagnostics = load_diagnostics()
    assert set(diagnostics) == {p.stem for p in DIAGNOSTICS_DIR.glob("*.sql")}
    assert {"sessions", "stranded_pending", "zombie_runs", "queues"} <= set(diagnostics)
    assert all(c.path.parent == DEFAULT_QUERY_DIR for c in load_catalog([DEFAULT_QUERY_DIR]).collectors)


def test_queue_behind_an_access_exclusive_request_reads_as_a_chain() -> None:
    # 10 holds the table; 11 waits for ACCESS EXCLUSIVE; 12 and 13 wait behind both.
    rows = [
        {"pid": 10, "blocked_by": []},
        {"pid": 11, "blocked_by": [10]},
        {"pid": 12, "blocked_by": [10, 11]},
        {"pid": 13, "blocked_by": [11, 10]},
        {"pid": 14, "blocked_by": []},
    ]
    (tree,) = lock_forest(rows)
    assert tree.pid == 10
    assert [(depth, node.pid) for depth, node in tree.walk()] == [(0, 10), (1, 11), (2, 12), (2, 13)]


def test_a_cycle_takes_the_oldest_transaction_as_root() -> None:
    rows = [
        {"pid": 20, "blocked_by": [21], "xact_age_seconds": 5.0},
        {"pid": 21, "blocked_by": [20], "xact_age_seconds": 9.0},
    ]
    (tree,) = lock_forest(rows)
    assert tree.pid == 21 and [n.pid for _, n in tree.walk()] == [21, 20]
