"""Lint Grafana dashboard JSON: ``python -m dashboards.lint dashboards/*.json`` (exit 1 on any problem).

Each problem is one line, ``FILE: [WHERE: ]PROBLEM [RULE]``. The rules are those of Grafana's
dashboard-linter (github.com/grafana/dashboard-linter, a Go program not installable here), re-implemented
under their upstream names, plus the project's own rules (prefixed ``prefect-``) that check expressions
against docs/metrics.md. Upstream rules:

- ``template-datasource-rule``: one ``datasource`` variable labelled "Data source", of type prometheus, used
  by everything that has a datasource;
- ``template-job-rule``, ``template-instance-rule``: a ``job`` and an ``instance`` variable labelled "Job"
  and "Instance", label_values() queries on ``$datasource``, multi-value, with allValue ``.+``;
- ``template-label-promql-rule``: query variables are ``label_values(SELECTOR, LABEL)`` of a known metric;
- ``template-on-time-change-reload-rule``: query variables refresh on time range change;
- ``template-uneditable-rule``: the dashboard is not editable (it is generated code);
- ``panel-datasource-rule``, ``panel-title-description-rule``, ``panel-units-rule`` (a unit of Grafana's
  valueFormats), ``panel-no-targets-rule``;
- ``target-promql-rule`` (balanced brackets and quotes; the live test has Prometheus parse every query),
  ``target-rate-interval-rule`` (here stricter: every range is ``$__rate_interval``, ``$__interval`` or,
  outside rate functions, ``$__range``), ``target-job-rule``, ``target-instance-rule`` (every selector has
  ``job=~"$job"`` and ``instance=~"$instance"``), ``target-counter-agg-rule`` (a counter only inside
  rate(), irate() or increase()).

Project rules: ``prefect-template-target-rule`` (the ``target`` variable, shaped like ``job``),
``prefect-target-filter-rule`` (every selector of a metric with a ``target`` or ``work_pool`` label
filters on the board's variable), ``prefect-metric-rule`` (every metric is in docs/metrics.md),
``prefect-variable-rule`` (no undefined or ``[[old]]`` variables), ``prefect-dashboard-rule`` (schemaVersion,
uid, title, unique uids and panel ids, refIds), ``prefect-layout-rule`` (panels inside the 24 columns, none
overlapping). Annotation queries are held to the target rules too.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

METRICS_DOC: Final = Path(__file__).resolve().parents[1] / "docs" / "metrics.md"
DATASOURCE_REFS: Final = frozenset({"${datasource}", "$datasource"})
RATE_RANGES: Final = frozenset({"$__rate_interval", "${__rate_interval}", "$__interval", "${__interval}"})
# Whole-range aggregations (a stat over the dashboard's time range) may also use $__range.
OVER_TIME_RANGES: Final = RATE_RANGES | {"$__range", "${__range}"}
# target-counter-agg-rule: a counter's only meaningful uses.
COUNTER_FUNCTIONS: Final = frozenset({"rate", "irate", "increase"})
RATE_FUNCTIONS: Final = COUNTER_FUNCTIONS | {"resets", "delta", "idelta", "deriv", "changes"}
HISTOGRAM_SUFFIXES: Final = ("_bucket", "_sum", "_count")
# Unit ids of Grafana's valueFormats (categories.ts) that fit this exporter's metrics; anything else is
# shown as a literal suffix, so a typo would go unnoticed.
UNITS: Final = frozenset(
    {
        "none",
        "short",
        "percent",
        "percentunit",
        "ns",
        "µs",
        "ms",
        "s",
        "m",
        "h",
        "d",
        "dtdurations",
        "dtdurationms",
        "dateTimeAsIso",
        "dateTimeFromNow",
        "bytes",
        "decbytes",
        "bits",
        "Bps",
        "binBps",
        "bps",
        "ops",
        "opm",
        "reqps",
        "rps",
        "wps",
        "iops",
        "bool",
        "bool_yes_no",
        "bool_on_off",
    }
)
CUSTOM_UNIT_PREFIXES: Final = ("suffix:", "prefix:", "si:", "count:", "time:")
BUILTIN_VARIABLES: Final = frozenset(
    {
        "__rate_interval",
        "__interval",
        "__interval_ms",
        "__range",
        "__range_s",
        "__range_ms",
        "__from",
        "__to",
        "__dashboard",
        "__org",
        "__user",
        "__name",
        "__all",
    }
)
# Label filters every selector of a metric with that label must carry, when the variable exists.
VARIABLE_FILTERS: Final = {"target": "target", "work_pool": "work_pool"}
# target-job-rule, target-instance-rule: labels Prometheus adds to every scraped series.
SCRAPE_LABELS: Final = ("job", "instance")
# The variables every board needs, and the rule that wants each.
REQUIRED_VARIABLES: Final = {
    "job": "template-job-rule",
    "instance": "template-instance-rule",
    "target": "prefect-template-target-rule",
}
VARIABLE_REFRESH_ON_TIME_RANGE: Final = 2
GRID_COLUMNS: Final = 24
RULES: Final = (
    "template-datasource-rule",
    "template-job-rule",
    "template-instance-rule",
    "template-label-promql-rule",
    "template-on-time-change-reload-rule",
    "template-uneditable-rule",
    "panel-datasource-rule",
    "panel-title-description-rule",
    "panel-units-rule",
    "panel-no-targets-rule",
    "target-promql-rule",
    "target-rate-interval-rule",
    "target-job-rule",
    "target-instance-rule",
    "target-counter-agg-rule",
    "prefect-template-target-rule",
    "prefect-target-filter-rule",
    "prefect-metric-rule",
    "prefect-variable-rule",
    "prefect-dashboard-rule",
    "prefect-layout-rule",
)
_LABEL_VALUES = re.compile(r"label_values\((.+),\s*(\w+)\)")
_TABLE_ROW = re.compile(r"^\|\s*`(prefect_db_\w+)`\s*\|\s*(\w+)\s*\|([^|]*)\|")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
_OLD_VARIABLE = re.compile(r"\[\[(\w+)(?::\w+)?\]\]")
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})


@dataclass(frozen=True)
class Metric:
    """A metric of docs/metrics.md."""

    name: str
    type: str
    labels: frozenset[str]


@dataclass
class Selector:
    """One metric referenced by an expression."""

    name: str
    matchers: str = ""
    function: str | None = None
    ranged: bool = False


@dataclass
class Scan:
    """What an expression references."""

    selectors: list[Selector] = field(default_factory=list)
    ranges: list[tuple[str, str | None]] = field(default_factory=list)


def load_metrics(path: Path = METRICS_DOC) -> dict[str, Metric]:
    """Every metric documented in docs/metrics.md."""
    metrics = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _TABLE_ROW.match(line)
        if match:
            name, kind, labels = match.groups()
            metrics[name] = Metric(name, kind, frozenset(re.findall(r"`(\w+)`", labels)))
    return metrics


def _skip_string(expr: str, start: int) -> int:
    """Index just past the string literal opening at ``start``."""
    quote = expr[start]
    index = start + 1
    while index < len(expr) and expr[index] != quote:
        index += 2 if expr[index] == "\\" and quote != "`" else 1
    return index + 1


def scan(expr: str) -> Scan:
    """Find the metric selectors and range selectors of a PromQL expression (with Grafana variables)."""
    found = Scan()
    stack: list[str | None] = []
    index = 0
    last: Selector | None = None
    while index < len(expr):
        char = expr[index]
        if char in "\"'`":
            index = _skip_string(expr, index)
            continue
        if char == "(":
            stack.append(None)
        elif char == ")":
            if stack:
                stack.pop()
            last = None
        elif char == "{":
            end = index + 1
            while end < len(expr) and expr[end] != "}":
                end = _skip_string(expr, end) if expr[end] in "\"'`" else end + 1
            if last is not None:
                last.matchers = expr[index + 1 : end]
            index = end + 1
            continue
        elif expr.startswith("[[", index):
            end = expr.find("]]", index)
            index = len(expr) if end < 0 else end + 2
            continue
        elif char == "[":
            end = expr.find("]", index)
            end = len(expr) if end < 0 else end
            function = next((f for f in reversed(stack) if f is not None), None)
            found.ranges.append((expr[index + 1 : end].strip(), function))
            if last is not None:
                last.ranged = True
            index = end + 1
            continue
        elif char == "$":
            match = _VARIABLE.match(expr, index)
            index = match.end() if match else index + 1
            continue
        elif char.isdigit():
            while index < len(expr) and (expr[index].isalnum() or expr[index] in "._"):
                index += 1
            continue
        elif char.isalpha() or char in "_:":
            match = _IDENTIFIER.match(expr, index)
            assert match is not None
            word = match.group()
            after = match.end()
            while after < len(expr) and expr[after].isspace():
                after += 1
            if after < len(expr) and expr[after] == "(":
                stack.append(None if word.lower() in _GROUPING else word.lower())
                index = after + 1
                last = None
                continue
            if word.startswith("prefect_db_"):
                function = next((f for f in reversed(stack) if f is not None), None)
                last = Selector(word, function=function)
                found.selectors.append(last)
            else:
                last = None
            index = match.end()
            continue
        elif not char.isspace():
            last = None
        index += 1
    return found


def problem(rule: str, message: str) -> str:
    """One problem line's text: the message and the rule that found it."""
    return f"{message} [{rule}]"


