"""Running the catalog's collectors against one target: TTL cache, shared in-flight runs, failures kept apart.

``CollectorRuns`` is also the one place that interprets what it holds: ``snapshot`` turns its
results, gates and verdicts into ``CollectorStatus`` records, and nothing else derives a
collector's state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, KeysView, Mapping

from exporter.catalog import Catalog, CollectorSpec, check_result_columns
from exporter.database import TargetDatabase
from exporter.errors import ConnectError, QueryError
from exporter.gates import unmet_requirement
from exporter.incremental import OLDEST_TRANSACTION_SQL, RUNNING_XID_SQL, IncrementalCounts, Mark
from exporter.samples import InvalidResult, LabelValues, Series, build_series, cap_series
from exporter.status import CollectorResult, CollectorState, CollectorStatus
from exporter.textformat import SampleWriter

log = logging.getLogger(__name__)


def is_fresh(result: CollectorResult, ttl: float, refresh_started: float, now: float, running: bool) -> bool:
    """True when ``result`` is still served: fresh when the latest refresh began, or being replaced.

    Judged as of the refresh's start: a result that was fresh then was not re-run, so it must not
    vanish because the refresh took a while. A collector still running (within its own timeout)
    keeps its previous result until the new one arrives.
    """
    as_of = min(now, refresh_started)
    return result.finished >= refresh_started or as_of - result.finished < ttl or running


def collector_status(
    spec: CollectorSpec,
    *,
    latest: CollectorResult | None,
    fresh: CollectorResult | None,
    skipped: str | None,
    invalid: str | None,
    up: bool,
    now: float,
) -> CollectorStatus:
    """Decide what one collector's results, gates and verdicts mean: the one place that does."""
    success: bool | None
    if invalid is not None:
        state, reason, success = CollectorState.INVALID, invalid, False
    elif skipped is not None:
        state, reason, success = CollectorState.SKIPPED, skipped, None
    else:
        if latest is None:
            state, reason = CollectorState.NOT_RUN, None
        else:
            state = CollectorState.OK if latest.ok else CollectorState.FAILED
            reason = latest.error
        # A collector that should have a fresh result and has none reports failure.
        success = fresh.ok if fresh is not None else (False if up or latest is not None else None)
    return CollectorStatus(
        name=spec.name,
        description=spec.description,
        state=state,
        reason=reason,
        latest=latest,
        enabled=(skipped is None and invalid is None) if up else None,
        success=success,
        served=fresh if fresh is not None and fresh.ok else None,
        fresh=fresh,
        age=None if latest is None else now - latest.finished,
    )


