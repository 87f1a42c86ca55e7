"""Counters of an incremental collector: each committed row counted exactly once, whatever its commit delay.

A time cursor alone loses rows: a row's timestamp is written when its transaction writes it, but the
row becomes readable only when the transaction commits, possibly long after a cursor has moved past
that timestamp. Passes are bounded by transaction ids instead (docs/collectors.md has the protocol):

- Each pass begins with a **mark**: first the start of the oldest transaction open in the database
  (``pg_stat_activity.xact_start``), then, in a later statement, the oldest transaction id still
  running (the xmin of ``pg_current_snapshot()``).
- A pass reads, in (cursor, key) order, the rows whose transaction id is at least the previous mark's
  oldest running id and whose timestamp is at least that mark's ``since``, and counts those whose key
  it has not counted yet. A row committed after a mark has a transaction id at least that mark's
  oldest running one (its transaction was running then, or got its id later), and its timestamp is no
  older than the start of its transaction, which was open at the mark (so no older than the oldest
  start read just before) or began after it: the pass after the mark reads it, all its pages being
  later than its commit. Below the oldest running id, every row is older than a mark and was read
  by the passes before: the keys counted are forgotten once the bounds move past them, and those
  rows are never read again. So each committed row is counted exactly once.
- Unlike a snapshot's visibility, this holds for rows written under a savepoint too (a savepoint's
  transaction id is larger than its transaction's, and ``pg_visible_in_snapshot`` cannot tell whether
  a savepoint's transaction was running).
- ``since`` is the oldest start less ``overlap`` (for the clock of the Prefect server, which may stamp
  rows), but never older than ``max_commit_delay`` before its mark, so that a read stays a short range
  of the timestamp's index: that is the one limit, rows of a transaction that stays open longer may be
  missed.
- One run reads one page of at most ``limit`` rows; a full page leaves the pass open and the next run
  reads on from its last row (keyset paging).

The first pass counts nothing: the rows committed before it read them are history, and each label set
it sees starts at 0, so that ``rate()`` sees the first real increase.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exporter.catalog import XID_COLUMN, CollectorSpec
from exporter.samples import InvalidResult, LabelValues, Series, label_value, to_float

# The session setting an incremental query reads its page from (a JSON object, see ``Page``).
SETTING = "prefect_db_exporter.incremental"

# The two statements of a mark, run in this order. Only client sessions of this database write its
# rows: autovacuum and the transactions of other databases would only hold ``since`` back.
OLDEST_TRANSACTION_SQL = """
SELECT now() AS now, min(xact_start) AS oldest_xact_start
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND xact_start IS NOT NULL
"""
RUNNING_XID_SQL = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS oldest_running_xid"

# How far back the first pass reads: the label sets seen there start at 0.
PRIME_WINDOW = dt.timedelta(minutes=1)


@dataclass(frozen=True)
class Mark:
    """A pass's start: the database's clock, the oldest open transaction's start, the oldest running id."""

    now: dt.datetime
    oldest_xact_start: dt.datetime | None
    oldest_running_xid: int

    def since(self, overlap: float, max_commit_delay: float) -> dt.datetime:
        """Return how old the rows of transactions running at this mark, or begun after it, can be."""
        oldest = self.now if self.oldest_xact_start is None else min(self.oldest_xact_start, self.now)
        floor = self.now - dt.timedelta(seconds=max_commit_delay)
        return max(oldest - dt.timedelta(seconds=overlap), floor)


@dataclass(frozen=True)
class Page:
    """What one run reads: rows from ``since`` on, of transactions from ``min_xid`` on, after ``after``."""

    since: dt.datetime
    min_xid: int
    after: tuple[dt.datetime, str] | None = None

    def setting(self) -> str:
        """Return the page as the JSON value of ``SETTING``."""
        return json.dumps(
            {
                "since": self.since.isoformat(),
                "min_xid": self.min_xid,
                "after_cursor": None if self.after is None else self.after[0].isoformat(),
                "after_key": None if self.after is None else self.after[1],
            }
        )


