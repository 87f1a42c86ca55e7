"""``make pictures``: draw every dashboard from a live Prometheus into docs/img/, for the README.

No Grafana server can be installed here, so this draws each board's panels itself with matplotlib, from
the panels' own queries (Grafana's variables replaced by :mod:`devtools.grafana`) evaluated by a real
Prometheus scraping a real exporter: time series and state timelines from range queries, stats, bar gauges
and tables from instant queries, laid out on Grafana's 24-column grid. It is a likeness, not Grafana: units,
thresholds, value mappings, stacking and the table's merge and renames are honoured; Grafana's styling is
only imitated.

``python -m devtools.pictures`` records the scene of :mod:`devtools.scene` (the demo's trouble plus
deadlocks, crashes, a reload and flow runs moving) for a few minutes, then draws the boards.
``tests/test_live_queries.py`` draws them too, from its own Prometheus, so the renderer stays working.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter, MaxNLocator

from devtools import grafana, promstack
from devtools.grafana import Board, Variables
from devtools.paths import REPO_ROOT

DASHBOARDS: Final = REPO_ROOT / "dashboards"
OUT_DIR: Final = REPO_ROOT / "docs" / "img"
# Grafana's dark theme and classic palette.
BACKGROUND: Final = "#111217"
PANEL: Final = "#181b1f"
TEXT: Final = "#ccccdc"
FAINT: Final = "#8e8e8e"
GRID: Final = "#2c3235"
COLORS: Final = {
    "green": "#73bf69",
    "red": "#f2495c",
    "orange": "#ff9830",
    "blue": "#5794f2",
    "purple": "#b877d9",
    "yellow": "#fade2a",
    "transparent": PANEL,
}
PALETTE: Final = ("#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9", "#705da0")
COLUMNS: Final = 24
COLUMN_INCHES: Final = 0.8
ROW_INCHES: Final = 0.42
DPI: Final = 72
LEGEND_ENTRIES: Final = 8
LABEL_INCHES: Final = {"timeseries": 0.8, "state-timeline": 1.6, "bargauge": 1.6}


# Values and units ---------------------------------------------------------------------------------


def _scaled(value: float, steps: Sequence[tuple[float, str]], digits: int = 3) -> str:
    for size, suffix in reversed(steps):
        if abs(value) >= size:
            return f"{value / size:.{digits}g}{suffix}"
    return f"{value:.{digits}g}{steps[0][1]}"


def format_value(value: float, unit: str) -> str:
    """``value`` as Grafana shows it in ``unit`` (the units the dashboards use)."""
    if math.isnan(value):
        return "NaN"
    if unit == "s":
        return _scaled(
            value, ((1e-6, " µs"), (1e-3, " ms"), (1, " s"), (60, " min"), (3600, " h"), (86400, " d"))
        )
    if unit in ("bytes", "Bps"):
        rate = "/s" if unit == "Bps" else ""
        return _scaled(value, ((1, " B"), (1024, " KiB"), (1024**2, " MiB"), (1024**3, " GiB"))) + rate
    if unit == "percentunit":
        return f"{value * 100:.3g}%"
    suffix = {"ops": " ops/s", "opm": " ops/min"}.get(unit, "")
    return _scaled(value, ((1, ""), (1e3, " K"), (1e6, " Mil"), (1e9, " Bil"))) + suffix


def color(name: str | None) -> str:
    """A Grafana colour name (or a #rgb) as matplotlib's."""
    if not name:
        return COLORS["green"]
    return COLORS.get(name, name)


def threshold_color(value: float, config: Board) -> str:
    """The colour of the highest threshold step at or below ``value``."""
    steps = (config.get("thresholds") or {}).get("steps") or [{"color": "green", "value": None}]
    chosen = steps[0]["color"]
    for step in steps[1:]:
        if step.get("value") is not None and value >= step["value"]:
            chosen = step["color"]
    return color(chosen)


def mapped(value: float, config: Board) -> tuple[str, str] | None:
    """The (text, colour) a value mapping gives ``value``, if any."""
    for mapping in config.get("mappings") or []:
        options = mapping.get("options") or {}
        key = f"{value:g}"
        if mapping.get("type") == "value" and key in options:
            option = options[key]
            return str(option.get("text", key)), color(option.get("color"))
    return None


def legend(template: str, labels: dict[str, str]) -> str:
    """A legend format with ``{{label}}`` replaced, as Grafana does."""
    if not template:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__") + "}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