def _metric_problems(name: str, metrics: dict[str, Metric]) -> Metric | str:
    """The documented metric behind ``name``, or the problem with it."""
    if name in metrics:
        return metrics[name]
    for suffix in HISTOGRAM_SUFFIXES:
        base = metrics.get(name.removesuffix(suffix))
        if name.endswith(suffix) and base is not None and base.type in ("histogram", "summary"):
            return base
    return problem("prefect-metric-rule", f"unknown metric {name} (not in docs/metrics.md)")


def _balance_problem(expr: str) -> str | None:
    """Why ``expr`` cannot be PromQL because of its brackets or quotes, if it cannot."""
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    index = 0
    while index < len(expr):
        char = expr[index]
        if char in "\"'`":
            end = _skip_string(expr, index)
            if end > len(expr):
                return f"unterminated string at {index}"
            index = end
            continue
        if char in "([{":
            stack.append(char)
        elif char in closing:
            if not stack or stack.pop() != closing[char]:
                return f"unbalanced {char!r} at {index}"
        index += 1
    return f"unclosed {stack[-1]!r}" if stack else None


def _matcher(label: str, variable: str) -> re.Pattern[str]:
    return re.compile(rf'(?:^|[\s,{{]){label}\s*=~\s*"\${variable}"')


def expr_problems(
    expr: str, metrics: dict[str, Metric], variables: frozenset[str], *, panel: bool = True
) -> list[str]:
    """Problems of one PromQL expression (a panel's or annotation's, else a variable's) of a dashboard."""
    problems = []
    unbalanced = _balance_problem(expr)
    if unbalanced:
        return [problem("target-promql-rule", f"invalid PromQL: {unbalanced}")]
    found = scan(expr)
    for text, function in found.ranges:
        window = text.split(":", 1)[0].strip()
        allowed = RATE_RANGES if function in RATE_FUNCTIONS else OVER_TIME_RANGES
        if window not in allowed:
            where = f" in {function}()" if function else ""
            problems.append(
                problem(
                    "target-rate-interval-rule", f"hard-coded range [{text}]{where}: use [$__rate_interval]"
                )
            )
    for selector in found.selectors:
        metric = _metric_problems(selector.name, metrics)
        if isinstance(metric, str):
            problems.append(metric)
            continue
        if not panel:
            continue
        counter = metric.type == "counter" or metric.name.endswith("_total")
        if counter and not (selector.ranged and selector.function in COUNTER_FUNCTIONS):
            problems.append(
                problem("target-counter-agg-rule", f"counter {metric.name} outside rate()/irate()/increase()")
            )
        for label in SCRAPE_LABELS:
            if not _matcher(label, label).search(selector.matchers):
                problems.append(problem(f"target-{label}-rule", f'{metric.name} has no {label}=~"${label}"'))
        for label, variable in VARIABLE_FILTERS.items():
            wanted = re.compile(rf'\b{label}\s*=~\s*"\$(?:{variable}|\{{{variable}\}})"')
            if variable in variables and label in metric.labels and not wanted.search(selector.matchers):
                problems.append(
                    problem(
                        "prefect-target-filter-rule", f'{metric.name} not filtered by {label}=~"${variable}"'
                    )
                )
    for match in _OLD_VARIABLE.finditer(expr):
        name = match.group(1)
        problems.append(
            problem("prefect-variable-rule", f"deprecated variable syntax [[{name}]]: use ${name}")
        )
    for match in _VARIABLE.finditer(expr):
        name = match.group(1) or match.group(2)
        if name not in variables and name not in BUILTIN_VARIABLES:
            problems.append(problem("prefect-variable-rule", f"undefined variable ${name}"))
    return problems


