"""Passes of an incremental collector, with hand-made marks and pages: every row counted once, none twice."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from exporter.catalog import CollectorSpec, Incremental, MetricSpec, Requires
from exporter.incremental import IncrementalCounts, Mark
from exporter.samples import InvalidResult

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
NAME = "prefect_db_demo_transitions_total"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def counts(limit: int = 3, overlap: float = 1.0, max_commit_delay: float = 600.0) -> IncrementalCounts:
    metric = MetricSpec(NAME, "counter", "Demo.", None, ("state",), line=3)
    incremental = Incremental("id", "updated", limit, overlap, max_commit_delay)
    spec = CollectorSpec(
        "demo", Path("demo.sql"), "d", "SELECT 1", 15.0, 5.0, Requires(), (metric,), incremental
    )
    return IncrementalCounts(spec)


def row(key: str, xid: int | None, updated: float, state: str = "RUNNING") -> dict[str, Any]:
    return {"id": key, "xid": xid, "updated": at(updated), "state": state}


def page_read(c: IncrementalCounts) -> dict[str, Any]:
    setting: dict[str, Any] = json.loads(c.settings()["prefect_db_exporter.incremental"])
    return setting


def run(c: IncrementalCounts, mark: Mark | None, rows: list[dict[str, Any]]) -> int:
    """One collector run: begin a pass when none is open, read one page."""
    if c.needs_mark():
        assert mark is not None
        c.begin(mark)
    return c.absorb(rows)


def total(c: IncrementalCounts, state: str = "RUNNING") -> float | None:
    return c.series()[NAME].get((state,))


def test_the_first_pass_counts_nothing_and_starts_what_it_saw_at_zero() -> None:
    c = counts()
    c.begin(Mark(at(100), None, 500))
    # It reads a minute back, from any transaction, so that what the next pass re-reads is known.
    assert page_read(c) == {
        "since": at(40).isoformat(),
        "min_xid": 0,
        "after_cursor": None,
        "after_key": None,
    }
    assert c.absorb([row("a", 490, 95)]) == 0
    assert c.series() == {NAME: {("RUNNING",): 0.0}}
    assert c.primed and c.needs_mark()


def test_rows_the_next_pass_reads_again_are_not_counted_again() -> None:
    c = counts()
    run(c, Mark(at(100), None, 500), [row("a", 499, 99)])
    # Bounds of the next pass: the mark's oldest running id; its clock less the 1 s overlap.
    c.begin(Mark(at(115), at(105), 501))
    assert page_read(c)["since"] == at(99).isoformat() and page_read(c)["min_xid"] == 500
    assert c.absorb([row("b", 501, 110), row("c", 502, 111)]) == 2
    # A transaction (id 501, begun at 105 s) was still open at that mark: the next pass reads from
    # its start and its id on, and meets the rows counted already again: they add nothing.
    assert c.bounds == (at(104), 501)
    assert run(c, Mark(at(130), None, 505), [row("b", 501, 110), row("c", 502, 111)]) == 0
    assert total(c) == 2.0
    assert c.counted == {}


def test_a_row_committed_long_after_it_was_stamped_is_counted_once_when_it_commits() -> None:
    """A transaction begun at 100 s writes at 101 s (id 501) and commits at 140 s, passes go on meanwhile."""
    c = counts(limit=10)
    run(c, Mark(at(100), at(100), 501), [])
    # At 115 s it is still open: the oldest open start and oldest running id hold the bounds back.
    run(c, Mark(at(115), at(100), 501), [row("q", 503, 112)])
    assert c.bounds == (at(99), 501)
    run(c, Mark(at(130), at(100), 501), [row("q", 503, 112)])
    # It committed at 140 s: the pass after the next mark reads back to its start and counts it once.
    run(c, Mark(at(145), None, 510), [row("late", 501, 101), row("q", 503, 112), row("r", 509, 143)])
    assert total(c) == 3.0
    assert c.bounds == (at(144), 510)
    # Then the bounds move past it and it is forgotten: never read, never counted again.
    run(c, Mark(at(160), None, 512), [])
    assert c.counted == {}
    assert total(c) == 3.0


def test_since_is_never_older_than_max_commit_delay_before_its_mark() -> None:
    assert Mark(at(1000), at(0), 1).since(overlap=1.0, max_commit_delay=600.0) == at(400)
    assert Mark(at(1000), at(900), 1).since(overlap=1.0, max_commit_delay=600.0) == at(899)
    # The own session's transaction may start after now() was read by another: never after the mark.
    assert Mark(at(1000), at(1001), 1).since(overlap=1.0, max_commit_delay=600.0) == at(999)


def test_a_full_page_leaves_the_pass_open_and_the_next_run_reads_on_from_its_last_row() -> None:
    c = counts(limit=2)
    run(c, Mark(at(100), None, 500), [])
    first = Mark(at(115), None, 520)
    run(c, first, [row("b", 501, 110), row("c", 502, 110)])
    assert not c.needs_mark()
    assert page_read(c)["after_cursor"] == at(110).isoformat() and page_read(c)["after_key"] == "c"
    # The same pass, the same bounds, the next page; a short page ends it.
    assert page_read(c)["min_xid"] == 500
    run(c, None, [row("d", 503, 110), row("e", 504, 112)])
    run(c, None, [row("f", 505, 113)])
    assert c.needs_mark() and c.bounds == (at(114), 520)
    assert total(c) == 5.0


def test_the_bounds_never_move_back() -> None:
    c = counts()
    run(c, Mark(at(100), None, 500), [])
    run(c, Mark(at(115), None, 510), [])
    # A mark whose clock or ids look older (another server of a cluster, a clock step) changes nothing.
    run(c, Mark(at(90), None, 505), [])
    assert c.bounds == (at(114), 510)


def test_rows_out_of_cursor_order_are_an_error_naming_the_columns() -> None:
    c = counts()
    c.begin(Mark(at(100), None, 500))
    with pytest.raises(InvalidResult, match=r"\(updated, id\) order"):
        c.absorb([row("a", 1, 99), row("b", 2, 98)])
