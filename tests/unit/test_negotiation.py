"""How /metrics reads Accept and Accept-Encoding (the headers Prometheus and curl send)."""

from __future__ import annotations

import pytest

from exporter.web import wants_gzip, wants_openmetrics


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", False),
        ("*/*", False),
        ("text/plain;version=0.0.4", False),
        ("application/openmetrics-text", True),
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", True),
        # Prometheus 2.x's default scrape protocols.
        (
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
            "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            True,
        ),
        # Prometheus with scrape_protocols: [PrometheusText0.0.4, OpenMetricsText1.0.0].
        ("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4", False),
        ("application/openmetrics-text;version=2.0.0", False),
        ("application/openmetrics-text;q=0", False),
    ],
)
def test_openmetrics_only_when_preferred(accept: str, expected: bool) -> None:
    assert wants_openmetrics(accept) is expected


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        ("", False),
        ("gzip", True),
        ("deflate, gzip;q=1.0, *;q=0.5", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("*", True),
    ],
)
def test_gzip_when_accepted(accept_encoding: str, expected: bool) -> None:
    assert wants_gzip(accept_encoding) is expected