def _panels(panels: Any) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for panel in panels if isinstance(panels, list) else []:
        if isinstance(panel, dict):
            yield panel
            yield from _panels(panel.get("panels"))


def _uses_datasource_variable(ref: Any) -> bool:
    return isinstance(ref, dict) and ref.get("uid") in DATASOURCE_REFS


def _hard_coded_datasources(node: Any, path: str = "") -> Iterator[str]:
    """Paths of datasource references outside panels that do not use the variable."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "panels":
                continue
            where = f"{path}.{key}" if path else key
            is_builtin = isinstance(value, dict) and value.get("type") == "grafana"
            if key == "datasource" and value is not None and not is_builtin:
                if not _uses_datasource_variable(value):
                    yield where
            else:
                yield from _hard_coded_datasources(value, where)
    elif isinstance(node, list):
        for position, item in enumerate(node):
            yield from _hard_coded_datasources(item, f"{path}[{position}]")


def _unit_problems(panel: dict[str, Any]) -> list[str]:
    field_config = panel.get("fieldConfig") or {}
    units = [str((field_config.get("defaults") or {}).get("unit") or "").strip()]
    units += [
        str(prop.get("value") or "").strip()
        for override in field_config.get("overrides") or []
        for prop in override.get("properties") or []
        if prop.get("id") == "unit"
    ]
    if not units[0]:
        return [problem("panel-units-rule", "no unit (fieldConfig.defaults.unit)")]
    return [
        problem(
            "panel-units-rule",
            f"unknown unit {unit!r} (a Grafana unit id such as s, bytes, short, percentunit, ops)",
        )
        for unit in dict.fromkeys(units)
        if unit not in UNITS and not unit.startswith(CUSTOM_UNIT_PREFIXES)
    ]


def panel_problems(panel: dict[str, Any], metrics: dict[str, Metric], variables: frozenset[str]) -> list[str]:
    """Problems of one (non-row) panel."""
    problems = []
    if not str(panel.get("description") or "").strip():
        problems.append(problem("panel-title-description-rule", "no description"))
    problems += _unit_problems(panel)
    if not _uses_datasource_variable(panel.get("datasource")):
        problems.append(
            problem(
                "panel-datasource-rule",
                f"datasource is {json.dumps(panel.get('datasource'))}, not ${{datasource}}",
            )
        )
    targets = panel.get("targets")
    if not isinstance(targets, list) or not targets:
        problems.append(problem("panel-no-targets-rule", "no targets"))
        return problems
    ref_ids: set[str] = set()
    for position, target in enumerate(targets):
        ref_id = str(target.get("refId") or "") if isinstance(target, dict) else ""
        label = f"target {ref_id or position}"
        if not isinstance(target, dict):
            problems.append(problem("target-promql-rule", f"{label}: not an object"))
            continue
        if not ref_id:
            problems.append(problem("prefect-dashboard-rule", f"{label}: no refId"))
        elif ref_id in ref_ids:
            problems.append(problem("prefect-dashboard-rule", f"{label}: duplicate refId"))
        ref_ids.add(ref_id)
        if "datasource" in target and not _uses_datasource_variable(target["datasource"]):
            problems.append(
                problem(
                    "panel-datasource-rule",
                    f"{label}: datasource is {json.dumps(target['datasource'])}, not ${{datasource}}",
                )
            )
        expr = target.get("expr")
        if not isinstance(expr, str) or not expr.strip():
            problems.append(problem("target-promql-rule", f"{label}: empty expr"))
            continue
        problems += [f"{label}: {p}" for p in expr_problems(expr, metrics, variables)]
    return problems


def template_problems(
    templating: list[Any], metrics: dict[str, Metric], variables: frozenset[str]
) -> list[str]:
    """Problems of the dashboard's variables."""
    problems = []
    by_name = {str(v.get("name")): v for v in templating if isinstance(v, dict)}
    sources = [v for v in templating if isinstance(v, dict) and v.get("type") == "datasource"]
    if [(v.get("name"), v.get("query"), v.get("label")) for v in sources] != [
        ("datasource", "prometheus", "Data source")
    ]:
        problems.append(
            problem(
                "template-datasource-rule",
                "needs exactly one datasource variable, named datasource, labelled 'Data source', "
                "of type prometheus",
            )
        )
    for name, rule in REQUIRED_VARIABLES.items():
        variable = by_name.get(name)
        if variable is None:
            problems.append(problem(rule, f"no {name} variable"))
            continue
        wanted = {
            "type": ("query", "a label_values() query"),
            "label": (name.capitalize(), f"labelled {name.capitalize()!r}"),
            "multi": (True, "multi-value"),
            "allValue": (".+", "allValue '.+'"),
        }
        for key, (value, what) in wanted.items():
            if variable.get(key) != value:
                problems.append(problem(rule, f"variable {name}: should be {what}, is {variable.get(key)!r}"))
        if not _uses_datasource_variable(variable.get("datasource")):
            problems.append(problem(rule, f"variable {name}: should use datasource $datasource"))
    for variable in templating:
        if not isinstance(variable, dict) or variable.get("type") != "query":
            continue
        label = variable.get("name")
        if variable.get("refresh") != VARIABLE_REFRESH_ON_TIME_RANGE:
            problems.append(
                problem(
                    "template-on-time-change-reload-rule",
                    f"variable {label}: refresh is {variable.get('refresh')!r}, not 2 (on time range change)",
                )
            )
        query = variable.get("query")
        query = str((query.get("query") if isinstance(query, dict) else query) or "")
        match = _LABEL_VALUES.fullmatch(query.strip())
        if not match:
            problems.append(
                problem(
                    "template-label-promql-rule",
                    f"variable {label}: not label_values(SELECTOR, LABEL): {query!r}",
                )
            )
            continue
        problems += [
            f"variable {label}: {p}" for p in expr_problems(match.group(1), metrics, variables, panel=False)
        ]
    return problems


