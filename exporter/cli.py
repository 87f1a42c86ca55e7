"""Command line: ``prefect-db-exporter [--config FILE | --dsn URL] [--check | --check-config]``.

Flags use the Prometheus exporter-toolkit spelling (``--web.listen-address``, ``--log.level``), keep the
older spellings as aliases, and each can come from an environment variable ``PREFECT_DB_EXPORTER_<FLAG>``
(for containers and Helm values).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exporter import __version__
from exporter.catalog import load_catalog
from exporter.config import (
    DEFAULT_DSN,
    DEFAULT_QUERY_DIR,
    EXPORTER_LOG_FORMATS,
    LOG_LEVELS,
    Config,
    config_from_dsn,
    load_config,
    with_collector_flags,
)
from exporter.errors import ConfigError, ExporterError
from exporter.interpreter import tune_for_serving
from exporter.logs import setup_logging

# The serving path (aiohttp, the registry, the web stack) and each subcommand are imported where
# they are used: ``doctor`` is a probe and a 3 a.m. command, and importing the web stack first cost
# it a third of its wall clock (docs/doctor.md, Cost).
if TYPE_CHECKING:
    from exporter.registry import Exporter

log = logging.getLogger("exporter")

ENV_PREFIX = "PREFECT_DB_EXPORTER_"
DSN_ENV = f"{ENV_PREFIX}DSN"
# --collector.NAME / --no-collector.NAME from the environment: comma-separated collector names.
COLLECTORS_ENABLE_ENV = f"{ENV_PREFIX}COLLECTORS_ENABLE"
COLLECTORS_DISABLE_ENV = f"{ENV_PREFIX}COLLECTORS_DISABLE"
DEFAULT_TELEMETRY_PATH = "/metrics"
SHUTDOWN_TIMEOUT = 5.0
# The exporter-toolkit spelling of the log levels includes "warn".
_LOG_LEVEL_NAMES = {"warn": "warning"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
_COLLECTOR_FLAG = re.compile(r"^--(no-)?collector\.([A-Za-z0-9_]+)$")


def env_name(dest: str) -> str:
    """The environment variable that sets the flag stored in ``dest``."""
    return ENV_PREFIX + dest.upper()


def _log_level(value: str) -> str:
    level = _LOG_LEVEL_NAMES.get(value.lower(), value.lower())
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of debug, info, warn, warning, error, got {value!r}")
    return level


def _telemetry_path(value: str) -> str:
    if not value.startswith("/") or value in ("/", "/healthz", "/readyz", "/-/reload"):
        raise argparse.ArgumentTypeError(f"expected a path such as /metrics, not {value!r}")
    return value


def _flag(parser: argparse.ArgumentParser | Any, *names: str, dest: str, help: str, **kwargs: Any) -> None:
    """Add a flag that its environment variable can also set (the command line wins)."""
    parser.add_argument(*names, dest=dest, help=f"{help} [env {env_name(dest)}]", **kwargs)


def _builtin_collectors() -> str:
    try:
        return ", ".join(
            c.name + ("" if c.enabled else " (off unless named)")
            for c in load_catalog([DEFAULT_QUERY_DIR]).collectors
        )
    except ExporterError:
        return "(the built-in catalog is invalid: run --check-config)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prefect-db-exporter",
        description="Prometheus exporter for the PostgreSQL database behind a self-hosted Prefect Server.",
        epilog=(
            "Collectors: --collector.NAME runs collector NAME, --no-collector.NAME does not, beside the "
            f"config's collectors.include/exclude; from the environment, {COLLECTORS_ENABLE_ENV} and "
            f"{COLLECTORS_DISABLE_ENV} take comma-separated names. Built-in: {_builtin_collectors()}. "
            "Every flag can be set by the environment variable named after it; the command line wins. "
            "Subcommand: 'prefect-db-exporter doctor' says what is wrong now and what to do "
            "(see 'prefect-db-exporter doctor --help')."
        ),
    )
    source = parser.add_mutually_exclusive_group()
    _flag(
        source,
        "--config",
        dest="config",
        type=Path,
        help="YAML config file (targets, thresholds, collectors)",
    )
    _flag(
        source,
        "--dsn",
        dest="dsn",
        help="one database, e.g. postgresql://prefect_exporter@db/prefect; give the password in PGPASSWORD "
        "or ~/.pgpass, not here",
    )
    _flag(
        parser,
        "--web.listen-address",
        "--listen",
        dest="web_listen_address",
        metavar="HOST:PORT",
        help="address to serve on (default 0.0.0.0:9650, or listen: in the config)",
    )
    _flag(
        parser,
        "--web.telemetry-path",
        dest="web_telemetry_path",
        type=_telemetry_path,
        metavar="PATH",
        help=f"path of the metrics (default {DEFAULT_TELEMETRY_PATH})",
    )
    _flag(
        parser,
        "--web.config.file",
        dest="web_config_file",
        type=Path,
        help="TLS and basic-auth settings in the Prometheus exporter-toolkit format (or web_config_file:)",
    )
    _flag(
        parser,
        "--web.enable-lifecycle",
        dest="web_enable_lifecycle",
        action="store_const",
        const=True,
        help="serve POST /-/reload (behind basic auth when configured); SIGHUP reloads in any case",
    )
    _flag(
        parser,
        "--log.level",
        "--log-level",
        dest="log_level",
        type=_log_level,
        metavar="{debug,info,warn,error}",
        help="the exporter's log level (default info, or log.level: in the config)",
    )
    _flag(
        parser,
        "--log.format",
        "--log-format",
        dest="log_format",
        choices=EXPORTER_LOG_FORMATS,
        help="the exporter's log format (default logfmt, or log.format: in the config)",
    )
    _flag(
        parser,
        "--check",
        dest="check",
        action="store_const",
        const=True,
        help="connect, run every collector once, print a table, exit (1 on any problem)",
    )
    _flag(
        parser,
        "--check-config",
        dest="check_config",
        action="store_const",
        const=True,
        help="validate the config, the collector catalog and the web config without a database, exit "
        "(1 on any problem, each as file:line: key)",
    )
    parser.add_argument("--version", action="version", version=f"prefect-db-exporter {__version__}")
    return parser


def _from_environment(
    parser: argparse.ArgumentParser, args: argparse.Namespace, env: Mapping[str, str]
) -> None:
    """Fill every flag the command line left unset from its environment variable."""
    # A source given on the command line overrides the other source's variable, too.
    given_source = args.config is not None or args.dsn is not None
    for action in parser._actions:
        if action.dest in ("help", "version") or getattr(args, action.dest) is not None:
            continue
        if given_source and action.dest in ("config", "dsn"):
            continue
        name = env_name(action.dest)
        raw = env.get(name)
        if raw is None:
            continue
        if isinstance(action, argparse._StoreConstAction):
            if raw.lower() not in _TRUE + _FALSE:
                parser.error(f"{name}={raw!r}: expected true or false")
            setattr(args, action.dest, raw.lower() in _TRUE)
            continue
        try:
            value = action.type(raw) if callable(action.type) else raw
        except (argparse.ArgumentTypeError, ValueError) as error:
            parser.error(f"{name}={raw!r}: {error}")
        if action.choices is not None and value not in action.choices:
            parser.error(f"{name}={raw!r}: expected one of {', '.join(map(str, action.choices))}")
        setattr(args, action.dest, value)
    if args.config is not None and args.dsn is not None:
        parser.error("give either a config file or a DSN, not both (command line or environment)")


def _names(text: str | None) -> set[str]:
    return {name.strip() for name in (text or "").split(",") if name.strip()}


def parse_args(argv: Sequence[str] | None, env: Mapping[str, str] | None = None) -> argparse.Namespace:
    """Parse the command line, the environment filling what it leaves unset."""
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    environ = os.environ if env is None else env
    _from_environment(parser, args, environ)
    enable, disable = _names(environ.get(COLLECTORS_ENABLE_ENV)), _names(environ.get(COLLECTORS_DISABLE_ENV))
    flagged_on: set[str] = set()
    flagged_off: set[str] = set()
    for arg in rest:
        match = _COLLECTOR_FLAG.match(arg)
        if match is None:
            parser.error(f"unrecognized argument: {arg}")
        (flagged_off if match.group(1) else flagged_on).add(match.group(2))
    if flagged_on or flagged_off:  # the command line replaces the environment's choice
        enable, disable = flagged_on, flagged_off
    if enable & disable:
        parser.error(f"collector(s) both enabled and disabled: {', '.join(sorted(enable & disable))}")
    args.collectors_enable, args.collectors_disable = frozenset(enable), frozenset(disable)
    return args


def build_config(args: argparse.Namespace) -> Config:
    """Turn the command line into a Config (file, --dsn, environment or the default DSN)."""
    listen = args.web_listen_address
    if args.config is not None:
        config = load_config(args.config)
        if listen:
            parsed = config_from_dsn(DEFAULT_DSN, listen)
            config = replace(config, listen_host=parsed.listen_host, listen_port=parsed.listen_port)
    else:
        config = config_from_dsn(args.dsn or DEFAULT_DSN, listen)
    if args.web_config_file is not None:
        config = replace(config, web_config_file=args.web_config_file)
    if args.log_level or args.log_format:
        config = replace(
            config,
            log_level=args.log_level or config.log_level,
            log_format=args.log_format or config.log_format,
        )
    flagged = args.collectors_enable | args.collectors_disable
    if flagged:
        known = {c.name for c in load_catalog(config.query_dirs).collectors}
        if flagged - known:
            raise ConfigError(
                "invalid command line",
                [
                    f"--collector.{name}: {name!r} is not a collector; known: {', '.join(sorted(known))}"
                    for name in sorted(flagged - known)
                ],
            )
    return with_collector_flags(config, args.collectors_enable, args.collectors_disable)


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
    from aiohttp import web

    from exporter.web import make_app
    from exporter.webconfig import load_web_config

    config = exporter.config
    web_config = load_web_config(config.web_config_file) if config.web_config_file else None
    reload = reloader(exporter, args)
    app = make_app(
        exporter,
        web_config,
        reload if args.web_enable_lifecycle else None,
        telemetry_path=args.web_telemetry_path or DEFAULT_TELEMETRY_PATH,
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    tune_for_serving()
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


# Subcommands: ``prefect-db-exporter NAME ...`` runs SUBCOMMANDS[NAME] with the remaining arguments.
def _doctor(rest: Sequence[str]) -> int:
    # The doctor has its own flags (exporter/doctor/command.py); its DSN default is the exporter's.
    from exporter.doctor import command

    return command.main(rest, os.environ.get(DSN_ENV) or DEFAULT_DSN)


SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"doctor": _doctor}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exporter (or a subcommand); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        return SUBCOMMANDS[argv[0]](argv[1:])
    args = parse_args(argv)
    setup_logging(args.log_level or "info", args.log_format or "logfmt")
    try:
        config = build_config(args)
        if args.check_config:
            from exporter.configcheck import check_config

            return check_config(config)
        setup_logging(config.log_level, config.log_format)
        from exporter.registry import Exporter

        exporter = Exporter.from_config(config)
        if args.check:
            from exporter.check import run_check

            return asyncio.run(run_check(exporter))
        asyncio.run(serve(exporter, args))
    except ExporterError as error:
        print(f"prefect-db-exporter: {error}", file=sys.stderr)
        return 1 if args.check or args.check_config else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
