"""Lint Grafana dashboard JSON: ``python -m dashboards.lint dashboards/*.json`` (exit 1 on any problem).

Each problem is one line, ``FILE: panel "TITLE": PROBLEM`` (or ``FILE: PROBLEM`` for the dashboard). The
rules re-implement the parts of grafana/dashboard-linter that matter here, plus checks against
docs/metrics.md: unique uids, one ``datasource`` variable used everywhere, a known unit and a description
on every panel, ``$__rate_interval`` instead of fixed ranges, counters only inside rate()/increase(),
every metric documented and filtered by the dashboard's variables.
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
COUNTER_FUNCTIONS: Final = frozenset({"rate", "irate", "increase", "resets"})
RATE_FUNCTIONS: Final = COUNTER_FUNCTIONS | {"delta", "idelta", "deriv", "changes"}
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


def _metric_problems(name: str, metrics: dict[str, Metric]) -> Metric | str:
    """The documented metric behind ``name``, or the problem with it."""
    if name in metrics:
        return metrics[name]
    for suffix in HISTOGRAM_SUFFIXES:
        base = metrics.get(name.removesuffix(suffix))
        if name.endswith(suffix) and base is not None and base.type in ("histogram", "summary"):
            return base
    return f"unknown metric {name} (not in docs/metrics.md)"


def expr_problems(
    expr: str, metrics: dict[str, Metric], variables: frozenset[str], *, panel: bool = True
) -> list[str]:
    """Problems of one PromQL expression (a panel's, else a variable's) of a dashboard with ``variables``."""
    problems = []
    found = scan(expr)
    for text, function in found.ranges:
        window = text.split(":", 1)[0].strip()
        allowed = RATE_RANGES if function in RATE_FUNCTIONS else OVER_TIME_RANGES
        if window not in allowed:
            where = f" in {function}()" if function else ""
            problems.append(f"hard-coded range [{text}]{where}: use [$__rate_interval]")
    for selector in found.selectors:
        metric = _metric_problems(selector.name, metrics)
        if isinstance(metric, str):
            problems.append(metric)
            continue
        if not panel:
            continue
        if metric.type == "counter" and not (selector.ranged and selector.function in COUNTER_FUNCTIONS):
            problems.append(f"counter {metric.name} outside rate()/irate()/increase()")
        for label, variable in VARIABLE_FILTERS.items():
            wanted = re.compile(rf'\b{label}\s*=~\s*"\$(?:{variable}|\{{{variable}\}})"')
            if variable in variables and label in metric.labels and not wanted.search(selector.matchers):
                problems.append(f'{metric.name} not filtered by {label}=~"${variable}"')
    for match in _OLD_VARIABLE.finditer(expr):
        problems.append(f"deprecated variable syntax [[{match.group(1)}]]: use ${match.group(1)}")
    for match in _VARIABLE.finditer(expr):
        name = match.group(1) or match.group(2)
        if name not in variables and name not in BUILTIN_VARIABLES:
            problems.append(f"undefined variable ${name}")
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


def panel_problems(panel: dict[str, Any], metrics: dict[str, Metric], variables: frozenset[str]) -> list[str]:
    """Problems of one (non-row) panel."""
    problems = []
    if not str(panel.get("description") or "").strip():
        problems.append("no description")
    defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
    unit = str(defaults.get("unit") or "").strip()
    if not unit:
        problems.append("no unit (fieldConfig.defaults.unit)")
    elif unit not in UNITS and not unit.startswith(CUSTOM_UNIT_PREFIXES):
        problems.append(
            f"unknown unit {unit!r} (a Grafana unit id such as s, bytes, short, percentunit, ops)"
        )
    if not _uses_datasource_variable(panel.get("datasource")):
        problems.append(f"datasource is {json.dumps(panel.get('datasource'))}, not ${{datasource}}")
    targets = panel.get("targets")
    if not isinstance(targets, list) or not targets:
        problems.append("no targets")
        return problems
    ref_ids: set[str] = set()
    for position, target in enumerate(targets):
        ref_id = str(target.get("refId") or "") if isinstance(target, dict) else ""
        label = f"target {ref_id or position}"
        if not isinstance(target, dict):
            problems.append(f"{label}: not an object")
            continue
        if not ref_id:
            problems.append(f"{label}: no refId")
        elif ref_id in ref_ids:
            problems.append(f"{label}: duplicate refId")
        ref_ids.add(ref_id)
        if "datasource" in target and not _uses_datasource_variable(target["datasource"]):
            problems.append(f"{label}: datasource is {json.dumps(target['datasource'])}, not ${{datasource}}")
        expr = target.get("expr")
        if not isinstance(expr, str) or not expr.strip():
            problems.append(f"{label}: empty expr")
            continue
        problems += [f"{label}: {p}" for p in expr_problems(expr, metrics, variables)]
    return problems


def dashboard_problems(board: Any, metrics: dict[str, Metric]) -> list[str]:
    """Problems of one parsed dashboard, each prefixed with the panel it concerns, if any."""
    if not isinstance(board, dict):
        return ["not a JSON object"]
    problems = []
    if not isinstance(board.get("schemaVersion"), int):
        problems.append("no schemaVersion")
    uid = board.get("uid")
    if not isinstance(uid, str) or not 1 <= len(uid) <= 40:
        problems.append("no uid (1-40 characters)")
    if not str(board.get("title") or "").strip():
        problems.append("no title")
    templating = (board.get("templating") or {}).get("list") or []
    variables = frozenset(str(v.get("name")) for v in templating if isinstance(v, dict))
    sources = [v for v in templating if isinstance(v, dict) and v.get("type") == "datasource"]
    if [(v.get("name"), v.get("query")) for v in sources] != [("datasource", "prometheus")]:
        problems.append("needs exactly one datasource variable, named datasource, of type prometheus")
    for variable in templating:
        if isinstance(variable, dict) and variable.get("type") == "query":
            query = variable.get("query")
            query = query.get("query") if isinstance(query, dict) else query
            problems += [
                f"variable {variable.get('name')}: {p}"
                for p in expr_problems(str(query or ""), metrics, variables, panel=False)
            ]
    problems += [
        f"{where}: hard-coded datasource, use ${{datasource}}" for where in _hard_coded_datasources(board)
    ]
    ids: set[object] = set()
    for panel in _panels(board.get("panels")):
        title = str(panel.get("title") or "").strip()
        prefix = f'panel "{title or panel.get("id")}": '
        if not title:
            problems.append(prefix + "no title")
        if panel.get("id") in ids:
            problems.append(prefix + f"duplicate panel id {panel.get('id')}")
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
                problems.append(f"{path}: uid {uid!r} is also used by {owners[uid]}")
            owners.setdefault(uid, path)
    return problems


def main(argv: list[str] | None = None) -> int:
    """Lint the files named on the command line; 0 when clean, 1 with problems, 2 on usage errors."""
    args = sys.argv[1:] if argv is None else argv
    if not args or any(a.startswith("-") for a in args):
        print("usage: python -m dashboards.lint DASHBOARD.json...", file=sys.stderr)
        return 2
    problems = lint([Path(a) for a in args])
    for problem in problems:
        print(problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
