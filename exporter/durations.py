"""Parse durations such as ``500ms``, ``15s``, ``5m`` or a plain number of seconds."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_FACTORS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds; raise ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 15s, 500ms or 5m, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _FACTORS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as 15s, 500ms or 5m, got {value!r}")
    if seconds <= 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"a duration must be a positive, finite number of seconds, got {value!r}")
    return seconds