def annotation_problems(
    board: dict[str, Any], metrics: dict[str, Metric], variables: frozenset[str]
) -> list[str]:
    """Problems of the Prometheus annotation queries, held to the target rules."""
    problems = []
    for annotation in (board.get("annotations") or {}).get("list") or []:
        if not isinstance(annotation, dict) or (annotation.get("datasource") or {}).get("type") == "grafana":
            continue
        where = f'annotation "{annotation.get("name")}": '
        expr = annotation.get("expr")
        if not isinstance(expr, str) or not expr.strip():
            problems.append(where + problem("target-promql-rule", "empty expr"))
            continue
        problems += [where + p for p in expr_problems(expr, metrics, variables)]
    return problems


def layout_problems(panels: list[dict[str, Any]]) -> list[str]:
    """Panels that leave Grafana's 24 columns or overlap another (Grafana would move them)."""
    problems = []
    boxes: list[tuple[str, int, int, int, int]] = []
    for panel in panels:
        pos = panel.get("gridPos") or {}
        title = str(panel.get("title") or panel.get("id"))
        x, y, w, h = (int(pos.get(k, 0)) for k in ("x", "y", "w", "h"))
        if w <= 0 or h <= 0 or x < 0 or x + w > GRID_COLUMNS:
            problems.append(
                f'panel "{title}": '
                + problem(
                    "prefect-layout-rule", f"gridPos x={x} w={w} h={h} leaves the {GRID_COLUMNS} columns"
                )
            )
        for other, ox, oy, ow, oh in boxes:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                problems.append(
                    f'panel "{title}": ' + problem("prefect-layout-rule", f'overlaps panel "{other}"')
                )
        boxes.append((title, x, y, w, h))
    return problems


