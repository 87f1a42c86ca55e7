"""The committed dashboards are what dashboards/build.py makes; the linter passes them and finds mistakes."""

from __future__ import annotations

import copy
import json
import re
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


def test_variables() -> None:
    for name, board in committed().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["target"]["query"] == "label_values(prefect_db_up, target)"
        assert variables["target"]["multi"] and variables["target"]["includeAll"]
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
    ok = subprocess.run([sys.executable, "-m", "dashboards.lint", *good], cwd=REPO_ROOT, capture_output=True)
    assert ok.returncode == 0 and ok.stdout == b"", ok.stdout + ok.stderr
    broken = tmp_path / "broken.json"
    board = committed()["overview.json"]
    board["panels"][1]["description"] = ""
    board["panels"][2]["fieldConfig"]["defaults"].pop("unit")
    broken.write_text(json.dumps(board), encoding="utf-8")
    bad = subprocess.run(
        [sys.executable, "-m", "dashboards.lint", str(broken)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 1
    assert bad.stdout.splitlines() == [
        f'{broken}: panel "{board["panels"][1]["title"]}": no description',
        f'{broken}: panel "{board["panels"][2]["title"]}": no unit (fieldConfig.defaults.unit)',
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


T = 'target=~"$target"'
MISTAKES: dict[str, tuple[Callable[[Board], None], str]] = {
    "no datasource variable": (drop_datasource_variable, "needs exactly one datasource variable"),
    "panel datasource uid": (hard_code_panel_datasource, 'datasource is {"type": "prometheus", "uid": "P18'),
    "target datasource uid": (hard_code_target_datasource, "target A: datasource is"),
    "variable datasource uid": (hard_code_variable_datasource, "templating.list[1].datasource: hard-coded"),
    "no unit": (drop_unit, "no unit"),
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
        'prefect_db_work_queue_last_polled_age_seconds not filtered by work_pool=~"$work_pool"'
    ]


def test_linter_catches_duplicate_uids_and_invalid_json(tmp_path: Path) -> None:
    board = committed()["overview.json"]
    first, second, garbage = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    first.write_text(json.dumps(board), encoding="utf-8")
    second.write_text(json.dumps(board), encoding="utf-8")
    garbage.write_text('{"uid": "x",', encoding="utf-8")
    problems = lint.lint([first, second, garbage])
    assert problems[0] == f"{second}: uid 'prefect-db-overview' is also used by {first}"
    assert problems[1].startswith(f"{garbage}: invalid JSON: ")
    assert len(problems) == 2
