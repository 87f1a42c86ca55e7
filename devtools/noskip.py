"""A pytest plugin that ``make test`` loads: a skipped test fails, so nothing is left out silently.

Tests that need a system tool assert it is there; this catches any ``pytest.skip`` that would
otherwise hide a missing package or an unfinished test. ``pytest.mark.xfail`` is left alone.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under make test, which allows no skips: {reason}"