# Querying ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One series of a query: its legend, labels and points."""

    name: str
    labels: dict[str, str]
    times: tuple[float, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class Window:
    """The time range drawn and the step of range queries."""

    start: float
    end: float
    step: float


@dataclass
class Drawn:
    """What drawing one board found: panels drawn with data and those without."""

    path: Path
    with_data: list[str] = field(default_factory=list)
    without_data: list[str] = field(default_factory=list)


class Source:
    """A panel's queries, with the dashboard's variables replaced, evaluated by one Prometheus."""

    def __init__(self, prom: promstack.Prometheus, variables: Variables, window: Window) -> None:
        self.prom, self.variables, self.window = prom, variables, window

    async def range(self, target: Board) -> list[Series]:
        data = await self.prom.request(
            "POST",
            "/api/v1/query_range",
            data={
                "query": self.variables.substitute(target["expr"]),
                "start": str(self.window.start),
                "end": str(self.window.end),
                "step": str(self.window.step),
            },
        )
        return [
            Series(
                legend(target.get("legendFormat", ""), item["metric"]),
                item["metric"],
                tuple(float(t) for t, _ in item["values"]),
                tuple(float(v) for _, v in item["values"]),
            )
            for item in data["data"]["result"]
        ]

    async def instant(self, target: Board) -> list[Series]:
        result = await self.prom.query(self.variables.substitute(target["expr"]), at=self.window.end)
        return [
            Series(
                legend(target.get("legendFormat", ""), item["metric"]),
                item["metric"],
                (float(item["value"][0]),),
                (float(item["value"][1]),),
            )
            for item in result
        ]


# Drawing panels -----------------------------------------------------------------------------------


def _style(ax: Axes, title: str) -> None:
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_color(GRID)
    ax.tick_params(colors=FAINT, labelsize=8)
    ax.set_title(title, color=TEXT, fontsize=10, loc="left", pad=4, fontweight="bold")


def _blank(ax: Axes, title: str, text: str) -> None:
    _style(ax, title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, color=FAINT, ha="center", va="center", transform=ax.transAxes, fontsize=11)


def day(moment: float) -> float:
    """A Unix time on the x axis, in days (matplotlib's own date numbers)."""
    return moment / 86400


def _time_axis(ax: Axes, window: Window) -> None:
    ax.set_xlim(day(window.start), day(window.end))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda v, _: datetime.fromtimestamp(v * 86400).strftime("%H:%M"))
    )
    ax.xaxis.set_major_locator(MaxNLocator(6))


def draw_timeseries(ax: Axes, panel: Board, series: list[Series], window: Window) -> None:
    _style(ax, panel["title"])
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    stacked = (defaults.get("custom", {}).get("stacking") or {}).get("mode") == "normal"
    grid = sorted({t for s in series for t in s.times})
    base = [0.0] * len(grid)
    for index, one in enumerate(series):
        points = dict(zip(one.times, one.values, strict=True))
        hue = PALETTE[index % len(PALETTE)]
        if stacked:
            top = [b + points.get(t, 0.0) for b, t in zip(base, grid, strict=True)]
            moments = [day(t) for t in grid]
            ax.fill_between(moments, base, top, color=hue, alpha=0.35, linewidth=0)
            ax.plot(moments, top, color=hue, linewidth=1.2, label=one.name)
            base = top
        else:
            moments = [day(t) for t in one.times]
            ax.plot(moments, one.values, color=hue, linewidth=1.4, label=one.name)
    if (defaults.get("custom", {}).get("thresholdsStyle") or {}).get("mode") == "dashed":
        for step in defaults.get("thresholds", {}).get("steps", [])[1:]:
            ax.axhline(step["value"], color=color(step["color"]), linestyle="--", linewidth=1)
    _time_axis(ax, window)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: format_value(v, unit)))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.grid(color=GRID, linewidth=0.6)
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    if series:
        handles, labels = ax.get_legend_handles_labels()
        more = len(labels) - LEGEND_ENTRIES
        shown = labels[:LEGEND_ENTRIES] + ([f"… {more} more"] if more > 0 else [])
        handles = handles[:LEGEND_ENTRIES] + ([Line2D([], [], alpha=0)] if more > 0 else [])
        ax.legend(
            handles,
            shown,
            loc="upper left",
            fontsize=7,
            frameon=False,
            labelcolor=TEXT,
            ncols=2 if len(shown) > 4 else 1,
        )


