"""Running the catalog's collectors against one target: rounds, TTL cache, runs never doubled, failures
kept apart, collectors reading a locked table left out.

``CollectorRuns`` is also the one place that interprets what it holds: ``snapshot`` turns its
results, gates and verdicts into ``CollectorStatus`` records, and nothing else derives a
collector's state.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, KeysView, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from exporter.catalog import Catalog, CollectorSpec, check_result_columns
from exporter.database import TargetDatabase
from exporter.errors import ConnectError, QueryError
from exporter.freshness import COALESCE, is_fresh, next_run, stale_limit
from exporter.gates import unmet_requirement
from exporter.incremental import OLDEST_TRANSACTION_SQL, RUNNING_XID_SQL, IncrementalCounts, Mark
from exporter.samples import InvalidResult, LabelValues, Series, build_series, cap_series
from exporter.segments import Segment
from exporter.status import CollectorResult, CollectorState, CollectorStatus
from exporter.textformat import SampleWriter

log = logging.getLogger(__name__)

# The look for exclusive locks before a round is cheap; if it is not, the round goes on without it.
LOCK_LOOK_TIMEOUT = 1.0
# Series built (or written as text) between two turns of the event loop: about 0.5 ms. A slice of
# rows holds this many series over all the collector's metrics (running_heartbeats has seven).
ENCODE_SLICE = 500
# Sample text shorter than this is deflated on the event loop (well under a millisecond); handing it
# to the encoding thread would cost more than that in the hand-over.
INLINE_DEFLATE_BYTES = 64 * 1024


def collector_status(
    spec: CollectorSpec,
    *,
    latest: CollectorResult | None,
    good: CollectorResult | None,
    current: bool,
    skipped: str | None,
    invalid: str | None,
    up: bool,
    now: float,
) -> CollectorStatus:
    """Decide what one collector's results, gates and verdicts mean: the one place that does.

    ``latest`` is its latest run whatever the outcome, ``good`` its newest successful one, ``current``
    whether ``latest`` is still current (``freshness.is_fresh``).
    """
    success: bool | None
    served: CollectorResult | None = None
    if invalid is not None:
        state, reason, success = CollectorState.INVALID, invalid, False
    elif skipped is not None:
        state, reason, success = CollectorState.SKIPPED, skipped, None
    elif latest is None:
        # A collector that should have a result and has none reports failure.
        state, reason, success = CollectorState.NOT_RUN, None, (False if up else None)
    elif latest.ok and current:
        state, reason, success, served = CollectorState.OK, None, True, latest
    elif good is not None and now - good.finished <= stale_limit(spec.ttl):
        # The latest run failed, or no run replaced the result in time: serve the last good one, and
        # report whether the latest run itself succeeded.
        state, success, served = CollectorState.STALE, latest.ok, good
        reason = latest.error or f"no new result for {now - good.finished:.0f}s"
    else:
        state, success = CollectorState.FAILED, False
        reason = latest.error or f"no new result for {now - latest.finished:.0f}s"
    return CollectorStatus(
        name=spec.name,
        description=spec.description,
        state=state,
        reason=reason,
        latest=latest,
        enabled=(skipped is None and invalid is None) if up else None,
        success=success,
        served=served,
        fresh=latest if current else None,
        age=None if latest is None else now - latest.finished,
        last_success=None if good is None else good.finished_at,
    )


# ACCESS EXCLUSIVE locks, granted or awaited, on tables of this database that the exporter's queries
# would name (visible on the search path). pg_locks takes no lock on the tables themselves, so this
# look never queues behind the lock it is looking for.
EXCLUSIVE_LOCKS_SQL = """
SELECT c.relname AS relation, l.pid, l.granted
FROM pg_locks AS l
JOIN pg_class AS c ON c.oid = l.relation
WHERE l.locktype = 'relation'
  AND l.mode = 'AccessExclusiveLock'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND pg_table_is_visible(c.oid)
