"""The timing of background refresh, with a fake clock: when a collector runs next, when refreshing
pauses and resumes, how long a result is served stale."""

from __future__ import annotations

from exporter.freshness import (
    IDLE_MIN,
    LOCKED_RETRY,
    MIN_INTERVAL,
    ScrapeActivity,
    next_run,
    stale_limit,
)


def test_a_collector_runs_again_just_before_its_result_expires() -> None:
    assert next_run(15.0, finished=100.0, status="success") == 114.0  # one second ahead of the TTL
    assert next_run(300.0, finished=100.0, status="success") == 399.0
    assert next_run(5.0, finished=100.0, status="success") == 104.5  # ahead by a tenth of a short TTL


def test_no_collector_runs_more_often_than_the_minimum_interval() -> None:
    assert next_run(0.0, finished=100.0, status="success") == 100.0 + MIN_INTERVAL


def test_a_failed_run_is_retried_on_its_schedule_but_a_locked_one_soon() -> None:
    assert next_run(60.0, finished=100.0, status="timeout") == 159.0
    assert next_run(60.0, finished=100.0, status="locked") == 100.0 + LOCKED_RETRY
    assert next_run(60.0, finished=100.0, status="lock_timeout") == 100.0 + LOCKED_RETRY
    assert next_run(2.0, finished=100.0, status="locked") == 101.8  # never later than its schedule


def test_stale_results_are_served_for_four_ttls_and_at_least_a_minute() -> None:
    assert (stale_limit(0.0), stale_limit(15.0), stale_limit(30.0), stale_limit(300.0)) == (60, 60, 120, 1200)


def test_refreshing_goes_on_from_start_for_a_minute_even_before_the_first_scrape() -> None:
    activity = ScrapeActivity(started=1000.0)
    assert not activity.idle(1000.0 + IDLE_MIN - 1)
    assert activity.idle(1000.0 + IDLE_MIN)


def test_refreshing_pauses_after_three_scrape_intervals_and_at_least_a_minute() -> None:
    activity = ScrapeActivity(started=0.0)
    for at in (10.0, 25.0, 40.0, 55.0):  # scraped every 15 s
        activity = activity.scraped(at)
    assert activity.interval == 15.0
    assert not activity.idle(55.0 + 59.0)  # 3 x 15 s < 60 s: the minute wins
    assert activity.idle(55.0 + 60.0)
    slow = ScrapeActivity(started=0.0)
    for at in (0.0, 60.0, 120.0):  # scraped every minute
        slow = slow.scraped(at)
    assert not slow.idle(120.0 + 179.0) and slow.idle(120.0 + 180.0)
    assert slow.idle_at() == 300.0


def test_an_ha_pair_scraping_in_turn_is_judged_by_its_longer_gap() -> None:
    activity = ScrapeActivity(started=0.0)
    for at in (0.0, 0.5, 30.0, 30.5, 60.0, 60.5):  # two servers, 30 s interval, half a second apart
        activity = activity.scraped(at)
    assert activity.interval == 29.5
    assert not activity.idle(60.5 + 88.0) and activity.idle(60.5 + 88.5)


def test_a_one_minute_scrape_interval_is_learned_from_its_first_gap() -> None:
    activity = ScrapeActivity(started=0.0).scraped(0.0)
    assert activity.idle(60.5)  # not known yet: paused once
    activity = activity.scraped(60.5)
    assert activity.interval == 60.5 and not activity.idle(60.5 + 150.0)


def test_the_next_scrape_after_a_pause_resumes_and_the_pause_is_not_taken_for_an_interval() -> None:
    activity = ScrapeActivity(started=0.0).scraped(0.0).scraped(15.0)
    assert activity.idle(500.0)
    resumed = activity.scraped(500.0)
    assert not resumed.idle(500.0)
    assert resumed.interval == 15.0  # the 485 s gap was a pause
