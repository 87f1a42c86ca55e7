"""Build the Grafana dashboards into dashboards/*.json: ``python -m dashboards.build``.

Uses grafana-foundation-sdk==1769699379!11.6.0, the SDK release generated for Grafana 11.6 (pin the
whole epoch!version string). The JSON is committed; tests/test_dashboards.py fails when it differs from
what this module generates.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as builders
from grafana_foundation_sdk.builders import table as table_builders
from grafana_foundation_sdk.cog import variants
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models.common import (
    TableCellBackgroundDisplayMode,
    TableColoredBackgroundCellOptions,
)
from grafana_foundation_sdk.models.dashboard import AnnotationQuery as AnnotationQueryModel
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardLink as DashboardLinkModel,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DASHBOARD_DIR: Final = Path(__file__).resolve().parent
TAG: Final = "prefect-db"
REPOSITORY: Final = "https://github.com/prefect-postgres-exporter/prefect-postgres-exporter"
RUNBOOK_URL: Final = REPOSITORY + "/blob/main/docs/runbooks.md#{anchor}"
DATASOURCE: Final = DataSourceRef(type_val="prometheus", uid="${datasource}")
# Selectors every query carries (dashboards/lint.py holds them): the scrape's job and instance, as Grafana's
# dashboard-linter wants on every board, and the exporter's target. "All" of work_pool is ".*" because runs
# without a queue have work_pool="".
J: Final = 'job=~"$job", instance=~"$instance"'
T: Final = J + ', target=~"$target"'
TP: Final = T + ', work_pool=~"$work_pool"'
# The boards, by uid: the overview's drill-down links open the work pools board.
OVERVIEW_UID: Final = "prefect-db-overview"
POSTGRES_UID: Final = "prefect-db-postgres"
WORK_POOLS_UID: Final = "prefect-db-work-pools"
# What a link to another board carries: the time range and the scrape's variables; the target and the
# work pool come from the clicked row or series when it has them.
CARRIED: Final = "${__url_time_range}&${job:queryparam}&${instance:queryparam}"
# Grafana evaluates annotation queries at this step, and $__interval is the step.
ANNOTATION_STEP: Final = "60s"

# Thresholds shared with the alert rules (alerts/prefect-db-alerts.yml), so panels show the paging boundary.
CONNECTIONS_WARNING: Final = 0.8
CONNECTIONS_CRITICAL: Final = 0.95
BLOCKED_SESSIONS: Final = 5
LOCK_WAIT_SECONDS: Final = 60
QUEUE_UNPOLLED_SECONDS: Final = 600
LATE_SECONDS: Final = 600
POLL_WAIT_SESSIONS: Final = 0.1
UPDATES_PER_POLL: Final = 200
XID_WARNING: Final = 0.5
XID_CRITICAL: Final = 0.75
# The prefect-db-machinery group's thresholds.
LATE_MARKING_SECONDS: Final = 300
FOREMAN_OVERDUE_SECONDS: Final = 120
RETENTION_BEHIND_SECONDS: Final = 8 * 86400
CANCELLING_SECONDS: Final = 300
# A Prefect server process pools 5 connections plus 10 overflow by default (prefect#17344).
PREFECT_POOL_CONNECTIONS: Final = 15
# Tables whose growth Prefect's retention (db_vacuum) has to keep up with (prefect#22874, #23079).
RETAINED_TABLES: Final = "events|event_resources|log|flow_run_state"

GREEN: Final = "green"
ORANGE: Final = "orange"
RED: Final = "red"


@dataclass(frozen=True)
class Query:
    """One PromQL target and its legend."""

    expr: str
    legend: str


def runbook_links(alerts: tuple[str, ...]) -> list[Builder[DashboardLinkModel]]:
    """Panel links to the runbook section of each alert the panel backs."""
    return [
        builders.DashboardLink(f"Runbook: {alert}")
        .type(DashboardLinkType.LINK)
        .url(RUNBOOK_URL.format(anchor=alert.lower()))
        .target_blank(True)
        for alert in alerts
    ]


def thresholds(*steps: tuple[float, str]) -> builders.ThresholdsConfig:
    """Absolute thresholds: green below the first step."""
    return (
        builders.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=None, color=GREEN), *(Threshold(value=v, color=c) for v, c in steps)])
    )


def targets(queries: tuple[Query, ...], instant: bool = False) -> list[Builder[variants.Dataquery]]:
    """Prometheus targets with refIds A, B, … on the datasource variable."""
    built: list[Builder[variants.Dataquery]] = []
    for index, query in enumerate(queries):
        target = (
            prometheus.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + index))
            .datasource(DATASOURCE)
        )
        built.append(target.instant() if instant else target.range())
    return built


def graph(
    title: str,
    description: str,
    unit: str,
    *queries: Query,
    alerts: tuple[str, ...] = (),
    stack: bool = False,
    width: int = 12,
    height: int = 8,
    steps: tuple[tuple[float, str], ...] = (),
    links: tuple[Builder[DashboardLinkModel], ...] = (),
    data_links: tuple[Builder[DashboardLinkModel], ...] = (),
) -> timeseries.Panel:
    """A time series panel; ``links`` go in its header, ``data_links`` on each series."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(targets(queries))
        .span(width)
        .height(height)
        .fill_opacity(20 if stack else 5)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
    )
    if stack:
        panel = panel.stacking(common_builders.StackingConfig().mode(common.StackingMode.NORMAL))
    if steps:
        panel = panel.thresholds(thresholds(*steps)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
        )
    if alerts or links:
        panel = panel.links([*runbook_links(alerts), *links])
    if data_links:
        panel = panel.data_links(list(data_links))
    return panel


def single(
    title: str,
    description: str,
    unit: str,
    query: Query,
    *,
    alerts: tuple[str, ...] = (),
    steps: tuple[tuple[float, str], ...] = (),
    mapping: dict[str, tuple[str, str]] | None = None,
    no_value: str | None = "0",
    width: int = 4,
    links: tuple[Builder[DashboardLinkModel], ...] = (),
) -> stat.Panel:
    """A stat panel showing the latest value; an empty result shows ``no_value`` (counts: 0)."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(targets((query,), instant=True))
        .span(width)
        .height(4)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(thresholds(*steps))
    )
    if no_value is not None:
        panel = panel.no_value(no_value)
    if mapping:
        options = {
            value: ValueMappingResult(text=text, color=color, index=index)
            for index, (value, (text, color)) in enumerate(sorted(mapping.items()))
        }
        panel = panel.mappings([ValueMap(options=options)])
    if alerts or links:
        panel = panel.links([*runbook_links(alerts), *links])
    return panel


def work_pools_url(*, target: str = "${target:queryparam}", work_pool: str = "") -> str:
    """A link to the work pools board with the time range, job, instance, target and (maybe) pool."""
    url = f"/d/{WORK_POOLS_UID}?{CARRIED}&{target}"
    return url + (f"&var-work_pool={work_pool}" if work_pool else "")


def drill_down(title: str = "Work pools & queues", url: str | None = None) -> Builder[DashboardLinkModel]:
    """A panel link to the work pools board carrying the dashboard's variables and time range."""
    return (
        builders.DashboardLink(title)
        .type(DashboardLinkType.LINK)
        .url(url or work_pools_url())
        .icon("dashboard")
    )


def pool_data_link(title: str, target_ref: str, pool_ref: str) -> Builder[DashboardLinkModel]:
    """A data link from a series or table row to the work pools board filtered to its target and pool."""
    return builders.DashboardLink(title).url(
        work_pools_url(target=f"var-target={target_ref}", work_pool=pool_ref)
    )


def timeline(
    title: str,
    description: str,
    query: Query,
    states: dict[str, tuple[str, str]],
    *,
    alerts: tuple[str, ...] = (),
    width: int = 8,
    height: int = 8,
) -> statetimeline.Panel:
    """A state timeline: one band per series, coloured by the value mapping ``states``."""
    options = {
        value: ValueMappingResult(text=text, color=color, index=index)
        for index, (value, (text, color)) in enumerate(sorted(states.items()))
    }
    panel = (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .unit("short")
        .datasource(DATASOURCE)
        .targets(targets((query,)))
        .span(width)
        .height(height)
        .mappings([ValueMap(options=options)])
        .thresholds(thresholds())
        .show_value(common.VisibilityMode.AUTO)
        .merge_values(True)
        .row_height(0.8)
        .fill_opacity(80)
        .legend(common_builders.VizLegendOptions().show_legend(False))
    )
    if alerts:
        panel = panel.links(runbook_links(alerts))
    return panel


def bars(title: str, description: str, unit: str, query: Query, *, width: int = 12) -> bargauge.Panel:
    """A horizontal bar gauge of the latest values, largest first."""
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(DATASOURCE)
        .targets(targets((query,), instant=True))
        .span(width)
        .height(8)
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .value_mode(common.BarGaugeValueMode.COLOR)
        .show_unfilled(True)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .min(0)
        .thresholds(thresholds())
    )


