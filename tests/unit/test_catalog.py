"""Collector files: the built-in catalog is valid, and a bad file is reported by file, line and key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools import metrics_doc
from exporter.catalog import check_result_columns, load_catalog
from exporter.config import DEFAULT_QUERY_DIR
from exporter.errors import CatalogError

GOOD = """-- description: Demo.
-- ttl: 30s
-- metrics:
--   - name: demo_value
--     type: gauge
--     help: A demo value.
--     value: v
--     labels: [kind]
SELECT 'a' AS kind, 1 AS v;
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_in(directory: Path) -> list[str]:
    with pytest.raises(CatalogError) as caught:
        load_catalog([directory])
    return list(caught.value.problems)


def test_builtin_catalog_is_valid_and_follows_the_metric_contract() -> None:
    catalog = load_catalog([DEFAULT_QUERY_DIR])
    assert len(catalog.collectors) >= 15
    allowed_labels = {
        "work_pool", "work_queue", "state_type", "status", "state", "mode", "granted", "relation",
        "wait_event_type", "name", "worker", "server_version", "alembic_revision", "application",
    }  # fmt: skip
    for spec in catalog.collectors:
        assert spec.description
        for metric in spec.metrics:
            assert metric.name.startswith("prefect_db_"), metric.name
            assert set(metric.labels) <= allowed_labels, (spec.name, metric.labels)
            assert metric.help.endswith("."), metric.name


def test_metrics_doc_matches_the_catalog() -> None:
    expected = metrics_doc.render(load_catalog([DEFAULT_QUERY_DIR]))
    actual = metrics_doc.DOC_PATH.read_text(encoding="utf-8")
    assert actual == expected, "docs/metrics.md is stale: run python -m devtools.metrics_doc"


def test_a_good_user_collector_loads(tmp_path: Path) -> None:
    write(tmp_path, "demo.sql", GOOD)
    (spec,) = load_catalog([tmp_path]).collectors
    assert (spec.name, spec.ttl, spec.metrics[0].labels) == ("demo", 30.0, ("kind",))
    assert spec.sql.startswith("SELECT")


def test_header_problems_name_file_line_and_key(tmp_path: Path) -> None:
    bad = GOOD.replace("-- ttl: 30s", "-- ttl: soon\n-- colour: blue").replace("type: gauge", "type: gauges")
    path = write(tmp_path, "bad.sql", bad)
    problems = problems_in(tmp_path)
    expected = "expected a duration such as 15s, 500ms, 1m30s, 1d or a number of seconds, got 'soon'"
    assert f"{path}:2: ttl: {expected}" in problems
    assert any(p.startswith(f"{path}:3: colour: unknown key") for p in problems)
    assert f"{path}:6: metrics[0].type: expected one of gauge, counter, got 'gauges'" in problems


