"""``--check``: connect to every target, run every collector once, print a table, fail on any problem."""

from __future__ import annotations

import sys
from typing import TextIO

from exporter.collection import TargetCollector
from exporter.errors import ConnectError, QueryError
from exporter.service import Exporter


async def _check_target(target: TargetCollector, timeout: float, rows: list[list[str]]) -> list[str]:
    problems: list[str] = []
    try:
        await target.db.ensure_connected()
        facts = await target.db.refresh_facts(timeout)
        await target.gate_and_validate(timeout)
    except (ConnectError, QueryError) as error:
        return [f"target {target.name}: {error}"]
    if not facts.has_prefect_schema:
        missing = ", ".join(facts.missing_prefect_tables())
        problems.append(
            f"target {target.name}: no Prefect schema in {target.db.config.safe_dsn} (missing or unreadable: "
            f"{missing}); is this Prefect's database, and did deploy/exporter-role.sql grant SELECT?"
        )
    for spec in target.catalog.collectors:
        if spec.name in target.skipped:
            rows.append([target.name, spec.name, "-", "-", f"skipped: {target.skipped[spec.name]}"])
            continue
        if spec.name in target.broken:
            rows.append([target.name, spec.name, "-", "-", "invalid"])
            problems.append(f"target {target.name}: collector {spec.name}: {target.broken[spec.name]}")
            continue
        result = await target.run_once(spec)
        outcome = "ok" if result.ok else f"{result.status}: {result.error}"
        rows.append([target.name, spec.name, str(result.rows), f"{result.duration * 1000:.1f}", outcome])
        if not result.ok:
            problems.append(f"target {target.name}: collector {spec.name}: {result.status}: {result.error}")
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
        for target in exporter.targets:
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