def draw_stat(ax: Axes, panel: Board, series: list[Series]) -> None:
    defaults = panel["fieldConfig"]["defaults"]
    if not series:
        text = defaults.get("noValue", "No data")
        series = [Series("", {}, (0.0,), (math.nan,))]
    _style(ax, panel["title"])
    ax.set_xticks([])
    ax.set_yticks([])
    width = 1 / len(series)
    for index, one in enumerate(series):
        value = one.values[-1]
        if math.isnan(value):
            shown, hue = text, PANEL
        else:
            found = mapped(value, defaults)
            shown, hue = found or (
                format_value(value, defaults.get("unit", "short")),
                threshold_color(value, defaults),
            )
        ax.add_patch(Rectangle((index * width, 0), width * 0.98, 1, color=hue, transform=ax.transAxes))
        ax.text(
            (index + 0.5) * width,
            0.45,
            shown,
            ha="center",
            va="center",
            color="white" if hue != PANEL else FAINT,
            fontsize=20 if len(series) == 1 else 13,
            fontweight="bold",
            transform=ax.transAxes,
        )
        if len(series) > 1:
            ax.text(
                (index + 0.5) * width,
                0.85,
                one.name,
                ha="center",
                color="white",
                fontsize=8,
                transform=ax.transAxes,
            )


def draw_bargauge(ax: Axes, panel: Board, series: list[Series]) -> None:
    if not series:
        _blank(ax, panel["title"], "No data")
        return
    _style(ax, panel["title"])
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    ranked = sorted(series, key=lambda s: s.values[-1])
    values = [s.values[-1] for s in ranked]
    positions = range(len(ranked))
    ax.barh(list(positions), [max(values)] * len(values), color=GRID, height=0.7)
    ax.barh(list(positions), values, color=[threshold_color(v, defaults) for v in values], height=0.7)
    ax.set_yticks(list(positions), [s.name for s in ranked], color=TEXT, fontsize=8)
    ax.set_xticks([])
    for position, value in zip(positions, values, strict=True):
        ax.text(
            max(values) * 0.99,
            position,
            format_value(value, unit),
            ha="right",
            va="center",
            color="white",
            fontsize=8,
            fontweight="bold",
        )


@dataclass(frozen=True)
class Table:
    """A table panel's rows after Grafana's merge and organize transformations."""

    columns: list[str]
    rows: list[dict[str, str | float]]


def merge(panel: Board, results: list[list[Series]]) -> Table:
    """Merge instant results on their labels (Grafana's ``merge``), then rename and order (``organize``)."""
    merged: dict[tuple[tuple[str, str], ...], dict[str, str | float]] = {}
    for index, result in enumerate(results):
        column = f"Value #{panel['targets'][index]['refId']}"
        for one in result:
            labels = tuple(sorted((k, v) for k, v in one.labels.items() if k != "__name__"))
            merged.setdefault(labels, dict(labels))[column] = one.values[-1]
    options: Board = {}
    for transformation in panel.get("transformations", []):
        if transformation["id"] == "organize":
            options = transformation["options"]
    renames = options.get("renameByName", {})
    order = options.get("indexByName", {})
    names = {k for row in merged.values() for k in row} | set(renames)
    columns = sorted(
        (n for n in names if not options.get("excludeByName", {}).get(n)), key=lambda n: order.get(n, 99)
    )
    rows = [{renames.get(k, k): v for k, v in row.items()} for row in merged.values()]
    return Table(
        [renames.get(c, c) for c in columns],
        sorted(rows, key=lambda r: tuple(str(r.get(c, "")) for c in columns)),
    )


def _override(panel: Board, column: str, key: str) -> Any:
    for override in panel["fieldConfig"].get("overrides", []):
        if override["matcher"]["options"] == column:
            for prop in override["properties"]:
                if prop["id"] == key:
                    return prop.get("value")
    return None


def draw_table(ax: Axes, panel: Board, table: Table) -> None:
    if not table.rows:
        _blank(ax, panel["title"], panel["fieldConfig"]["defaults"].get("noValue", "No data"))
        return
    _style(ax, panel["title"])
    ax.axis("off")
    cells, colours = [], []
    for row in table.rows:
        line, hues = [], []
        for column in table.columns:
            value = row.get(column)
            if value is None:
                line.append("")
                hues.append(PANEL)
            elif isinstance(value, float):
                unit = _override(panel, column, "unit") or "short"
                line.append(format_value(value, unit))
                thresholds = _override(panel, column, "thresholds")
                hues.append(threshold_color(value, {"thresholds": thresholds}) if thresholds else PANEL)
            else:
                line.append(str(value) or "(none)")
                hues.append(PANEL)
        cells.append(line)
        colours.append(hues)
    drawn = ax.table(
        cellText=cells,
        colLabels=table.columns,
        cellColours=colours,
        loc="upper center",
        cellLoc="left",
        colColours=[GRID] * len(table.columns),
    )
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(9)
    drawn.scale(1, 1.35)
    for cell in drawn.get_celld().values():
        cell.set_edgecolor(BACKGROUND)
        cell.get_text().set_color("white")


