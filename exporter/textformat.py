"""Write catalog samples in the Prometheus text format, byte for byte as ``generate_latest`` would.

Building ``prometheus_client`` metric families and passing them through ``generate_latest``
costs about 15 µs a sample, which on a large Prefect database (thousands of per-queue samples)
was most of a scrape. Collectors write their sample lines once, when a result arrives (while
other queries are still running), and every scrape within the TTL re-uses them. Tests compare
the output with ``generate_latest``'s.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.utils import floatToGoString

from exporter.catalog import MetricSpec


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


# Units OpenMetrics declares for a family whose name ends in one (``# UNIT``); the rest declare none.
OPENMETRICS_UNITS = ("seconds", "bytes")


def openmetrics_family(name: str, mtype: str) -> str:
    """The OpenMetrics family name of a metric: a counter's without its ``_total`` sample suffix."""
    return name.removesuffix("_total") if mtype == "counter" else name


def openmetrics_unit(name: str, mtype: str) -> str:
    """The unit OpenMetrics declares for a metric, from its name's suffix ("" for none)."""
    family = openmetrics_family(name, mtype)
    return next((unit for unit in OPENMETRICS_UNITS if family.endswith(f"_{unit}")), "")


def openmetrics_header(metric: MetricSpec) -> str:
    """Return the ``# HELP``, ``# TYPE`` and ``# UNIT`` lines of one catalog metric in OpenMetrics 1.0.

    The sample lines are the same as in the text format (counters' samples keep ``_total``; the
    catalog requires it of every counter), so only the header differs.
    """
    family = openmetrics_family(metric.name, metric.type)
    doc = metric.help.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    unit = openmetrics_unit(metric.name, metric.type)
    unit_line = f"# UNIT {family} {unit}\n" if unit else ""
    return f"# HELP {family} {doc}\n# TYPE {family} {metric.type}\n{unit_line}"


class SampleWriter:
    """Writes one metric's sample lines for one target, re-using each series' label text next time.

    Between two runs of a collector the label sets rarely change (the same pools and queues), so the
    text up to the value is kept for the series of the latest run; only values are formatted again.
    """

    def __init__(self, metric: MetricSpec, target: str) -> None:
        names = ("target", *metric.labels)
        # Labels are written sorted by name, as generate_latest does; each with its lead-in text.
        order = sorted(range(len(names)), key=names.__getitem__)
        lead_ins = [("{" if n == 0 else ",") + f'{names[i]}="' for n, i in enumerate(order)]
        self._layout = list(zip(lead_ins, order, strict=True))
        self._name = metric.name
        self._target = escape_label_value(target)
        self._prefixes: dict[tuple[str, ...], str] = {}

    def _prefix(self, values: tuple[str, ...]) -> str:
        labelled = (self._target, *map(escape_label_value, values))
        labels = "".join([lead_in + labelled[i] + '"' for lead_in, i in self._layout])
        return f"{self._name}{labels}}} "

    def write(self, series: Mapping[tuple[str, ...], float]) -> str:
        """Return the sample lines of ``series``."""
        known, kept = self._prefixes, {}
        lines = []
        for values, value in series.items():
            prefix = known.get(values) or self._prefix(values)
            kept[values] = prefix
            lines.append(f"{prefix}{format_value(value)}\n")
        self._prefixes = kept  # only the current series: the memory stays bounded by them
        return "".join(lines)
