"""The exposition of ``/metrics``, built from a status snapshot and the results it serves.

The catalog's metrics (nearly all samples) are the sample text each result carries, written and
deflated once when the result arrived (``exporter.segments``); a scrape only writes the exporter's
own metrics (a few hundred lines, with ``textformat``) and prometheus_client's process and platform
metrics, and splices the rest in. ``Exposition.gzipped`` compresses only what the scrape wrote.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from exporter import segments
from exporter.catalog import Catalog
from exporter.segments import Segment
from exporter.selfmetrics import SelfMetric, group
from exporter.status import ExporterStatus
from exporter.textformat import Described, metric_header, openmetrics_header, sample_line

# prometheus_client's own collectors, used without registering them anywhere global.
_PROCESS = ProcessCollector(registry=None)
_PLATFORM = PlatformCollector(registry=None)

Header = Callable[[Described], str]


@dataclass(frozen=True)
class Exposition:
    """One scrape's exposition: text written now (``bytes``) and results' stored text (``Segment``)."""

    parts: tuple[Segment | bytes, ...]

    def body(self) -> bytes:
        """The exposition as plain text."""
        return segments.join(self.parts)

    def gzipped(self) -> bytes:
        """The exposition as one gzip member; only the parts written now are compressed now."""
        return segments.gzip_join(self.parts)


class _Families:
    """The shape ``generate_latest`` wants: an object with ``collect()``."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def self_metrics_text(metrics: Iterable[SelfMetric], status: ExporterStatus, header: Header) -> str:
    """Return the self-metrics' families, with their samples read from ``status``."""
    out: list[str] = []
    for metric in metrics:
        out.append(header(metric))
        name, names = metric.name, metric.labels
        out.extend(sample_line(name, names, labels, value) for labels, value in metric.samples(status))
    return "".join(out)


# Bounded: each reload's catalog brings its own metric objects, and the old ones must not stay forever.
@functools.lru_cache(maxsize=4096)
def _header_segment(metric: Described, header: Header) -> Segment:
    # Headers never change for a catalog: deflated once per metric and format.
    return Segment.of(header(metric).encode())


def data_segments(catalog: Catalog, status: ExporterStatus, header: Header = metric_header) -> list[Segment]:
    """Return every catalog metric's header and the stored sample text of the served results."""
    served = [
        {c.name: c.served for c in target.collectors if c.served is not None}
        for target in status.targets
        if target.up
    ]
    out: list[Segment] = []
    for spec in catalog.collectors:
        results = [result for by_name in served if (result := by_name.get(spec.name)) is not None]
        for metric in spec.metrics:
            out.append(_header_segment(metric, header))
            out.extend(result.samples.get(metric.name, segments.EMPTY) for result in results)
    return out


def render_parts(catalog: Catalog, status: ExporterStatus, open_metrics: bool = False) -> Exposition:
    """Return the exposition of everything ``status`` knows: the text format, or OpenMetrics 1.0."""
    header: Header = openmetrics_header if open_metrics else metric_header
    health = self_metrics_text(group("health"), status, header).encode()
    sampler = self_metrics_text(group("sampler"), status, header).encode()
    process = _Families([*_PROCESS.collect(), *_PLATFORM.collect()])
    # One document: a single "# EOF", at the very end.
    rest = _openmetrics_text(process) if open_metrics else generate_latest(process)
    return Exposition((health, *data_segments(catalog, status, header), sampler + rest))


def render(catalog: Catalog, status: ExporterStatus, open_metrics: bool = False) -> bytes:
    """Return the exposition as plain text (``render_parts`` for the scrape's gzip)."""
    return render_parts(catalog, status, open_metrics).body()


def _openmetrics_text(families: _Families) -> bytes:
    text: bytes = openmetrics.generate_latest(families)  # type: ignore[no-untyped-call]
    return text
