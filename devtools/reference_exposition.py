"""The reference rendering of the catalog's metrics, by prometheus_client, for tests and benchmarks.

The exporter writes its catalog samples itself (``exporter.textformat``). To prove those bytes are
what ``prometheus_client.generate_latest`` would write, the samples are read back from the
exporter's text with prometheus_client's own parser, rebuilt into metric families with the
catalog's names, help and label order, and rendered again: any difference in escaping, float
formatting, label order or header text shows up as a difference in the text.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter.catalog import Catalog

# (target, metric name) -> {label values in the header's order: value}
CatalogSeries = dict[tuple[str, str], dict[tuple[str, ...], float]]


def catalog_series(catalog: Catalog, text: str) -> CatalogSeries:
    """Return the samples of the catalog's metrics found in an exposition ``text``."""
    metrics = {m.name: m for spec in catalog.collectors for m in spec.metrics}
    found: CatalogSeries = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            metric = metrics.get(sample.name)
            if metric is None:
                continue
            labels = tuple(sample.labels[name] for name in metric.labels)
            found.setdefault((sample.labels["target"], metric.name), {})[labels] = sample.value
    return found


def _families(catalog: Catalog, series: CatalogSeries, targets: list[str]) -> Iterator[Metric]:
    for spec in catalog.collectors:
        for metric in spec.metrics:
            labels = ["target", *metric.labels]
            kind = CounterMetricFamily if metric.type == "counter" else GaugeMetricFamily
            family = kind(metric.name, metric.help, labels=labels)
            for target in targets:
                for values, value in series.get((target, metric.name), {}).items():
                    family.add_metric([target, *values], value)
            yield family


class _Families:
    def __init__(self, families: Iterator[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def reference_text(catalog: Catalog, series: CatalogSeries, targets: list[str]) -> str:
    """Return what ``generate_latest`` writes for ``series``, target after target within each metric."""
    return generate_latest(_Families(_families(catalog, series, targets))).decode()
