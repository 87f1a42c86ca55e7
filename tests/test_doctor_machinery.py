"""``doctor`` on Prefect's machinery in trouble (tests/troubles.py makes each one for real): the finding
and its evidence, on the schemas of every tested Prefect version."""

from __future__ import annotations

import troubles
from helpers import eventually
from test_doctor import doctor, findings, only, sessions

from devtools.pgcluster import TestDatabase
from exporter.doctor.findings import Severity

# Seconds of slack for ages: rows are aged at insert and read a moment later.
SLACK = 5.0


def about(actual: float | None, expected: float) -> bool:
    return actual is not None and expected <= actual < expected + SLACK


async def test_overdue_runs_not_marked_late_are_a_stalled_late_marker(prefect_db: TestDatabase) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        await troubles.stall_late_marking(conn, "pool-l")
        report = await doctor(prefect_db)
    finding = only(report, "late_marking_stalled")
    (queue,) = finding.data["queues"]
    assert {k: queue[k] for k in ("work_pool", "work_queue", "overdue_runs", "repeated_late_runs")} == {
        "work_pool": "pool-l",
        "work_queue": "default",
        "overdue_runs": 2,
        "repeated_late_runs": 1,
    }
    assert about(queue["oldest_overdue_seconds"], 300)
    assert finding.evidence[0].startswith("pool-l/default: 2 runs still Scheduled more than 60s past")
    assert finding.evidence[1] == "pool-l/default: 1 run marked Late more than once"
    assert finding.severity is Severity.WARNING
    assert "prefect#22139" in finding.why and finding.alerts == ("PrefectLateMarkingStalled",)
    assert finding.runbook_link == "docs/runbooks.md#prefectlatemarkingstalled"


async def test_rows_stored_online_and_ready_past_their_timeouts_are_one_foreman_finding(
    prefect_db: TestDatabase,
) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        await troubles.stall_foreman(conn)
        report = await doctor(prefect_db)
    finding = only(report, "foreman_stalled")  # the stale workers are part of it, not a second finding
    assert finding.data["stale_rows"] == {"worker": 2, "work_queue": 1, "deployment": 1}
    assert sorted(w["worker"] for w in finding.data["workers"]) == ["dead-1", "dead-2"]
    pools = {(p["work_pool"], p["relation"]): p for p in finding.data["pools"]}
    assert set(pools) == {("pool-f", "worker"), ("pool-f", "work_queue"), ("pool-f", "deployment")}
    assert about(pools["pool-f", "worker"]["max_overdue_seconds"], 300 - 90)
    assert about(pools["pool-f", "work_queue"]["max_overdue_seconds"], 400 - 60)
    assert finding.evidence[0].startswith("work pool pool-f: 2 workers stored ONLINE up to 3m3")  # 210 s
    assert "1 work queue stored READY" in finding.evidence[0]
    assert "1 deployment stored READY" in finding.evidence[0]
    assert any("worker dead-1 of pool pool-f: stored ONLINE" in line for line in finding.evidence)
    assert "prefect#22212" in finding.why and "PrefectForemanStalled" in finding.alerts
    assert findings(report, "unpolled_queues") == []  # polled 400 s ago: within the 600 s of that finding


async def test_events_older_than_the_retention_are_retention_behind(prefect_db: TestDatabase) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        has_index = await troubles.age_events_past_retention(conn)
        report = await doctor(prefect_db)
    finding = only(report, "retention_behind")
    tables = {t["relation"]: t["oldest_age_seconds"] for t in finding.data["tables"]}
    # event_resources is measured only through ix_event_resources__occurred (3.7.5+), never by a scan.
    assert set(tables) == ({"events", "event_resources"} if has_index else {"events"})
    assert all(about(seconds, 10 * 86400) for seconds in tables.values())
    assert finding.evidence[0] == "events: oldest row 10d00h old (retention 7d00h)"
    assert "prefect#20746" in finding.why and finding.alerts == ("PrefectRetentionBehind",)


