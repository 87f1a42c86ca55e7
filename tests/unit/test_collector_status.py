"""When a result is still served and what state a collector is in: the one interpretation, clock given."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.catalog import CollectorSpec, Requires
from exporter.collection import collector_status, is_fresh
from exporter.status import CollectorResult, CollectorState

TTL = 15.0
SPEC = CollectorSpec("demo", Path("demo.sql"), "A demo collector.", "SELECT 1", TTL, 5.0, Requires(), ())


def result(finished: float, status: str = "success", error: str | None = None) -> CollectorResult:
    return CollectorResult(status, 0.25, finished, rows=3, error=error, folded={"m": 2}, text={"m": "m 1\n"})


def test_a_result_is_fresh_for_its_ttl_and_then_expires() -> None:
    done = result(finished=100.0)
    for now, fresh in ((101.0, True), (114.9, True), (115.0, False), (200.0, False)):
        assert is_fresh(done, TTL, refresh_started=now, now=now, running=False) is fresh, now


def test_freshness_is_judged_as_of_the_refresh_start_so_a_slow_refresh_loses_nothing() -> None:
    # Fresh when the refresh began at 110 (10 s old), so not re-run; the refresh is still running at 130.
    assert is_fresh(result(finished=100.0), TTL, refresh_started=110.0, now=130.0, running=False)


def test_a_result_of_the_current_refresh_is_fresh_until_the_next_whatever_its_age() -> None:
    assert is_fresh(result(finished=50.0), TTL, refresh_started=40.0, now=500.0, running=False)


def test_a_collector_still_running_keeps_its_previous_result() -> None:
    assert is_fresh(result(finished=0.0), TTL, refresh_started=100.0, now=100.0, running=True)
    assert not is_fresh(result(finished=0.0), TTL, refresh_started=100.0, now=100.0, running=False)


def status(**given: object):  # type: ignore[no-untyped-def]
    arguments: dict[str, object] = {
        "latest": None, "fresh": None, "skipped": None, "invalid": None, "up": True, "now": 200.0,
    }  # fmt: skip
    arguments.update(given)
    return collector_status(SPEC, **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "state", "success", "enabled", "served"),
    [
        ({}, CollectorState.NOT_RUN, False, True, False),
        ({"up": False}, CollectorState.NOT_RUN, None, None, False),
        ({"latest": result(190.0), "fresh": result(190.0)}, CollectorState.OK, True, True, True),
        ({"latest": result(100.0)}, CollectorState.OK, False, True, False),  # expired: reported as failing
        (
            {"latest": result(190.0, "timeout", "timed out"), "fresh": result(190.0, "timeout", "timed out")},
            CollectorState.FAILED, False, True, False,
        ),
        ({"skipped": "table missing or not readable: worker"}, CollectorState.SKIPPED, None, False, False),
        ({"invalid": "demo.sql:3: column 'v' is missing"}, CollectorState.INVALID, False, False, False),
    ],
)  # fmt: skip
def test_each_situation_has_one_state_and_one_reported_success(
    given: dict[str, object], state: CollectorState, success: bool | None, enabled: bool | None, served: bool
) -> None:
    found = status(**given)
    assert (found.state, found.success, found.enabled, found.served is not None) == (
        state, success, enabled, served,
    )  # fmt: skip


def test_the_reason_says_why_and_the_age_is_of_the_latest_run() -> None:
    assert status(skipped="needs PostgreSQL server_version_num >= 160000").reason == (
        "needs PostgreSQL server_version_num >= 160000"
    )
    failed = status(latest=result(150.0, "lock_timeout", "canceling statement due to lock timeout"))
    assert (failed.reason, failed.age) == ("canceling statement due to lock timeout", 50.0)
    assert status().age is None
