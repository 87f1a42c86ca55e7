"""The collector catalog: one SQL file per collector, with a YAML header in its leading comments."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

from exporter.errors import CatalogError, Problems
from exporter.validation import (
    Section,
    as_bool,
    as_int,
    as_positive_int,
    as_seconds,
    as_str,
    as_str_list,
    one_of,
)
from exporter.yamlload import LineDict, load_mapping

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_COLLECTOR_NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")
RESERVED_LABELS = frozenset({"target"})
SELF_METRIC_PREFIX = "prefect_db_exporter_"
# The result column of an incremental collector holding each row's 64-bit transaction id.
XID_COLUMN = "xid"


@dataclass(frozen=True)
class MetricSpec:
    """One metric a collector builds from its result rows."""

    name: str
    type: str
    help: str
    value: str | None
    labels: tuple[str, ...]
    line: int
    fold: str = "sum"


@dataclass(frozen=True)
class Requires:
    """Gates a target must pass for a collector to run there."""

    server_version_min: int | None = None
    server_version_max: int | None = None
    tables: tuple[str, ...] = ()
    columns: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    alembic_revisions: tuple[str, ...] = ()

    @property
    def needs_prefect(self) -> bool:
        """True when the collector reads Prefect's tables."""
        return bool(self.tables or self.columns or self.alembic_revisions)


@dataclass(frozen=True)
class Incremental:
    """How an incremental collector finds rows it has not counted yet."""

    key: str
    cursor: str
    limit: int
    # How far the clock that stamps rows (a Prefect server's) may be behind the database's.
    overlap: float = 10.0
    # Rows of a transaction open longer than this before it commits may be missed (exporter/incremental.py).
    max_commit_delay: float = 600.0


@dataclass(frozen=True)
class CollectorSpec:
    """One collector: its query, its metrics and when to run it."""

    name: str
    path: Path
    description: str
    sql: str
    ttl: float
    timeout: float
    requires: Requires
    metrics: tuple[MetricSpec, ...]
    incremental: Incremental | None = None
    header_line: int = 1
    # False for an opt-in collector (``enabled: false``): it runs only when ``collectors.enable`` names it.
    enabled: bool = True

    def columns_used(self) -> dict[str, tuple[int, str]]:
        """Return each result column the header refers to, with the line and key naming it."""
        used: dict[str, tuple[int, str]] = {}
        if self.incremental:
            used[self.incremental.key] = (self.header_line, "incremental.key")
            used[self.incremental.cursor] = (self.header_line, "incremental.cursor")
            used[XID_COLUMN] = (self.header_line, "mode")
        for index, metric in enumerate(self.metrics):
            if metric.value:
                used.setdefault(metric.value, (metric.line, f"metrics[{index}].value"))
            for label in metric.labels:
                used.setdefault(label, (metric.line, f"metrics[{index}].labels"))
        return used


@dataclass(frozen=True)
class Catalog:
    """All collectors, in a stable order."""

    collectors: tuple[CollectorSpec, ...]

    def select(self, include: Iterable[str], exclude: Iterable[str], enable: Iterable[str] = ()) -> Catalog:
        """Return the collectors that run: those named by ``include`` (when it is not empty), else the
        enabled ones and the opt-in ones named by ``enable``; minus those named by ``exclude``."""
        wanted, unwanted, enabled = set(include), set(exclude), set(enable)
        unknown = (wanted | unwanted | enabled) - {c.name for c in self.collectors}
        if unknown:
            names = ", ".join(sorted(c.name for c in self.collectors))
            raise CatalogError(
                "collectors.include/exclude/enable name unknown collectors",
                [f"{name!r} is not a collector; known: {names}" for name in sorted(unknown)],
            )

        def runs(c: CollectorSpec) -> bool:
            chosen = c.name in wanted if wanted else c.enabled or c.name in enabled
            return chosen and c.name not in unwanted

        return Catalog(tuple(c for c in self.collectors if runs(c)))

    def get(self, name: str) -> CollectorSpec:
        """Return the collector called ``name``."""
        return next(c for c in self.collectors if c.name == name)


_HEADER_KEYS = ("description", "enabled", "ttl", "timeout", "requires", "mode", "incremental", "metrics")
REQUIRES_KEYS = tuple(("server_version_min", "server_version_max", "tables", "columns", "alembic_revisions"))
_METRIC_KEYS = ("name", "type", "help", "value", "labels", "fold")
FOLDS = ("sum", "max", "min")
_INCREMENTAL_KEYS = ("key", "cursor", "overlap", "max_commit_delay", "limit")


