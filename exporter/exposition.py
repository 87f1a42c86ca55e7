"""Turn the latest collector results into Prometheus metric families, self-metrics included."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter import __version__
from exporter.catalog import Catalog
from exporter.collection import TargetCollector
from exporter.deadlock_log import DeadlockLog
from exporter.sampler import Sampler
from exporter.textformat import metric_header

# prometheus_client's own collectors, used without registering them anywhere global.
_PROCESS = ProcessCollector(registry=None)
_PLATFORM = PlatformCollector(registry=None)


class _Families:
    """The shape ``generate_latest`` wants: an object with ``collect()``."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


@dataclass(frozen=True)
class BuiltinMetric:
    """One of the exporter's own metrics (documented alongside the catalog's)."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...]

    def family(self) -> GaugeMetricFamily | CounterMetricFamily:
        """Return an empty family for this metric."""
        kind = CounterMetricFamily if self.type == "counter" else GaugeMetricFamily
        return kind(self.name, self.help, labels=list(self.labels))


BUILD_INFO = BuiltinMetric(
    "prefect_db_exporter_build_info", "gauge", "The exporter's version; always 1.", ("version",)
)
UP = BuiltinMetric(
    "prefect_db_up", "gauge", "1 when the target database answered this scrape, else 0.", ("target",)
)
SCHEMA_PRESENT = BuiltinMetric(
    "prefect_db_prefect_schema_present",
    "gauge",
    "1 when the target holds a readable Prefect schema, else 0; absent while the target is down.",
    ("target",),
)
COLLECTOR_ENABLED = BuiltinMetric(
    "prefect_db_exporter_collector_enabled",
    "gauge",
    "1 when the collector runs on this target, 0 when a gate or an invalid query disabled it (see /).",
    ("target", "collector"),
)
COLLECTOR_SUCCESS = BuiltinMetric(
    "prefect_db_exporter_collector_success",
    "gauge",
    "1 when the collector's latest run succeeded, else 0.",
    ("target", "collector"),
)
COLLECTOR_DURATION = BuiltinMetric(
    "prefect_db_exporter_collector_duration_seconds",
    "gauge",
    "How long the collector's latest run took, in seconds.",
    ("target", "collector"),
)
QUERIES = BuiltinMetric(
    "prefect_db_exporter_queries_total",
    "counter",
    "Collector runs by outcome: success, timeout, lock_timeout, permission, schema, connection, "
    "invalid or error.",
    ("target", "collector", "status"),
)
SESSION_SAMPLES = BuiltinMetric(
    "prefect_db_session_samples_total",
    "counter",
    "Non-idle sessions seen by the sampler, by Prefect operation, state and wait event type; its rate is "
    "the average number of sessions busy in each operation (database load).",
    ("target", "operation", "state", "wait_event_type"),
)
LOCK_WAIT_SAMPLES = BuiltinMetric(
    "prefect_db_lock_wait_samples_total",
    "counter",
    "Sampled sessions waiting on a lock, by their operation, the operation of the session blocking them "
    "and the Prefect table (other for the rest).",
    ("target", "operation", "blocker_operation", "relation"),
)
LAST_POLLED_WAIT = BuiltinMetric(
    "prefect_db_last_polled_lock_wait_seconds_total",
    "counter",
    "Estimated seconds that last_polled updates of deployment and work_queue spent waiting on locks "
    "(each sample of a waiting update adds the sampling interval).",
    ("target", "relation"),
)
SAMPLER_SAMPLES = BuiltinMetric(
    "prefect_db_sampler_samples_total", "counter", "Samples of pg_stat_activity taken.", ("target",)
)
SAMPLER_ERRORS = BuiltinMetric(
    "prefect_db_sampler_errors_total",
    "counter",
    "Samples that failed (database down or too slow); the sampler reconnects with back-off.",
    ("target",),
)
SAMPLER_OVERRUNS = BuiltinMetric(
    "prefect_db_sampler_overruns_total",
    "counter",
    "Samples that took longer than the configured interval.",
    ("target",),
)
SAMPLER_DURATION = BuiltinMetric(
    "prefect_db_sampler_sample_duration_seconds",
    "gauge",
    "How long the latest sample took, in seconds.",
    ("target",),
)
SAMPLER_INTERVAL = BuiltinMetric(
    "prefect_db_sampler_interval_seconds",
    "gauge",
    "The sampler's current interval, in seconds (it backs off when sampling is slow).",
    ("target",),
)
LOG_DEADLOCKS = BuiltinMetric(
    "prefect_db_server_log_deadlocks_total",
    "counter",
    "Deadlocks of the target's database found in the server log since the exporter started.",
    ("target",),
)
DEADLOCKS_BY_OPERATION = BuiltinMetric(
    "prefect_db_deadlocks_by_operation_total",
    "counter",
    "Deadlocks found in the server log, counted once for each Prefect operation among the processes "
    "involved.",
    ("target", "operation"),
)
LOG_FOLLOWING = BuiltinMetric(
    "prefect_db_exporter_server_log_ok",
    "gauge",
    "1 when the configured server log is being read, 0 when it cannot be (see / for why).",
    ("target",),
)
SERIES_FOLDED = BuiltinMetric(
    "prefect_db_exporter_series_folded",
    "gauge",
    "Series of the metric that the collector's latest run folded into one series labelled other, because "
    "the metric had more than max_series_per_metric series.",
    ("target", "collector", "metric"),
)
RELOAD_OK = BuiltinMetric(
    "prefect_db_exporter_config_last_reload_successful",
    "gauge",
    "1 when the latest configuration reload (SIGHUP or POST /-/reload) succeeded, 0 when it failed "
    "and the previous configuration is still in use.",
    (),
)
RELOAD_TIME = BuiltinMetric(
    "prefect_db_exporter_config_last_reload_success_timestamp_seconds",
    "gauge",
    "When the configuration was last loaded successfully, in seconds since the epoch.",
    (),
)
BUILTIN_METRICS = (
    BUILD_INFO,
    RELOAD_OK,
    RELOAD_TIME,
    UP,
    SCHEMA_PRESENT,
    COLLECTOR_ENABLED,
    COLLECTOR_SUCCESS,
    COLLECTOR_DURATION,
    QUERIES,
    SERIES_FOLDED,
)
SAMPLER_METRICS = (
    SESSION_SAMPLES,
    LOCK_WAIT_SAMPLES,
    LAST_POLLED_WAIT,
    SAMPLER_SAMPLES,
    SAMPLER_ERRORS,
    SAMPLER_OVERRUNS,
    SAMPLER_DURATION,
    SAMPLER_INTERVAL,
    LOG_DEADLOCKS,
    DEADLOCKS_BY_OPERATION,
    LOG_FOLLOWING,
)


def sampler_metrics(samplers: Mapping[str, Sampler], logs: Mapping[str, DeadlockLog]) -> Iterator[Metric]:
    """Yield the sampler's and the server-log follower's counters for every target."""
    families = {m.name: m.family() for m in SAMPLER_METRICS}

    def add(metric: BuiltinMetric, labels: list[str], value: float) -> None:
        families[metric.name].add_metric(labels, value)

    for target, sampler in samplers.items():
        counts = sampler.counts
        for (operation, state, wait), count in sorted(counts.sessions.items()):
            add(SESSION_SAMPLES, [target, operation, state, wait], float(count))
        for (operation, blocker, relation), count in sorted(counts.lock_waits.items()):
            add(LOCK_WAIT_SAMPLES, [target, operation, blocker, relation], float(count))
        for relation, seconds in sorted(counts.last_polled_wait_seconds.items()):
            add(LAST_POLLED_WAIT, [target, relation], seconds)
        add(SAMPLER_SAMPLES, [target], float(counts.samples))
        add(SAMPLER_ERRORS, [target], float(sampler.errors))
        add(SAMPLER_OVERRUNS, [target], float(sampler.overruns))
        add(SAMPLER_DURATION, [target], sampler.last_duration)
        add(SAMPLER_INTERVAL, [target], sampler.current_interval)
    for target, follower in logs.items():
        add(LOG_FOLLOWING, [target], 1.0 if follower.last_error is None else 0.0)
        add(LOG_DEADLOCKS, [target], float(follower.deadlocks))
        for operation, count in sorted(follower.by_operation.items()):
            add(DEADLOCKS_BY_OPERATION, [target, operation], float(count))
    yield from families.values()


def self_metrics(
    collectors: Sequence[TargetCollector], reload_state: tuple[bool, float] = (True, 0.0)
) -> Iterator[Metric]:
    """Yield the exporter's health metrics for every target."""
    build = BUILD_INFO.family()
    build.add_metric([__version__], 1.0)
    yield build
    reload_ok, reload_time = RELOAD_OK.family(), RELOAD_TIME.family()
    reload_ok.add_metric([], 1.0 if reload_state[0] else 0.0)
    reload_time.add_metric([], reload_state[1])
    yield from (reload_ok, reload_time)
    up, schema, enabled = UP.family(), SCHEMA_PRESENT.family(), COLLECTOR_ENABLED.family()
    success, duration, queries = COLLECTOR_SUCCESS.family(), COLLECTOR_DURATION.family(), QUERIES.family()
    folded = SERIES_FOLDED.family()
    for collector in collectors:
        target = collector.name
        up.add_metric([target], 1.0 if collector.up else 0.0)
        facts = collector.db.facts
        if collector.up and facts is not None:
            schema.add_metric([target], 1.0 if facts.has_prefect_schema else 0.0)
        results = collector.fresh_results() if collector.up else {}
        for spec in collector.catalog.collectors:
            name = spec.name
            if collector.up:
                runs = name not in collector.skipped and name not in collector.broken
                enabled.add_metric([target, name], 1.0 if runs else 0.0)
            if name in collector.broken:
                success.add_metric([target, name], 0.0)
            elif name in collector.skipped:
                continue
            elif name in results:
                success.add_metric([target, name], 1.0 if results[name].ok else 0.0)
                duration.add_metric([target, name], results[name].duration)
                for metric, count in sorted(results[name].folded.items()):
                    folded.add_metric([target, name, metric], float(count))
            elif collector.up or name in collector.results:
                success.add_metric([target, name], 0.0)
        for (name, status), count in sorted(collector.queries_total.items()):
            queries.add_metric([target, name, status], float(count))
    yield from (up, schema, enabled, success, duration, queries, folded)


