"""The exporter's configuration: a strict YAML file, or a single ``--dsn``."""

from __future__ import annotations

import os
import re
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from exporter.errors import ConfigError, Problems
from exporter.redaction import redact
from exporter.validation import (
    Section,
    as_bool,
    as_path,
    as_positive_int,
    as_seconds,
    as_str,
    as_str_list,
    one_of,
)
from exporter.yamlload import load_mapping, read_document

DEFAULT_DSN = "postgresql://prefect@localhost/prefect"


def _default_query_dir() -> Path:
    """Where the built-in collectors are: inside the package when installed from a wheel."""
    package_dir = Path(__file__).resolve().parent
    packaged = package_dir / "queries"
    # A source checkout (and an editable install) keeps them at the top of the repository.
    return packaged if packaged.is_dir() else package_dir.parent / "queries"


DEFAULT_QUERY_DIR = _default_query_dir()
DEFAULT_OPERATIONS_FILE = DEFAULT_QUERY_DIR / "operations.yaml"
DEFAULT_RELEASES_FILE = DEFAULT_QUERY_DIR / "prefect_releases.yaml"
# Formats of the PostgreSQL server log that the deadlock follower reads (log_destination).
SERVER_LOG_FORMATS = ("stderr", "csvlog", "jsonlog")
# Levels and formats of the exporter's own log.
LOG_LEVELS = ("debug", "info", "warning", "error")
EXPORTER_LOG_FORMATS = ("logfmt", "json")
_TARGET_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


