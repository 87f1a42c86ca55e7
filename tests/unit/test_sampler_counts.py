"""What one sampler tick adds: busy sessions by operation, who waits on whom, and last_polled wait time."""

from __future__ import annotations

from exporter.config import DEFAULT_OPERATIONS_FILE
from exporter.operations import load_operations
from exporter.sampler import ActiveSession, SamplerCounts

POLL_UPDATE = (
    "UPDATE deployment SET last_polled=$1::TIMESTAMP WITH TIME ZONE, status=$2::deployment_status "
    "WHERE deployment.id IN (NULL) AND (1 != 1) OR deployment.work_queue_id IN ($3::UUID)"
)
QUEUE_UPDATE = (
    "UPDATE work_queue SET last_polled=$1::TIMESTAMP WITH TIME ZONE WHERE work_queue.id IN ($2::UUID)"
)
LOG_INSERT = "INSERT INTO log (name, level) VALUES ($1, $2)"


def session(
    pid: int,
    query: str | None,
    state: str = "active",
    wait: str = "none",
    blockers: tuple[int, ...] = (),
    relation: str | None = None,
    application_name: str = "",
) -> ActiveSession:
    return ActiveSession(pid, state, wait, application_name, query, blockers, relation)


def counts() -> SamplerCounts:
    return SamplerCounts(load_operations(DEFAULT_OPERATIONS_FILE))


def test_every_last_polled_table_starts_at_zero_and_nothing_else_is_counted_before_a_tick() -> None:
    fresh = counts()
    assert fresh.last_polled_wait_seconds == {"deployment": 0.0, "work_queue": 0.0}
    assert (fresh.ticks, dict(fresh.sessions), dict(fresh.lock_waits)) == (0, {}, {})


def test_two_pollers_deadlocking_on_deployment_rows_are_counted_by_operation_and_table() -> None:
    tick = counts()
    tick.add(
        [
            session(101, POLL_UPDATE, wait="Lock", blockers=(102,), relation="deployment"),
            session(102, POLL_UPDATE, wait="Lock", blockers=(101,), relation="deployment"),
            session(103, LOG_INSERT, state="idle in transaction"),
        ],
        weight=1.5,
    )
    assert tick.ticks == 1
    assert tick.sessions == {
        ("deployment_last_polled_update", "active", "Lock"): 2,
        ("log_insert", "idle in transaction", "none"): 1,
    }
    assert tick.lock_waits == {
        ("deployment_last_polled_update", "deployment_last_polled_update", "deployment"): 2
    }
    # Each waiting last_polled update adds the time the tick stands for.
    assert tick.last_polled_wait_seconds == {"deployment": 3.0, "work_queue": 0.0}


def test_a_blocker_outside_the_sample_and_a_table_outside_prefect_are_other() -> None:
    tick = counts()
    tick.add([session(7, QUEUE_UPDATE, wait="Lock", blockers=(99, 98), relation="pg_class")], weight=1.0)
    assert tick.lock_waits == {("work_queue_last_polled_update", "other", "other"): 1}
    assert tick.last_polled_wait_seconds["work_queue"] == 1.0


def test_one_waiter_blocked_by_two_operations_counts_once_for_each() -> None:
    tick = counts()
    tick.add(
        [
            session(1, LOG_INSERT, wait="Lock", blockers=(2, 3), relation="log"),
            session(2, POLL_UPDATE),
            session(3, None, state="idle in transaction"),
        ],
        weight=1.0,
    )
    assert tick.lock_waits == {
        ("log_insert", "deployment_last_polled_update", "log"): 1,
        ("log_insert", "other", "log"): 1,
    }


def test_the_exporters_own_sessions_are_their_own_operation() -> None:
    tick = counts()
    tick.add([session(5, "SELECT 1", application_name="prefect-db-exporter")], weight=1.0)
    assert tick.sessions == {("exporter", "active", "none"): 1}