def dashboard_problems(board: Any, metrics: dict[str, Metric]) -> list[str]:
    """Problems of one parsed dashboard, each prefixed with the panel it concerns, if any."""
    if not isinstance(board, dict):
        return [problem("prefect-dashboard-rule", "not a JSON object")]
    problems = []
    if not isinstance(board.get("schemaVersion"), int):
        problems.append(problem("prefect-dashboard-rule", "no schemaVersion"))
    uid = board.get("uid")
    if not isinstance(uid, str) or not 1 <= len(uid) <= 40:
        problems.append(problem("prefect-dashboard-rule", "no uid (1-40 characters)"))
    if not str(board.get("title") or "").strip():
        problems.append(problem("prefect-dashboard-rule", "no title"))
    if board.get("editable") is not False:
        problems.append(problem("template-uneditable-rule", "editable is not false (the JSON is generated)"))
    templating = (board.get("templating") or {}).get("list") or []
    variables = frozenset(str(v.get("name")) for v in templating if isinstance(v, dict))
    problems += template_problems(templating, metrics, variables)
    problems += [
        problem("template-datasource-rule", f"{where}: hard-coded datasource, use ${{datasource}}")
        for where in _hard_coded_datasources(board)
    ]
    problems += annotation_problems(board, metrics, variables)
    problems += layout_problems(list(_panels(board.get("panels"))))
    ids: set[object] = set()
    for panel in _panels(board.get("panels")):
        title = str(panel.get("title") or "").strip()
        prefix = f'panel "{title or panel.get("id")}": '
        if not title:
            problems.append(prefix + problem("panel-title-description-rule", "no title"))
        if panel.get("id") in ids:
            problems.append(
                prefix + problem("prefect-dashboard-rule", f"duplicate panel id {panel.get('id')}")
            )
        ids.add(panel.get("id"))
        if panel.get("type") != "row":
            problems += [prefix + p for p in panel_problems(panel, metrics, variables)]
    return problems