# Stored statuses of work queues and pools as the numbers a state timeline colours (the exporter exports one
# 0/1 flag per status; PAUSED is what remains when neither READY nor NOT_READY is set).
STATUS_STATES: Final = {"0": ("PAUSED", "blue"), "1": ("NOT_READY", RED), "2": ("READY", GREEN)}


def status_code(metric: str, selector: str, by: str) -> str:
    """2 while the stored status is READY, 1 while NOT_READY, 0 while PAUSED, per ``by``."""
    return (
        f'2 * sum by ({by}) ({metric}{{{selector}, status="READY"}})'
        f' + sum by ({by}) ({metric}{{{selector}, status="NOT_READY"}})'
    )


@dataclass(frozen=True)
class Column:
    """One query of a table: its column title, unit and the value from which a cell turns red."""

    title: str
    expr: str
    unit: str = "short"
    red_from: float = 1


def table(
    title: str,
    description: str,
    keys: tuple[str, ...],
    columns: tuple[Column, ...],
    *,
    no_value: str,
    link_key: str | None = None,
    alerts: tuple[str, ...] = (),
    width: int = 24,
    height: int = 7,
) -> table_builders.Panel:
    """A table with one row per ``keys`` and one column per query (instant, merged by their labels)."""
    queries = tuple(Query(column.expr, column.title) for column in columns)
    built: list[Builder[variants.Dataquery]] = []
    for target in targets(queries, instant=True):
        assert isinstance(target, prometheus.Dataquery)
        built.append(target.format(PromQueryFormat.TABLE))
    names = {f"Value #{chr(ord('A') + i)}": column.title for i, column in enumerate(columns)}
    order = {name: i for i, name in enumerate((*keys, *names))}
    panel = (
        table_builders.Panel()
        .title(title)
        .description(description)
        .unit("short")
        .datasource(DATASOURCE)
        .targets(built)
        .span(width)
        .height(height)
        .no_value(no_value)
        .transformations(
            [
                DataTransformerConfig(id_val="merge", options={}),
                DataTransformerConfig(
                    id_val="organize",
                    options={"excludeByName": {"Time": True}, "indexByName": order, "renameByName": names},
                ),
            ]
        )
        .cell_options(TableColoredBackgroundCellOptions(mode=TableCellBackgroundDisplayMode.BASIC))
        .thresholds(thresholds())
        .sort_by([common_builders.TableSortByFieldState().display_name(keys[0])])
    )
    for column in columns:
        properties = [
            DynamicConfigValue(id_val="unit", value=column.unit),
            DynamicConfigValue(
                id_val="thresholds",
                value={
                    "mode": "absolute",
                    "steps": [{"color": GREEN, "value": None}, {"color": RED, "value": column.red_from}],
                },
            ),
        ]
        panel = panel.override_by_name(column.title, properties)
    for key in keys:
        # The label columns are text: no background colour.
        panel = panel.override_by_name(
            key, [DynamicConfigValue(id_val="custom.cellOptions", value={"type": "auto"})]
        )
    if link_key is not None:
        link = pool_data_link(
            "Open ${__data.fields.work_pool} on the work pools board",
            "${__data.fields.target}",
            "${__data.fields.work_pool}",
        ).build()
        panel = panel.override_by_name(link_key, [DynamicConfigValue(id_val="links", value=[link])])
    if alerts:
        panel = panel.links(runbook_links(alerts))
    return panel


Panel = timeseries.Panel | stat.Panel | statetimeline.Panel | bargauge.Panel | table_builders.Panel
Rows = list[tuple[str, tuple[Panel, ...]]]


def row(title: str, *panels: Panel) -> tuple[str, tuple[Panel, ...]]:
    """A row and the panels under it."""
    return title, panels


def query_variable(name: str, description: str, query: str, *, all_value: str = ".+") -> Any:
    """A multi-value label_values() variable with "All", refreshed on time range change (linter rules)."""
    return (
        builders.QueryVariable(name)
        .label(name.replace("_", " ").capitalize())
        .description(description)
        .datasource(DATASOURCE)
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(all_value)
        .current(VariableOption(selected=True, text="All", value="$__all"))
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def variables(with_work_pool: bool) -> list[Any]:
    """The datasource, job, instance, target and (optionally) work_pool variables."""
    found: list[Any] = [
        builders.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        query_variable(
            "job", "The Prometheus scrape job of the exporter.", "label_values(prefect_db_up, job)"
        ),
        query_variable(
            "instance",
            "The exporter instance (host:port) Prometheus scrapes.",
            'label_values(prefect_db_up{job=~"$job"}, instance)',
        ),
        query_variable(
            "target",
            "The exporter's target label: one Prefect database.",
            f"label_values(prefect_db_up{{{J}}}, target)",
        ),
    ]
    if with_work_pool:
        found.append(
            query_variable(
                "work_pool",
                "Prefect work pool; the empty pool holds runs and deployments without a work queue.",
                f"label_values(prefect_db_work_pool_queues{{{T}}}, work_pool)",
                all_value=".*",
            )
        )
    return found


class PrometheusAnnotation(AnnotationQueryModel):
    """A Prometheus annotation query: the SDK's model lacks the Prometheus fields (title, step, tags)."""

    def __init__(self, name: str, expr: str, color: str, title: str, text: str) -> None:
        super().__init__(name=name, datasource=DATASOURCE, enable=True, icon_color=color, expr=expr)
        self.title, self.text = title, text

    def to_json(self) -> dict[str, object]:
        return super().to_json() | {
            "step": ANNOTATION_STEP,
            "titleFormat": self.title,
            "textFormat": self.text,
            "tagKeys": "target",
            "useValueForTime": False,
        }


@dataclass(frozen=True)
class Annotation(Builder[AnnotationQueryModel]):
    """Builds one :class:`PrometheusAnnotation`."""

    name: str
    expr: str
    color: str
    title: str
    text: str

    def build(self) -> AnnotationQueryModel:
        return PrometheusAnnotation(self.name, self.expr, self.color, self.title, self.text)


# Events every board marks. Each expression compares a value with the one a step ($__interval) earlier, so
# consecutive steps tile time and every change is marked exactly once (changes() over [$__interval] misses a
# change that falls between two windows).
ANNOTATIONS: Final = (
    Annotation(
        "PostgreSQL restarts",
        f"prefect_db_postmaster_start_time_seconds{{{T}}}"
        f" > prefect_db_postmaster_start_time_seconds{{{T}}} offset $__interval",
        RED,
        "PostgreSQL restarted",
        "{{target}}: the server's start time changed; connections were dropped and statistics may be reset.",
    ),
    Annotation(
        "Prefect schema changes",
        f"(prefect_db_prefect_release_info{{{T}}}"
        f" unless on (target, alembic_revision) prefect_db_prefect_release_info{{{T}}} offset $__interval)"
        f" and on (target) prefect_db_prefect_release_info{{{T}}} offset $__interval",
        "purple",
        "Prefect schema migrated",
        "{{target}}: schema revision {{alembic_revision}} (Prefect {{first_release}}; polls can deadlock: "
        "{{poll_deadlocks}}).",
    ),
    Annotation(
        "Exporter reloads",
        f"prefect_db_exporter_config_last_reload_success_timestamp_seconds{{{J}}}"
        f" > prefect_db_exporter_config_last_reload_success_timestamp_seconds{{{J}}} offset $__interval",
        "blue",
        "Exporter reloaded",
        "{{instance}}: the exporter loaded its configuration and collectors again (reload or restart).",
    ),
)


def dashboard(uid: str, title: str, description: str, rows: Rows, *, with_work_pool: bool = False) -> Any:
    """Assemble a dashboard, its variables, annotations, links to the other boards and numbered panels."""
    board = (
        builders.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG, "prefect", "postgresql"])
        .readonly()
        .time("now-1h", "now")
        .refresh("1m")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .variables(variables(with_work_pool))
        .annotations(list(ANNOTATIONS))
        .link(
            builders.DashboardLink("Prefect database")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .link(
            builders.DashboardLink("Runbooks")
            .type(DashboardLinkType.LINK)
            .url(RUNBOOK_URL.format(anchor="").rstrip("#"))
            .icon("doc")
            .target_blank(True)
        )
    )
    for row_title, panels in rows:
        board = board.with_row(builders.Row(row_title))
        for panel in panels:
            board = board.with_panel(panel)
    built = board.build()
    for number, element in enumerate(built.panels or [], start=1):
        element.id_val = number
    return built