async def test_an_index_left_invalid_is_named_with_its_rebuild(prefect_db: TestDatabase) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        await troubles.leave_invalid_index(conn)
        report = await doctor(prefect_db)
    finding = only(report, "invalid_indexes")
    (index,) = finding.data["indexes"]
    assert index["relation"] == "flow_run" and index["index"] == troubles.INVALID_INDEX
    assert index["unique"] is True and index["building"] is False
    assert index["reindex"] == f"REINDEX INDEX CONCURRENTLY {troubles.INVALID_INDEX};"
    assert index["drop"] == f"DROP INDEX CONCURRENTLY {troubles.INVALID_INDEX};"
    assert f"REINDEX INDEX CONCURRENTLY {troubles.INVALID_INDEX};" in finding.action
    assert finding.evidence[0].startswith(f"flow_run: index {troubles.INVALID_INDEX} INVALID: CREATE UNIQUE")
    assert finding.severity is Severity.WARNING and finding.alerts == ("PrefectInvalidIndex",)


async def test_a_database_set_to_repeatable_read_is_an_isolation_finding(prefect_db: TestDatabase) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        await troubles.set_repeatable_read(conn, prefect_db.name)
    # A "Prefect" session opened afterwards gets repeatable read; the session that ran ALTER is gone.
    async with sessions(prefect_db, 1) as (prefect,):
        pid = prefect.get_server_pid()

        async def only_this_one() -> bool:
            others: int = await prefect.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_type = 'client backend' AND pid <> $1",
                pid,
            )
            return others == 0

        await eventually(only_this_one)
        report = await doctor(prefect_db)
    finding = only(report, "isolation_not_read_committed")
    assert finding.data == {"database_not_read_committed": True, "sessions_not_read_committed": 1}
    assert finding.evidence[1] == "1 client session run with such a default (the exporter's excluded)"
    assert "prefect#22597" in finding.why and "RESET default_transaction_isolation" in finding.action
    assert report.exit_code == 1


async def test_slots_held_by_no_run_are_leaked_slots(prefect_db: TestDatabase) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        leaked = await troubles.leak_concurrency_slots(conn)
        report = await doctor(prefect_db)
    finding = only(report, "concurrency_slots_leaked")
    limits = sorted(finding.data["limits"], key=lambda limit: str(limit["name"]))
    assert limits == [
        {"name": leaked.deployment_limit, "holders": 1, "leaked_slots": 2},
        {"name": "tag:db", "holders": 0, "leaked_slots": 2},
    ]  # external-api: its holders are not recorded, so it is not judged
    (awaiting,) = finding.data["awaiting"]
    assert awaiting["work_pool"] == "pool-c" and awaiting["runs"] == len(leaked.awaiting_ages)
    assert about(awaiting["oldest_seconds"], max(leaked.awaiting_ages))
    assert f"{leaked.deployment_limit}: 2 slots taken beyond its 1 holding runs" in finding.evidence
    assert "prefect#17415" in finding.why and finding.title.startswith("4 concurrency slots taken")


async def test_runs_cancelling_for_ten_minutes_are_listed_by_id(prefect_db: TestDatabase) -> None:
    async with sessions(prefect_db, 1) as (conn,):
        runs = await troubles.strand_cancelling_runs(conn)
        report = await doctor(prefect_db)
    finding = only(report, "cancelling_stuck")
    assert [r["id"] for r in finding.data["runs"]] == [str(r) for r in runs[:2]]  # not the 60 s one
    (queue,) = finding.data["queues"]
    assert queue["work_pool"] == "pool-x" and queue["stale_runs"] == 2
    assert about(queue["oldest_age_seconds"], 600)
    assert finding.evidence[1].startswith(f"  run {runs[0]} ")
    assert "prefect#15231" in finding.why and finding.alerts == ("PrefectFlowRunsCancellingStuck",)