def test_yaml_errors_point_at_the_file_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.sql", "\n\n-- description: x\n-- metrics: [\nSELECT 1;\n")
    (problem,) = problems_in(tmp_path)
    assert problem.startswith(f"{path}:") and "header is not valid YAML" in problem


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("name: demo_value", "name: demo value"), "is not a valid Prometheus metric name"),
        (("type: gauge", "type: counter"), "a counter's name ends in _total"),
        (("labels: [kind]", "labels: [target]"), "'target' is added by the exporter"),
        (("--     value: v\n", ""), "missing required key 'value'"),
        (("--     value: v\n", "--     value:\n"), "metrics[0].value: must not be empty"),
        (("--     value: v\n", "--     value: ''\n"), "metrics[0].value: "),
        (("-- description: Demo.\n", ""), "missing required key 'description'"),
        (("SELECT 'a' AS kind, 1 AS v;", ""), "no query after the header"),
        (("SELECT 'a' AS kind, 1 AS v;", "SELECT $1 AS v;"), "queries take no $n parameters"),
        (("name: demo_value", "name: prefect_db_exporter_x"), "reserved for the exporter's own metrics"),
    ],
)
def test_each_header_mistake_is_caught(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    write(tmp_path, "demo.sql", GOOD.replace(*change))
    problems = problems_in(tmp_path)
    assert any(expected in p for p in problems), problems


def test_duplicate_metric_names_across_files(tmp_path: Path) -> None:
    write(tmp_path, "one.sql", GOOD)
    two = write(tmp_path, "two.sql", GOOD)
    (problem,) = problems_in(tmp_path)
    assert problem.startswith(f"{two}:4: metrics.name: 'demo_value' is already defined in ")


def test_user_collector_clashing_with_a_builtin(tmp_path: Path) -> None:
    write(tmp_path, "mine.sql", GOOD.replace("demo_value", "prefect_db_connections"))
    with pytest.raises(CatalogError, match="already defined"):
        load_catalog([DEFAULT_QUERY_DIR, tmp_path])


def test_missing_result_column_is_reported_with_its_key(tmp_path: Path) -> None:
    path = write(tmp_path, "demo.sql", GOOD)
    (spec,) = load_catalog([tmp_path]).collectors
    (problem,) = check_result_columns(spec, ["v"])
    assert problem == (
        f"{path}:4: metrics[0].labels: column 'kind' is not in the query's result (it returns: v)"
    )


def test_include_and_exclude_name_real_collectors() -> None:
    catalog = load_catalog([DEFAULT_QUERY_DIR])
    assert [c.name for c in catalog.select(["server"], []).collectors] == ["server"]
    assert "server" not in [c.name for c in catalog.select([], ["server"]).collectors]
    with pytest.raises(CatalogError, match="'servr' is not a collector"):
        catalog.select(["servr"], [])


def test_an_opt_in_collector_runs_only_when_enabled_or_included() -> None:
    catalog = load_catalog([DEFAULT_QUERY_DIR])
    assert not catalog.get("worker_heartbeats").enabled
    assert "worker_heartbeats" not in [c.name for c in catalog.select([], []).collectors]
    enabled = [c.name for c in catalog.select([], [], ["worker_heartbeats"]).collectors]
    assert "worker_heartbeats" in enabled and "workers" in enabled
    assert [c.name for c in catalog.select(["worker_heartbeats"], []).collectors] == ["worker_heartbeats"]
    assert "worker_heartbeats" not in [
        c.name for c in catalog.select([], ["worker_heartbeats"], ["worker_heartbeats"]).collectors
    ]
    with pytest.raises(CatalogError, match="'worker_heartbeat' is not a collector"):
        catalog.select([], [], ["worker_heartbeat"])


def test_enabled_is_a_boolean_named_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "demo.sql", GOOD.replace("-- metrics:", "-- enabled: sometimes\n-- metrics:", 1))
    (problem,) = problems_in(tmp_path)
    assert problem.startswith(f"{path}:3: enabled:"), problem


def test_role_script_grants_exactly_the_tables_collectors_read() -> None:
    script = (DEFAULT_QUERY_DIR.parent / "deploy" / "exporter-role.sql").read_text(encoding="utf-8")
    match = re.search(r"^\\set exporter_tables '([^']*)'", script, re.M)
    assert match, "deploy/exporter-role.sql lost its \\set exporter_tables line"
    granted = set(match.group(1).split(","))
    read = {t for spec in load_catalog([DEFAULT_QUERY_DIR]).collectors for t in spec.requires.tables}
    assert granted == read | {"alembic_version"}


def test_an_empty_value_is_rejected_at_load_with_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "demo.sql", GOOD.replace("--     value: v\n", "--     value:\n"))
    (problem,) = problems_in(tmp_path)
    assert problem == (
        f"{path}:7: metrics[0].value: must not be empty: name the result column holding the value"
    )


def test_an_empty_value_of_an_incremental_counter_is_rejected_too(tmp_path: Path) -> None:
    text = (DEFAULT_QUERY_DIR / "flow_run_transitions.sql").read_text()
    labels = "--     labels: [work_pool, state_type]"
    emptied = text.replace(labels, f"--     value:\n{labels}")
    path = write(tmp_path, "mine.sql", emptied.replace("prefect_db_", "mine_"))
    (problem,) = problems_in(tmp_path)
    assert problem.startswith(f"{path}:15: metrics[0].value: must not be empty")