def render(board: Any) -> str:
    """The dashboard as committed: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(board, cls=JSONEncoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# Dashboards ---------------------------------------------------------------------------------------


def machinery() -> tuple[str, tuple[Panel, ...]]:
    """The overview's row on Prefect's own services, as their tables show them (prefect-db-machinery)."""
    queue = "target, work_pool, work_queue"
    return row(
        "Prefect machinery",
        single(
            "Invalid indexes",
            "Indexes of Prefect tables left INVALID by a cancelled or failed CREATE INDEX CONCURRENTLY. "
            "The planner ignores them, so the queries that need them scan: rebuild them (REINDEX INDEX "
            "CONCURRENTLY). Which tables: PostgreSQL internals, Prefect tables and sessions.",
            "short",
            Query(f"sum(prefect_db_invalid_indexes{{{T}}})", "invalid"),
            alerts=("PrefectInvalidIndex",),
            steps=((1, ORANGE),),
        ),
        single(
            "Default isolation",
            "The isolation level new sessions on the Prefect database get by default. Anything but read "
            "committed makes Prefect before 3.8 fail its concurrency-slot updates and leaves runs RUNNING "
            "(prefect#22597): ALTER DATABASE ... RESET default_transaction_isolation.",
            "short",
            Query(f"max(prefect_db_default_transaction_isolation_not_read_committed{{{T}}})", "database"),
            alerts=("PrefectIsolationNotReadCommitted",),
            mapping={"0": ("read committed", GREEN), "1": ("not read committed", RED)},
            no_value=None,
            steps=((1, RED),),
        ),
        single(
            "Sessions not read committed",
            "Client sessions whose role or database default gives them an isolation level other than "
            "read committed (a session's own SET is invisible from outside). Reset the role's "
            "default_transaction_isolation.",
            "short",
            Query(f"sum(prefect_db_sessions_isolation_not_read_committed{{{T}}})", "sessions"),
            alerts=("PrefectIsolationNotReadCommitted",),
            steps=((1, RED),),
        ),
        single(
            "Leaked concurrency slots",
            "Slots of deployment and tag concurrency limits taken beyond the runs that can hold them: "
            "nobody gives them back until their lease expires, and runs wait for them (prefect#17415). "
            "Reset the limit's active slots once no run holds them.",
            "short",
            Query(f"sum(prefect_db_concurrency_limit_leaked_slots{{{T}}})", "leaked"),
            alerts=("PrefectConcurrencySlotsLeaked",),
            steps=((1, ORANGE),),
        ),
        single(
            "Runs stuck CANCELLING",
            f"Flow runs CANCELLING for more than {CANCELLING_SECONDS} s: their worker did not kill the "
            "infrastructure or the cancellation cleanup cannot keep up (prefect#15231). They hold "
            "concurrency slots; Prefect before 3.7.5 never ends them.",
            "short",
            Query(f"sum(prefect_db_cancelling_runs_stale{{{T}}})", "stuck"),
            alerts=("PrefectFlowRunsCancellingStuck",),
            links=(drill_down(),),
            steps=((1, ORANGE),),
        ),
        single(
            "Sessions without application_name",
            "Client sessions of the Prefect database that set no application_name, as Prefect's do by "
            "default: who holds them cannot be told. Set "
            "PREFECT_SERVER_DATABASE_SQLALCHEMY_CONNECT_ARGS_APPLICATION_NAME (Prefect 3.1.13+).",
            "short",
            Query(f'sum(prefect_db_application_connections{{{T}, application=""}})', "unnamed"),
            steps=((1, ORANGE),),
        ),
        graph(
            "Late marking: most overdue run not marked Late",
            "Per work queue, how long past its start the most overdue run is that Prefect's late-runs "
            "service has not marked Late (it does after 15 s; the collector counts runs 60 s past). "
            f"Above {LATE_MARKING_SECONDS // 60} minutes the service has stalled (prefect#22139): restart "
            "the Prefect server's services and check its docket/Redis.",
            "s",
            Query(
                f"max by ({queue}) (prefect_db_late_marking_oldest_overdue_seconds{{{T}}})",
                "{{work_pool}}/{{work_queue}}",
            ),
            alerts=("PrefectLateMarkingStalled",),
            steps=((LATE_MARKING_SECONDS, ORANGE),),
            links=(drill_down(),),
            width=8,
        ),
        graph(
            "Foreman: statuses past their timeout",
            "Per work pool and table, how long past its timeout the most overdue row is that Prefect "
            "still stores ONLINE (workers) or READY (queues, deployments). The foreman runs every 15 s: "
            f"over {FOREMAN_OVERDUE_SECONDS // 60} minutes it has stalled and the UI shows dead workers "
            "as online (prefect#22212).",
            "s",
            Query(
                f"max by (target, work_pool, relation) (prefect_db_foreman_stale_status_max_overdue_seconds"
                f"{{{T}}})",
                "{{work_pool}} {{relation}}",
            ),
            alerts=("PrefectForemanStalled",),
            steps=((FOREMAN_OVERDUE_SECONDS, ORANGE),),
            links=(drill_down(),),
            width=8,
        ),
        graph(
            "Longest waits for a slot and for cancellation",
            "The run that has waited longest for a concurrency slot (AwaitingConcurrencySlot) and the "
            "oldest CANCELLING run, per work queue. Slot waits growing while slots are leaked: reset the "
            f"limit; CANCELLING beyond {CANCELLING_SECONDS} s: cancel the infrastructure by hand.",
            "s",
            Query(
                f"max by ({queue}) (prefect_db_awaiting_concurrency_slot_oldest_seconds{{{T}}})",
                "{{work_pool}}/{{work_queue}} waiting for a slot",
            ),
            Query(
                f"max by ({queue}) (prefect_db_cancelling_runs_oldest_age_seconds{{{T}}})",
                "{{work_pool}}/{{work_queue}} CANCELLING",
            ),
            alerts=("PrefectConcurrencySlotsLeaked", "PrefectFlowRunsCancellingStuck"),
            steps=((CANCELLING_SECONDS, ORANGE),),
            width=8,
        ),
    )


def machinery_tables() -> tuple[str, tuple[Panel, ...]]:
    """The PostgreSQL board's row on what Prefect's services leave in tables, indexes and sessions."""
    retained = f'{T}, relation=~"{RETAINED_TABLES}"'
    return row(
        "Prefect tables and sessions",
        graph(
            "Retention: age of the oldest row",
            "Age of the oldest events and event_resources row (against PREFECT_EVENTS_RETENTION_PERIOD, "
            "default 7 days) and of the oldest finished top-level flow run (against db_vacuum's flow-run "
            f"retention, when enabled). Events beyond {RETENTION_BEHIND_SECONDS // 86400} days: "
            "db_vacuum is off, failing or cannot keep up (prefect#22874, #23079).",
            "s",
            Query(
                f"max by (relation) (prefect_db_retention_oldest_row_age_seconds{{{T}}})", "{{relation}}"
            ),
            alerts=("PrefectRetentionBehind",),
            steps=((RETENTION_BEHIND_SECONDS, ORANGE),),
            width=8,
        ),
        graph(
            "Net rows added per day",
            "Rows inserted minus rows deleted per day, at the current rate, of the tables Prefect's "
            "retention trims. Growing every day while the oldest row ages: retention deletes less than "
            "Prefect writes.",
            "short",
            Query(
                f"sum by (relation) (rate(prefect_db_table_inserts_total{{{retained}}}[$__rate_interval])"
                f" - rate(prefect_db_table_deletes_total{{{retained}}}[$__rate_interval])) * 86400",
                "{{relation}}",
            ),
            alerts=("PrefectRetentionBehind",),
            width=8,
        ),
        graph(
            "Invalid indexes by table",
            "Invalid indexes per Prefect table (tables without any are absent). The planner ignores them: "
            "find them with SELECT indexrelid::regclass FROM pg_index WHERE NOT indisvalid, then REINDEX "
            "INDEX CONCURRENTLY or drop and recreate.",
            "short",
            Query(f"max by (relation) (prefect_db_invalid_indexes{{{T}}}) > 0", "{{relation}}"),
            alerts=("PrefectInvalidIndex",),
            width=8,
        ),
        graph(
            "Sessions per application_name",
            "Client sessions of the Prefect database per application_name ((unset): Prefect's own by "
            "default, and anyone else who sets none). Set Prefect's application_name so the sampler and "
            "the runbooks can attribute its sessions.",
            "short",
            Query(
                "label_replace(sum by (application) "
                f'(prefect_db_application_connections{{{T}}}), "application", "(unset)", "application", "")',
                "{{application}}",
            ),
            stack=True,
            width=8,
        ),
        graph(
            "Most sessions from one client",
            "The most sessions one client address holds per application_name. A Prefect server process "
            f"pools up to {PREFECT_POOL_CONNECTIONS} (5 plus 10 overflow); at the line it queues requests "
            "and its API times out (prefect#17344).",
            "short",
            Query(
                "label_replace(max by (application) "
                f'(prefect_db_application_connections_per_client_max{{{T}}}), "application", "(unset)", '
                '"application", "")',
                "{{application}}",
            ),
            steps=((PREFECT_POOL_CONNECTIONS, ORANGE),),
            width=8,
        ),
        graph(
            "Deployment rows updated per worker poll",
            "Deployment rows each worker poll's UPDATE deployment SET last_polled rewrote, from "
            "pg_stat_statements (all three shapes of the statement). Every poll rewrites every "
            "deployment of the polled queues whether anything changed (prefect#23129). Empty without "
            "pg_stat_statements.",
            "short",
            Query(
                f"sum(rate(prefect_db_deployment_poll_updated_rows_total{{{T}}}[$__rate_interval]))"
                f" / sum(rate(prefect_db_deployment_poll_updates_total{{{T}}}[$__rate_interval]))",
                "rows per poll",
            ),
            steps=((UPDATES_PER_POLL, ORANGE),),
            width=8,
        ),
    )


def overview() -> Any:
    """What is stuck now, is the database healthy, are runs flowing."""
    queue = "target, work_pool, work_queue"
    rows = [
        row(
            "Stuck now",
            table(
                "Stuck now",
                "Every work queue with something stuck right now, one row per queue; empty when nothing is. "
                "Stranded PENDING: runs PENDING beyond pending_stale_seconds (they hold concurrency slots "
                "and never time out). Zombie RUNNING: RUNNING runs whose heartbeats stopped. Late: "
                f"scheduled runs past their start. Not polled for: no worker polled the unpaused queue for "
                f"{QUEUE_UNPOLLED_SECONDS // 60} minutes. Online workers 0: the pool had workers and none is "
                "ONLINE. Click a pool to open it on the work pools board.",
                ("target", "work_pool", "work_queue"),
                (
                    Column(
                        "Stranded PENDING",
                        f"sum by ({queue}) (prefect_db_pending_runs_stale{{{T}}}) > 0",
                    ),
                    Column(
                        "Zombie RUNNING",
                        f"sum by ({queue}) (prefect_db_running_runs_heartbeat_stale{{{T}}}) > 0",
                    ),
                    Column("Late", f"sum by ({queue}) (prefect_db_late_runs{{{T}}}) > 0"),
                    Column(
                        "Not polled for",
                        f"max by ({queue}) (prefect_db_work_queue_last_polled_age_seconds{{{T}}})"
                        f" > {QUEUE_UNPOLLED_SECONDS}"
                        f" unless on ({queue}) prefect_db_work_queue_paused{{{T}}} == 1"
                        f" unless on (target, work_pool) prefect_db_work_pool_paused{{{T}}} == 1",
                        unit="s",
                        red_from=QUEUE_UNPOLLED_SECONDS,
                    ),
                    Column(
                        "Online workers",
                        # The queues of pools whose workers are all offline; the value is the 0 online.
                        f"max by ({queue}) (prefect_db_work_queue_paused{{{T}}}) == 0"
                        " and on (target, work_pool)"
                        f' sum by (target, work_pool) (prefect_db_workers{{{T}, status="ONLINE"}}) == 0'
                        f" and on (target, work_pool) prefect_db_worker_rows{{{T}}} > 0"
                        f" and on (target, work_pool) prefect_db_work_pool_paused{{{T}}} == 0",
                        red_from=-1,
                    ),
                ),
                no_value="Nothing is stuck",
                link_key="work_pool",
                alerts=(
                    "PrefectFlowRunsStuckPending",
                    "PrefectFlowRunsHeartbeatStale",
                    "PrefectFlowRunsLate",
                    "PrefectWorkQueueNotPolled",
                    "PrefectWorkPoolNoOnlineWorkers",
                ),
            ),
        ),
        row(
            "Database health",
            single(
                "Database up",
                "Whether the exporter reached the database at its latest scrape. DOWN: check the "
                "database host and the exporter's log (connection refused, password, timeouts).",
                "short",
                Query(f"min by (target) (prefect_db_up{{{T}}})", "{{target}}"),
                alerts=("PrefectPostgresDown",),
                mapping={"0": ("DOWN", RED), "1": ("UP", GREEN)},
                no_value=None,
                steps=((0, RED), (1, GREEN)),
            ),
            single(
                "Prefect schema",
                "Whether the database holds a readable Prefect schema. Missing: the exporter points at "
                "the wrong database or its role lacks SELECT on Prefect's tables (deploy/exporter-role.sql).",
                "short",
                Query(f"min by (target) (prefect_db_prefect_schema_present{{{T}}})", "{{target}}"),
                alerts=("PrefectDbPrefectSchemaMissing",),
                mapping={"0": ("missing", RED), "1": ("present", GREEN)},
                no_value=None,
                steps=((0, RED), (1, GREEN)),
            ),
            single(
                "Connections used",
                "Client connections of the whole server over max_connections minus the superuser "
                "reserve. Near 100% Prefect's API fails with 'too many connections': look for leaking "
                "clients or lower Prefect's pool size (PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE).",
                "percentunit",
                Query(
                    f"max by (target) (prefect_db_server_connections{{{T}}}"
                    f" / (prefect_db_max_connections{{{T}}} - prefect_db_reserved_connections{{{T}}}))",
                    "{{target}}",
                ),
                alerts=("PrefectPostgresTooManyConnections",),
                steps=((CONNECTIONS_WARNING, ORANGE), (CONNECTIONS_CRITICAL, RED)),
            ),
            single(
                "Blocked sessions",
                "Sessions waiting on a heavyweight lock now. Persistently above 0: see the lock panels "
                "of the PostgreSQL internals dashboard for who blocks whom.",
                "short",
                Query(f"sum(prefect_db_blocked_sessions{{{T}}})", "blocked"),
                alerts=("PrefectPostgresManyBlockedSessions",),
                steps=((1, ORANGE), (BLOCKED_SESSIONS, RED)),
            ),
            single(
                "Longest lock wait",
                "The longest current wait for a lock. Minutes: a session holds a lock and does not "
                "finish (often idle in transaction); find it in pg_stat_activity and end it.",
                "s",
                Query(f"max(prefect_db_lock_wait_max_seconds{{{T}}})", "longest wait"),
                alerts=("PrefectPostgresLockWaitLong",),
                steps=((LOCK_WAIT_SECONDS, ORANGE),),
            ),
            single(
                "Failing collectors",
                "Collectors whose latest run failed (timeout, lock timeout, permission). Above 0: the "
                "exporter's / page names the collector and the error; its metrics are missing meanwhile.",
                "short",
                Query(f"sum(1 - prefect_db_exporter_collector_success{{{T}}})", "failing"),
                alerts=("PrefectDbCollectorFailing",),
                steps=((1, RED),),
            ),
        ),
        row(
            "Database load",
            graph(
                "Connections vs usable maximum",
                "Sessions of the Prefect database, client backends of the whole server, and "
                "max_connections minus the superuser reserve. When the server line nears the maximum, "
                "new Prefect API requests fail: find who holds connections (pg_stat_activity).",
                "short",
                Query(f"sum by (target) (prefect_db_connections{{{T}}})", "{{target}} this database"),
                Query(f"max by (target) (prefect_db_server_connections{{{T}}})", "{{target}} whole server"),
                Query(
                    f"max by (target) (prefect_db_max_connections{{{T}}}"
                    f" - prefect_db_reserved_connections{{{T}}})",
                    "{{target}} usable maximum",
                ),
                alerts=("PrefectPostgresTooManyConnections",),
                width=8,
            ),
            graph(
                "Deadlocks per minute",
                "Deadlocks PostgreSQL detected, per minute (a rate: the scale does not change with zoom). "
                "Repeated deadlocks on deployment rows mean several workers poll one queue on Prefect "
                "before 3.7: upgrade Prefect or use one worker per queue; the PostgreSQL internals "
                "dashboard attributes them to operations.",
                "opm",
                Query(
                    f"sum by (target) (rate(prefect_db_deadlocks_total{{{T}}}[$__rate_interval])) * 60",
                    "{{target}}",
                ),
                alerts=("PrefectPostgresDeadlocks",),
                width=8,
            ),
            graph(
                "Lock waits",
                "The longest current lock wait per target. Spikes of seconds are worker polls colliding on "
                "last_polled rows; minutes mean a stuck lock holder (see Oldest transaction on the "
                "PostgreSQL internals dashboard).",
                "s",
                Query(f"max by (target) (prefect_db_lock_wait_max_seconds{{{T}}})", "{{target}}"),
                alerts=("PrefectPostgresLockWaitLong",),
                width=8,
            ),
        ),
        row(
            "Are runs flowing",
            graph(
                "State transitions by state type",
                "Flow run state changes per second by the type of state entered. A healthy deployment "
                "shows PENDING, RUNNING and COMPLETED in step; a flat line with scheduled work means "
                "workers are not picking runs up.",
                "ops",
                Query(
                    f"sum by (state_type) (rate(prefect_db_flow_run_transitions_total{{{T}}}"
                    "[$__rate_interval]))",
                    "{{state_type}}",
                ),
                stack=True,
                width=8,
            ),
            graph(
                "Flow runs by state type",
                "Flow runs in non-terminal states. PENDING piling up means infrastructure does not start; "
                "SCHEDULED growing means no worker polls the queues.",
                "short",
                Query(f"sum by (state_type) (prefect_db_flow_runs{{{T}}})", "{{state_type}}"),
                stack=True,
                width=8,
            ),
            graph(
                "Crashed and failed runs",
                "Runs entering CRASHED (infrastructure died: killed pod, OOM, lost worker) and FAILED "
                "(the flow raised) per second. Crashes belong to the platform: check the worker's and "
                "infrastructure's logs.",
                "ops",
                Query(
                    f"sum by (state_type) (rate(prefect_db_flow_run_transitions_total{{{T}, "
                    'state_type=~"CRASHED|FAILED"}[$__rate_interval]))',
                    "{{state_type}}",
                ),
                alerts=("PrefectFlowRunsCrashing",),
                width=8,
            ),
        ),
        row(
            "What is stuck",
            single(
                "Stale PENDING runs",
                "Runs PENDING for longer than pending_stale_seconds (default 10 min). PENDING never times "
                "out and holds concurrency slots: check the worker's log for failed submissions, then "
                "cancel or reschedule the runs.",
                "short",
                Query(f"sum(prefect_db_pending_runs_stale{{{T}}})", "stale PENDING"),
                alerts=("PrefectFlowRunsStuckPending",),
                links=(drill_down(),),
                steps=((1, RED),),
            ),
            single(
                "Late runs",
                "Scheduled runs past their start time (Late, or overdue by late_after_seconds). Late runs "
                "mean no worker polls their queue or the pool's concurrency is exhausted.",
                "short",
                Query(f"sum(prefect_db_late_runs{{{T}}})", "late"),
                alerts=("PrefectFlowRunsLate",),
                links=(drill_down(),),
                steps=((1, ORANGE),),
            ),
            single(
                "Silent RUNNING runs",
                "RUNNING runs whose heartbeat is older than heartbeat_stale_seconds: their process likely "
                "died without reporting (zombies). Always 0 when no heartbeats are sent (see Heartbeats).",
                "short",
                Query(f"sum(prefect_db_running_runs_heartbeat_stale{{{T}}})", "stale heartbeats"),
                alerts=("PrefectFlowRunsHeartbeatStale",),
                links=(drill_down(),),
                steps=((1, RED),),
            ),
            single(
                "Unpolled queues",
                f"Unpaused work queues no worker polled for {QUEUE_UNPOLLED_SECONDS // 60} minutes: "
                "their runs will go Late. Start or fix the workers of those pools.",
                "short",
                Query(
                    f"sum(prefect_db_work_queue_last_polled_age_seconds{{{T}}}"
                    f" > bool {QUEUE_UNPOLLED_SECONDS}"
                    f" unless on (target, work_pool, work_queue) prefect_db_work_queue_paused{{{T}}} == 1"
                    f" unless on (target, work_pool) prefect_db_work_pool_paused{{{T}}} == 1)",
                    "unpolled",
                ),
                alerts=("PrefectWorkQueueNotPolled",),
                links=(drill_down(),),
                steps=((1, ORANGE),),
            ),
            single(
                "Pools without online workers",
                "Unpaused work pools that had workers but none is ONLINE (heartbeat within 3 intervals): "
                "none of their runs can start. Restart the pool's workers.",
                "short",
                Query(
                    f'count(sum by (target, work_pool) (prefect_db_workers{{{T}, status="ONLINE"}}) == 0'
                    f" and on (target, work_pool) prefect_db_worker_rows{{{T}}} > 0"
                    f" and on (target, work_pool) prefect_db_work_pool_paused{{{T}}} == 0)",
                    "pools",
                ),
                alerts=("PrefectWorkPoolNoOnlineWorkers",),
                links=(drill_down(),),
                steps=((1, ORANGE),),
            ),
            single(
                "Heartbeats",
                "Whether any flow run heartbeat event arrived within the lookback window. 'none': Prefect "
                "before 3.1.8 or heartbeats disabled, so zombie RUNNING runs cannot be detected.",
                "short",
                Query(f"min(prefect_db_flow_run_heartbeats_present{{{T}}})", "heartbeats"),
                alerts=("PrefectFlowRunsRunningTooLong",),
                mapping={"0": ("none", ORANGE), "1": ("present", GREEN)},
                no_value=None,
                steps=((0, ORANGE), (1, GREEN)),
            ),
            graph(
                "How long the oldest stuck run waits",
                "The oldest PENDING run, the most overdue late run and the oldest silent heartbeat. Each "
                "growing steadily means that kind of run is not being handled at all.",
                "s",
                Query(f"max(prefect_db_pending_runs_oldest_age_seconds{{{T}}})", "oldest PENDING"),
                Query(f"max(prefect_db_late_runs_max_lateness_seconds{{{T}}})", "most late"),
                Query(
                    f"max(prefect_db_running_runs_oldest_heartbeat_age_seconds{{{T}}})",
                    "oldest heartbeat of a RUNNING run",
                ),
            ),
            graph(
                "Stuck runs by work pool",
                "Stale PENDING, late and silent RUNNING runs per work pool (empty pool: runs without a "
                "queue). Click a series to open its pool on the work pools board.",
                "short",
                Query(
                    f"sum by (target, work_pool) (prefect_db_pending_runs_stale{{{T}}})",
                    "{{work_pool}} stale PENDING",
                ),
                Query(f"sum by (target, work_pool) (prefect_db_late_runs{{{T}}})", "{{work_pool}} late"),
                Query(
                    f"sum by (target, work_pool) (prefect_db_running_runs_heartbeat_stale{{{T}}})",
                    "{{work_pool}} silent RUNNING",
                ),
                Query(
                    f'sum by (target, work_pool) (prefect_db_workers{{{T}, status="OFFLINE"}})',
                    "{{work_pool}} offline workers",
                ),
                links=(drill_down(),),
                data_links=(
                    pool_data_link(
                        "Open ${__field.labels.work_pool} on the work pools board",
                        "${__field.labels.target}",
                        "${__field.labels.work_pool}",
                    ),
                ),
            ),
        ),
        machinery(),
    ]
    return dashboard(
        "prefect-db-overview",
        "Prefect database — overview",
        "Is the Prefect database healthy, are flow runs flowing, and what is stuck.",
        rows,
    )


def postgres() -> Any:
    """PostgreSQL internals: sessions, locks, deadlocks, load by operation, tables, the exporter."""
    rows = [
        row(
            "Sessions",
            graph(
                "Connections by state",
                "Sessions of the Prefect database by state. Many 'idle in transaction' sessions hold "
                "locks and block vacuum: find the client by application_name in pg_stat_activity.",
                "short",
                Query(f"sum by (state) (prefect_db_connections{{{T}}})", "{{state}}"),
                stack=True,
                width=8,
            ),
            graph(
                "Connections by wait event type",
                "Sessions by what they wait on (none: not waiting). Lock means lock contention; IO means "
                "the disk is the bottleneck; Client means idle or waiting for the application.",
                "short",
                Query(f"sum by (wait_event_type) (prefect_db_connections{{{T}}})", "{{wait_event_type}}"),
                stack=True,
                width=8,
            ),
            graph(
                "Oldest transaction by state",
                "Age of the oldest open transaction per session state. A long 'idle in transaction' "
                "holds locks and stops vacuum: end it (pg_terminate_backend) and fix the client.",
                "s",
                Query(f"max by (state) (prefect_db_oldest_transaction_age_seconds{{{T}}})", "{{state}}"),
                alerts=("PrefectPostgresIdleInTransaction", "PrefectPostgresLongTransaction"),
                width=8,
            ),
        ),
        row(
            "Locks",
            graph(
                "Blocked and blocking sessions",
                "Sessions waiting on a lock and the distinct sessions they wait for. Few blockers with "
                "many blocked: one stuck holder; end it after checking what it runs.",
                "short",
                Query(f"sum(prefect_db_blocked_sessions{{{T}}})", "blocked"),
                Query(f"sum(prefect_db_blocking_sessions{{{T}}})", "blocking"),
                width=8,
            ),
            graph(
                "Longest lock wait",
                "The longest current wait for a lock. Above a few seconds repeatedly: see lock waits by "
                "operation below for which Prefect operation blocks which.",
                "s",
                Query(f"max(prefect_db_lock_wait_max_seconds{{{T}}})", "longest wait"),
                alerts=("PrefectPostgresLockWaitLong",),
                steps=((LOCK_WAIT_SECONDS, ORANGE),),
                width=8,
            ),
            graph(
                "Awaited locks by table and mode",
                "Locks requested but not granted, by Prefect table and lock mode. AccessExclusiveLock on "
                "flow_run or events: a migration or manual DDL stalls Prefect.",
                "short",
                Query(
                    f'sum by (relation, mode) (prefect_db_locks{{{T}, granted="false"}})',
                    "{{relation}} {{mode}}",
                ),
                width=8,
            ),
            graph(
                "Locks by mode",
                "Locks held (granted) and awaited by mode. Row-level modes dominate in normal operation.",
                "short",
                Query(f"sum by (mode, granted) (prefect_db_locks{{{T}}})", "{{mode}} granted={{granted}}"),
                stack=True,
            ),
            graph(
                "Locks by table",
                "Locks held or awaited per Prefect table (other: any other relation, index or lock type).",
                "short",
                Query(f"sum by (relation) (prefect_db_locks{{{T}}})", "{{relation}}"),
                stack=True,
            ),
        ),
        row(
            "Deadlocks",
            graph(
                "Deadlocks per minute",
                "Deadlocks per minute from pg_stat_database and, when server_log is configured, from the "
                "server log (rates: the scale does not change with zoom). On deployment rows they come "
                "from several workers polling one queue (Prefect before 3.7).",
                "opm",
                Query(
                    f"sum(rate(prefect_db_deadlocks_total{{{T}}}[$__rate_interval])) * 60", "pg_stat_database"
                ),
                Query(
                    f"sum(rate(prefect_db_server_log_deadlocks_total{{{T}}}[$__rate_interval])) * 60",
                    "server log",
                ),
                alerts=("PrefectPostgresDeadlocks",),
            ),
            graph(
                "Deadlocks per minute by operation",
                "Deadlocks found in the server log per minute, counted once per Prefect operation involved. "
                "deployment_last_polled_update: upgrade Prefect to 3.7+ or run one worker per queue. Empty "
                "without server_log.",
                "opm",
                Query(
                    f"sum by (operation) (rate(prefect_db_deadlocks_by_operation_total{{{T}}}"
                    "[$__rate_interval])) * 60",
                    "{{operation}}",
                ),
                alerts=("PrefectWorkerPollContention",),
            ),
        ),
        row(
            "Database load by operation (sampler)",
            graph(
                "Database load by operation",
                "Average number of busy sessions per Prefect operation (sampled about once a second). The "
                "top band is what the database spends its time on; compare with the CPU count.",
                "short",
                Query(
                    f"sum by (operation) (rate(prefect_db_session_samples_total{{{T}}}[$__rate_interval]))",
                    "{{operation}}",
                ),
                stack=True,
            ),
            graph(
                "Database load by wait event type",
                "The same load split by what the sessions wait on. A large Lock band means sessions queue "
                "behind each other: see lock waits by operation.",
                "short",
                Query(
                    f"sum by (wait_event_type) (rate(prefect_db_session_samples_total{{{T}}}"
                    "[$__rate_interval]))",
                    "{{wait_event_type}}",
                ),
                stack=True,
            ),
            graph(
                "Lock waits by operation and blocker",
                "Average number of sessions waiting on a lock, by their operation and the operation of "
                "the session blocking them. deployment_last_polled_update blocked by itself: workers "
                "polling the same queue collide.",
                "short",
                Query(
                    f"sum by (operation, blocker_operation) (rate(prefect_db_lock_wait_samples_total{{{T}}}"
                    "[$__rate_interval]))",
                    "{{operation}} ← {{blocker_operation}}",
                ),
                stack=True,
            ),
            graph(
                "last_polled updates waiting on locks",
                "Seconds per second that worker polls' last_polled updates spent waiting on locks (the "
                "average number of stuck polls), and polls stuck right now. Rising with more workers: "
                "fewer workers per queue, or Prefect 3.7+.",
                "short",
                Query(
                    f"sum by (relation) (rate(prefect_db_last_polled_lock_wait_seconds_total{{{T}}}"
                    "[$__rate_interval]))",
                    "{{relation}} waiting (average)",
                ),
                Query(
                    f"sum by (relation) (prefect_db_last_polled_blocked_sessions{{{T}}})",
                    "{{relation}} blocked now",
                ),
                alerts=("PrefectWorkerPollContention",),
                steps=((POLL_WAIT_SESSIONS, ORANGE),),
            ),
            graph(
                "Transactions",
                "Commits and rollbacks per second. Prefect's read-only sessions end in ROLLBACK, so "
                "rollbacks above commits are normal; a drop to zero means Prefect stopped working.",
                "ops",
                Query(f"sum(rate(prefect_db_xact_commit_total{{{T}}}[$__rate_interval]))", "commits"),
                Query(f"sum(rate(prefect_db_xact_rollback_total{{{T}}}[$__rate_interval]))", "rollbacks"),
            ),
            graph(
                "Temporary files",
                "Bytes per second queries spill to temporary files. Sustained: a query sorts or hashes "
                "more than work_mem; find it with pg_stat_statements.",
                "Bps",
                Query(f"sum(rate(prefect_db_temp_bytes_total{{{T}}}[$__rate_interval]))", "temp bytes"),
            ),
        ),
        row(
            "Tables",
            bars(
                "Biggest Prefect tables",
                "The ten largest Prefect tables now, with indexes and TOAST. events and log usually lead: "
                "check Prefect's retention (PREFECT_EVENTS_RETENTION_PERIOD) and its db_vacuum service.",
                "bytes",
                Query(f"topk(10, max by (relation) (prefect_db_table_size_bytes{{{T}}}))", "{{relation}}"),
            ),
            graph(
                "Table size",
                "Disk size of the largest Prefect tables with indexes and TOAST. events, log and the "
                "state tables grow fastest: check Prefect's retention (PREFECT_EVENTS_RETENTION_PERIOD) "
                "and db_vacuum service.",
                "bytes",
                Query(f"topk(10, max by (relation) (prefect_db_table_size_bytes{{{T}}}))", "{{relation}}"),
                Query(f"sum(prefect_db_database_size_bytes{{{T}}})", "whole database"),
            ),
            graph(
                "Dead tuples",
                "Dead tuples waiting for vacuum per table. Growing without falling: autovacuum cannot "
                "keep up or an old transaction holds them back (see Oldest transaction).",
                "short",
                Query(f"topk(10, max by (relation) (prefect_db_table_dead_tuples{{{T}}}))", "{{relation}}"),
                alerts=("PrefectPostgresDeadTuplesHigh",),
                width=8,
            ),
            graph(
                "HOT update ratio of deployment",
                "Share of deployment updates that touched no index (HOT). Every worker poll rewrites "
                "every deployment of the polled queues; a low ratio means each poll also writes index "
                "entries and bloats the table. A lower fillfactor on deployment helps.",
                "percentunit",
                Query(
                    f'sum(rate(prefect_db_table_hot_updates_total{{{T}, relation="deployment"}}'
                    "[$__rate_interval]))"
                    f' / sum(rate(prefect_db_table_updates_total{{{T}, relation="deployment"}}'
                    "[$__rate_interval]))",
                    "HOT ratio",
                ),
                width=8,
            ),
            graph(
                "Row updates by table",
                "Rows updated per second per table. deployment high while flow runs are few: workers "
                "poll too often or too many deployments share a queue (see updates per poll).",
                "ops",
                Query(
                    f"topk(10, sum by (relation) (rate(prefect_db_table_updates_total{{{T}}}"
                    "[$__rate_interval])))",
                    "{{relation}}",
                ),
                width=8,
            ),
            graph(
                "Time since last autovacuum",
                "Time since autovacuum last vacuumed each table (tables never vacuumed are absent). Over "
                "a day on a busy table: autovacuum is blocked or throttled.",
                "s",
                Query(
                    f"topk(10, max by (relation) (prefect_db_table_last_autovacuum_age_seconds{{{T}}}))",
                    "{{relation}}",
                ),
                alerts=("PrefectPostgresAutovacuumStarved",),
                width=8,
            ),
            graph(
                "Transaction ID age",
                "Age of the oldest unfrozen transaction ID as a share of the 2^31 wraparound limit. Above "
                "50%: autovacuum cannot freeze (long transactions, abandoned replication slots).",
                "percentunit",
                Query(f"max by (target) (prefect_db_xid_age{{{T}}}) / 2147483648", "{{target}}"),
                alerts=("PrefectPostgresXidWraparound",),
                steps=((XID_WARNING, ORANGE), (XID_CRITICAL, RED)),
                width=8,
            ),
            graph(
                "Rows read by sequential scans per second",
                "Rows sequential scans read per second per table (not the number of scans). Millions on a "
                "big table: a query misses an index; check pg_stat_statements for it.",
                "short",
                Query(
                    f"topk(10, sum by (relation) (rate(prefect_db_table_seq_scan_rows_total{{{T}}}"
                    "[$__rate_interval])))",
                    "{{relation}}",
                ),
                width=8,
            ),
        ),
        row(
            "Exporter health",
            graph(
                "Collector success",
                "1 when the collector's latest run succeeded. A collector at 0 drops its metrics; the "
                "exporter's / page says why (timeout, lock timeout, permission).",
                "short",
                Query(f"min by (collector) (prefect_db_exporter_collector_success{{{T}}})", "{{collector}}"),
                alerts=("PrefectDbCollectorFailing",),
                width=8,
            ),
            graph(
                "Collector duration",
                "How long each collector's latest run took. Near its timeout: the database is slow or a "
                "Prefect table lost an index.",
                "s",
                Query(
                    f"max by (collector) (prefect_db_exporter_collector_duration_seconds{{{T}}})",
                    "{{collector}}",
                ),
                width=8,
            ),
            graph(
                "Collector runs by outcome",
                "Collector runs per second by outcome. Anything but success names the problem: timeout, "
                "lock_timeout (a table is locked), permission, schema, connection.",
                "ops",
                Query(
                    f"sum by (status) (rate(prefect_db_exporter_queries_total{{{T}}}[$__rate_interval]))",
                    "{{status}}",
                ),
                width=8,
            ),
            graph(
                "Sampler",
                "Samples of pg_stat_activity per second, failed samples and overruns. Errors: the "
                "database is down or too slow; the sampler backs off.",
                "ops",
                Query(f"sum(rate(prefect_db_sampler_samples_total{{{T}}}[$__rate_interval]))", "samples"),
                Query(f"sum(rate(prefect_db_sampler_errors_total{{{T}}}[$__rate_interval]))", "errors"),
                Query(f"sum(rate(prefect_db_sampler_overruns_total{{{T}}}[$__rate_interval]))", "overruns"),
            ),
            graph(
                "Sampler timing",
                "How long the latest sample took and the sampler's current interval (it backs off when "
                "sampling is slow).",
                "s",
                Query(f"max(prefect_db_sampler_sample_duration_seconds{{{T}}})", "sample duration"),
                Query(f"max(prefect_db_sampler_interval_seconds{{{T}}})", "interval"),
            ),
            graph(
                "Server log",
                "1 while the configured PostgreSQL server log is being read (deadlock attribution); 0 "
                "when it cannot be: the exporter's / page says why. Empty when server_log is not set.",
                "short",
                Query(f"min by (target) (prefect_db_exporter_server_log_ok{{{T}}})", "{{target}}"),
                alerts=("PrefectDbServerLogUnreadable",),
            ),
            graph(
                "Series folded by the cardinality cap",
                "Series a collector folded into one series labelled other because a metric exceeded "
                "max_series_per_metric. Any: raise the cap or find the label that exploded.",
                "short",
                Query(
                    f"max by (collector, metric) (prefect_db_exporter_series_folded{{{T}}})",
                    "{{collector}} {{metric}}",
                ),
            ),
        ),
        machinery_tables(),
    ]
    return dashboard(
        "prefect-db-postgres",
        "Prefect database — PostgreSQL internals",
        "Sessions, locks, deadlocks, database load by Prefect operation, tables and the exporter itself.",
        rows,
    )


def work_pools() -> Any:
    """Work pools, queues, workers, runs per queue, deployments and concurrency."""
    rows = [
        row(
            "Queues and pools",
            timeline(
                "Work queue status",
                "Each queue's status as Prefect's foreman stored it (lags up to its loop), over time. "
                "NOT_READY: no poll within a minute; PAUSED: paused by a user.",
                Query(
                    status_code("prefect_db_work_queue_status", TP, "work_pool, work_queue"),
                    "{{work_pool}}/{{work_queue}}",
                ),
                STATUS_STATES,
                alerts=("PrefectWorkQueueNotPolled",),
                width=12,
            ),
            timeline(
                "Work pool status",
                "Each pool's stored status over time: NOT_READY when it has no online worker, PAUSED when "
                "paused.",
                Query(status_code("prefect_db_work_pool_status", TP, "work_pool"), "{{work_pool}}"),
                STATUS_STATES,
                alerts=("PrefectWorkPoolNoOnlineWorkers",),
                width=12,
            ),
            graph(
                "Time since last poll by queue",
                "Time since a worker last polled each work queue. Above a minute Prefect marks the queue "
                f"NOT_READY; above {QUEUE_UNPOLLED_SECONDS // 60} minutes its runs go Late: start or fix "
                "the pool's workers (or pause the queue).",
                "s",
                Query(
                    f"max by (work_pool, work_queue) (prefect_db_work_queue_last_polled_age_seconds{{{TP}}})",
                    "{{work_pool}}/{{work_queue}}",
                ),
                alerts=("PrefectWorkQueueNotPolled",),
                steps=((60, ORANGE), (QUEUE_UNPOLLED_SECONDS, RED)),
            ),
            graph(
                "Paused queues and pools",
                "Paused work queues per pool and paused pools. A paused queue's runs never start; "
                "unpause it in the Prefect UI if that was not intended.",
                "short",
                Query(f"sum by (work_pool) (prefect_db_work_queue_paused{{{TP}}})", "{{work_pool}} queues"),
                Query(f"max by (work_pool) (prefect_db_work_pool_paused{{{TP}}})", "{{work_pool}} pool"),
                width=12,
            ),
        ),
        row(
            "Workers",
            timeline(
                "Online workers per pool",
                "How many workers of each pool were ONLINE (heartbeat within 3 intervals), over time. Red: "
                "none, so no run of the pool can start; restart its workers.",
                Query(f'sum by (work_pool) (prefect_db_workers{{{TP}, status="ONLINE"}})', "{{work_pool}}"),
                {"0": ("none online", RED)},
                alerts=("PrefectWorkPoolNoOnlineWorkers",),
                width=24,
                height=6,
            ),
            graph(
                "Workers by computed status",
                "Workers per pool, ONLINE when their last heartbeat is within 3 heartbeat intervals. A pool "
                "without ONLINE workers runs nothing: restart its workers.",
                "short",
                Query(
                    f"sum by (work_pool, status) (prefect_db_workers{{{TP}}})",
                    "{{work_pool}} {{status}}",
                ),
                alerts=("PrefectWorkPoolNoOnlineWorkers",),
                stack=True,
                width=8,
            ),
            graph(
                "Worker heartbeat age",
                "Time since the pool's most recent worker heartbeat: a line that keeps rising means no "
                "worker of the pool is alive, and its PENDING runs may be stuck. Per worker (one line "
                "each) only with the opt-in collector worker_heartbeats (collectors.enable).",
                "s",
                Query(
                    f"max by (work_pool) (prefect_db_work_pool_worker_heartbeat_age_seconds{{{TP}}})",
                    "{{work_pool}} newest",
                ),
                Query(
                    f"max by (work_pool, worker) (prefect_db_worker_last_heartbeat_age_seconds{{{TP}}})",
                    "{{work_pool}} {{worker}}",
                ),
                width=8,
            ),
            graph(
                "Workers by stored status",
                "Workers per pool by the status Prefect's foreman stored, and all worker rows up to 1000 "
                "(Prefect never deletes dead workers). A gap to the computed status means the foreman lags.",
                "short",
                Query(
                    f"sum by (work_pool, status) (prefect_db_workers_stored_status{{{TP}}})",
                    "{{work_pool}} {{status}}",
                ),
                Query(f"sum by (work_pool) (prefect_db_worker_rows{{{TP}}})", "{{work_pool}} rows"),
                width=8,
            ),
        ),
        row(
            "Runs per pool and queue",
            graph(
                "PENDING runs",
                "PENDING runs per queue and those stale beyond pending_stale_seconds. PENDING holds "
                "concurrency slots forever: check the worker's submission errors, then cancel them.",
                "short",
                Query(
                    f"sum by (work_pool, work_queue) (prefect_db_pending_runs{{{TP}}})",
                    "{{work_pool}}/{{work_queue}}",
                ),
                Query(
                    f"sum by (work_pool, work_queue) (prefect_db_pending_runs_stale{{{TP}}})",
                    "{{work_pool}}/{{work_queue}} stale",
                ),
                alerts=("PrefectFlowRunsStuckPending",),
                width=8,
            ),
            graph(
                "Oldest PENDING run",
                "Time since the oldest PENDING run of each queue entered PENDING.",
                "s",
                Query(
                    f"max by (work_pool, work_queue) (prefect_db_pending_runs_oldest_age_seconds{{{TP}}})",
                    "{{work_pool}}/{{work_queue}}",
                ),
                alerts=("PrefectFlowRunsStuckPending",),
                width=8,
            ),
            graph(
                "Stale PENDING runs never started",
                "Stale PENDING runs whose infrastructure was never reported: the worker failed to submit "
                "them (image pull, quota, credentials).",
                "short",
                Query(
                    f"sum by (work_pool, work_queue) (prefect_db_pending_runs_never_started{{{TP}}})",
                    "{{work_pool}}/{{work_queue}}",
                ),
                width=8,
            ),
            graph(
                "Late runs",
                "Late runs per queue. They start once a worker polls the queue and concurrency allows.",
                "short",
                Query(
                    f"sum by (work_pool, work_queue) (prefect_db_late_runs{{{TP}}})",
                    "{{work_pool}}/{{work_queue}}",
                ),
                alerts=("PrefectFlowRunsLate",),
                width=8,
            ),
            graph(
                "Lateness of the most overdue run",
                "How far past its scheduled start the most overdue late run of each queue is (the maximum "
                "over its late runs).",
                "s",
                Query(
                    f"max by (work_pool, work_queue) (prefect_db_late_runs_max_lateness_seconds{{{TP}}})",
                    "{{work_pool}}/{{work_queue}}",
                ),
                alerts=("PrefectFlowRunsLate",),
                steps=((LATE_SECONDS, ORANGE),),
                width=8,
            ),
            graph(
                "RUNNING runs and silent heartbeats",
                "RUNNING runs per queue, those whose heartbeat is stale and those that never sent one. "
                "Stale ones are likely dead processes: check the infrastructure, then mark them crashed.",
                "short",
                Query(
                    f"sum by (work_pool, work_queue) (prefect_db_running_runs{{{TP}}})",
                    "{{work_pool}}/{{work_queue}} running",
                ),
                Query(
                    f"sum by (work_pool, work_queue) (prefect_db_running_runs_heartbeat_stale{{{TP}}})",
                    "{{work_pool}}/{{work_queue}} stale heartbeat",
                ),
                Query(
                    f"sum by (work_pool, work_queue) (prefect_db_running_runs_without_heartbeat{{{TP}}})",
                    "{{work_pool}}/{{work_queue}} no heartbeat",
                ),
                alerts=("PrefectFlowRunsHeartbeatStale",),
                width=8,
            ),
            graph(
                "Longest RUNNING run",
                "Time since the longest-running RUNNING run of each queue started running. Without "
                "heartbeats this is the only zombie signal: a run far beyond its usual duration is "
                "probably dead.",
                "s",
                Query(
                    f"max by (work_pool, work_queue) (prefect_db_running_runs_oldest_age_seconds{{{TP}}})",
                    "{{work_pool}}/{{work_queue}}",
                ),
                alerts=("PrefectFlowRunsRunningTooLong",),
                width=8,
            ),
            graph(
                "Oldest heartbeat of a RUNNING run",
                "Largest time since the last heartbeat among RUNNING runs of each queue.",
                "s",
                Query(
                    f"max by (work_pool, work_queue) "
                    f"(prefect_db_running_runs_oldest_heartbeat_age_seconds{{{TP}}})",
                    "{{work_pool}}/{{work_queue}}",
                ),
                alerts=("PrefectFlowRunsHeartbeatStale",),
                width=8,
            ),
            graph(
                "Flow runs by state type",
                "Non-terminal flow runs per pool and state type.",
                "short",
                Query(
                    f"sum by (work_pool, state_type) (prefect_db_flow_runs{{{TP}}})",
                    "{{work_pool}} {{state_type}}",
                ),
                stack=True,
                width=8,
            ),
            graph(
                "State transitions per pool",
                "Flow run state changes per second per pool and state type entered.",
                "ops",
                Query(
                    f"sum by (work_pool, state_type) (rate(prefect_db_flow_run_transitions_total{{{TP}}}"
                    "[$__rate_interval]))",
                    "{{work_pool}} {{state_type}}",
                ),
                stack=True,
                width=8,
            ),
        ),
        row(
            "Deployments",
            graph(
                "Deployments by status",
                "Deployments per pool by stored status (NOT_READY: their queue is not polled) and paused "
                "deployments.",
                "short",
                Query(
                    f"sum by (work_pool, status) (prefect_db_deployments{{{TP}}})",
                    "{{work_pool}} {{status}}",
                ),
                Query(f"sum by (work_pool) (prefect_db_deployments_paused{{{TP}}})", "{{work_pool}} paused"),
            ),
            graph(
                "Deployment rows rewritten per poll",
                "Deployment rows one worker poll of the pool updates (last_polled). Hundreds with several "
                "workers per queue cause lock waits and deadlocks before Prefect 3.7: split the "
                "deployments over more queues or run fewer workers per queue.",
                "short",
                Query(
                    f"max by (work_pool) (prefect_db_deployment_updates_per_poll{{{TP}}})",
                    "{{work_pool}}",
                ),
                alerts=("PrefectWorkerPollContention",),
                steps=((UPDATES_PER_POLL, ORANGE),),
            ),
        ),
        row(
            "Concurrency",
            graph(
                "Global concurrency limits: slots in use vs limit",
                "Active slots of each global concurrency limit (tag:, deployment: and named limits) and "
                "its slot count. In use at the limit: runs wait for slots; check for PENDING or "
                "crashed runs that never released theirs.",
                "short",
                Query(f"max by (name) (prefect_db_concurrency_limit_active_slots{{{T}}})", "{{name}} in use"),
                Query(f"max by (name) (prefect_db_concurrency_limit_slots{{{T}}})", "{{name}} limit"),
                Query(f"max by (name) (prefect_db_concurrency_limit_denied_slots{{{T}}})", "{{name}} denied"),
                alerts=("PrefectConcurrencyLimitSaturated",),
                width=8,
            ),
            graph(
                "Global concurrency limits: utilisation",
                "Slots in use over the limit. Pinned at 100% with denied slots: the limit is too low or "
                "slots leaked.",
                "percentunit",
                Query(
                    f"max by (name) (prefect_db_concurrency_limit_active_slots{{{T}}}"
                    f" / prefect_db_concurrency_limit_slots{{{T}}})",
                    "{{name}}",
                ),
                alerts=("PrefectConcurrencyLimitSaturated",),
                steps=((1, RED),),
                width=8,
            ),
            graph(
                "Tag concurrency limits (v1)",
                "Task-run tag limits of Prefect before 3.4.19 (later they are global limits named tag:…): "
                "slots in use and the limit.",
                "short",
                Query(
                    f"max by (name) (prefect_db_tag_concurrency_limit_active_slots{{{T}}})", "{{name}} in use"
                ),
                Query(f"max by (name) (prefect_db_tag_concurrency_limit_slots{{{T}}})", "{{name}} limit"),
                width=8,
            ),
            graph(
                "Work queue active runs vs limit",
                "RUNNING and PENDING runs of each queue and its concurrency limit. At the limit, new runs "
                "wait; stale PENDING runs count against it.",
                "short",
                Query(
                    f"sum by (work_pool, work_queue) (prefect_db_work_queue_active_runs{{{TP}}})",
                    "{{work_pool}}/{{work_queue}} active",
                ),
                Query(
                    f"max by (work_pool, work_queue) (prefect_db_work_queue_concurrency_limit{{{TP}}})",
                    "{{work_pool}}/{{work_queue}} limit",
                ),
                alerts=("PrefectWorkQueueConcurrencySaturated",),
            ),
            graph(
                "Work pool active runs vs limit",
                "RUNNING and PENDING runs of each pool's unpaused queues and the pool's concurrency limit.",
                "short",
                Query(
                    f"sum by (work_pool) (prefect_db_work_pool_active_runs{{{TP}}})", "{{work_pool}} active"
                ),
                Query(
                    f"max by (work_pool) (prefect_db_work_pool_concurrency_limit{{{TP}}})",
                    "{{work_pool}} limit",
                ),
                alerts=("PrefectWorkPoolConcurrencySaturated",),
            ),
        ),
        row(
            "Prefect machinery per pool",
            graph(
                "Foreman disagreement",
                "Rows Prefect stores as ONLINE (workers) or READY (queues, deployments) although, by the "
                "foreman's own rules, they have timed out: 3 missed heartbeats, 60 s without a poll. Any for "
                "minutes: the foreman has stalled and the UI trusts stale statuses (prefect#22212).",
                "short",
                Query(
                    f"sum by (work_pool, relation) (prefect_db_foreman_stale_status_rows{{{TP}}})",
                    "{{work_pool}} {{relation}}",
                ),
                alerts=("PrefectForemanStalled",),
            ),
            graph(
                "Late marking: runs not marked Late and marked twice",
                "Scheduled runs over 60 s past their start that the late-runs service has not marked Late, "
                "and Late runs marked Late more than once (Prefect 3.6.7 to 3.7.5, prefect#22139), per "
                "queue. Either for minutes: the service has stalled or misbehaves.",
                "short",
                Query(
                    f"sum by (work_pool, work_queue) (prefect_db_late_marking_overdue_runs{{{TP}}})",
                    "{{work_pool}}/{{work_queue}} not marked",
                ),
                Query(
                    f"sum by (work_pool, work_queue) (prefect_db_late_marking_repeated_late_runs{{{TP}}})",
                    "{{work_pool}}/{{work_queue}} marked twice",
                ),
                alerts=("PrefectLateMarkingStalled",),
            ),
        ),
    ]
    return dashboard(
        "prefect-db-work-pools",
        "Prefect database — work pools & queues",
        "Polling, workers, runs per work pool and queue, deployments and concurrency limits.",
        rows,
        with_work_pool=True,
    )


DASHBOARDS: Final = {"overview": overview, "postgres": postgres, "work-pools": work_pools}


def generate() -> dict[str, str]:
    """Every dashboard's file name and JSON text."""
    return {f"{name}.json": render(make()) for name, make in DASHBOARDS.items()}


def main() -> None:
    """Write every dashboard into dashboards/."""
    for name, text in generate().items():
        (DASHBOARD_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {DASHBOARD_DIR / name}", file=sys.stderr)


if __name__ == "__main__":
    main()
