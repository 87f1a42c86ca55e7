"""The text exposition of ``/metrics``, built from a status snapshot and the results it serves.

The catalog's metrics (nearly all samples) are the sample lines each result carries, written once
when the result arrived (``exporter.textformat``); the exporter's own metrics and prometheus_client's
process and platform collectors go through ``generate_latest``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter.catalog import Catalog
from exporter.selfmetrics import SelfMetric, group
from exporter.status import ExporterStatus
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


def self_metric_families(metrics: Iterable[SelfMetric], status: ExporterStatus) -> Iterator[Metric]:
    """Yield one prometheus_client family per self-metric, with its samples from ``status``."""
    for metric in metrics:
        kind = CounterMetricFamily if metric.type == "counter" else GaugeMetricFamily
        family = kind(metric.name, metric.help, labels=list(metric.labels))
        for labels, value in metric.samples(status):
            family.add_metric(list(labels), value)
        yield family


def data_text(catalog: Catalog, status: ExporterStatus) -> str:
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
            out.append(metric_header(metric))
            out.extend(text.get(metric.name, "") for text in texts)
    return "".join(out)


def render(catalog: Catalog, status: ExporterStatus) -> bytes:
    """Return the text exposition of everything ``status`` knows."""
    health = generate_latest(_Families(self_metric_families(group("health"), status)))
    data = data_text(catalog, status).encode()
    rest = [*self_metric_families(group("sampler"), status), *_PROCESS.collect(), *_PLATFORM.collect()]
    return health + data + generate_latest(_Families(rest))
