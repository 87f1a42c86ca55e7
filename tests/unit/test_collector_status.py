"""When a result is current, when it is served stale, and what state a collector is in: the one
interpretation, clock given."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.catalog import CollectorSpec, Requires
from exporter.collection import collector_status
from exporter.freshness import is_fresh, stale_limit
from exporter.segments import Segment
from exporter.status import CollectorResult, CollectorState

TTL = 15.0
SPEC = CollectorSpec("demo", Path("demo.sql"), "A demo collector.", "SELECT 1", TTL, 5.0, Requires(), ())


def result(finished: float, status: str = "success", error: str | None = None) -> CollectorResult:
    return CollectorResult(
        status, 0.25, finished, rows=3, error=error, folded={"m": 2}, samples={"m": Segment.of(b"m 1\n")},
        finished_at=1_700_000_000.0 + finished,
    )  # fmt: skip


def test_a_result_is_fresh_for_its_ttl_and_then_expires() -> None:
    for now, fresh in ((101.0, True), (114.9, True), (115.0, False), (200.0, False)):
        assert is_fresh(100.0, TTL, refresh_started=now, now=now, running=False) is fresh, now


def test_freshness_is_judged_as_of_the_refresh_start_so_a_slow_refresh_loses_nothing() -> None:
    # Fresh when the refresh began at 110 (10 s old), so not re-run; the refresh is still running at 130.
    assert is_fresh(100.0, TTL, refresh_started=110.0, now=130.0, running=False)


def test_a_result_of_the_current_refresh_is_fresh_until_the_next_whatever_its_age() -> None:
    assert is_fresh(50.0, TTL, refresh_started=40.0, now=500.0, running=False)


def test_once_refreshing_pauses_results_of_the_last_round_expire_by_their_ttl() -> None:
    assert not is_fresh(50.0, TTL, refresh_started=float("inf"), now=500.0, running=False)


def test_a_collector_still_running_keeps_its_previous_result() -> None:
    assert is_fresh(0.0, TTL, refresh_started=100.0, now=100.0, running=True)
    assert not is_fresh(0.0, TTL, refresh_started=100.0, now=100.0, running=False)


def status(**given: object):  # type: ignore[no-untyped-def]
    arguments: dict[str, object] = {
        "latest": None, "good": None, "current": False, "skipped": None, "invalid": None, "up": True,
        "now": 200.0,
    }  # fmt: skip
    arguments.update(given)
    return collector_status(SPEC, **arguments)  # type: ignore[arg-type]


LOCKED = result(198.0, "locked", "flow_run is locked: ACCESS EXCLUSIVE held by pid 42")
TIMED_OUT = result(190.0, "timeout", "timed out")
OK, STALE, FAILED = CollectorState.OK, CollectorState.STALE, CollectorState.FAILED


@pytest.mark.parametrize(
    ("given", "state", "success", "enabled", "served"),
    [
        ({}, CollectorState.NOT_RUN, False, True, None),
        ({"up": False}, CollectorState.NOT_RUN, None, None, None),
        ({"latest": result(190.0), "good": result(190.0), "current": True}, OK, True, True, 190.0),
        # Expired and not replaced (refreshing paused, or a run that never ends): served stale, for a while.
        ({"latest": result(170.0), "good": result(170.0)}, STALE, True, True, 170.0),
        ({"latest": result(100.0), "good": result(100.0)}, FAILED, False, True, None),
        # The latest run failed or was left out: the last good result is served, the run reported failed.
        ({"latest": TIMED_OUT, "good": result(150.0), "current": True}, STALE, False, True, 150.0),
        ({"latest": LOCKED, "good": result(190.0), "current": True}, STALE, False, True, 190.0),
        ({"latest": LOCKED, "good": result(100.0), "current": True}, FAILED, False, True, None),
        ({"latest": TIMED_OUT, "current": True}, FAILED, False, True, None),
        ({"skipped": "table missing or not readable: worker"}, CollectorState.SKIPPED, None, False, None),
        ({"invalid": "demo.sql:3: column 'v' is missing"}, CollectorState.INVALID, False, False, None),
    ],
)  # fmt: skip
def test_each_situation_has_one_state_and_one_reported_success(
    given: dict[str, object], state: CollectorState, success: bool | None, enabled: bool | None,
    served: float | None,
) -> None:  # fmt: skip
    found = status(**given)
    assert (found.state, found.success, found.enabled, found.served and found.served.finished) == (
        state, success, enabled, served,
    )  # fmt: skip


def test_a_good_result_is_served_stale_up_to_the_bound_and_then_the_collector_fails() -> None:
    limit = stale_limit(TTL)
    assert limit == 60.0 and stale_limit(60.0) == 240.0
    good = result(100.0)
    for now, state in ((100.0 + limit, CollectorState.STALE), (100.0 + limit + 0.1, CollectorState.FAILED)):
        found = status(latest=TIMED_OUT, good=good, current=True, now=now)
        assert found.state is state, now
        assert found.last_success == 1_700_000_100.0  # the newest good result's time, whatever the state


def test_the_reason_says_why_and_the_age_is_of_the_latest_run() -> None:
    assert status(skipped="needs PostgreSQL server_version_num >= 160000").reason == (
        "needs PostgreSQL server_version_num >= 160000"
    )
    failed = status(latest=result(150.0, "lock_timeout", "canceling statement due to lock timeout"))
    assert (failed.reason, failed.age) == ("canceling statement due to lock timeout", 50.0)
    assert status(latest=LOCKED, good=result(190.0), current=True).reason == LOCKED.error
    assert status(latest=result(170.0), good=result(170.0)).reason == "no new result for 30s"
    assert status().age is None
