"""``--check``: connect to every target, run every collector once, print a table, fail on any problem."""

from __future__ import annotations

import sys
from typing import TextIO

from exporter.errors import ConnectError, QueryError
from exporter.registry import Exporter
from exporter.status import CollectorState
from exporter.target import Target


async def _check_target(target: Target, timeout: float, rows: list[list[str]]) -> list[str]:
    problems: list[str] = []
    try:
        facts = await target.validate(timeout)
    except (ConnectError, QueryError) as error:
        return [f"target {target.name}: {error}"]
    if not facts.has_prefect_schema:
        missing = ", ".join(facts.missing_prefect_tables())
        problems.append(
            f"target {target.name}: no Prefect schema in {target.settings.target.safe_dsn} (missing or "
            f"unreadable: {missing}); is this Prefect's database, and did deploy/exporter-role.sql "
            "grant SELECT?"
        )
    for collector in target.status().collectors:
        if collector.state is CollectorState.SKIPPED:
            rows.append([target.name, collector.name, "-", "-", f"skipped: {collector.reason}"])
            continue
        if collector.state is CollectorState.INVALID:
            rows.append([target.name, collector.name, "-", "-", "invalid"])
            problems.append(f"target {target.name}: collector {collector.name}: {collector.reason}")
            continue
        result = await target.run_once(collector.name)
        outcome = "ok" if result.ok else f"{result.status}: {result.error}"
        rows.append([target.name, collector.name, str(result.rows), f"{result.duration * 1000:.1f}", outcome])
        if not result.ok:
            problems.append(
                f"target {target.name}: collector {collector.name}: {result.status}: {result.error}"
            )
    return problems


def _print_table(rows: list[list[str]], out: TextIO) -> None:
    header = ["target", "collector", "rows", "ms", "result"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        cells = [
            row[0].ljust(widths[0]),
            row[1].ljust(widths[1]),
            row[2].rjust(widths[2]),
            row[3].rjust(widths[3]),
        ]
        print("  ".join([*cells, row[4]]), file=out)


async def run_check(exporter: Exporter, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Check every target and collector; return the process exit code."""
    rows: list[list[str]] = []
    problems: list[str] = []
    try:
        for target in exporter.targets.values():
            problems.extend(await _check_target(target, exporter.config.scrape_timeout, rows))
    finally:
        await exporter.close()
    if rows:
        _print_table(rows, out)
    for problem in problems:
        print(f"error: {problem}", file=err)
    ok = sum(1 for row in rows if row[4] == "ok")
    print(f"{ok} collectors ok, {len(problems)} problems", file=out)
    return 1 if problems else 0