class IncrementalCounts:
    """Counters fed by an incremental collector, and the state of its passes between runs."""

    def __init__(self, spec: CollectorSpec) -> None:
        assert spec.incremental is not None
        self.spec = spec
        self.incremental = spec.incremental
        # The bounds the next pass reads within: from the mark of the latest completed pass.
        self.bounds: tuple[dt.datetime, int] | None = None
        # The pass in progress: its mark, and the last row of its latest page.
        self.mark: Mark | None = None
        self.after: tuple[dt.datetime, str] | None = None
        # Keys counted that the bounds may still reach, with their transaction id and cursor.
        self.counted: dict[str, tuple[int, dt.datetime]] = {}
        self.totals: dict[str, dict[LabelValues, float]] = {m.name: {} for m in spec.metrics}

    @property
    def primed(self) -> bool:
        """True once the first pass (which counts nothing) is complete."""
        return self.bounds is not None

    def needs_mark(self) -> bool:
        """True when no pass is in progress: the next run must begin one with ``begin``."""
        return self.mark is None

    def begin(self, mark: Mark) -> None:
        """Begin a pass at ``mark``."""
        self.mark, self.after = mark, None

    def page(self) -> Page:
        """Return what the next run reads."""
        assert self.mark is not None, "begin a pass first"
        if self.bounds is None:
            # Everything the next pass may read, so that what it finds that was committed before is
            # known as history; and at least a minute, for the label sets that start at 0.
            since = self._since(self.mark)
            return Page(min(self.mark.now - PRIME_WINDOW, since), 0, self.after)
        since, min_xid = self.bounds
        return Page(since, min_xid, self.after)

    def settings(self) -> dict[str, str]:
        """Return the session setting that tells the query which page to read."""
        return {SETTING: self.page().setting()}

    def absorb(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Count one page (rows in (cursor, key) order) of the pass in progress; return how many were new."""
        assert self.mark is not None, "begin a pass first"
        weight = 1.0 if self.primed else 0.0
        new = 0
        last: tuple[dt.datetime, str] | None = None
        for row in rows:
            cursor, key, xid = row[self.incremental.cursor], str(row[self.incremental.key]), row[XID_COLUMN]
            if not isinstance(cursor, dt.datetime):
                raise InvalidResult(f"cursor column {self.incremental.cursor!r} must be a timestamp")
            # Keys compare in the database's order (a collation, a uuid), cursors in anyone's.
            previous = last or self.after
            if previous is not None and cursor < previous[0]:
                raise InvalidResult(
                    f"rows must come in ({self.incremental.cursor}, {self.incremental.key}) order, "
                    f"after the pass's last row: {cursor.isoformat()} follows {previous[0].isoformat()}"
                )
            last = (cursor, key)
            if key in self.counted:
                continue
            self.counted[key] = (0 if xid is None else int(xid), cursor)
            new += 1
            self._count(row, weight)
        if len(rows) >= self.incremental.limit and last is not None:
            self.after = last  # a full page: the pass goes on from here in the next run
        else:
            self._complete(self.mark)
        return new if weight else 0

    def _since(self, mark: Mark) -> dt.datetime:
        return mark.since(self.incremental.overlap, self.incremental.max_commit_delay)

    def _complete(self, mark: Mark) -> None:
        since = self._since(mark)
        if self.bounds is not None:
            # Bounds never move back: the next pass must not re-read keys forgotten now.
            since = max(since, self.bounds[0])
        min_xid = mark.oldest_running_xid
        if self.bounds is not None:
            min_xid = max(min_xid, self.bounds[1])
        self.bounds = (since, min_xid)
        self.counted = {k: v for k, v in self.counted.items() if v[0] >= min_xid and v[1] >= since}
        self.mark, self.after = None, None

    def _count(self, row: Mapping[str, Any], weight: float) -> None:
        for metric in self.spec.metrics:
            amount = 1.0 if metric.value is None else row[metric.value]
            if amount is None:
                continue
            labels = tuple(label_value(row[name]) for name in metric.labels)
            series = self.totals[metric.name]
            series[labels] = series.get(labels, 0.0) + weight * to_float(amount)

    def series(self) -> dict[str, Series]:
        """Return a copy of the current totals."""
        return {name: dict(series) for name, series in self.totals.items()}
