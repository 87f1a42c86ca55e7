"""The operation classifier: every statement captured from real Prefect servers classifies as reviewed."""

from __future__ import annotations

import json

import pytest

from devtools.paths import REPO_ROOT
from exporter.config import DEFAULT_OPERATIONS_FILE
from exporter.errors import CatalogError
from exporter.operations import load_operations, parse_operations

DATA = REPO_ROOT / "tests" / "data" / "prefect_statements"
VERSIONS = ("3.1.15", "3.9.1")
# pg_stat_activity shows only the first track_activity_query_size bytes (default 1024) of a statement.
ACTIVITY_QUERY_BYTES = 1023
# The operations the sampler must tell apart (issue: worker poll, last_polled updates, foreman, ...).
REQUIRED = {
    "worker_poll", "work_queue_last_polled_update", "deployment_last_polled_update",
    "foreman_status_update", "flow_run_state_change", "task_run_state_change", "log_insert",
    "event_insert", "worker_heartbeat", "late_runs_marking", "scheduler", "trimming",
}  # fmt: skip


def captured(version: str) -> list[dict[str, object]]:
    lines = (DATA / f"{version}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.parametrize("version", VERSIONS)
def test_every_captured_statement_classifies_as_reviewed(version: str) -> None:
    classifier = load_operations(DEFAULT_OPERATIONS_FILE)
    wrong = []
    for record in captured(version):
        statement = str(record["statement"])
        cut = statement.encode()[:ACTIVITY_QUERY_BYTES].decode("utf-8", errors="ignore")
        for text, where in ((statement, "whole"), (cut, "as pg_stat_activity shows it")):
            found = classifier.classify(text)
            if found != record["operation"]:
                wrong.append(f"{where}: {found} != {record['operation']}: {statement[:120]}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("version", VERSIONS)
def test_captures_cover_every_required_operation(version: str) -> None:
    operations = {str(r["operation"]) for r in captured(version)}
    missing = REQUIRED - operations - ({"trimming"} if version == "3.1.15" else set())
    assert not missing, f"{version} captures lack {missing}"


def test_both_deployment_update_shapes_are_one_operation() -> None:
    statements = {
        version: [
            str(r["statement"])
            for r in captured(version)
            if r["operation"] == "deployment_last_polled_update"
        ]
        for version in VERSIONS
    }
    assert any(s.startswith("UPDATE deployment SET last_polled") for s in statements["3.1.15"])
    assert any(s.startswith("WITH locked AS") and "UPDATE deployment SET" in s for s in statements["3.9.1"])


def test_the_exporter_and_unknown_statements() -> None:
    classifier = load_operations(DEFAULT_OPERATIONS_FILE)
    assert classifier.classify("SELECT 1", "prefect-db-exporter") == "exporter"
    assert classifier.classify("VACUUM flow_run") == "other"
    assert classifier.classify(None) == "other"
    # The foreman's 3.7+ update by id is not a poll.
    foreman = (
        "WITH locked AS (SELECT deployment.id AS id, deployment.status AS status FROM deployment "
        "WHERE deployment.id IN ($1::UUID, $2::UUID) OR deployment.work_queue_id IN (NULL) AND (1 != 1) "
        "ORDER BY deployment.id FOR UPDATE) UPDATE deployment SET status=$3::deployment_status"
    )
    assert classifier.classify(foreman) == "foreman_status_update"


def test_bad_operations_files_name_line_and_key() -> None:
    with pytest.raises(CatalogError) as caught:
        parse_operations(
            "operations:\n  - operation: Bad Name\n    pattern: '('\n  - operation: x\n    colour: red\n",
            "ops.yaml",
        )
    problems = "\n".join(caught.value.problems)
    assert "ops.yaml:2: operations[0].operation: 'Bad Name': use lower-case letters" in problems
    assert "ops.yaml:3: operations[0].pattern: not a valid regular expression" in problems
    assert "ops.yaml:5: operations[1].colour: unknown key" in problems
    assert "ops.yaml:4: operations[1]: give a pattern, an application_name, or both" in problems
