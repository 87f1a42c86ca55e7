"""``prefect-db-exporter doctor [--config FILE | --dsn DSN] [--target NAME] [--json] [--watch SECONDS]``."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from exporter.config import Config, config_from_dsn, load_config
from exporter.doctor.findings import ExitCode, Report
from exporter.doctor.jsonreport import render_json
from exporter.doctor.observations import DeadlockSample
from exporter.doctor.run import diagnose
from exporter.doctor.text import render_text, use_colour
from exporter.errors import ExporterError
from exporter.logs import setup_logging
from exporter.registry import Exporter

PROG = "prefect-db-exporter doctor"


def parser() -> argparse.ArgumentParser:
    """The doctor's command line."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Say what is wrong with the Prefect database right now, and what to do about it. "
        "Exit status: 0 healthy, 1 warnings, 2 critical, 3 cannot reach the database.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="the exporter's YAML config file (its targets)")
    source.add_argument("--dsn", help="one database; the password in PGPASSWORD or ~/.pgpass, not here")
    parser.add_argument("--target", help="diagnose only the target called NAME (with --config)")
    parser.add_argument("--json", action="store_true", help="print the JSON report (docs/doctor.md)")
    parser.add_argument(
        "--watch", type=float, metavar="SECONDS", help="diagnose again every SECONDS until interrupted"
    )
    return parser


def _config(args: argparse.Namespace, default_dsn: str) -> Config:
    if args.config is not None:
        return load_config(args.config)
    return config_from_dsn(args.dsn or default_dsn, None)


def _print(report: Report, args: argparse.Namespace, out: TextIO, clear: bool) -> None:
    if args.json:
        out.write(render_json(report))
    else:
        if clear and out.isatty():
            out.write("\033[H\033[2J")
        width = shutil.get_terminal_size((100, 24)).columns
        out.write(render_text(report, width, use_colour(out)))
    out.flush()


def _unreachable(report: Report, err: TextIO) -> None:
    for target in report.targets:
        if not target.reachable:
            print(f"{PROG}: {target.target}: {target.error}", file=err)


async def _run(exporter: Exporter, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    previous: dict[str, DeadlockSample | None] = {}
    try:
        while True:
            report, previous = await diagnose(
                exporter, args.target, previous=previous if args.watch else None
            )
            if report.exit_code == ExitCode.UNREACHABLE and not args.json and not args.watch:
                _unreachable(report, err)
            else:
                _print(report, args, out, clear=bool(args.watch))
            if not args.watch:
                return report.exit_code
            await asyncio.sleep(args.watch)
    finally:
        await exporter.close()


def main(argv: Sequence[str], default_dsn: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the doctor; return its exit status (never a traceback for a bad config or a dead database)."""
    args = parser().parse_args(list(argv))
    # The report is the output: the exporter's own log lines (connect failures, …) would repeat it.
    setup_logging("error", "logfmt")
    if args.watch is not None and args.watch <= 0:
        print(f"{PROG}: --watch takes a number of seconds above 0", file=err)
        return ExitCode.UNREACHABLE
    try:
        config = _config(args, default_dsn)
        exporter = Exporter.from_config(config)
    except ExporterError as error:
        print(f"{PROG}: {error}", file=err)
        return ExitCode.UNREACHABLE
    if args.target is not None and exporter.target(args.target) is None:
        known = ", ".join(exporter.targets)
        print(f"{PROG}: unknown target {args.target!r}; known targets: {known}", file=err)
        return ExitCode.UNREACHABLE
    try:
        return asyncio.run(_run(exporter, args, out, err))
    except KeyboardInterrupt:
        return ExitCode.HEALTHY
