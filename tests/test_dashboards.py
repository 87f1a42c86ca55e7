"""The committed dashboards are what dashboards/build.py makes; the linter passes them and finds mistakes."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build, lint

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_DIR = REPO_ROOT / "dashboards"
ALERTS_FILE = REPO_ROOT / "alerts" / "prefect-db-alerts.yml"
RUNBOOKS_FILE = REPO_ROOT / "docs" / "runbooks.md"
EXPECTED = {
    "overview.json": ("prefect-db-overview", "Prefect database — overview"),
    "postgres.json": ("prefect-db-postgres", "Prefect database — PostgreSQL internals"),
    "work-pools.json": ("prefect-db-work-pools", "Prefect database — work pools & queues"),
}
RUNBOOK_PREFIX = build.RUNBOOK_URL.format(anchor="")

Board = dict[str, Any]


def committed() -> dict[str, Board]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in DASHBOARD_DIR.glob("*.json")}


def panels(board: Board) -> list[Board]:
    return [p for p in lint._panels(board["panels"]) if p["type"] != "row"]


def runbook_anchors(board: Board) -> set[str]:
    return {
        link["url"].removeprefix(RUNBOOK_PREFIX)
        for panel in panels(board)
        for link in panel.get("links", [])
        if link.get("url", "").startswith(RUNBOOK_PREFIX)
    }


# Generated and committed ----------------------------------------------------------------------------


def test_committed_json_is_what_build_generates() -> None:
    generated = build.generate()
    assert sorted(generated) == sorted(p.name for p in DASHBOARD_DIR.glob("*.json"))
    for name, text in generated.items():
        on_disk = (DASHBOARD_DIR / name).read_text(encoding="utf-8")
        assert on_disk == text, f"dashboards/{name} is stale: run `python -m dashboards.build` and commit"
        assert (
            text.endswith("}\n")
            and json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n" == text
        )


def test_dashboards_have_stable_uids_titles_and_link_to_each_other() -> None:
    boards = committed()
    assert {name: (b["uid"], b["title"]) for name, b in boards.items()} == EXPECTED
    for board in boards.values():
        assert build.TAG in board["tags"]
        assert board["editable"] is False
        assert {
            "type": "dashboards",
            "tags": [build.TAG],
            "includeVars": True,
            "keepTime": True,
            "asDropdown": True,
        }.items() <= board["links"][0].items()


def test_every_board_narrows_by_job_instance_and_target_in_that_order() -> None:
    for name, board in committed().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert list(variables)[:4] == ["datasource", "job", "instance", "target"], name
        assert variables["datasource"]["type"] == "datasource"
        assert variables["job"]["query"] == "label_values(prefect_db_up, job)"
        assert variables["instance"]["query"] == 'label_values(prefect_db_up{job=~"$job"}, instance)'
        assert (
            variables["target"]["query"]
            == 'label_values(prefect_db_up{job=~"$job", instance=~"$instance"}, target)'
        )
        for key in ("job", "instance", "target"):
            assert (
                variables[key]["multi"]
                and variables[key]["includeAll"]
                and variables[key]["allValue"] == ".+"
            )
        if name == "work-pools.json":
            # Runs and deployments without a work queue carry work_pool="": "All" must match it.
            assert variables["work_pool"]["allValue"] == ".*"
            assert variables["work_pool"]["multi"] and variables["work_pool"]["includeAll"]


def test_every_panel_is_complete_and_positioned() -> None:
    for name, board in committed().items():
        ids = [p["id"] for p in lint._panels(board["panels"])]
        assert ids == list(range(1, len(ids) + 1)), name
        for panel in panels(board):
            assert panel["gridPos"]["w"] > 0 and panel["gridPos"]["h"] > 0, panel["title"]
            assert all(t["refId"] and t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


# Alerts about Prometheus' own `up` of the scrape job: it has no target label to put on a panel.
UNCHARTED_ALERTS = {"PrefectDbExporterDown", "PrefectDbExporterAbsent"}


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_runbook_links_point_at_alerts_and_their_runbook_sections() -> None:
    anchors = set().union(*(runbook_anchors(b) for b in committed().values()))
    rules = yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert anchors <= {a.lower() for a in alerts}, f"links to alerts that do not exist: {sorted(anchors)}"
    charted = {a for a in alerts if a.lower() in anchors}
    assert alerts - charted == UNCHARTED_ALERTS, "every alert needs a panel linking to its runbook"
    headings = re.findall(r"^#+ (.+)$", RUNBOOKS_FILE.read_text(encoding="utf-8"), re.MULTILINE)
    missing = anchors - {github_anchor(h) for h in headings}
    assert not missing, f"docs/runbooks.md has no section for {sorted(missing)}"


# The linter -------------------------------------------------------------------------------------------


def test_linter_passes_the_repository_dashboards() -> None:
    assert lint.lint(sorted(DASHBOARD_DIR.glob("*.json"))) == []


def test_linter_command_line(tmp_path: Path) -> None:
    good = sorted(str(p) for p in DASHBOARD_DIR.glob("*.json"))
    ok = subprocess.run(
        [sys.executable, "-m", "dashboards.lint", *good], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert ok.returncode == 0 and ok.stdout == "", ok.stdout + ok.stderr
    assert ok.stderr.startswith("3 dashboards, ") and ": no problems (21 rules: " in ok.stderr
    assert all(rule in ok.stderr for rule in lint.RULES)
    broken = tmp_path / "broken.json"
    board = committed()["overview.json"]
    board["panels"][1]["description"] = ""
    board["panels"][3]["fieldConfig"]["defaults"].pop("unit")
    broken.write_text(json.dumps(board), encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, "-m", "dashboards.lint", str(broken)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        f'{broken}: panel "{board["panels"][1]["title"]}": no description [panel-title-description-rule]',
        f'{broken}: panel "{board["panels"][3]["title"]}": no unit (fieldConfig.defaults.unit) '
        "[panel-units-rule]",
    ]
    usage = subprocess.run([sys.executable, "-m", "dashboards.lint"], cwd=REPO_ROOT, capture_output=True)
    assert usage.returncode == 2


def first_graph(board: Board) -> Board:
    return next(p for p in panels(board) if p["type"] == "timeseries")


def set_expr(expr: str) -> Callable[[Board], None]:
    def mutate(board: Board) -> None:
        first_graph(board)["targets"][0]["expr"] = expr

    return mutate


def drop_datasource_variable(board: Board) -> None:
    board["templating"]["list"] = [v for v in board["templating"]["list"] if v["name"] != "datasource"]


def hard_code_panel_datasource(board: Board) -> None:
    first_graph(board)["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}


def hard_code_target_datasource(board: Board) -> None:
    first_graph(board)["targets"][0]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}


def hard_code_variable_datasource(board: Board) -> None:
    board["templating"]["list"][1]["datasource"] = {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}


def drop_unit(board: Board) -> None:
    first_graph(board)["fieldConfig"]["defaults"]["unit"] = ""


def misspell_unit(board: Board) -> None:
    first_graph(board)["fieldConfig"]["defaults"]["unit"] = "seconds"


def drop_description(board: Board) -> None:
    first_graph(board).pop("description")


def drop_ref_id(board: Board) -> None:
    first_graph(board)["targets"][0].pop("refId")


def duplicate_ref_id(board: Board) -> None:
    targets = first_graph(board)["targets"]
    targets.append(dict(targets[0]))


def drop_targets(board: Board) -> None:
    first_graph(board)["targets"] = []


def drop_schema_version(board: Board) -> None:
    board.pop("schemaVersion")


def duplicate_panel_id(board: Board) -> None:
    found = panels(board)
    found[1]["id"] = found[0]["id"]


T = 'job=~"$job", instance=~"$instance", target=~"$target"'


def variable(name: str) -> Callable[[Board], Board]:
    def find(board: Board) -> Board:
        return next(v for v in board["templating"]["list"] if v["name"] == name)

    return find


def drop_variable(name: str) -> Callable[[Board], None]:
    def mutate(board: Board) -> None:
        board["templating"]["list"] = [v for v in board["templating"]["list"] if v["name"] != name]

    return mutate


def set_variable(name: str, key: str, value: object) -> Callable[[Board], None]:
    def mutate(board: Board) -> None:
        variable(name)(board)[key] = value

    return mutate


def make_editable(board: Board) -> None:
    board["editable"] = True


def annotation_without_job(board: Board) -> None:
    board["annotations"]["list"][0]["expr"] = board["annotations"]["list"][0]["expr"].replace(
        'job=~"$job", ', ""
    )


def bad_override_unit(board: Board) -> None:
    table = next(p for p in panels(board) if p["type"] == "table")
    table["fieldConfig"]["overrides"][0]["properties"][0]["value"] = "runs"


def widen_past_the_grid(board: Board) -> None:
    first_graph(board)["gridPos"]["w"] = 24 - first_graph(board)["gridPos"]["x"] + 1


def overlap(board: Board) -> None:
    found = panels(board)
    found[1]["gridPos"] = dict(found[0]["gridPos"])


MISTAKES: dict[str, tuple[Callable[[Board], None], str]] = {
    "panel past the 24 columns": (widen_past_the_grid, "leaves the 24 columns [prefect-layout-rule]"),
    "overlapping panels": (overlap, "overlaps panel"),
    "no datasource variable": (drop_datasource_variable, "needs exactly one datasource variable"),
    "panel datasource uid": (hard_code_panel_datasource, 'datasource is {"type": "prometheus", "uid": "P18'),
    "target datasource uid": (hard_code_target_datasource, "target A: datasource is"),
    "variable datasource uid": (hard_code_variable_datasource, "templating.list[1].datasource: hard-coded"),
    "no unit": (drop_unit, "no unit"),
    "unknown unit in an override": (bad_override_unit, "unknown unit 'runs' (a Grafana unit id"),
    "no job variable": (drop_variable("job"), "no job variable [template-job-rule]"),
    "no instance variable": (drop_variable("instance"), "no instance variable [template-instance-rule]"),
    "no target variable": (drop_variable("target"), "no target variable [prefect-template-target-rule]"),
    "single-value job": (set_variable("job", "multi", False), "variable job: should be multi-value"),
    "instance allValue": (
        set_variable("instance", "allValue", ".*"),
        "variable instance: should be allValue '.+', is '.*' [template-instance-rule]",
    ),
    "job label": (set_variable("job", "label", "job"), "variable job: should be labelled 'Job'"),
    "variable refreshed on load only": (
        set_variable("target", "refresh", 1),
        "variable target: refresh is 1, not 2 (on time range change) [template-on-time-change-reload-rule]",
    ),
    "variable not label_values": (
        set_variable("target", "query", "query_result(prefect_db_up)"),
        "[template-label-promql-rule]",
    ),
    "editable": (make_editable, "[template-uneditable-rule]"),
    "annotation without job": (
        annotation_without_job,
        'annotation "PostgreSQL restarts": prefect_db_postmaster_start_time_seconds has no job=~"$job" '
        "[target-job-rule]",
    ),
    "no job matcher": (
        set_expr('prefect_db_up{instance=~"$instance", target=~"$target"}'),
        'target A: prefect_db_up has no job=~"$job" [target-job-rule]',
    ),
    "instance matched exactly": (
        set_expr('prefect_db_up{job=~"$job", instance="$instance", target=~"$target"}'),
        'target A: prefect_db_up has no instance=~"$instance" [target-instance-rule]',
    ),
    "unbalanced PromQL": (
        set_expr(f"sum(rate(prefect_db_xact_commit_total{{{T}}}[$__rate_interval])"),
        "target A: invalid PromQL: unclosed '(' [target-promql-rule]",
    ),
    "counter in resets()": (
        set_expr(f"resets(prefect_db_xact_commit_total{{{T}}}[$__rate_interval])"),
        "counter prefect_db_xact_commit_total outside rate()/irate()/increase() [target-counter-agg-rule]",
    ),
    "unknown unit": (misspell_unit, "unknown unit 'seconds'"),
    "no description": (drop_description, "no description"),
    "fixed rate range": (
        set_expr(f"rate(prefect_db_deadlocks_total{{{T}}}[5m])"),
        "target A: hard-coded range [5m] in rate(): use [$__rate_interval]",
    ),
    "fixed increase range": (
        set_expr(f"sum(increase(prefect_db_xact_commit_total{{{T}}}[1h]))"),
        "hard-coded range [1h] in increase()",
    ),
    "fixed irate range": (
        set_expr(f"irate(prefect_db_xact_commit_total{{{T}}}[30s])"),
        "hard-coded range [30s] in irate()",
    ),
    "unknown metric": (
        set_expr(f"prefect_db_flow_runs_total{{{T}}}"),
        "unknown metric prefect_db_flow_runs_total",
    ),
    "undocumented histogram suffix": (
        set_expr(f"prefect_db_up_bucket{{{T}}}"),
        "unknown metric prefect_db_up_bucket",
    ),
    "bare counter": (
        set_expr(f"prefect_db_deadlocks_total{{{T}}}"),
        "counter prefect_db_deadlocks_total outside",
    ),
    "no target filter": (set_expr("prefect_db_up"), 'prefect_db_up not filtered by target=~"$target"'),
    "undefined variable": (set_expr('prefect_db_up{target=~"$cluster"}'), "undefined variable $cluster"),
    "old variable syntax": (set_expr('prefect_db_up{target=~"[[target]]"}'), "deprecated variable syntax"),
    "empty expr": (set_expr("  "), "target A: empty expr"),
    "no refId": (drop_ref_id, "no refId"),
    "duplicate refId": (duplicate_ref_id, "target A: duplicate refId"),
    "no targets": (drop_targets, "no targets"),
    "no schemaVersion": (drop_schema_version, "no schemaVersion"),
    "duplicate panel id": (duplicate_panel_id, "duplicate panel id"),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_linter_catches(mistake: str, tmp_path: Path) -> None:
    mutate, expected = MISTAKES[mistake]
    board = copy.deepcopy(committed()["overview.json"])
    mutate(board)
    path = tmp_path / "overview.json"
    path.write_text(json.dumps(board), encoding="utf-8")
    problems = lint.lint([path])
    assert any(expected in p for p in problems), problems
    assert all(p.startswith(f"{path}: ") for p in problems)


def test_linter_catches_a_missing_work_pool_filter(tmp_path: Path) -> None:
    board = committed()["work-pools.json"]
    first_graph(board)["targets"][0]["expr"] = f"prefect_db_work_queue_last_polled_age_seconds{{{T}}}"
    path = tmp_path / "work-pools.json"
    path.write_text(json.dumps(board), encoding="utf-8")
    title = first_graph(board)["title"]
    assert lint.lint([path]) == [
        f'{path}: panel "{title}": target A: '
        'prefect_db_work_queue_last_polled_age_seconds not filtered by work_pool=~"$work_pool" '
        "[prefect-target-filter-rule]"
    ]


def test_linter_catches_duplicate_uids_and_invalid_json(tmp_path: Path) -> None:
    board = committed()["overview.json"]
    first, second, garbage = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    first.write_text(json.dumps(board), encoding="utf-8")
    second.write_text(json.dumps(board), encoding="utf-8")
    garbage.write_text('{"uid": "x",', encoding="utf-8")
    problems = lint.lint([first, second, garbage])
    assert (
        problems[0] == f"{second}: uid 'prefect-db-overview' is also used by {first} [prefect-dashboard-rule]"
    )
    assert problems[1].startswith(f"{garbage}: invalid JSON: ")
    assert len(problems) == 2


# What the person on call sees ---------------------------------------------------------------------------

WORK_POOLS_LINK = "/d/prefect-db-work-pools?${__url_time_range}&${job:queryparam}&${instance:queryparam}&"


def by_title(board: Board) -> dict[str, Board]:
    return {p["title"]: p for p in panels(board)}


def test_the_overview_opens_on_a_table_of_what_is_stuck_per_queue_linking_to_its_pool() -> None:
    overview = committed()["overview.json"]
    row, first = overview["panels"][0], overview["panels"][1]
    assert (row["type"], row["title"]) == ("row", "Stuck now")
    assert (first["type"], first["title"], first["gridPos"]["y"]) == ("table", "Stuck now", 1)
    metrics = [lint.scan(t["expr"]).selectors[0].name for t in first["targets"]]
    assert metrics == [
        "prefect_db_pending_runs_stale",
        "prefect_db_running_runs_heartbeat_stale",
        "prefect_db_late_runs",
        "prefect_db_work_queue_last_polled_age_seconds",
        "prefect_db_work_queue_paused",
    ]
    # Per pool and queue, never per worker; instant, one table.
    assert all(
        "by (target, work_pool, work_queue)" in t["expr"] and t["instant"] and t["format"] == "table"
        for t in first["targets"]
    )
    assert not any("worker=" in t["expr"] or "worker_last" in t["expr"] for t in first["targets"])
    assert [t["id"] for t in first["transformations"]] == ["merge", "organize"]
    columns = first["transformations"][1]["options"]["renameByName"]
    assert list(columns.values()) == [
        "Stranded PENDING",
        "Zombie RUNNING",
        "Late",
        "Not polled for",
        "Online workers",
    ]
    (pool_column,) = [
        o
        for o in first["fieldConfig"]["overrides"]
        if o["matcher"]["options"] == "work_pool" and any(p["id"] == "links" for p in o["properties"])
    ]
    (links,) = [p["value"] for p in pool_column["properties"] if p["id"] == "links"]
    assert links[0]["url"] == (
        WORK_POOLS_LINK + "var-target=${__data.fields.target}&var-work_pool=${__data.fields.work_pool}"
    )


def test_every_link_to_another_board_carries_the_time_range_job_instance_and_target() -> None:
    found = 0
    for board in committed().values():
        for panel in panels(board):
            links = list(panel.get("links", [])) + list(panel["fieldConfig"]["defaults"].get("links", []))
            links += [
                link
                for override in panel["fieldConfig"]["overrides"]
                for prop in override["properties"]
                if prop["id"] == "links"
                for link in prop["value"]
            ]
            for link in links:
                if link.get("url", "").startswith("/d/"):
                    found += 1
                    assert link["url"].startswith(WORK_POOLS_LINK), link["url"]
                    assert "var-target=" in link["url"] or link["url"].endswith("${target:queryparam}")
    overview = by_title(committed()["overview.json"])
    for title in ("Stale PENDING runs", "Late runs", "Silent RUNNING runs", "Unpolled queues"):
        assert any(link["url"].startswith("/d/prefect-db-work-pools") for link in overview[title]["links"])
    (series_link,) = overview["Stuck runs by work pool"]["fieldConfig"]["defaults"]["links"]
    assert series_link["url"].endswith(
        "var-target=${__field.labels.target}&var-work_pool=${__field.labels.work_pool}"
    )
    assert found >= 7


def test_titles_say_what_the_queries_plot() -> None:
    boards = committed()
    postgres, work_pools = by_title(boards["postgres.json"]), by_title(boards["work-pools.json"])
    # Rows read, not scans.
    (scan,) = postgres["Rows read by sequential scans per second"]["targets"]
    assert "rate(prefect_db_table_seq_scan_rows_total{" in scan["expr"]
    # The maximum over late runs: the most overdue one.
    (late,) = work_pools["Lateness of the most overdue run"]["targets"]
    assert late["expr"].startswith(
        "max by (work_pool, work_queue) (prefect_db_late_runs_max_lateness_seconds{"
    )
    # A rate per minute: the same scale at every zoom, where increase() over $__rate_interval is not.
    for board in ("overview.json", "postgres.json"):
        deadlocks = by_title(boards[board])["Deadlocks per minute"]
        assert deadlocks["fieldConfig"]["defaults"]["unit"] == "opm"
        assert all(t["expr"].endswith(")) * 60") and "(rate(" in t["expr"] for t in deadlocks["targets"])
    everything = [t["expr"] for b in boards.values() for p in panels(b) for t in p["targets"]]
    assert not [e for e in everything if "increase(" in e]
    titles = {p["title"] for b in boards.values() for p in panels(b)}
    assert not titles & {"Sequential scans", "Lateness of the latest late run", "Deadlocks"}


def test_state_timelines_for_queues_pools_and_workers_and_a_bar_gauge_of_the_biggest_tables() -> None:
    boards = committed()
    work_pools = by_title(boards["work-pools.json"])
    for title, metric in (
        ("Work queue status", "prefect_db_work_queue_status"),
        ("Work pool status", "prefect_db_work_pool_status"),
        ("Online workers per pool", "prefect_db_workers"),
    ):
        panel = work_pools[title]
        assert panel["type"] == "state-timeline"
        assert metric + "{" in panel["targets"][0]["expr"]
        assert panel["fieldConfig"]["defaults"]["mappings"][0]["type"] == "value"
    states = work_pools["Work pool status"]["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert {v["text"] for v in states.values()} == {"READY", "NOT_READY", "PAUSED"}
    biggest = by_title(boards["postgres.json"])["Biggest Prefect tables"]
    assert biggest["type"] == "bargauge" and biggest["fieldConfig"]["defaults"]["unit"] == "bytes"
    assert biggest["targets"][0]["expr"].startswith(
        "topk(10, max by (relation) (prefect_db_table_size_bytes{"
    )


def test_every_board_marks_restarts_schema_changes_and_reloads() -> None:
    for name, board in committed().items():
        annotations = {a["name"]: a for a in board["annotations"]["list"]}
        assert list(annotations) == ["PostgreSQL restarts", "Prefect schema changes", "Exporter reloads"], (
            name
        )
        assert all(a["datasource"]["uid"] == "${datasource}" and a["enable"] for a in annotations.values())


RELOADED = "prefect_db_exporter_config_last_reload_success_timestamp_seconds"
# Annotation expressions, evaluated by promtool on series in which each event happens once, at 3m.
ANNOTATION_SERIES = [
    {
        "series": 'prefect_db_postmaster_start_time_seconds{job="prefect-db", instance="x:9650", target="a"}',
        "values": "100 100 100 500 500 500",
    },
    {
        "series": 'prefect_db_postmaster_start_time_seconds{job="prefect-db", instance="x:9650", target="b"}',
        "values": "100 100 100 100 100 100",
    },
    {
        "series": 'prefect_db_prefect_release_info{job="prefect-db", instance="x:9650", target="a", '
        'alembic_revision="r1", first_release="3.1.0", poll_deadlocks="true"}',
        "values": "1 1 1 stale",
    },
    {
        "series": 'prefect_db_prefect_release_info{job="prefect-db", instance="x:9650", target="a", '
        'alembic_revision="r2", first_release="3.7.0", poll_deadlocks="false"}',
        "values": "_ _ _ 1 1 1",
    },
    # A target first seen later is no migration.
    {
        "series": 'prefect_db_prefect_release_info{job="prefect-db", instance="x:9650", target="b", '
        'alembic_revision="r2", first_release="3.7.0", poll_deadlocks="false"}',
        "values": "_ _ 1 1 1 1",
    },
    {
        "series": RELOADED + '{job="prefect-db", instance="x:9650"}',
        "values": "1000 1000 1000 1180 1180 1180",
    },
]
ANNOTATION_EVENTS = {
    "PostgreSQL restarts": (
        'prefect_db_postmaster_start_time_seconds{instance="x:9650", job="prefect-db", target="a"}'
    ),
    "Prefect schema changes": (
        'prefect_db_prefect_release_info{alembic_revision="r2", first_release="3.7.0", instance="x:9650", '
        'job="prefect-db", poll_deadlocks="false", target="a"}'
    ),
    "Exporter reloads": (RELOADED + '{instance="x:9650", job="prefect-db"}'),
}
ANNOTATION_VALUES = {"PostgreSQL restarts": 500, "Prefect schema changes": 1, "Exporter reloads": 1180}


def test_annotations_mark_a_restart_a_migration_and_a_reload_once_each(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus"
    board = committed()["overview.json"]
    substitutions = {
        '=~"$job"': '=~"prefect-db"',
        '=~"$instance"': '=~".+"',
        '=~"$target"': '=~".+"',
        "$__interval": "1m",
    }
    tests = []
    for annotation in board["annotations"]["list"]:
        expr = annotation["expr"]
        for variable, value in substitutions.items():
            expr = expr.replace(variable, value)
        name = annotation["name"]
        for minute in range(6):
            happened = minute == 3
            tests.append(
                {
                    "expr": expr,
                    "eval_time": f"{minute}m",
                    "exp_samples": [{"labels": ANNOTATION_EVENTS[name], "value": ANNOTATION_VALUES[name]}]
                    if happened
                    else [],
                }
            )
    spec = {"tests": [{"interval": "1m", "input_series": ANNOTATION_SERIES, "promql_expr_test": tests}]}
    path = tmp_path / "annotations_test.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