def _incremental_default(name: str) -> float:
    """Return the default of an ``incremental:`` key: the dataclass field's, the one place it is written."""
    default = next(f.default for f in fields(Incremental) if f.name == name)
    assert isinstance(default, float)
    return default


def split_header(text: str) -> tuple[str, int, str, int]:
    """Split a collector file into (header YAML, header's first line, SQL, SQL's first line)."""
    lines = text.splitlines()
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    first = index
    header: list[str] = []
    while index < len(lines) and lines[index].lstrip().startswith("--"):
        body = lines[index].lstrip()[2:]
        header.append(body[1:] if body.startswith(" ") else body)
        index += 1
    return "\n".join(header), first + 1, "\n".join(lines[index:]).strip(), index + 1


def _column_name(value: object) -> str:
    name = as_str(value)
    if not _LABEL_NAME.match(name):
        raise ValueError(f"{name!r} is not a plain column name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return name


def _read_metric(section: Section, incremental: bool) -> MetricSpec | None:
    name = section.get("name", as_str)
    mtype = section.get("type", one_of("gauge", "counter"))
    help_text = section.get("help", as_str)
    value = section.get("value", _column_name, None)
    labels = section.get("labels", as_str_list, ())
    fold = section.get("fold", one_of(*FOLDS), "sum")
    if name and not _METRIC_NAME.match(name):
        section.problem("name", f"{name!r} is not a valid Prometheus metric name")
    if name and name.startswith(SELF_METRIC_PREFIX):
        section.problem("name", f"the prefix {SELF_METRIC_PREFIX} is reserved for the exporter's own metrics")
    if name and mtype == "counter" and not name.endswith("_total"):
        section.problem("name", f"a counter's name ends in _total: use {name}_total")
    if name and mtype == "gauge" and name.endswith("_total"):
        section.problem("name", "_total is for counters; drop it or use type: counter")
    if incremental and mtype == "gauge":
        section.problem("type", "an incremental collector builds counters: use type: counter")
    if "value" in section.mapping and section.mapping["value"] is None:
        # Left empty it would pass here and fail every run of the collector instead.
        section.problem("value", "must not be empty: name the result column holding the value")
    elif not incremental and value is None and "value" not in section.mapping:
        section.problem(None, "missing required key 'value' (the result column holding the value)")
    for label in labels:
        if not _LABEL_NAME.match(label) or label.startswith("__"):
            section.problem("labels", f"{label!r} is not a valid label name")
        elif label in RESERVED_LABELS:
            section.problem("labels", f"{label!r} is added by the exporter; rename the column")
    if len(set(labels)) != len(labels):
        section.problem("labels", "a label is listed twice")
    if not (name and mtype and help_text):
        return None
    return MetricSpec(name, mtype, help_text, value, tuple(labels), section.line(), fold)


def read_requires(section: Section | None) -> Requires:
    """Read a `requires:` section (collectors and diagnostic queries share its keys)."""
    if section is None:
        return Requires()
    columns: dict[str, tuple[str, ...]] = {}
    raw_columns = section.mapping.get("columns")
    if raw_columns is not None:
        if isinstance(raw_columns, LineDict):
            for table, names in raw_columns.items():
                try:
                    columns[table] = as_str_list(names)
                except ValueError as error:
                    section.problem("columns", f"{table}: {error}")
        else:
            section.problem("columns", "expected a mapping of table: [column, …]")
    return Requires(
        server_version_min=section.get("server_version_min", as_int, None),
        server_version_max=section.get("server_version_max", as_int, None),
        tables=section.get("tables", as_str_list, ()),
        columns=columns,
        alembic_revisions=section.get("alembic_revisions", as_str_list, ()),
    )


def parse_collector(path: Path, text: str, problems: Problems) -> CollectorSpec | None:
    """Parse one collector file; problems are added to ``problems``."""
    name = path.stem
    if not _COLLECTOR_NAME.match(name):
        problems.add(1, "", f"collector file names are lower-case letters, digits and _, got {path.name!r}")
    header_text, header_line, sql, sql_line = split_header(text)
    if not header_text.strip():
        problems.add(1, "", "no header: start the file with '-- description: …' and '-- metrics: …' lines")
        return None
    expected = "the header to be a YAML mapping (description:, metrics:, …)"
    header = load_mapping(header_text, problems, expected, line_offset=header_line - 1, subject="header")
    if header is None:
        return None
    top = Section(header, "", problems, _HEADER_KEYS, line_offset=header_line - 1)
    if not sql:
        problems.add(sql_line, "", "no query after the header")
    elif re.search(r"\$\d", _strip_sql_comments_and_strings(sql)):
        problems.add(sql_line, "", "queries take no $n parameters; read settings with current_setting()")
    mode = top.get("mode", one_of("snapshot", "incremental"), "snapshot")
    incremental = None
    inc = top.section("incremental", _INCREMENTAL_KEYS)
    if mode == "incremental":
        if inc is None:
            top.problem("mode", "mode: incremental needs an incremental: section with key and cursor")
        else:
            key, cursor = inc.get("key", _column_name), inc.get("cursor", _column_name)
            overlap = inc.get("overlap", as_seconds, _incremental_default("overlap"))
            max_commit_delay = inc.get(
                "max_commit_delay", as_seconds, _incremental_default("max_commit_delay")
            )
            limit = inc.get("limit", as_positive_int)
            if limit and not re.search(rf"\bLIMIT\s+{limit}\b", sql, re.IGNORECASE):
                inc.problem("limit", f"the query must end with LIMIT {limit}, so that one run stays bounded")
            if max_commit_delay is not None and overlap is not None and max_commit_delay < overlap:
                inc.problem("max_commit_delay", f"at least overlap ({overlap:g}s)")
            if key and cursor and limit:
                incremental = Incremental(key, cursor, limit, overlap, max_commit_delay)
    elif inc is not None:
        top.problem("incremental", "only used with mode: incremental")
    metrics = [
        m for s in top.sections("metrics", _METRIC_KEYS) if (m := _read_metric(s, mode == "incremental"))
    ]
    if "metrics" not in header:
        top.problem(None, "missing required key 'metrics'")
    elif not metrics and not problems.items:
        top.problem("metrics", "list at least one metric")
    spec = CollectorSpec(
        name=name,
        path=path,
        description=top.get("description", as_str),
        sql=sql,
        ttl=top.get("ttl", as_seconds, 15.0),
        timeout=top.get("timeout", as_seconds, 5.0),
        requires=read_requires(top.section("requires", REQUIRES_KEYS)),
        metrics=tuple(metrics),
        incremental=incremental,
        header_line=header_line,
        enabled=top.get("enabled", as_bool, True),
    )
    return spec


def _strip_sql_comments_and_strings(sql: str) -> str:
    sql = re.sub(r"--[^\n]*", "", sql)
    sql = re.sub(r"/\*.*?\*/", "", sql, flags=re.S)
    return re.sub(r"'(?:[^']|'')*'", "''", sql)


def load_catalog(dirs: Sequence[Path]) -> Catalog:
    """Load every ``*.sql`` collector under ``dirs``; raise CatalogError listing every problem."""
    specs: list[CollectorSpec] = []
    all_problems: list[str] = []
    for directory in dirs:
        if not directory.is_dir():
            all_problems.append(f"{directory}: query directory does not exist")
            continue
        for path in sorted(directory.glob("*.sql")):
            problems = Problems(str(path))
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                problems.add(None, "", f"cannot read: {error}")
            else:
                spec = parse_collector(path, text, problems)
                if spec is not None and not problems.items:
                    specs.append(spec)
            all_problems.extend(problems.items)
    all_problems.extend(_cross_check(specs))
    if all_problems:
        raise CatalogError("invalid collector catalog", all_problems)
    return Catalog(tuple(specs))


def _cross_check(specs: Sequence[CollectorSpec]) -> list[str]:
    problems: list[str] = []
    collectors: dict[str, CollectorSpec] = {}
    metrics: dict[str, tuple[CollectorSpec, MetricSpec]] = {}
    for spec in specs:
        if spec.name in collectors:
            problems.append(
                f"{spec.path}:1: collector name {spec.name!r} is already used by {collectors[spec.name].path}"
            )
        collectors.setdefault(spec.name, spec)
        for metric in spec.metrics:
            if metric.name in metrics:
                other, other_metric = metrics[metric.name]
                problems.append(
                    f"{spec.path}:{metric.line}: metrics.name: {metric.name!r} is already defined "
                    f"in {other.path}:{other_metric.line}"
                )
            metrics.setdefault(metric.name, (spec, metric))
    return problems


def check_result_columns(spec: CollectorSpec, columns: Sequence[str]) -> list[str]:
    """Return a problem for each column the header uses that the query does not return."""
    present = set(columns)
    return [
        f"{spec.path}:{line}: {key}: column {column!r} is not in the query's result "
        f"(it returns: {', '.join(columns) or 'nothing'})"
        for column, (line, key) in spec.columns_used().items()
        if column not in present
    ]
