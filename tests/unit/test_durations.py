"""Durations: Prometheus' syntax, as Prometheus reads it, besides plain seconds and one decimal unit."""

from __future__ import annotations

import pytest

from exporter.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("15s", 15.0),
        ("5m", 300.0),
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("2h45m10s500ms", 2 * 3600 + 45 * 60 + 10.5),
        ("1d", 86400.0),
        ("1w", 7 * 86400.0),
        ("1y", 365 * 86400.0),
        ("1y2w3d", (365 + 14 + 3) * 86400.0),
        ("1.5s", 1.5),
        ("10", 10.0),
        (10, 10.0),
        (0.25, 0.25),
    ],
)
def test_prometheus_durations_are_accepted(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["soon", "", "1s1m", "1m1m", "1.5m30s", "-1s", "0s", "0", "1 m 30s", "ms", "1S", True, None, [1]]
)
def test_what_prometheus_rejects_is_rejected(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
