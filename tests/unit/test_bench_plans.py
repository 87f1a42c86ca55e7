"""The benchmark's plan check: sequential scans of history tables that ran, and the indexes used."""

from __future__ import annotations

import json

from bench.run import plan_check


def plan(*children: dict[str, object]) -> str:
    return json.dumps([{"Plan": {"Node Type": "Result", "Total Cost": 1.0, "Plans": list(children)}}])


def test_a_sequential_scan_of_a_history_table_fails_the_check() -> None:
    result = plan_check(plan({"Node Type": "Seq Scan", "Relation Name": "task_run"}))
    assert not result["ok"]
    assert result["seq_scans_on_history"] == ["task_run"]


def test_a_scan_of_a_small_table_and_index_scans_pass() -> None:
    result = plan_check(
        plan(
            {"Node Type": "Seq Scan", "Relation Name": "work_queue"},
            {"Node Type": "Index Only Scan", "Relation Name": "events", "Index Name": "ix_events__occurred"},
        )
    )
    assert result["ok"]
    assert result["indexes"] == ["ix_events__occurred"]


def test_a_scan_that_never_ran_under_explain_analyze_is_not_counted() -> None:
    # retention.sql's event_resources bound behind a CASE that is false without the occurred index.
    never_ran = {"Node Type": "Seq Scan", "Relation Name": "event_resources", "Actual Loops": 0}
    ran = {"Node Type": "Seq Scan", "Relation Name": "event_resources", "Actual Loops": 1}
    assert plan_check(plan(never_ran))["ok"]
    assert not plan_check(plan(ran))["ok"]


def test_an_index_scan_returning_a_whole_history_table_fails_the_check() -> None:
    whole = {"Node Type": "Index Scan", "Relation Name": "flow_run_state",
             "Index Name": "ix_flow_run_state__updated", "Actual Rows": 4_054_533,
             "Actual Loops": 1}  # fmt: skip
    bounded = {**whole, "Actual Rows": 12}
    result = plan_check(plan(whole))
    assert not result["ok"]
    assert result["large_reads_on_history"] == ["flow_run_state (4,054,533 rows)"]
    assert plan_check(plan(bounded))["ok"]
