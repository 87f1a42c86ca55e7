"""Running collectors against one target: TTL cache, shared in-flight runs, failures kept apart."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from exporter.catalog import Catalog, CollectorSpec, check_result_columns
from exporter.database import TargetDatabase
from exporter.errors import ConnectError, QueryError
from exporter.gates import unmet_requirement
from exporter.textformat import SampleWriter

log = logging.getLogger(__name__)

LabelValues = tuple[str, ...]
Samples = Mapping[str, Mapping[LabelValues, float]]


class InvalidResult(Exception):
    """A query's rows cannot be turned into samples (bad value type, duplicate label set)."""


@dataclass(frozen=True)
class CollectorResult:
    """The outcome of one run of one collector."""

    status: str
    duration: float
    finished: float
    rows: int = 0
    samples: Samples = field(default_factory=dict)
    error: str | None = None
    folded: Mapping[str, int] = field(default_factory=dict)
    # The samples of each metric as exposition text, written once per result.
    text: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the run succeeded."""
        return self.status == "success"


def to_float(value: Any) -> float:
    """Turn one result value into a sample value."""
    kind = type(value)
    # Exact-type checks first: this runs for every sample of every scrape.
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int or kind is Decimal:
        return float(value)
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float | Decimal):
        return float(value)
    raise InvalidResult(f"value {value!r} of type {type(value).__name__} is not a number")


def label_value(value: Any) -> str:
    """Turn one result value into a label value."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


FOLDED_LABEL = "other"
_FOLDERS: dict[str, Callable[[list[float]], float]] = {"sum": sum, "max": max, "min": min}


def cap_series(
    series: Mapping[LabelValues, float], limit: int, fold: str
) -> tuple[dict[LabelValues, float], int]:
    """Keep the ``limit - 1`` largest series and fold the rest into one whose labels are all ``other``.

    Returns the capped series and how many series were folded (0 when under the limit).
    """
    if len(series) <= limit:
        return dict(series), 0
    ranked = sorted(series.items(), key=lambda item: (-item[1], item[0]))
    kept = dict(ranked[: limit - 1])
    bucket = (FOLDED_LABEL,) * len(ranked[0][0])
    rest = [value for _, value in ranked[limit - 1 :]]
    if bucket in kept:  # a real series already has all labels "other": it joins the bucket
        rest.append(kept.pop(bucket))
    kept[bucket] = float(_FOLDERS[fold](rest))
    return kept, len(rest)


def build_samples(
    spec: CollectorSpec, rows: Sequence[Mapping[str, Any]]
) -> dict[str, dict[LabelValues, float]]:
    """Turn result rows into samples, metric by metric."""
    samples: dict[str, dict[LabelValues, float]] = {m.name: {} for m in spec.metrics}
    if not rows:
        return samples
    # Positions instead of names: this loop runs for every row of every metric on every scrape.
    position = {name: index for index, name in enumerate(rows[0].keys())}
    tuples = [tuple(row.values()) for row in rows]
    for metric in spec.metrics:
        assert metric.value is not None
        series = samples[metric.name]
        value_at = position[metric.value]
        label_at = [position[name] for name in metric.labels]
        for row in tuples:
            raw = row[value_at]
            if raw is None:
                continue
            labels = tuple([label_value(row[index]) for index in label_at])
            if labels in series:
                shown = dict(zip(metric.labels, labels, strict=True))
                raise InvalidResult(f"two rows give {metric.name} the same labels {shown}")
            try:
                series[labels] = to_float(raw)
            except InvalidResult as error:
                raise InvalidResult(f"{metric.name}: {error}") from None
    return samples


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

    def samples(self) -> dict[str, dict[LabelValues, float]]:
        """Return a copy of the current totals."""
        return {name: dict(series) for name, series in self.totals.items()}