def lint(paths: list[Path], metrics: dict[str, Metric] | None = None) -> list[str]:
    """Problem lines for dashboard files, including uids shared between files."""
    metrics = load_metrics() if metrics is None else metrics
    problems = []
    owners: dict[str, Path] = {}
    for path in paths:
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read: {exc}")
            continue
        except json.JSONDecodeError as exc:
            problems.append(f"{path}: invalid JSON: {exc}")
            continue
        problems += [f"{path}: {p}" for p in dashboard_problems(board, metrics)]
        uid = board.get("uid") if isinstance(board, dict) else None
        if isinstance(uid, str) and uid:
            if uid in owners:
                problems.append(
                    f"{path}: "
                    + problem("prefect-dashboard-rule", f"uid {uid!r} is also used by {owners[uid]}")
                )
            owners.setdefault(uid, path)
    return problems


def summary(paths: list[Path]) -> str:
    """What a clean run checked: boards, panels, queries and the rules."""
    boards = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    panels = [p for board in boards for p in _panels(board.get("panels")) if p.get("type") != "row"]
    queries = sum(len(p.get("targets") or []) for p in panels)
    annotations = sum(len((b.get("annotations") or {}).get("list") or []) for b in boards)
    return (
        f"{len(boards)} dashboards, {len(panels)} panels, {queries} panel queries, {annotations} annotation "
        f"queries: no problems ({len(RULES)} rules: {', '.join(RULES)})"
    )


def main(argv: list[str] | None = None) -> int:
    """Lint the files named on the command line; 0 when clean, 1 with problems, 2 on usage errors."""
    args = sys.argv[1:] if argv is None else argv
    if not args or any(a.startswith("-") for a in args):
        print("usage: python -m dashboards.lint DASHBOARD.json...", file=sys.stderr)
        return 2
    paths = [Path(a) for a in args]
    problems = lint(paths)
    for line in problems:
        print(line)
    if not problems:
        print(summary(paths), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
