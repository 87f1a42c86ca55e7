"""Between scrapes: sample pg_stat_activity about once a second and count what sessions were doing.

A 15 s scrape sees almost none of the 100-500 ms lock waits that two workers polling one queue
cause; sampling once a second and counting makes them visible on average (the idea of Active
Session History): ``rate(prefect_db_session_samples_total[5m])`` is the average number of busy
sessions per operation, and each sample of a waiting session adds the sampling interval to the
time-spent counters, an unbiased estimate of the real waiting time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from exporter.database import TargetDatabase, describe
from exporter.errors import ConnectError
from exporter.labels import OTHER, relation_label
from exporter.operations import Classifier
from exporter.status import SamplerStatus

log = logging.getLogger(__name__)

SAMPLE_SQL = """
SELECT a.pid,
       coalesce(a.state, 'unknown') AS state,
       coalesce(a.wait_event_type, 'none') AS wait_event_type,
       coalesce(a.application_name, '') AS application_name,
       a.query,
       CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END AS blockers,
       CASE WHEN a.wait_event_type = 'Lock' THEN (
           SELECT c.relname
           FROM pg_locks AS l
           JOIN pg_class AS c ON c.oid = l.relation AND c.relkind IN ('r', 'p')
           WHERE l.pid = a.pid AND l.locktype IN ('relation', 'tuple', 'page')
           -- The lock it waits for first; else the row (tuple) lock it holds while waiting on a transaction.
           ORDER BY l.granted, l.locktype = 'tuple' DESC
           LIMIT 1)
       END AS relation
FROM pg_stat_activity AS a
WHERE a.datname = current_database()
  AND a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend'
  AND a.state IS DISTINCT FROM 'idle'
"""


@dataclass(frozen=True)
class ActiveSession:
    """One non-idle session seen in one tick."""

    pid: int
    state: str
    wait_event_type: str
    application_name: str
    query: str | None
    blockers: tuple[int, ...]
    relation: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ActiveSession:
        """Build a sample from one row of SAMPLE_SQL."""
        return cls(
            pid=row["pid"],
            state=row["state"],
            wait_event_type=row["wait_event_type"],
            application_name=row["application_name"],
            query=row["query"],
            blockers=tuple(row["blockers"] or ()),
            relation=row["relation"],
        )


class SamplerCounts:
    """The counters the sampler accumulates; pure bookkeeping, no I/O."""

    def __init__(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self.sessions: Counter[tuple[str, str, str]] = Counter()
        self.lock_waits: Counter[tuple[str, str, str]] = Counter()
        self.last_polled_wait_seconds: dict[str, float] = dict.fromkeys(
            classifier.last_polled_tables.values(), 0.0
        )
        # Samples of pg_stat_activity taken (prefect_db_sampler_samples_total).
        self.ticks = 0

    def add(self, sessions: Sequence[ActiveSession], weight: float) -> None:
        """Count one tick; ``weight`` is the time in seconds that the tick stands for."""
        self.ticks += 1
        operation = {s.pid: self.classifier.classify(s.query, s.application_name) for s in sessions}
        for session in sessions:
            op = operation[session.pid]
            self.sessions[(op, session.state, session.wait_event_type)] += 1
            if not session.blockers:
                continue
            relation = relation_label(session.relation)
            for blocker_op in sorted({operation.get(pid, OTHER) for pid in session.blockers}):
                self.lock_waits[(op, blocker_op, relation)] += 1
            polled = self.classifier.last_polled_tables.get(op)
            if polled is not None:
                self.last_polled_wait_seconds[polled] += weight


class Sampler:
    """Samples one target on a connection of its own, until stopped."""

    def __init__(
        self, db: TargetDatabase, classifier: Classifier, interval: float = 1.0, max_interval: float = 10.0
    ) -> None:
        self.db = db
        self.interval = interval
        self.max_interval = max(interval, max_interval)
        self.counts = SamplerCounts(classifier)
        self.errors = 0
        self.overruns = 0
        self.last_duration = 0.0
        self.duration_total = 0.0
        self.current_interval = interval
        self.last_error: str | None = None
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def adopt_counters(self, old: Sampler) -> None:
        """Carry the counters of the sampler this one replaces (on reload) over to this one."""
        classifier = self.counts.classifier
        self.counts = old.counts
        self.counts.classifier = classifier
        self.errors, self.overruns = old.errors, old.overruns

    def status(self) -> SamplerStatus:
        """Return the sampler's health and a copy of its counters."""
        counts = self.counts
        return SamplerStatus(
            ticks=counts.ticks,
            errors=self.errors,
            overruns=self.overruns,
            last_duration=self.last_duration,
            interval=self.current_interval,
            last_error=self.last_error,
            sessions=dict(counts.sessions),
            lock_waits=dict(counts.lock_waits),
            last_polled_wait_seconds=dict(counts.last_polled_wait_seconds),
        )

    def start(self) -> None:
        """Start sampling in the background."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=f"sampler-{self.db.config.name}")

    async def stop(self) -> None:
        """Stop sampling and close the sampler's connection."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _loop(self) -> None:
        backoff = self.interval
        previous: float | None = None
        while True:
            started = time.monotonic()
            try:
                sessions = await self.sample_once()
            except (ConnectError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                self.errors += 1
                self.last_error = describe(error)
                await self._close()
                previous = None
                fields = {"target": self.db.config.name, "error": self.last_error}
                log.warning("sampler failed", extra={"fields": fields})
                await asyncio.sleep(backoff)
                backoff = min(30.0, backoff * 2)
                continue
            backoff = self.interval
            now = time.monotonic()
            # A sample stands for the time since the previous one, but never for a long gap.
            weight = min(now - previous, 2 * self.current_interval) if previous else self.current_interval
            previous = now
            self.counts.add(sessions, weight)
            self._pace(now - started)
            await asyncio.sleep(max(0.0, self.current_interval - (time.monotonic() - started)))

    def _pace(self, duration: float) -> None:
        """Back off when sampling costs more than a small share of the interval; recover when cheap."""
        self.last_duration = duration
        self.duration_total += duration
        if duration > self.interval:
            self.overruns += 1
        if duration > self.current_interval / 4:
            self.current_interval = min(self.max_interval, self.current_interval * 2)
        elif duration < self.current_interval / 20:
            self.current_interval = max(self.interval, self.current_interval / 2)

    async def sample_once(self) -> list[ActiveSession]:
        """Take one sample of the target's sessions."""
        if self._conn is None or self._conn.is_closed():
            self._conn = await self.db.connect_single()
        rows = await self._conn.fetch(SAMPLE_SQL, timeout=max(1.0, self.interval))
        return [ActiveSession.from_row(row) for row in rows]
