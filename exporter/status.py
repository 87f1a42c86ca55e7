"""What the exporter knows right now, as read-only records.

A ``Target`` publishes one ``TargetStatus`` snapshot; the self-metrics, the ``/`` page, ``--check``
and ``doctor`` read snapshots and never the live objects behind them. The state of a collector
(ok, stale, failed, skipped and why, invalid, not run yet) is decided in one place,
``exporter.collection.collector_status``; everything here is data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from exporter.facts import TargetFacts
from exporter.releases import PrefectRelease
from exporter.segments import Segment


@dataclass(frozen=True)
class CollectorResult:
    """The outcome of one run of one collector."""

    # The ``status`` label of prefect_db_exporter_queries_total: success, timeout, lock_timeout, …
    status: str
    duration: float
    # time.monotonic() when the run ended.
    finished: float
    rows: int = 0
    error: str | None = None
    # Series of each metric folded into the ``other`` series by the series cap.
    folded: Mapping[str, int] = field(default_factory=dict)
    # The samples of each metric as exposition text, written and deflated once when the result arrives.
    samples: Mapping[str, Segment] = field(default_factory=dict)
    # time.time() when the run ended (what prefect_db_exporter_collector_last_success_timestamp_seconds says).
    finished_at: float = 0.0

    @property
    def ok(self) -> bool:
        """True when the run succeeded."""
        return self.status == "success"


class CollectorState(StrEnum):
    """Where a collector stands on one target."""

    OK = "ok"
    FAILED = "failed"
    # Its latest run failed (or was left out because a table it reads is locked), or refreshing paused:
    # the last good result is still served, for at most freshness.stale_limit(ttl) after it was taken.
    STALE = "stale"
    SKIPPED = "skipped"  # a gate (PostgreSQL version, table, column, schema revision) keeps it off
    INVALID = "invalid"  # its query does not fit its header on this database
    NOT_RUN = "not run yet"


@dataclass(frozen=True)
class CollectorStatus:
    """One collector on one target."""

    name: str
    description: str
    state: CollectorState
    # Why it is skipped or invalid, or the latest run's error.
    reason: str | None
    # The latest run, whatever its outcome.
    latest: CollectorResult | None
    # Whether the collector runs here (None while the target is down: not known).
    enabled: bool | None
    # What prefect_db_exporter_collector_success reports (None: no sample).
    success: bool | None
    # The result whose series /metrics serves now (None: the collector's series are absent).
    served: CollectorResult | None
    # ``latest`` while it is current: its duration is reported (None: it is not).
    fresh: CollectorResult | None
    # Seconds since ``latest`` finished.
    age: float | None
    # time.time() when the newest good result was taken (None: there is none).
    last_success: float | None = None


@dataclass(frozen=True)
class SamplerStatus:
    """The sampler of one target: its health and the counters it accumulated."""

    ticks: int
    errors: int
    overruns: int
    last_duration: float
    interval: float
    last_error: str | None
    # (operation, state, wait_event_type) -> sessions seen.
    sessions: Mapping[tuple[str, str, str], int]
    # (operation, blocker operation, relation) -> waiting sessions seen.
    lock_waits: Mapping[tuple[str, str, str], int]
    # relation -> estimated seconds that its last_polled updates waited on locks.
    last_polled_wait_seconds: Mapping[str, float]


@dataclass(frozen=True)
class ServerLogStatus:
    """The server-log follower of one target."""

    pattern: str
    format: str
    following: str | None
    last_error: str | None
    deadlocks: int
    by_operation: Mapping[str, int]


@dataclass(frozen=True)
class TargetStatus:
    """One watched database, as of one moment."""

    name: str
    # The DSN with its password masked.
    dsn: str
    up: bool
    last_error: str | None
    facts: TargetFacts | None
    release: PrefectRelease | None
    collectors: tuple[CollectorStatus, ...]
    # (collector, status) -> runs since start.
    queries_total: Mapping[tuple[str, str], int]
    sampler: SamplerStatus | None
    server_log: ServerLogStatus | None

    def collector(self, name: str) -> CollectorStatus | None:
        """Return the status of the collector called ``name``."""
        return next((c for c in self.collectors if c.name == name), None)


@dataclass(frozen=True)
class ExporterStatus:
    """The whole exporter, as of one moment."""

    version: str
    # time.time() at start-up.
    started: float
    config_source: str
    reload_ok: bool
    # time.time() of the latest successful (re)load.
    reload_success_time: float
    targets: tuple[TargetStatus, ...]
