"""Counters of an incremental collector: each new row (by key) is counted once, however often it is read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from exporter.catalog import CollectorSpec
from exporter.samples import InvalidResult, LabelValues, Series, label_value, to_float


class IncrementalCounts:
    """Counters fed by an incremental collector: each new row is counted once."""

    def __init__(self, spec: CollectorSpec) -> None:
        assert spec.incremental is not None
        self.spec = spec
        self.incremental = spec.incremental
        self.cursor: dt.datetime | None = None
        self.primed = False
        # When a full run (LIMIT rows) brings back only rows counted before, more rows fit in the
        # overlap window than in one run and re-reading the window would never move on: read from
        # the cursor itself until the dense stretch has slid out of the window.
        self.no_overlap_until: dt.datetime | None = None
        self.seen: dict[Any, dt.datetime] = {}
        # Rows at or before this instant existed before the exporter started: never count them.
        self.floor: dt.datetime | None = None
        self.totals: dict[str, dict[LabelValues, float]] = {m.name: {} for m in spec.metrics}

    def settings(self) -> dict[str, str]:
        """Return the session setting that tells the query where to start."""
        if self.cursor is None:
            return {"prefect_db_exporter.cursor": ""}
        dense = self.no_overlap_until is not None and self.cursor < self.no_overlap_until
        # Even then, re-read the last millisecond: rows that tie with the cursor may not all have fit.
        overlap = 0.001 if dense else self.incremental.overlap
        start = self.cursor - dt.timedelta(seconds=overlap)
        return {"prefect_db_exporter.cursor": start.isoformat()}

    def absorb(self, rows: Sequence[Mapping[str, Any]], now: dt.datetime | None = None) -> None:
        """Count rows not counted before; the first call only records what exists.

        ``now`` is the database's clock after the first run: the first run reads a window of at
        least ``overlap``, so the next run's re-read window reaches back before it, and rows
        there older than ``now - overlap`` are history, not news.
        """
        new = 0
        if not self.primed and now is not None:
            self.floor = now - dt.timedelta(seconds=self.incremental.overlap)
        for row in rows:
            key, cursor = row[self.incremental.key], row[self.incremental.cursor]
            if not isinstance(cursor, dt.datetime):
                raise InvalidResult(f"cursor column {self.incremental.cursor!r} must be a timestamp")
            if key in self.seen:
                continue
            self.seen[key] = cursor
            new += 1
            if self.cursor is None or cursor > self.cursor:
                self.cursor = cursor
            if not self.primed:
                self._count(row, 0.0)  # a series starting at 0 makes its first increase visible
            elif self.floor is None or cursor > self.floor:
                self._count(row)
        if self.cursor is not None:
            # Rows older than the re-read window can never come back: forget them to stay bounded.
            horizon = self.cursor - dt.timedelta(seconds=self.incremental.overlap)
            self.seen = {k: c for k, c in self.seen.items() if c >= horizon}
        self.primed = True
        if len(rows) >= self.incremental.limit and new == 0 and self.cursor is not None:
            self.no_overlap_until = self.cursor + dt.timedelta(seconds=self.incremental.overlap)

    def _count(self, row: Mapping[str, Any], weight: float = 1.0) -> None:
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
