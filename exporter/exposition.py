"""The text exposition of ``/metrics``, built from a status snapshot and the results it serves.

The catalog's metrics (nearly all samples) are the sample lines each result carries, written once
when the result arrived (``exporter.textformat``); the exporter's own metrics and prometheus_client's
process and platform collectors go through ``generate_latest``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter.catalog import Catalog, MetricSpec
from exporter.selfmetrics import SelfMetric, group
from exporter.status import ExporterStatus
from exporter.textformat import metric_header, openmetrics_header, openmetrics_unit

# prometheus_client's own collectors, used without registering them anywhere global.
_PROCESS = ProcessCollector(registry=None)
_PLATFORM = PlatformCollector(registry=None)


class _Families:
    """The shape ``generate_latest`` wants: an object with ``collect()``."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def self_metric_families(metrics: Iterable[SelfMetric], status: ExporterStatus) -> Iterator[Metric]:
    """Yield one prometheus_client family per self-metric, with its samples from ``status``."""
    for metric in metrics:
        kind = CounterMetricFamily if metric.type == "counter" else GaugeMetricFamily
        unit = openmetrics_unit(metric.name, metric.type)  # the text format ignores it
        family = kind(metric.name, metric.help, labels=list(metric.labels), unit=unit)
        for labels, value in metric.samples(status):
            family.add_metric(list(labels), value)
        yield family


def data_text(
    catalog: Catalog, status: ExporterStatus, header: Callable[[MetricSpec], str] = metric_header
) -> str:
    """Return every catalog metric as exposition text, from the lines the served results carry."""
    served = [
        {c.name: c.served for c in target.collectors if c.served is not None}
        for target in status.targets
        if target.up
    ]
    out: list[str] = []
    for spec in catalog.collectors:
        texts = [result.text for results in served if (result := results.get(spec.name)) is not None]
        for metric in spec.metrics:
            out.append(header(metric))
            out.extend(text.get(metric.name, "") for text in texts)
    return "".join(out)


EOF_LINE = b"# EOF\n"


def render(catalog: Catalog, status: ExporterStatus, open_metrics: bool = False) -> bytes:
    """Return the exposition of everything ``status`` knows: the text format, or OpenMetrics 1.0."""
    health = _Families(self_metric_families(group("health"), status))
    rest = _Families(
        [*self_metric_families(group("sampler"), status), *_PROCESS.collect(), *_PLATFORM.collect()]
    )
    if not open_metrics:
        return generate_latest(health) + data_text(catalog, status).encode() + generate_latest(rest)
    # One document: a single "# EOF", at the very end.
    head = _openmetrics_text(health).removesuffix(EOF_LINE)
    return head + data_text(catalog, status, openmetrics_header).encode() + _openmetrics_text(rest)


def _openmetrics_text(families: _Families) -> bytes:
    text: bytes = openmetrics.generate_latest(families)  # type: ignore[no-untyped-call]
    return text