@dataclass(frozen=True)
class Thresholds:
    """Thresholds the queries read as ``prefect_db_exporter.<name>`` session settings."""

    pending_stale_seconds: float = 600.0
    late_after_seconds: float = 15.0
    heartbeat_stale_seconds: float = 600.0
    heartbeat_lookback_seconds: float = 3600.0
    worker_recent_seconds: float = 86400.0
    worker_offline_multiple: float = 3.0

    def as_settings(self) -> dict[str, str]:
        """Return the thresholds as custom session settings."""
        return {f"prefect_db_exporter.{f.name}": repr(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class TargetConfig:
    """One Prefect database to watch."""

    name: str
    dsn: str
    password_env: str | None = None
    password_file: Path | None = None
    pool_size: int = 2
    connect_timeout: float = 5.0
    statement_timeout: float = 10.0
    lock_timeout: float = 0.5
    idle_in_transaction_timeout: float = 10.0
    server_log: str | None = None
    server_log_format: str | None = None

    @property
    def safe_dsn(self) -> str:
        """The DSN with any password masked, for logs and pages."""
        return redact(self.dsn)


@dataclass(frozen=True)
class Config:
    """The whole, validated configuration."""

    targets: tuple[TargetConfig, ...]
    listen_host: str = "0.0.0.0"
    listen_port: int = 9650
    scrape_timeout: float = 8.0
    max_series_per_metric: int = 2000
    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    # Opt-in collectors (``enabled: false`` in their header) to run as well.
    enable: frozenset[str] = frozenset()
    query_dirs: tuple[Path, ...] = (DEFAULT_QUERY_DIR,)
    thresholds: Thresholds = field(default_factory=Thresholds)
    operations_file: Path = DEFAULT_OPERATIONS_FILE
    sampler_enabled: bool = True
    sampler_interval: float = 1.0
    log_level: str = "info"
    log_format: str = "logfmt"
    web_config_file: Path | None = None
    source: str = "command line"

    def target_settings(self) -> tuple[TargetSettings, ...]:
        """Return what shapes each target, in the order of ``targets``."""
        return tuple(
            TargetSettings(
                target,
                self.thresholds,
                self.max_series_per_metric,
                self.sampler_enabled,
                self.sampler_interval,
            )
            for target in self.targets
        )


@dataclass(frozen=True)
class TargetSettings:
    """Everything in the configuration that shapes how one target is watched.

    A reload keeps a target whose settings (and catalog and operations) are unchanged as it is,
    with its connections and cached results.
    """

    target: TargetConfig
    thresholds: Thresholds
    max_series_per_metric: int
    sampler_enabled: bool
    sampler_interval: float


def default(cls: type[Any], name: str) -> Any:
    """Return the default of field ``name`` of dataclass ``cls``: the one place defaults are written."""
    found = next(f for f in fields(cls) if f.name == name)
    if found.default is not MISSING:
        return found.default
    assert found.default_factory is not MISSING, f"{cls.__name__}.{name} has no default"
    return found.default_factory()


def _check_dsn(value: object) -> str:
    dsn = as_str(value)
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(
            f"expected a URL such as postgresql://prefect_exporter@db-host:5432/prefect, got {redact(dsn)!r}"
        )
    # The driver would only fail at connect time (with a bare OverflowError), so check ports now;
    # libpq's multi-host form host1:5432,host2:5433 is allowed.
    hosts = parts.netloc.rpartition("@")[2]
    for host in hosts.split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        _, colon, number = port.rpartition(":")
        if colon and number and not (number.isdigit() and 0 < int(number) < 65536):
            raise ValueError(f"invalid port {number!r} in {redact(dsn)!r}: expected 1 to 65535")
    return dsn


def _target_name_from_dsn(dsn: str) -> str:
    database = unquote(urlsplit(dsn).path.lstrip("/")) or "prefect"
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", database)[:64]


def _parse_listen(value: object) -> tuple[str, int]:
    text = as_str(value)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT such as 0.0.0.0:9650, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _default_listen() -> tuple[str, int]:
    return default(Config, "listen_host"), default(Config, "listen_port")


def as_series_cap(value: object) -> int:
    """Accept a series cap of at least 2 (one kept series and the ``other`` bucket)."""
    cap = as_positive_int(value)
    if cap < 2:
        raise ValueError("at least 2: one series plus the 'other' bucket")
    return cap


def _check_target_name(value: object) -> str:
    name = as_str(value)
    if not _TARGET_NAME.match(name):
        raise ValueError(f"use 1-64 letters, digits or _.:- (it becomes the target label), got {name!r}")
    return name


def _read_thresholds(section: Section | None) -> Thresholds:
    if section is None:
        return Thresholds()
    return Thresholds(
        **{f.name: section.get(f.name, as_seconds, default(Thresholds, f.name)) for f in fields(Thresholds)}
    )


# How each key of a target is read; its default is the TargetConfig field's.
_TARGET_READERS = {
    "password_env": as_str,
    "password_file": as_str,
    "pool_size": as_positive_int,
    "connect_timeout": as_seconds,
    "statement_timeout": as_seconds,
    "lock_timeout": as_seconds,
    "idle_in_transaction_timeout": as_seconds,
    "server_log": as_str,
    "server_log_format": one_of(*SERVER_LOG_FORMATS),
}


def _read_target(section: Section) -> TargetConfig | None:
    dsn = section.get("dsn", _check_dsn)
    # Read every key even when the DSN is bad, so that all problems are reported at once.
    values = {
        key: section.get(key, read, default(TargetConfig, key)) for key, read in _TARGET_READERS.items()
    }
    if values["password_file"] is not None:
        values["password_file"] = Path(values["password_file"])
    target = TargetConfig(
        name=section.get("name", _check_target_name, None) or _target_name_from_dsn(dsn or ""),
        dsn=dsn or "",
        **values,
    )
    if target.pool_size > 4:
        section.problem("pool_size", "at most 4: the exporter must stay a light client of the database")
    if target.password_env and target.password_env not in os.environ:
        section.problem("password_env", f"environment variable {target.password_env} is not set")
    if target.password_file and not target.password_file.is_file():
        section.problem("password_file", f"no such file: {target.password_file}")
    return target if dsn else None


_TOP_KEYS = (
    "listen",
    "scrape_timeout",
    "max_series_per_metric",
    "targets",
    "collectors",
    "thresholds",
    "sampler",
    "log",
    "web_config_file",
)
_TARGET_KEYS = tuple(f.name for f in fields(TargetConfig))
_COLLECTOR_KEYS = ("include", "exclude", "enable", "extra_query_dirs", "operations_file")
_SAMPLER_KEYS = ("enabled", "interval")
_LOG_KEYS = ("level", "format")


def parse_config(text: str, source: str) -> Config:
    """Validate a config document; raise ConfigError listing every problem."""
    problems = Problems(source)
    expected = "a mapping of keys such as targets:, thresholds:, collectors:"
    document = load_mapping(text, problems, expected, empty_ok=True)
    if document is None:
        raise ConfigError(f"invalid configuration file {source}", problems.items)
    top = Section(document, "", problems, _TOP_KEYS)
    base_dir = Path(source).resolve().parent

    targets = [t for s in top.sections("targets", _TARGET_KEYS) if (t := _read_target(s))]
    if "targets" not in document:
        targets = [TargetConfig(name=_target_name_from_dsn(DEFAULT_DSN), dsn=DEFAULT_DSN)]
    elif not targets and not problems.items:
        top.problem("targets", "list at least one target with a dsn")
    seen: set[str] = set()
    for index, target in enumerate(targets):
        if target.name in seen:
            top.problem("targets", f"item {index}: target name {target.name!r} is used twice")
        seen.add(target.name)

    collectors = top.section("collectors", _COLLECTOR_KEYS)
    include = exclude = enable = frozenset[str]()
    query_dirs = [DEFAULT_QUERY_DIR]
    operations_file = DEFAULT_OPERATIONS_FILE
    if collectors is not None:
        operations_file = collectors.get("operations_file", as_path(base_dir), DEFAULT_OPERATIONS_FILE)
        if not operations_file.is_file():
            collectors.problem("operations_file", f"no such file: {operations_file}")
        include = frozenset(collectors.get("include", as_str_list, ()))
        exclude = frozenset(collectors.get("exclude", as_str_list, ()))
        enable = frozenset(collectors.get("enable", as_str_list, ()))
        for raw in collectors.get("extra_query_dirs", as_str_list, ()):
            try:
                path = as_path(base_dir)(raw)
            except ValueError as error:
                collectors.problem("extra_query_dirs", str(error))
                continue
            if not path.is_dir():
                collectors.problem("extra_query_dirs", f"no such directory: {path}")
            query_dirs.append(path)

    sampler = top.section("sampler", _SAMPLER_KEYS)
    web_config_file = top.get("web_config_file", as_path(base_dir), None)
    if web_config_file is not None and not web_config_file.is_file():
        top.problem("web_config_file", f"no such file: {web_config_file}")
    listen_host, listen_port = top.get("listen", _parse_listen, _default_listen())
    log = top.section("log", _LOG_KEYS)

    def nested(section: Section | None, key: str, read: Any, field_name: str) -> Any:
        return section.get(key, read, default(Config, field_name)) if section else default(Config, field_name)

    config = Config(
        targets=tuple(targets),
        listen_host=listen_host,
        listen_port=listen_port,
        scrape_timeout=top.get("scrape_timeout", as_seconds, default(Config, "scrape_timeout")),
        max_series_per_metric=top.get(
            "max_series_per_metric", as_series_cap, default(Config, "max_series_per_metric")
        ),
        include=include,
        exclude=exclude,
        enable=enable,
        query_dirs=tuple(query_dirs),
        thresholds=_read_thresholds(top.section("thresholds", [f.name for f in fields(Thresholds)])),
        operations_file=operations_file,
        sampler_enabled=nested(sampler, "enabled", as_bool, "sampler_enabled"),
        sampler_interval=nested(sampler, "interval", as_seconds, "sampler_interval"),
        log_level=nested(log, "level", one_of(*LOG_LEVELS), "log_level"),
        log_format=nested(log, "format", one_of(*EXPORTER_LOG_FORMATS), "log_format"),
        web_config_file=web_config_file,
        source=source,
    )
    if problems.items:
        raise ConfigError(f"invalid configuration file {source}", problems.items)
    return config


def with_collector_flags(config: Config, enable: frozenset[str], disable: frozenset[str]) -> Config:
    """Apply ``--collector.NAME`` (``enable``) and ``--no-collector.NAME`` (``disable``) to ``config``.

    The one place where the command line's collector choice meets the config's: a flag wins over
    collectors.exclude and collectors.include; ``disable`` goes to exclude (which the catalog applies
    after include, so disabling the last included collector never means "all"); ``enable`` also turns
    opt-in collectors on (collectors.enable).
    """
    if not enable and not disable:
        return config
    include = config.include | enable if config.include else config.include
    return replace(
        config, include=include, exclude=(config.exclude - enable) | disable, enable=config.enable | enable
    )


def load_config(path: Path) -> Config:
    """Read and validate the config file at ``path``."""
    return parse_config(read_document(path, ConfigError, "configuration file"), str(path))


def config_from_dsn(dsn: str, listen: str | None = None) -> Config:
    """Build the one-target configuration of ``--dsn``."""
    problems = Problems("--dsn")
    try:
        _check_dsn(dsn)
        host, port = _parse_listen(listen) if listen else _default_listen()
    except ValueError as error:
        problems.add(None, "", str(error))
        raise ConfigError("invalid command line", problems.items) from None
    target = TargetConfig(name=_target_name_from_dsn(dsn), dsn=dsn)
    return Config(targets=(target,), listen_host=host, listen_port=port)
