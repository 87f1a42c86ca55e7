"""Write catalog samples in the Prometheus text format, byte for byte as ``generate_latest`` would.

Building ``prometheus_client`` metric families and passing them through ``generate_latest``
costs about 15 µs a sample, which on a large Prefect database (thousands of per-queue samples)
was most of a scrape. Collectors write their sample lines once, when a result arrives (while
other queries are still running), and every scrape within the TTL re-uses them. Tests compare
the output with ``generate_latest``'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from prometheus_client.utils import floatToGoString

from exporter.catalog import MetricSpec


class Described(Protocol):
    """What a metric header is written from: a catalog metric or one of the exporter's own."""

    @property
    def name(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def help(self) -> str: ...


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


def metric_header(metric: Described) -> str:
    """Return the ``# HELP`` and ``# TYPE`` lines of one metric."""
    doc = metric.help.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {metric.name} {doc}\n# TYPE {metric.name} {metric.type}\n"


def sample_line(name: str, label_names: Sequence[str], label_values: Sequence[str], value: float) -> str:
    """Return one sample line, its labels sorted by name as ``generate_latest`` writes them."""
    if not label_names:
        return f"{name} {format_value(value)}\n"
    pairs = sorted(zip(label_names, label_values, strict=True))
    labels = ",".join([f'{key}="{escape_label_value(text)}"' for key, text in pairs])
    return f"{name}{{{labels}}} {format_value(value)}\n"


# Units OpenMetrics declares for a family whose name ends in one (``# UNIT``); the rest declare none.
OPENMETRICS_UNITS = ("seconds", "bytes")


def openmetrics_family(name: str, mtype: str) -> str:
    """The OpenMetrics family name of a metric: a counter's without its ``_total`` sample suffix."""
    return name.removesuffix("_total") if mtype == "counter" else name


def openmetrics_unit(name: str, mtype: str) -> str:
    """The unit OpenMetrics declares for a metric, from its name's suffix ("" for none)."""
    family = openmetrics_family(name, mtype)
    return next((unit for unit in OPENMETRICS_UNITS if family.endswith(f"_{unit}")), "")


def openmetrics_header(metric: Described) -> str:
    """Return the ``# HELP``, ``# TYPE`` and ``# UNIT`` lines of one metric in OpenMetrics 1.0.

    The sample lines are the same as in the text format (counters' samples keep ``_total``; the
    catalog requires it of every counter), so only the header differs.
    """
    family = openmetrics_family(metric.name, metric.type)
    doc = metric.help.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    unit = openmetrics_unit(metric.name, metric.type)
    unit_line = f"# UNIT {family} {unit}\n" if unit else ""
    return f"# HELP {family} {doc}\n# TYPE {family} {metric.type}\n{unit_line}"


class SampleWriter:
    """Writes one metric's sample lines for one target, from a line template worked out once.

    It keeps no text between runs: at the live benchmark scale the label text of every series kept
    for the next run held 9 MB (a third of what the exporter holds). A line is one ``%`` of the
    template (name, labels sorted by name with the target's already in, value), under 1 us.
    """

    def __init__(self, metric: MetricSpec, target: str) -> None:
        names = ("target", *metric.labels)
        # Labels are written sorted by name, as generate_latest does.
        order = sorted(range(len(names)), key=names.__getitem__)
        target_text = escape_label_value(target).replace("%", "%%")
        pairs = [f'{names[i]}="{target_text if i == 0 else "%s"}"' for i in order]
        self._template = metric.name.replace("%", "%%") + "{" + ",".join(pairs) + "} %s\n"
        # Where each label of the template takes its value from, in a series' label values.
        self._picks = tuple(i - 1 for i in order if i != 0)

    def write(self, series: Iterable[tuple[tuple[str, ...], float]]) -> str:
        """Return the sample lines of ``series`` (label values, value)."""
        template, picks, escape = self._template, self._picks, escape_label_value
        lines = [template % (*[escape(v[i]) for i in picks], format_value(value)) for v, value in series]
        return "".join(lines)