def data_metrics(catalog: Catalog, collectors: Sequence[TargetCollector]) -> Iterator[Metric]:
    """Yield one family per catalog metric, with the samples of every target (the reference rendering)."""
    fresh = [(c.name, c.fresh_results()) for c in collectors if c.up]
    for spec in catalog.collectors:
        for metric in spec.metrics:
            labels = ["target", *metric.labels]
            family: Metric
            if metric.type == "counter":
                family = CounterMetricFamily(metric.name, metric.help, labels=labels)
            else:
                family = GaugeMetricFamily(metric.name, metric.help, labels=labels)
            for target, results in fresh:
                result = results.get(spec.name)
                if result is None or not result.ok:
                    continue
                for values, value in result.samples.get(metric.name, {}).items():
                    family.add_metric([target, *values], value)
            yield family


def data_text(catalog: Catalog, collectors: Sequence[TargetCollector]) -> str:
    """Return every catalog metric as exposition text, from the lines the results carry."""
    fresh = [c.fresh_results() for c in collectors if c.up]
    out: list[str] = []
    for spec in catalog.collectors:
        texts = [result.text for results in fresh if (result := results.get(spec.name)) and result.ok]
        for metric in spec.metrics:
            out.append(metric_header(metric))
            out.extend(text.get(metric.name, "") for text in texts)
    return "".join(out)


def render(
    catalog: Catalog,
    collectors: Sequence[TargetCollector],
    samplers: Mapping[str, Sampler] | None = None,
    logs: Mapping[str, DeadlockLog] | None = None,
    reload_state: tuple[bool, float] = (True, 0.0),
) -> bytes:
    """Return the text exposition of everything the exporter knows now.

    The catalog's metrics (nearly all samples) come from ``data_text``, identical to what
    ``generate_latest`` makes of ``data_metrics``; the rest goes through ``generate_latest``.
    """
    own = generate_latest(_Families(self_metrics(collectors, reload_state)))
    data = data_text(catalog, collectors)
    rest = [*sampler_metrics(samplers or {}, logs or {}), *_PROCESS.collect(), *_PLATFORM.collect()]
    return own + data.encode() + generate_latest(_Families(rest))
