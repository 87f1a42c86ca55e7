"""The exporter's own metrics, read from a status snapshot: defined once, rendered and documented."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics_exposition
from prometheus_client.parser import text_string_to_metric_families

from devtools.paths import REPO_ROOT
from exporter.catalog import Catalog, CollectorSpec, Requires
from exporter.collection import collector_status
from exporter.exposition import render, self_metrics_text
from exporter.facts import TargetFacts
from exporter.releases import PrefectRelease
from exporter.selfmetrics import SELF_METRICS
from exporter.status import (
    CollectorResult,
    CollectorStatus,
    ExporterStatus,
    SamplerStatus,
    ServerLogStatus,
    TargetStatus,
)
from exporter.textformat import metric_header, openmetrics_header, openmetrics_unit


def spec(name: str) -> CollectorSpec:
    return CollectorSpec(name, Path(f"{name}.sql"), name, "SELECT 1", 15.0, 5.0, Requires(), ())


def result(status: str = "success") -> CollectorResult:
    return CollectorResult(status, 0.5, 99.0, rows=1, folded={"prefect_db_x": 3}, finished_at=1_700_000_099.0)


FACTS = TargetFacts(160004, "16.4", {"flow_run": frozenset(), "work_pool": frozenset(),
                                     "alembic_version": frozenset()}, "5d03c01be85e")  # fmt: skip
SAMPLER = SamplerStatus(
    ticks=42, errors=1, overruns=0, last_duration=0.002, interval=1.0, last_error=None,
    sessions={("worker_poll", "active", "none"): 5},
    lock_waits={("deployment_last_polled_update", "deployment_last_polled_update", "deployment"): 3},
    last_polled_wait_seconds={"deployment": 3.0, "work_queue": 0.0},
)  # fmt: skip


def target(name: str, up: bool) -> TargetStatus:
    def collector(
        name: str, fresh: CollectorResult | None, skipped: str | None, invalid: str | None
    ) -> CollectorStatus:
        return collector_status(
            spec(name), latest=fresh, good=fresh, current=fresh is not None, skipped=skipped,
            invalid=invalid, up=up, now=100.0,
        )  # fmt: skip

    collectors = (
        collector("ok", result(), None, None),
        collector("gated", None, "no table", None),
        collector("broken", None, None, "bad"),
    )
    return TargetStatus(
        name=name,
        dsn=f"postgresql://u@h/{name}",
        up=up,
        last_error=None if up else "connection refused",
        facts=FACTS,
        release=PrefectRelease("5d03c01be85e", "3.1.6", "true"),
        collectors=collectors if up else (),
        queries_total={("ok", "success"): 7, ("ok", "timeout"): 1},
        sampler=SAMPLER,
        server_log=ServerLogStatus("/var/log/pg.log", "stderr", None, "no file", 2, {"worker_poll": 2}),
    )


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_snapshot_renders_each_self_metric_with_its_values() -> None:
    status = ExporterStatus(
        "9.9", 0.0, "exporter.yml", False, 1234.0, (target("prod", True), target("dr", False))
    )
    found = samples(render(Catalog(()), status).decode())

    def get(name: str, **labels: str) -> float | None:
        return found.get((name, frozenset(labels.items())))

    build = {"version": "9.9", "python_version": platform.python_version()}
    assert get("prefect_db_exporter_build_info", **build, asyncpg_version=metadata.version("asyncpg")) == 1.0
    assert get("prefect_db_exporter_config_last_reload_successful") == 0.0
    assert (get("prefect_db_up", target="prod"), get("prefect_db_up", target="dr")) == (1.0, 0.0)
    assert get("prefect_db_prefect_schema_present", target="prod") == 1.0
    assert get("prefect_db_prefect_schema_present", target="dr") is None  # unknown while down
    release = {"target": "prod", "alembic_revision": "5d03c01be85e", "first_release": "3.1.6"}
    assert get("prefect_db_prefect_release_info", **release, poll_deadlocks="true") == 1.0
    assert get("prefect_db_exporter_collector_success", target="prod", collector="ok") == 1.0
    assert get("prefect_db_exporter_collector_success", target="prod", collector="broken") == 0.0
    assert get("prefect_db_exporter_collector_success", target="prod", collector="gated") is None
    assert get("prefect_db_exporter_collector_enabled", target="prod", collector="gated") == 0.0
    assert get("prefect_db_exporter_collector_duration_seconds", target="prod", collector="ok") == 0.5
    last_success = "prefect_db_exporter_collector_last_success_timestamp_seconds"
    assert get(last_success, target="prod", collector="ok") == 1_700_000_099.0
    assert get(last_success, target="prod", collector="broken") is None  # never succeeded
    assert get("prefect_db_exporter_queries_total", target="prod", collector="ok", status="timeout") == 1.0
    assert get("prefect_db_exporter_series_folded", target="prod", collector="ok", metric="prefect_db_x") == 3
    assert get("prefect_db_sampler_samples_total", target="prod") == 42.0
    assert get("prefect_db_last_polled_lock_wait_seconds_total", target="prod", relation="deployment") == 3.0
    assert get("prefect_db_exporter_server_log_ok", target="prod") == 0.0
    assert get("prefect_db_deadlocks_by_operation_total", target="prod", operation="worker_poll") == 2.0


def test_every_self_metric_is_defined_once_and_documented() -> None:
    names = [m.name for m in SELF_METRICS]
    assert len(names) == len(set(names))
    documented = (REPO_ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    assert [n for n in names if f"`{n}`" not in documented] == []
    for metric in SELF_METRICS:
        assert metric.name.startswith("prefect_db_")
        assert metric.name.endswith("_total") == (metric.type == "counter"), metric.name


def reference_self_metrics(status: ExporterStatus, open_metrics: bool) -> bytes:
    """The self-metrics as prometheus_client writes them (what the exporter's own writer must match)."""
    families = []
    for metric in SELF_METRICS:
        kind = CounterMetricFamily if metric.type == "counter" else GaugeMetricFamily
        unit = openmetrics_unit(metric.name, metric.type)
        family = kind(metric.name, metric.help, labels=list(metric.labels), unit=unit)
        for labels, value in metric.samples(status):
            family.add_metric(list(labels), value)
        families.append(family)

    class Families:
        def collect(self) -> list[Metric]:
            return families

    if open_metrics:
        written: bytes = openmetrics_exposition.generate_latest(Families())  # type: ignore[no-untyped-call]
        return written.removesuffix(b"# EOF\n")
    return generate_latest(Families())  # type: ignore[arg-type]


def test_the_self_metrics_are_written_byte_for_byte_as_prometheus_client_writes_them() -> None:
    status = ExporterStatus(
        "9.9", 0.0, "exporter.yml", True, 1234.0, (target('p"rod\\', True), target("dr", False))
    )
    for open_metrics, header in ((False, metric_header), (True, openmetrics_header)):
        ours = self_metrics_text(SELF_METRICS, status, header).encode()
        assert ours == reference_self_metrics(status, open_metrics), open_metrics
