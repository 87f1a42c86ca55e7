"""The exporter's own metrics, each defined once: name, type, help, labels and how to read it from a snapshot.

Adding a self-metric is one decorated function here: ``/metrics`` renders it, ``docs/metrics.md``
lists it (``python -m devtools.metrics_doc``), and its samples come from the ``ExporterStatus``
snapshot only, never from the live objects.
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from exporter.status import ExporterStatus, SamplerStatus, TargetStatus

Sample = tuple[tuple[str, ...], float]
Reader = Callable[[ExporterStatus], Iterable[Sample]]
# "health" metrics come before the catalog's in the exposition, "sampler" ones after them.
Group = Literal["health", "sampler"]


@dataclass(frozen=True)
class SelfMetric:
    """One of the exporter's own metrics."""

    name: str
    type: Literal["gauge", "counter"]
    help: str
    labels: tuple[str, ...]
    group: Group
    samples: Reader


SELF_METRICS: list[SelfMetric] = []


def _metric(
    name: str, mtype: Literal["gauge", "counter"], help_text: str, labels: tuple[str, ...], group: Group
) -> Callable[[Reader], Reader]:
    def register(reader: Reader) -> Reader:
        SELF_METRICS.append(SelfMetric(name, mtype, help_text, labels, group, reader))
        return reader

    return register


def _per_target(status: ExporterStatus, read: Callable[[TargetStatus], Iterable[Sample]]) -> Iterator[Sample]:
    """Yield ``read``'s samples of every target, with the target's name as the first label."""
    for target in status.targets:
        for labels, value in read(target):
            yield (target.name, *labels), value


def _flag(value: bool) -> float:
    return 1.0 if value else 0.0


# --- exporter health -----------------------------------------------------------------------------


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# Read from the installed distributions' metadata, not by importing them: rendering knows no driver.
_PYTHON_VERSION = platform.python_version()
_ASYNCPG_VERSION = _distribution_version("asyncpg")


@_metric(
    "prefect_db_exporter_build_info",
    "gauge",
    "The exporter's version, the Python version it runs on and the asyncpg driver's version; always 1.",
    ("version", "python_version", "asyncpg_version"),
    "health",
)
def _build_info(status: ExporterStatus) -> Iterable[Sample]:
    return [((status.version, _PYTHON_VERSION, _ASYNCPG_VERSION), 1.0)]


@_metric(
    "prefect_db_exporter_config_last_reload_successful",
    "gauge",
    "1 when the latest configuration reload (SIGHUP or POST /-/reload) succeeded, 0 when it failed "
    "and the previous configuration is still in use.",
    (),
    "health",
)
def _reload_ok(status: ExporterStatus) -> Iterable[Sample]:
    return [((), _flag(status.reload_ok))]


@_metric(
    "prefect_db_exporter_config_last_reload_success_timestamp_seconds",
    "gauge",
    "When the configuration was last loaded successfully, in seconds since the epoch.",
    (),
    "health",
)
def _reload_time(status: ExporterStatus) -> Iterable[Sample]:
    return [((), status.reload_success_time)]


@_metric(
    "prefect_db_up",
    "gauge",
    "1 when the target database answered this scrape, else 0.",
    ("target",),
    "health",
)
def _up(status: ExporterStatus) -> Iterable[Sample]:
    return _per_target(status, lambda t: [((), _flag(t.up))])


@_metric(
    "prefect_db_prefect_schema_present",
    "gauge",
    "1 when the target holds a readable Prefect schema, else 0; absent while the target is down.",
    ("target",),
    "health",
)
def _schema_present(status: ExporterStatus) -> Iterable[Sample]:
    return _per_target(
        status, lambda t: [((), _flag(t.facts.has_prefect_schema))] if t.up and t.facts else []
    )


@_metric(
    "prefect_db_prefect_release_info",
    "gauge",
    "What the Prefect schema revision says about the release that migrated the database (from "
    "queries/prefect_releases.yaml): the first release with that schema, and whether its worker polls "
    "can deadlock (true, false or unknown for a revision the file does not know); always 1.",
    ("target", "alembic_revision", "first_release", "poll_deadlocks"),
    "health",
)
def _release_info(status: ExporterStatus) -> Iterable[Sample]:
    def read(t: TargetStatus) -> list[Sample]:
        if not t.up or t.release is None:
            return []
        release = t.release
        return [((release.alembic_revision, release.first_release, release.poll_deadlocks), 1.0)]

    return _per_target(status, read)


@_metric(
    "prefect_db_exporter_collector_enabled",
    "gauge",
    "1 when the collector runs on this target, 0 when a gate or an invalid query disabled it (see /).",
    ("target", "collector"),
    "health",
)
def _collector_enabled(status: ExporterStatus) -> Iterable[Sample]:
    return _per_target(
        status, lambda t: [((c.name,), _flag(c.enabled)) for c in t.collectors if c.enabled is not None]
    )


@_metric(
    "prefect_db_exporter_collector_success",
    "gauge",
    "1 when the collector's latest run succeeded, else 0.",
    ("target", "collector"),
    "health",
)
def _collector_success(status: ExporterStatus) -> Iterable[Sample]:
    return _per_target(
        status, lambda t: [((c.name,), _flag(c.success)) for c in t.collectors if c.success is not None]
    )


@_metric(
    "prefect_db_exporter_collector_duration_seconds",
    "gauge",
    "How long the collector's latest run took, in seconds.",
    ("target", "collector"),
    "health",
)
def _collector_duration(status: ExporterStatus) -> Iterable[Sample]:
    return _per_target(
        status, lambda t: [((c.name,), c.fresh.duration) for c in t.collectors if c.fresh is not None]
    )