def draw_timeline(ax: Axes, panel: Board, series: list[Series], window: Window) -> None:
    if not series:
        _blank(ax, panel["title"], "No data")
        return
    _style(ax, panel["title"])
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    for position, one in enumerate(reversed(series)):
        runs: list[tuple[float, float, float]] = []
        for moment, value in zip(one.times, one.values, strict=True):
            if runs and runs[-1][2] == value and abs(runs[-1][1] - moment) <= window.step * 1.5:
                runs[-1] = (runs[-1][0], moment + window.step, value)
            else:
                runs.append((moment, moment + window.step, value))
        for begin, end, value in runs:
            found = mapped(value, defaults)
            text, hue = found or (format_value(value, unit), threshold_color(value, defaults))
            left, width = day(begin), day(end) - day(begin)
            ax.broken_barh([(left, width)], (position - 0.4, 0.8), color=hue, alpha=0.85)
            if (end - begin) > (window.end - window.start) / 12:
                ax.text(left + width / 2, position, text, ha="center", va="center", color="black", fontsize=7)
    ax.set_yticks(range(len(series)), [s.name for s in reversed(series)], color=TEXT, fontsize=8)
    ax.set_ylim(-0.6, len(series) - 0.4)
    _time_axis(ax, window)


# Drawing boards -----------------------------------------------------------------------------------


async def draw_board(source: Source, board: Board, out: Path) -> Drawn:
    """Draw one board into the PNG ``out``."""
    drawn = Drawn(out)
    every = list(grafana.panels(board))
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in every)
    figure = Figure(figsize=(COLUMNS * COLUMN_INCHES, (height + 2) * ROW_INCHES), dpi=DPI)
    figure.patch.set_facecolor(BACKGROUND)
    total = height + 2
    moment = datetime.fromtimestamp(source.window.end).strftime("%Y-%m-%d %H:%M")
    figure.text(
        0.01, 1 - 0.6 / total, board["title"], color=TEXT, fontsize=16, fontweight="bold", va="center"
    )
    figure.text(
        0.99,
        1 - 0.6 / total,
        f"drawn by `make pictures` from a live Prometheus, {moment}, last "
        f"{(source.window.end - source.window.start) / 60:.0f} minutes",
        color=FAINT,
        fontsize=9,
        ha="right",
        va="center",
    )
    for panel in every:
        pos = panel["gridPos"]
        box = (
            pos["x"] / COLUMNS,
            1 - (pos["y"] + 1.5 + pos["h"]) / total,
            pos["w"] / COLUMNS,
            pos["h"] / total,
        )
        if panel["type"] == "row":
            figure.text(
                box[0] + 0.005,
                box[1] + box[3] / 2,
                panel["title"],
                color=TEXT,
                fontsize=12,
                fontweight="bold",
                va="center",
            )
            continue
        kind = panel["type"]
        # Room inside the panel for the axis labels left of the plot.
        inset = LABEL_INCHES.get(kind, 0.1) / (COLUMNS * COLUMN_INCHES)
        margin_x, margin_y = 0.004, 0.45 / total
        ax = figure.add_axes(
            (
                box[0] + margin_x + inset,
                box[1] + margin_y,
                box[2] - margin_x * 2 - inset,
                box[3] - margin_y * 2.2,
            )
        )
        if kind in ("timeseries", "state-timeline"):
            results = [await source.range(t) for t in panel["targets"]]
        else:
            results = [await source.instant(t) for t in panel["targets"]]
        series = [s for result in results for s in result]
        (drawn.with_data if series else drawn.without_data).append(panel["title"])
        if kind == "timeseries":
            draw_timeseries(ax, panel, series, source.window)
        elif kind == "state-timeline":
            draw_timeline(ax, panel, series, source.window)
        elif kind == "stat":
            draw_stat(ax, panel, series)
        elif kind == "bargauge":
            draw_bargauge(ax, panel, series)
        elif kind == "table":
            draw_table(ax, panel, merge(panel, results))
        else:
            _blank(ax, panel["title"], f"(no drawing for {kind} panels)")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, facecolor=BACKGROUND, dpi=DPI)
    return drawn


