"""Command line: ``prefect-db-exporter [--config FILE | --dsn URL] [--check]``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web

from exporter import __version__
from exporter.check import run_check
from exporter.config import DEFAULT_DSN, Config, config_from_dsn, load_config
from exporter.doctor import command as doctor
from exporter.errors import ExporterError
from exporter.logs import setup_logging
from exporter.registry import Exporter
from exporter.web import make_app
from exporter.webconfig import load_web_config

log = logging.getLogger("exporter")

DSN_ENV = "PREFECT_DB_EXPORTER_DSN"
SHUTDOWN_TIMEOUT = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefect-db-exporter",
        description="Prometheus exporter for the PostgreSQL database behind a self-hosted Prefect Server.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="YAML config file (targets, thresholds, collectors)")
    source.add_argument(
        "--dsn",
        help=f"one database, e.g. postgresql://prefect_exporter@db/prefect (or set {DSN_ENV}); "
        "give the password in PGPASSWORD or ~/.pgpass, not here",
    )
    parser.add_argument(
        "--listen", help="HOST:PORT to serve on (default 0.0.0.0:9650, or listen: in the config)"
    )
    parser.add_argument("--check", action="store_true", help="run every collector once, print a table, exit")
    parser.add_argument(
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        help="TLS and basic-auth settings in the Prometheus exporter-toolkit format (or web_config_file:)",
    )
    parser.add_argument(
        "--web.enable-lifecycle",
        dest="enable_lifecycle",
        action="store_true",
        help="serve POST /-/reload (behind basic auth when configured); SIGHUP reloads in any case",
    )
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", choices=["logfmt", "json"])
    parser.add_argument("--version", action="version", version=f"prefect-db-exporter {__version__}")
    return parser


def build_config(args: argparse.Namespace) -> Config:
    """Turn the command line into a Config (file, --dsn, environment or the default DSN)."""
    if args.config is not None:
        config = load_config(args.config)
        if args.listen:
            listen = config_from_dsn(DEFAULT_DSN, args.listen)
            config = replace(config, listen_host=listen.listen_host, listen_port=listen.listen_port)
    else:
        config = config_from_dsn(args.dsn or os.environ.get(DSN_ENV) or DEFAULT_DSN, args.listen)
    if args.web_config_file is not None:
        config = replace(config, web_config_file=args.web_config_file)
    if args.log_level or args.log_format:
        config = replace(
            config,
            log_level=args.log_level or config.log_level,
            log_format=args.log_format or config.log_format,
        )
    return config


def reloader(exporter: Exporter, args: argparse.Namespace) -> Callable[[], Coroutine[Any, Any, str | None]]:
    """Return the coroutine function that re-reads the configuration and applies it."""

    async def reload() -> str | None:
        try:
            config = build_config(args)
            await exporter.reload(config)
        except ExporterError as error:
            exporter.last_reload_ok = False
            log.error("reload failed; keeping the previous configuration", extra={"fields": {"error": error}})
            return str(error)
        setup_logging(config.log_level, config.log_format)
        log.info("configuration reloaded", extra={"fields": {"source": config.source}})
        return None

    return reload


async def serve(exporter: Exporter, args: argparse.Namespace) -> None:
    """Serve HTTP until SIGTERM or SIGINT, then shut down within a bounded time; SIGHUP reloads."""
    config = exporter.config
    web_config = load_web_config(config.web_config_file) if config.web_config_file else None
    reload = reloader(exporter, args)
    app = make_app(exporter, web_config, reload if args.enable_lifecycle else None)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    ssl_context = web_config.ssl_context() if web_config else None
    site = web.TCPSite(runner, config.listen_host, config.listen_port, ssl_context=ssl_context)
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        address = f"{config.listen_host}:{config.listen_port}"
        raise ExporterError(f"cannot listen on {address}: {error.strerror}") from None
    targets = ", ".join(f"{t.name}={t.dsn}" for t in exporter.status().targets)
    log.info(
        "listening",
        extra={
            "fields": {
                "address": f"{config.listen_host}:{config.listen_port}",
                "targets": targets,
                "version": __version__,
            }
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[str | None]] = set()

    def on_hangup() -> None:
        task = asyncio.create_task(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    await stop.wait()
    log.info("shutting down")
    try:
        await asyncio.wait_for(runner.cleanup(), SHUTDOWN_TIMEOUT)
    except TimeoutError:
        log.warning("shutdown took too long; exiting anyway")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter; return the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["doctor"]:
        # The doctor subcommand has its own flags (exporter/doctor/command.py).
        return doctor.main(argv[1:], os.environ.get(DSN_ENV) or DEFAULT_DSN)
    args = _parser().parse_args(argv)
    setup_logging(args.log_level or "info", args.log_format or "logfmt")
    try:
        config = build_config(args)
        setup_logging(config.log_level, config.log_format)
        exporter = Exporter.from_config(config)
        if args.check:
            return asyncio.run(run_check(exporter))
        asyncio.run(serve(exporter, args))
    except ExporterError as error:
        print(f"prefect-db-exporter: {error}", file=sys.stderr)
        return 2 if not args.check else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
