"""Render the catalog's samples straight to the Prometheus text format, once per collector result.

Building ``prometheus_client`` metric families and passing them through ``generate_latest``
costs about 10 µs a sample, which on a large Prefect database (thousands of per-queue samples)
was most of a scrape. The output here is byte for byte what ``generate_latest`` writes for the
same families (tests compare the two), and the sample lines of a result are rendered only once:
a scrape within the collectors' TTL re-uses them.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client.utils import floatToGoString

from exporter.catalog import Catalog, MetricSpec
from exporter.collection import CollectorResult, TargetCollector


def escape_label_value(value: str) -> str:
    """Escape a label value as the text format requires."""
    if "\\" not in value and '"' not in value and "\n" not in value:
        return value  # nearly always: names of pools, queues, states
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def format_value(value: float) -> str:
    """Format a sample value as Prometheus (Go) does."""
    # Go and Python write every float in this range alike (NaN and infinities are outside it).
    if -1e6 < value < 1e6:
        return repr(value)
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


def metric_header(metric: MetricSpec) -> str:
    """Return the ``# HELP`` and ``# TYPE`` lines of one catalog metric."""
    doc = metric.help.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {metric.name} {doc}\n# TYPE {metric.name} {metric.type}\n"


def sample_lines(metric: MetricSpec, target: str, result: CollectorResult) -> str:
    """Return the sample lines of one metric of one target's result."""
    names = ("target", *metric.labels)
    # Labels are written sorted by name, as generate_latest does; each with its lead-in text.
    order = sorted(range(len(names)), key=names.__getitem__)
    lead_ins = [("{" if n == 0 else ",") + f'{names[i]}="' for n, i in enumerate(order)]
    layout = list(zip(lead_ins, order, strict=True))
    escaped_target = escape_label_value(target)
    lines = []
    for values, value in result.samples.get(metric.name, {}).items():
        labelled = (escaped_target, *map(escape_label_value, values))
        labels = "".join([lead_in + labelled[i] + '"' for lead_in, i in layout])
        lines.append(f"{metric.name}{labels}}} {format_value(value)}\n")
    return "".join(lines)


class SampleRenderer:
    """Renders the catalog's metrics for a set of targets, caching each result's sample lines."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[CollectorResult, dict[str, str]]] = {}

    def _lines(
        self, target: str, collector: str, metrics: Sequence[MetricSpec], result: CollectorResult
    ) -> dict[str, str]:
        cached = self._cache.get((target, collector))
        if cached is not None and cached[0] is result:
            return cached[1]
        lines = {metric.name: sample_lines(metric, target, result) for metric in metrics}
        self._cache[(target, collector)] = (result, lines)
        return lines

    def render(self, catalog: Catalog, collectors: Sequence[TargetCollector]) -> str:
        """Return every catalog metric's text, with the samples of the targets that are up."""
        fresh = [(c.name, c.fresh_results()) for c in collectors if c.up]
        out: list[str] = []
        for spec in catalog.collectors:
            blocks = [
                self._lines(target, spec.name, spec.metrics, result)
                for target, results in fresh
                if (result := results.get(spec.name)) is not None and result.ok
            ]
            for metric in spec.metrics:
                out.append(metric_header(metric))
                out.extend(block[metric.name] for block in blocks)
        return "".join(out)