async def draw_all(source: Source, out_dir: Path, boards: Sequence[Path] | None = None) -> list[Drawn]:
    """Draw every committed board (or ``boards``) into ``out_dir``/NAME.png."""
    paths = sorted(boards or DASHBOARDS.glob("*.json"))
    return [await draw_board(source, grafana.load(p), out_dir / f"{p.stem}.png") for p in paths]


# Recording the scene -------------------------------------------------------------------------------

JOB: Final = "prefect-db"
TARGET: Final = "demo"
SCRAPE_SECONDS: Final = 1
VERSION: Final = "3.9.1"


def progress(message: str) -> None:
    print(f"[pictures] {message}", file=sys.stderr, flush=True)


async def _record(dsn: str, seconds: float, out_dir: Path) -> list[Drawn]:
    from aiohttp import web

    from devtools import scene, seed
    from exporter.config import Config, TargetConfig
    from exporter.registry import Exporter
    from exporter.web import make_app

    config = Config(targets=(TargetConfig(name=TARGET, dsn=dsn),), listen_host="127.0.0.1", listen_port=0)
    exporter = Exporter.from_config(config)
    runner = web.AppRunner(make_app(exporter), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    prom_config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": f"{SCRAPE_SECONDS}s"},
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }
    try:
        async with scene.trouble(dsn) as trouble, promstack.Prometheus(prom_config) as prom:
            started = time.time()
            etl = seed.DEMO_POOLS[1]
            nightly = await scene.queue_id(trouble.setup, etl, "nightly")
            (deployment, *_) = await scene.deployments_of(trouble.setup, nightly)
            moving: list[Any] = []
            events = {
                int(seconds * 0.25): "crash",
                int(seconds * 0.4): "deadlock",
                int(seconds * 0.55): "reload",
                int(seconds * 0.7): "crash",
                int(seconds * 0.75): "deadlock",
            }
            crashed = 0
            for tick in range(int(seconds)):
                if tick % 5 == 0:
                    # Flow runs moving through their states on the ETL pool: transitions to plot.
                    run = await seed.create_flow_run(
                        trouble.setup,
                        flow_id=deployment["flow_id"],
                        queue_id=nightly,
                        deployment_id=deployment["id"],
                        state_type="SCHEDULED",
                    )
                    moving.append([run, 0])
                    for item in moving:
                        item[1] += 1
                        steps = ("PENDING", "RUNNING", "FAILED" if tick % 35 == 0 else "COMPLETED")
                        if item[1] <= len(steps):
                            await seed.set_flow_run_state(trouble.setup, item[0], steps[item[1] - 1])
                    moving = [item for item in moving if item[1] < 3]
                event = events.get(tick)
                if event == "crash":
                    await seed.set_flow_run_state(trouble.setup, trouble.running[crashed], "CRASHED")
                    crashed += 1
                elif event == "deadlock":
                    for _ in range(2):
                        await scene.deadlock(dsn, trouble.deadlock_rows)
                elif event == "reload":
                    await exporter.reload(exporter.config)
                if tick % 30 == 0:
                    progress(f"recording: {tick} of {seconds:.0f} s")
                await asyncio.sleep(max(0.0, started + tick + 1 - time.time()))
            end = time.time()
            window = Window(started, end, step=max(2.0, (end - started) / 200))
            variables = Variables(
                job=JOB, target=TARGET, rate_interval="30s", interval="10s", range=f"{int(end - started)}s"
            )
            return await draw_all(Source(prom, variables, window), out_dir)
    finally:
        await runner.cleanup()
        await exporter.close()


def main(argv: list[str] | None = None) -> int:
    """Record the scene and draw every board into docs/img/."""
    parser = argparse.ArgumentParser(prog="python -m devtools.pictures", description=__doc__)
    parser.add_argument("--seconds", type=float, default=240, help="how long to record (default 240)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where the PNGs go (default docs/img)")
    args = parser.parse_args(argv)
    from devtools.pgcluster import PgCluster
    from devtools.prefect_env import ensure_template

    cluster = PgCluster.create(Path(tempfile.mkdtemp(prefix="ppe-pictures-")))
    try:
        cluster.start()
        template = ensure_template(cluster, VERSION)
        cluster.create_database("prefect", template=template)
        progress(f"recording the trouble scene for {args.seconds:.0f} s")
        drawn = asyncio.run(_record(cluster.dsn("prefect"), args.seconds, args.out))
    finally:
        cluster.destroy()
    for board in drawn:
        empty = f"; no data: {', '.join(board.without_data)}" if board.without_data else ""
        print(f"{board.path}: {len(board.with_data)} panels with data{empty}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