class TargetCollector:
    """Runs the catalog's collectors against one target and keeps their latest results."""

    def __init__(self, db: TargetDatabase, catalog: Catalog, max_series: int = 2000) -> None:
        self.db = db
        self.catalog = catalog
        self.max_series = max_series
        self.up = False
        self.results: dict[str, CollectorResult] = {}
        self.skipped: dict[str, str] = {}
        self.broken: dict[str, str] = {}
        self.queries_total: Counter[tuple[str, str]] = Counter()
        self._validated_generation = -1
        self._inflight: dict[str, asyncio.Task[CollectorResult]] = {}
        self._refresh: asyncio.Task[None] | None = None
        self._refresh_started = float("inf")
        self._incremental = {s.name: IncrementalCounts(s) for s in catalog.collectors if s.incremental}
        self._writers = {
            m.name: SampleWriter(m, db.config.name) for spec in catalog.collectors for m in spec.metrics
        }

    def adopt_counters(self, old: TargetCollector) -> None:
        """Carry the counters of the collector this one replaces (on reload) over to this one."""
        self.queries_total.update(old.queries_total)
        for name, counts in old._incremental.items():
            mine = self._incremental.get(name)
            if mine is not None and mine.spec.sql == counts.spec.sql:
                self._incremental[name] = counts

    @property
    def name(self) -> str:
        """The target's name (its ``target`` label)."""
        return self.db.config.name

    def runnable(self) -> list[CollectorSpec]:
        """Return the collectors this target can run now."""
        return [
            s for s in self.catalog.collectors if s.name not in self.skipped and s.name not in self.broken
        ]

    def fresh_results(self) -> dict[str, CollectorResult]:
        """Return the results to serve: fresh when the latest refresh began, or still being replaced."""
        # Judged as of the refresh's start: a result that was fresh then was not re-run, so it
        # must not vanish because the refresh took a while. A collector still running (within its
        # own timeout) keeps its previous result until the new one arrives.
        as_of = min(time.monotonic(), self._refresh_started)
        return {
            name: result
            for name, result in self.results.items()
            if name not in self.skipped
            and name not in self.broken
            and (
                result.finished >= self._refresh_started
                or as_of - result.finished < self.catalog.get(name).ttl
                or name in self._inflight
            )
        }

    async def refresh(self, timeout: float) -> None:
        """Bring results up to date, waiting at most ``timeout``; concurrent callers share one refresh."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._do_refresh(timeout))
        try:
            await asyncio.wait_for(asyncio.shield(self._refresh), timeout)
        except TimeoutError:
            log.warning("scrape deadline passed", extra={"fields": {"target": self.name}})

    async def _do_refresh(self, timeout: float) -> None:
        started = time.monotonic()
        deadline = started + timeout
        try:
            await self.db.ensure_connected()
            await self.db.ping(min(self.db.config.connect_timeout, timeout))
            facts_before = self.db.facts_generation
            await self.db.refresh_facts(timeout)
            if self.db.facts_generation != facts_before or self._validated_generation < 0:
                await self.gate_and_validate(timeout)
        except (ConnectError, QueryError) as error:
            self._went_down(str(error))
            return
        except Exception as error:
            # Whatever goes wrong with one target, /metrics must still answer for the others.
            log.exception("refresh failed", extra={"fields": {"target": self.name}})
            await self.db.disconnect()
            self._went_down(f"unexpected error: {error!r}")
            return
        self.up = True
        # Results of earlier refreshes are judged by their TTL; those of this one are fresh until the next.
        self._refresh_started = started
        fresh = self.fresh_results()
        stale = [spec for spec in self.runnable() if spec.name not in fresh or spec.name in self._inflight]
        # PostgreSQL-only collectors first: they diagnose locks on Prefect's tables, so they must not
        # queue for a connection behind the Prefect queries stuck on those very locks.
        stale.sort(key=lambda spec: spec.requires.needs_prefect)
        tasks = [self._start(spec, deadline) for spec in stale]
        remaining = deadline - time.monotonic()
        if tasks and remaining > 0:
            await asyncio.wait(tasks, timeout=remaining)

    def _went_down(self, error: str) -> None:
        if self.up:
            log.warning("target down", extra={"fields": {"target": self.name, "error": error}})
        self.up = False
        self.results.clear()
        self.db.forget_facts()
        self._validated_generation = -1

    async def gate_and_validate(self, timeout: float) -> None:
        """Decide which collectors run here, and check their result columns once per schema change."""
        facts = self.db.facts
        assert facts is not None
        skipped: dict[str, str] = {}
        broken: dict[str, str] = {}
        unsure = False
        for spec in self.catalog.collectors:
            reason = unmet_requirement(spec.requires, facts)
            if reason is None and spec.requires.needs_prefect and not facts.has_prefect_schema:
                reason = "no Prefect schema (missing: " + ", ".join(facts.missing_prefect_tables()) + ")"
            if reason is not None:
                skipped[spec.name] = reason
                continue
            try:
                problem = await self._check_columns(spec, timeout)
            except QueryError as error:
                if error.status == "connection":
                    raise
                # Preparing takes the same table locks as running: a held lock is no verdict on the query.
                unsure = True
                continue
            if problem is not None:
                broken[spec.name] = problem
                self.queries_total[(spec.name, "invalid")] += 1
                log.error("collector disabled", extra={"fields": {"collector": spec.name, "error": problem}})
        self.skipped, self.broken = skipped, broken
        self._validated_generation = -1 if unsure else self.db.facts_generation

    async def _check_columns(self, spec: CollectorSpec, timeout: float) -> str | None:
        """Return why the query's result does not fit its header; raise QueryError when unsure."""
        try:
            columns = await self.db.result_columns(spec.sql, min(timeout, spec.timeout))
        except QueryError as error:
            if error.status in ("connection", "timeout", "lock_timeout"):
                raise
            return f"{spec.path}: the query does not prepare: {error}"
        return "; ".join(check_result_columns(spec, columns)) or None

    def _start(self, spec: CollectorSpec, deadline: float) -> asyncio.Task[CollectorResult]:
        task = self._inflight.get(spec.name)
        if task is None:
            task = asyncio.create_task(self._run(spec, deadline))
            self._inflight[spec.name] = task
            task.add_done_callback(lambda _: self._inflight.pop(spec.name, None))
        return task

    async def _run(self, spec: CollectorSpec, deadline: float | None = None) -> CollectorResult:
        started = time.monotonic()
        acquire_timeout = None if deadline is None else max(spec.timeout, deadline - started)
        counts = self._incremental.get(spec.name)
        settings = counts.settings() if counts else None
        status, error, rows, samples = "success", None, 0, {}
        try:
            records = await self.db.fetch(spec.sql, spec.timeout, settings, acquire_timeout)
            rows = len(records)
            if counts is not None:
                now = None
                if not counts.primed:
                    clock = await self.db.fetch("SELECT now() AS now", spec.timeout)
                    now = clock[0]["now"]
                counts.absorb(records, now)
                samples = counts.samples()
            else:
                samples = build_samples(spec, records)
        except QueryError as failure:
            status, error = failure.status, str(failure)
        except ConnectError as failure:
            status, error = "connection", str(failure)
        except InvalidResult as failure:
            status, error = "invalid", f"{spec.path}: {failure}"
        except Exception as failure:
            # A bug in one collector must cost only that collector's series, never the scrape.
            log.exception("collector crashed", extra={"fields": {"collector": spec.name}})
            status, error = "error", f"unexpected error: {failure!r}"
        finished = time.monotonic()
        kept, folded = self._capped(spec, samples) if status == "success" else ({}, {})
        text = {m.name: self._writers[m.name].write(kept[m.name]) for m in spec.metrics if m.name in kept}
        result = CollectorResult(status, finished - started, finished, rows, kept, error, folded, text)
        self.queries_total[(spec.name, status)] += 1
        self.results[spec.name] = result
        if error:
            fields = {"target": self.name, "collector": spec.name, "status": status, "error": error}
            log.warning("collector failed", extra={"fields": fields})
        return result

    def _capped(
        self, spec: CollectorSpec, samples: Mapping[str, Mapping[LabelValues, float]]
    ) -> tuple[dict[str, dict[LabelValues, float]], dict[str, int]]:
        """Cap every metric's series at ``max_series``, folding the excess into an ``other`` series."""
        kept: dict[str, dict[LabelValues, float]] = {}
        folded: dict[str, int] = {}
        for metric in spec.metrics:
            kept[metric.name], folded[metric.name] = cap_series(
                samples.get(metric.name, {}), self.max_series, metric.fold
            )
            if folded[metric.name]:
                fields = {"target": self.name, "metric": metric.name, "folded": folded[metric.name]}
                log.warning("series folded into other", extra={"fields": fields})
        return kept, folded

    async def run_once(self, spec: CollectorSpec) -> CollectorResult:
        """Run one collector now, ignoring its cache (for ``--check``)."""
        return await self._run(spec)

    async def close(self) -> None:
        """Cancel work in flight and close the connections."""
        for task in [*self._inflight.values(), *([self._refresh] if self._refresh else [])]:
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        await self.db.close()