"""


class CollectorRuns:
    """Runs the catalog's collectors against one target and keeps their latest and newest good results.

    Work comes in rounds, one at a time: connect, read the facts, gate, look for exclusive locks
    once, then start the collectors that are due. ``refresh_ahead`` (the background refresher) starts
    those due now or soon and returns; ``refresh`` (start-up, ``/readyz``, tests) starts those expired
    and waits for them. A collector never runs twice at once.
    """

    def __init__(
        self,
        db: TargetDatabase,
        catalog: Catalog,
        max_series: int = 2000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.max_series = max_series
        self.clock = clock
        self.wall_clock = wall_clock
        self.up = False
        self.queries_total: Counter[tuple[str, str]] = Counter()
        # Called whenever a collector's run ends (the refresher wakes up to schedule its next one).
        self.on_result: Callable[[], None] | None = None
        self._results: dict[str, CollectorResult] = {}
        self._good: dict[str, CollectorResult] = {}
        self._skipped: dict[str, str] = {}
        self._invalid: dict[str, str] = {}
        self._validated_generation = -1
        self._inflight: dict[str, asyncio.Task[CollectorResult]] = {}
        self._round: asyncio.Task[None] | None = None
        self._refresh_started = math.inf
        self._incremental = {s.name: IncrementalCounts(s) for s in catalog.collectors if s.incremental}
        # Per metric folded by the series cap, the series it kept, so that it keeps the same ones.
        self._kept: dict[str, KeysView[LabelValues]] = {}
        self._writers = {
            m.name: SampleWriter(m, db.config.name) for spec in catalog.collectors for m in spec.metrics
        }
        # One thread per target deflates the sample text (see _encode); one keeps memory to one malloc
        # arena.
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"encode-{db.config.name}")
        # One result encoded at a time: each turn of the event loop runs one slice of every encoding
        # in progress, so with several at once a scrape waited for several slices at each of its steps.
        self._encoding = asyncio.Lock()

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

    def _current(self, name: str, now: float) -> bool:
        result = self._results.get(name)
        return result is not None and is_fresh(
            result.finished, self.catalog.get(name).ttl, self._refresh_started, now, name in self._inflight
        )

    def snapshot(self) -> tuple[CollectorStatus, ...]:
        """Return the status of every collector of the catalog on this target."""
        now = self.clock()
        return tuple(
            collector_status(
                spec,
                latest=self._results.get(spec.name),
                good=self._good.get(spec.name),
                current=self.up and self._current(spec.name, now),
                skipped=self._skipped.get(spec.name),
                invalid=self._invalid.get(spec.name),
                up=self.up,
                now=now,
            )
            for spec in self.catalog.collectors
        )

    def pause(self) -> None:
        """Refreshing pauses: results of the latest round are no longer current for that alone."""
        self._refresh_started = math.inf

    def next_due(self) -> float:
        """Return when the next collector not running now is due (infinite: none is)."""
        due = math.inf
        for spec in self.runnable():
            if spec.name in self._inflight:
                continue
            latest = self._results.get(spec.name)
            if latest is None:
                return -math.inf
            due = min(due, next_run(spec.ttl, latest.finished, latest.status))
        return due

    def _due(self, spec: CollectorSpec, now: float, ahead: bool) -> bool:
        if spec.name in self._inflight:
            return False
        latest = self._results.get(spec.name)
        if latest is None:
            return True
        upcoming = next_run(spec.ttl, latest.finished, latest.status)
        if ahead:
            return upcoming <= now + COALESCE
        return upcoming <= now or now - latest.finished >= spec.ttl

    async def refresh(self, timeout: float) -> None:
        """Run a round (or join the one in flight) and wait, at most ``timeout``, for what is running."""
        deadline = self.clock() + timeout
        await self._join_round(timeout, ahead=False)
        pending = list(self._inflight.values())
        remaining = deadline - self.clock()
        if pending and remaining > 0:
            await asyncio.wait(pending, timeout=remaining)
        if any(not task.done() for task in pending):
            log.warning("refresh deadline passed", extra={"fields": {"target": self.name}})

    async def refresh_ahead(self, timeout: float) -> None:
        """Run a background round: start the collectors due now or soon, without waiting for them."""
        await self._join_round(timeout, ahead=True)

    async def _join_round(self, timeout: float, ahead: bool) -> None:
        if self._round is None or self._round.done():
            self._round = asyncio.create_task(self._do_round(timeout, ahead))
        try:
            await asyncio.wait_for(asyncio.shield(self._round), timeout)
        except TimeoutError:
            log.warning("refresh round deadline passed", extra={"fields": {"target": self.name}})

    async def _do_round(self, timeout: float, ahead: bool) -> None:
        started = self.clock()
        try:
            await self.db.ensure_connected()
            await self.db.ping(min(self.db.config.connect_timeout, timeout))
            facts_before = self.db.facts_generation
            await self.db.refresh_facts(timeout)
            locked = await self._exclusive_locks(timeout)
            if self.db.facts_generation != facts_before or self._validated_generation < 0:
                await self.gate_and_validate(timeout, locked)
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
        # Results of earlier rounds are judged by their TTL; those of this one are current until the next.
        self._refresh_started = started
        now = self.clock()
        due = [spec for spec in self.runnable() if self._due(spec, now, ahead)]
        # PostgreSQL-only collectors first: they diagnose locks on Prefect's tables, so they must not
        # queue for a connection behind the Prefect queries stuck on those very locks.
        due.sort(key=lambda spec: spec.requires.needs_prefect)
        # Waiting for a connection of the small pool may take the round's whole time, in the background too.
        deadline = started + timeout
        left_out: dict[str, str] = {}
        for spec in due:
            holder = next((locked[t] for t in spec.requires.tables if t in locked), None)
            if holder is None:
                self._start(spec, deadline)
            else:
                # It would wait out its lock_timeout behind the lock: serve its last good result instead.
                self._record(
                    spec, CollectorResult("locked", 0.0, now, error=holder, finished_at=self.wall_clock())
                )
                left_out[spec.name] = holder
        if left_out:
            fields = {
                "target": self.name,
                "collectors": ",".join(left_out),
                "locks": "; ".join(sorted(set(left_out.values()))),
            }
            log.warning("collectors left out: a table they read is locked", extra={"fields": fields})

    async def _exclusive_locks(self, timeout: float) -> dict[str, str]:
        """Return, by table, who holds or awaits an ACCESS EXCLUSIVE lock on it (empty when unsure)."""
        try:
            rows = await self.db.fetch(EXCLUSIVE_LOCKS_SQL, min(timeout, LOCK_LOOK_TIMEOUT))
        except QueryError as error:
            if error.status == "connection":
                raise
            return {}
        found: dict[str, list[str]] = {}
        for row in rows:
            how = "held" if row["granted"] else "awaited"
            found.setdefault(row["relation"], []).append(f"{how} by pid {row['pid']}")
        return {
            table: f"{table} is locked: ACCESS EXCLUSIVE {', '.join(sorted(holders))}"
            for table, holders in found.items()
        }

    def _went_down(self, error: str) -> None:
        if self.up:
            log.warning("target down", extra={"fields": {"target": self.name, "error": error}})
        self.up = False
        self._results.clear()
        self._good.clear()
        self.db.forget_facts()
        self._validated_generation = -1

    async def gate_and_validate(self, timeout: float, locked: Mapping[str, str] | None = None) -> None:
        """Decide which collectors run here, and check their result columns once per schema change.

        A collector reading a table in ``locked`` is not prepared now (preparing would wait on the
        lock): the verdict is left for a later round.
        """
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
            if locked and any(table in locked for table in spec.requires.tables):
                unsure = True
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
        samples: Mapping[str, Segment] = {}
        folded: Mapping[str, int] = {}
        try:
            if counts is not None:
                if counts.needs_mark():
                    counts.begin(await self._mark(spec))
                records = await self.db.fetch(spec.sql, spec.timeout, counts.settings(), acquire_timeout)
                counts.absorb(records)
                series = counts.series()
            else:
                records = await self.db.fetch(spec.sql, spec.timeout, None, acquire_timeout)
                series = None
            rows = len(records)
            async with self._encoding:
                samples, folded = await self._encode(spec, records, series)
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
        for metric, count in folded.items():
            if count:
                fields = {"target": self.name, "metric": metric, "folded": count}
                log.warning("series folded into other", extra={"fields": fields})
        result = CollectorResult(
            status, finished - started, finished, rows, error, folded, samples, finished_at=self.wall_clock()
        )
        self._record(spec, result)
        if error:
            fields = {"target": self.name, "collector": spec.name, "status": status, "error": error}
            log.warning("collector failed", extra={"fields": fields})
        return result

    async def _encode(
        self, spec: CollectorSpec, records: Sequence[Mapping[str, Any]], series: Mapping[str, Series] | None
    ) -> tuple[dict[str, Segment], dict[str, int]]:
        """Turn one run's rows (or incremental series) into each metric's capped sample text, deflated.

        CPU work in proportion to the rows (tens of milliseconds for thousands): done in slices of
        ``ENCODE_SLICE`` series with the event loop let in between, so that a scrape arriving
        meanwhile waits for one slice, not for the whole result. Deflating goes to the encoding thread:
        zlib lets go of the GIL while it compresses. (Doing it all in that thread made every query's
        round trip wait for the GIL instead: 1.7x the SQL's server time for a full collection.)
        """
        if series is None:
            built: dict[str, Series] = {m.name: {} for m in spec.metrics}
            rows = max(1, ENCODE_SLICE // max(1, len(spec.metrics)))
            for start in range(0, len(records), rows):
                build_series(spec, records[start : start + rows], built)
                await asyncio.sleep(0)
            series = built
        loop = asyncio.get_running_loop()
        samples: dict[str, Segment] = {}
        folded: dict[str, int] = {}
        for metric in spec.metrics:
            name = metric.name
            kept, folded[name] = cap_series(
                series.get(name, {}), self.max_series, metric.fold, self._kept.get(name, ())
            )
            # The kept series are remembered only while the cap folds some: under it, every series
            # is kept anyway, and remembering them all would hold every label of every series.
            if folded[name]:
                self._kept[name] = kept.keys()
            else:
                self._kept.pop(name, None)
            items, writer, text = list(kept.items()), self._writers[name], []
            for start in range(0, len(items), ENCODE_SLICE):
                text.append(writer.write(items[start : start + ENCODE_SLICE]))
                await asyncio.sleep(0)
            raw = "".join(text).encode()
            if len(raw) < INLINE_DEFLATE_BYTES:
                samples[name] = Segment.of(raw)
            else:
                samples[name] = await loop.run_in_executor(self._encoder, Segment.of, raw)
        return samples, folded

    def _record(self, spec: CollectorSpec, result: CollectorResult) -> None:
        self.queries_total[(spec.name, result.status)] += 1
        self._results[spec.name] = result
        if result.ok:
            self._good[spec.name] = result
        if self.on_result is not None:
            self.on_result()

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
        self._good.clear()

    async def close(self) -> None:
        """Cancel work in flight and close the connections."""
        tasks = [*self._inflight.values(), *([self._round] if self._round else [])]
        for task in tasks:
            task.cancel()
        # Before the encoding thread goes: a run still in flight would hand it work after shutdown.
        await asyncio.gather(*tasks, return_exceptions=True)
        self._encoder.shutdown(wait=False, cancel_futures=True)
        await self.db.close()
