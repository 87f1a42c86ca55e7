"""Parse durations: Prometheus' syntax (``1m30s``, ``500ms``, ``1d``, ``1w``, ``1y``), a single decimal
unit (``1.5s``) or a plain number of seconds."""

from __future__ import annotations

import re

# Prometheus' units, largest first, each at most once and in this order (model.ParseDuration);
# a year is 365 days and a week 7, as there.
_UNITS = (("y", 365 * 86400.0), ("w", 7 * 86400.0), ("d", 86400.0), ("h", 3600.0), ("m", 60.0),
          ("s", 1.0), ("ms", 0.001))  # fmt: skip
_PROMETHEUS = re.compile("".join(rf"(?:(?P<{unit}>\d+){unit})?" for unit, _ in _UNITS))
_DECIMAL = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w|y)?")
_FACTORS = dict(_UNITS)
_FORMS = "a duration such as 15s, 500ms, 1m30s, 1d or a number of seconds"


def _seconds(text: str) -> float | None:
    text = text.strip()
    if match := _DECIMAL.fullmatch(text):
        return float(match.group(1)) * _FACTORS.get(match.group(2) or "s", 1.0)
    match = _PROMETHEUS.fullmatch(text)
    if text and match:
        return sum(int(match.group(unit)) * factor for unit, factor in _UNITS if match.group(unit))
    return None


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds; raise ValueError with the accepted forms."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _seconds(value)
    if seconds is None:
        raise ValueError(f"expected {_FORMS}, got {value!r}")
    if seconds <= 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"a duration must be a positive, finite number of seconds, got {value!r}")
    return seconds