class CollectorRuns:
    """Runs the catalog's collectors against one target and keeps their latest results."""

    def __init__(
        self,
        db: TargetDatabase,
        catalog: Catalog,
        max_series: int = 2000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.max_series = max_series
        self.clock = clock
        self.up = False
        self.queries_total: Counter[tuple[str, str]] = Counter()
        self._results: dict[str, CollectorResult] = {}
        self._skipped: dict[str, str] = {}
        self._invalid: dict[str, str] = {}
        self._validated_generation = -1
        self._inflight: dict[str, asyncio.Task[CollectorResult]] = {}
        self._refresh: asyncio.Task[None] | None = None
        self._refresh_started = float("inf")
        self._incremental = {s.name: IncrementalCounts(s) for s in catalog.collectors if s.incremental}
        # The series each metric served last, so that the series cap keeps the same ones.
        self._kept: dict[str, KeysView[LabelValues]] = {}
        self._writers = {
            m.name: SampleWriter(m, db.config.name) for spec in catalog.collectors for m in spec.metrics
        }

    @property
    def name(self) -> str:
        """The target's name (its ``target`` label)."""
        return self.db.config.name

    def adopt_counters(self, old: CollectorRuns) -> None:
        """Carry the counters of the runs this one replaces (on reload) over to this one."""
        self.queries_total.update(old.queries_total)
        for name, counts in old._incremental.items():
            mine = self._incremental.get(name)
            if mine is not None and mine.spec.sql == counts.spec.sql:
                self._incremental[name] = counts

    def runnable(self) -> list[CollectorSpec]:
        """Return the collectors this target can run now."""
        return [
            s for s in self.catalog.collectors if s.name not in self._skipped and s.name not in self._invalid
        ]

    def _fresh(self) -> dict[str, CollectorResult]:
        now = self.clock()
        return {
            name: result
            for name, result in self._results.items()
            if name not in self._skipped
            and name not in self._invalid
            and is_fresh(
                result, self.catalog.get(name).ttl, self._refresh_started, now, name in self._inflight
            )
        }

    def snapshot(self) -> tuple[CollectorStatus, ...]:
        """Return the status of every collector of the catalog on this target."""
        fresh = self._fresh() if self.up else {}
        now = self.clock()
        return tuple(
            collector_status(
                spec,
                latest=self._results.get(spec.name),
                fresh=fresh.get(spec.name),
                skipped=self._skipped.get(spec.name),
                invalid=self._invalid.get(spec.name),
                up=self.up,
                now=now,
            )
            for spec in self.catalog.collectors
        )

    async def refresh(self, timeout: float) -> None:
        """Bring results up to date, waiting at most ``timeout``; concurrent callers share one refresh."""
        if self._refresh is None or self._refresh.done():
            self._refresh = asyncio.create_task(self._do_refresh(timeout))
        try:
            await asyncio.wait_for(asyncio.shield(self._refresh), timeout)
        except TimeoutError:
            log.warning("scrape deadline passed", extra={"fields": {"target": self.name}})

    async def _do_refresh(self, timeout: float) -> None:
        started = self.clock()
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
        fresh = self._fresh()
        stale = [spec for spec in self.runnable() if spec.name not in fresh or spec.name in self._inflight]
        # PostgreSQL-only collectors first: they diagnose locks on Prefect's tables, so they must not
        # queue for a connection behind the Prefect queries stuck on those very locks.
        stale.sort(key=lambda spec: spec.requires.needs_prefect)
        tasks = [self._start(spec, deadline) for spec in stale]
        remaining = deadline - self.clock()
        if tasks and remaining > 0:
            await asyncio.wait(tasks, timeout=remaining)

    def _went_down(self, error: str) -> None:
        if self.up:
            log.warning("target down", extra={"fields": {"target": self.name, "error": error}})
        self.up = False
        self._results.clear()
        self.db.forget_facts()
        self._validated_generation = -1

    async def gate_and_validate(self, timeout: float) -> None:
        """Decide which collectors run here, and check their result columns once per schema change."""
        facts = self.db.facts
        assert facts is not None
        skipped: dict[str, str] = {}
        invalid: dict[str, str] = {}
        unsure = False
        for spec in self.catalog.collectors:
            reason = unmet_requirement(spec.requires, facts)
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
                invalid[spec.name] = problem
                self.queries_total[(spec.name, "invalid")] += 1
                log.error("collector disabled", extra={"fields": {"collector": spec.name, "error": problem}})
        self._skipped, self._invalid = skipped, invalid
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
        started = self.clock()
        acquire_timeout = None if deadline is None else max(spec.timeout, deadline - started)
        counts = self._incremental.get(spec.name)
        status, error, rows = "success", None, 0
        series: Mapping[str, Series] = {}
        try:
            if counts is not None:
                if counts.needs_mark():
                    counts.begin(await self._mark(spec))
                records = await self.db.fetch(spec.sql, spec.timeout, counts.settings(), acquire_timeout)
                counts.absorb(records)
                series = counts.series()
            else:
                records = await self.db.fetch(spec.sql, spec.timeout, None, acquire_timeout)
                series = build_series(spec, records)
            rows = len(records)
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
        finished = self.clock()
        text: dict[str, str] = {}
        folded: dict[str, int] = {}
        if status == "success":
            for metric in spec.metrics:
                kept, folded[metric.name] = cap_series(
                    series.get(metric.name, {}), self.max_series, metric.fold, self._kept.get(metric.name, ())
                )
                self._kept[metric.name] = kept.keys()
                text[metric.name] = self._writers[metric.name].write(kept)
                if folded[metric.name]:
                    fields = {"target": self.name, "metric": metric.name, "folded": folded[metric.name]}
                    log.warning("series folded into other", extra={"fields": fields})
        result = CollectorResult(status, finished - started, finished, rows, error, folded, text)
        self.queries_total[(spec.name, status)] += 1
        self._results[spec.name] = result
        if error:
            fields = {"target": self.name, "collector": spec.name, "status": status, "error": error}
            log.warning("collector failed", extra={"fields": fields})
        return result

    async def _mark(self, spec: CollectorSpec) -> Mark:
        """Begin an incremental collector's pass: the oldest open transaction's start, then the oldest id."""
        oldest = (await self.db.fetch(OLDEST_TRANSACTION_SQL, spec.timeout))[0]
        running = (await self.db.fetch(RUNNING_XID_SQL, spec.timeout))[0]
        return Mark(oldest["now"], oldest["oldest_xact_start"], running["oldest_running_xid"])

    async def run_once(self, spec: CollectorSpec) -> CollectorResult:
        """Run one collector now, ignoring its cache (for ``--check`` and timings)."""
        return await self._run(spec)

    def forget_results(self) -> None:
        """Drop every cached result, so that the next refresh runs every collector (for benchmarks)."""
        self._results.clear()

    async def close(self) -> None:
        """Cancel work in flight and close the connections."""
        for task in [*self._inflight.values(), *([self._refresh] if self._refresh else [])]:
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        await self.db.close()