@_metric(
    "prefect_db_exporter_queries_total",
    "counter",
    "Collector runs by outcome: success, timeout, lock_timeout, permission, schema, connection, "
    "invalid or error.",
    ("target", "collector", "status"),
    "health",
)
def _queries(status: ExporterStatus) -> Iterable[Sample]:
    return _per_target(
        status, lambda t: [((c, s), float(n)) for (c, s), n in sorted(t.queries_total.items())]
    )


@_metric(
    "prefect_db_exporter_series_folded",
    "gauge",
    "Series of the metric that the collector's latest run folded into one series labelled other, because "
    "the metric had more than max_series_per_metric series.",
    ("target", "collector", "metric"),
    "health",
)
def _series_folded(status: ExporterStatus) -> Iterable[Sample]:
    def read(t: TargetStatus) -> Iterator[Sample]:
        for c in t.collectors:
            if c.fresh is not None:
                for metric, count in sorted(c.fresh.folded.items()):
                    yield (c.name, metric), float(count)

    return _per_target(status, read)


# --- sampler and server log ----------------------------------------------------------------------


@_metric(
    "prefect_db_session_samples_total",
    "counter",
    "Non-idle sessions seen by the sampler, by Prefect operation, state and wait event type; its rate is "
    "the average number of sessions busy in each operation (database load).",
    ("target", "operation", "state", "wait_event_type"),
    "sampler",
)
def _session_samples(status: ExporterStatus) -> Iterable[Sample]:
    return _per_target(
        status,
        lambda t: [(k, float(n)) for k, n in sorted(t.sampler.sessions.items())] if t.sampler else [],
    )


@_metric(
    "prefect_db_lock_wait_samples_total",
    "counter",
    "Sampled sessions waiting on a lock, by their operation, the operation of the session blocking them "
    "and the Prefect table (other for the rest).",
    ("target", "operation", "blocker_operation", "relation"),
    "sampler",
)
def _lock_wait_samples(status: ExporterStatus) -> Iterable[Sample]:
    return _per_target(
        status,
        lambda t: [(k, float(n)) for k, n in sorted(t.sampler.lock_waits.items())] if t.sampler else [],
    )


@_metric(
    "prefect_db_last_polled_lock_wait_seconds_total",
    "counter",
    "Estimated seconds that last_polled updates of deployment and work_queue spent waiting on locks "
    "(each sample of a waiting update adds the sampling interval).",
    ("target", "relation"),
    "sampler",
)
def _last_polled_wait(status: ExporterStatus) -> Iterable[Sample]:
    return _per_target(
        status,
        lambda t: (
            [((r,), s) for r, s in sorted(t.sampler.last_polled_wait_seconds.items())] if t.sampler else []
        ),
    )


def _of_sampler(read: Callable[[SamplerStatus], float]) -> Reader:
    """A reader of one number of each target's sampler (no sample where the sampler is off)."""
    return lambda status: _per_target(status, lambda t: [((), read(t.sampler))] if t.sampler else [])


_metric(
    "prefect_db_sampler_samples_total",
    "counter",
    "Samples of pg_stat_activity taken.",
    ("target",),
    "sampler",
)(_of_sampler(lambda s: float(s.ticks)))
_metric(
    "prefect_db_sampler_errors_total",
    "counter",
    "Samples that failed (database down or too slow); the sampler reconnects with back-off.",
    ("target",),
    "sampler",
)(_of_sampler(lambda s: float(s.errors)))
_metric(
    "prefect_db_sampler_overruns_total",
    "counter",
    "Samples that took longer than the configured interval.",
    ("target",),
    "sampler",
)(_of_sampler(lambda s: float(s.overruns)))
_metric(
    "prefect_db_sampler_sample_duration_seconds",
    "gauge",
    "How long the latest sample took, in seconds.",
    ("target",),
    "sampler",
)(_of_sampler(lambda s: s.last_duration))
_metric(
    "prefect_db_sampler_interval_seconds",
    "gauge",
    "The sampler's current interval, in seconds (it backs off when sampling is slow).",
    ("target",),
    "sampler",
)(_of_sampler(lambda s: s.interval))


@_metric(
    "prefect_db_server_log_deadlocks_total",
    "counter",
    "Deadlocks of the target's database found in the server log since the exporter started.",
    ("target",),
    "sampler",
)
def _log_deadlocks(status: ExporterStatus) -> Iterable[Sample]:
    return _per_target(status, lambda t: [((), float(t.server_log.deadlocks))] if t.server_log else [])


@_metric(
    "prefect_db_deadlocks_by_operation_total",
    "counter",
    "Deadlocks found in the server log, counted once for each Prefect operation among the processes "
    "involved.",
    ("target", "operation"),
    "sampler",
)
def _deadlocks_by_operation(status: ExporterStatus) -> Iterable[Sample]:
    return _per_target(
        status,
        lambda t: (
            [((op,), float(n)) for op, n in sorted(t.server_log.by_operation.items())] if t.server_log else []
        ),
    )


@_metric(
    "prefect_db_exporter_server_log_ok",
    "gauge",
    "1 when the configured server log is being read, 0 when it cannot be (see / for why).",
    ("target",),
    "sampler",
)
def _server_log_ok(status: ExporterStatus) -> Iterable[Sample]:
    return _per_target(
        status, lambda t: [((), _flag(t.server_log.last_error is None))] if t.server_log else []
    )


def group(name: Group) -> list[SelfMetric]:
    """Return the self-metrics of one group, in definition order."""
    return [m for m in SELF_METRICS if m.group == name]
