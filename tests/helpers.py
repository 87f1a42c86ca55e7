"""Helpers for tests that run the exporter against a real database."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from devtools.pgcluster import TestDatabase
from exporter.catalog import Catalog
from exporter.config import DEFAULT_QUERY_DIR, Config, TargetConfig, Thresholds
from exporter.registry import Exporter, load_definitions
from exporter.web import make_app

PASSWORD_ENV = "PPE_TEST_EXPORTER_PASSWORD"

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def split_password(dsn: str) -> tuple[str, str | None]:
    """Return (dsn without password, password)."""
    parts = urlsplit(dsn)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=f"{user}@{host}")), password or None


def target_for(db: TestDatabase, name: str = "test", **changes: object) -> TargetConfig:
    """A target for the exporter role of ``db``, its password passed through the environment."""
    dsn, password = split_password(db.exporter_dsn)
    if password is not None:
        os.environ[PASSWORD_ENV] = password
    target = TargetConfig(name=name, dsn=dsn, password_env=PASSWORD_ENV, connect_timeout=3.0)
    return replace(target, **changes)  # type: ignore[arg-type]


def exporter_for(
    *targets: TargetConfig,
    thresholds: Thresholds | None = None,
    include: frozenset[str] = frozenset(),
    scrape_timeout: float = 8.0,
    ttl: float | None = None,
    extra_dir: Path | None = None,
    sampler_interval: float | None = None,
    max_series: int | None = None,
    sampler: bool = True,
    overlap: float | None = None,
    enable: frozenset[str] = frozenset(),
) -> Exporter:
    """The one way tests build an Exporter: the built-in catalog (plus ``extra_dir``) for ``targets``.

    ``ttl`` replaces every collector's cache TTL (so that each scrape runs the queries again);
    ``overlap`` every incremental collector's clock-skew allowance; ``enable`` turns opt-in collectors on.
    """
    config = Config(
        targets=targets,
        thresholds=thresholds or Thresholds(),
        include=include,
        enable=enable,
        scrape_timeout=scrape_timeout,
        query_dirs=(DEFAULT_QUERY_DIR, extra_dir) if extra_dir else (DEFAULT_QUERY_DIR,),
    )
    if sampler_interval is not None:
        config = replace(config, sampler_interval=sampler_interval)
    if max_series is not None:
        config = replace(config, max_series_per_metric=max_series)
    if not sampler:
        config = replace(config, sampler_enabled=False)
    catalog, classifier, releases = load_definitions(config)
    if ttl is not None:
        catalog = Catalog(tuple(replace(spec, ttl=ttl) for spec in catalog.collectors))
    if overlap is not None:
        catalog = Catalog(
            tuple(
                replace(spec, incremental=replace(spec.incremental, overlap=overlap))
                if spec.incremental
                else spec
                for spec in catalog.collectors
            )
        )
    return Exporter(config, catalog, classifier, releases)


def parse(text: str) -> Series:
    """Parse an exposition into {(sample name, labels): value}."""
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return series


def value(series: Series, name: str, **labels: str) -> float | None:
    """Return the one sample of ``name`` whose labels include ``labels``; None when absent."""
    found = [v for (n, ls), v in series.items() if n == name and set(labels.items()) <= ls]
    if len(found) > 1:
        raise AssertionError(f"{len(found)} samples of {name} match {labels}")
    return found[0] if found else None


def samples(series: Series, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """Return every sample of ``name`` whose labels include ``labels``."""
    return {ls: v for (n, ls), v in series.items() if n == name and set(labels.items()) <= ls}


async def refresh_now(exporter: Exporter) -> None:
    """Run every expired collector now, in process, and wait for them (within the scrape timeout).

    A scrape never runs queries: the refreshers do, in the background and ahead of each TTL. A test
    that changes the database and wants the very next scrape to show it refreshes explicitly here.
    """
    await exporter.refresh(exporter.config.scrape_timeout)


async def scrape(exporter: Exporter, *, refresh: bool = True) -> Series:
    """Scrape ``exporter`` in process (no HTTP) and parse the result.

    ``refresh=True``: refresh first (``refresh_now``), so the scrape shows the database as it is now;
    ``refresh=False``: exactly what a scrape serves at this moment, without waiting on the database.
    """
    if refresh:
        await refresh_now(exporter)
    return parse((await exporter.scrape()).body().decode())


@asynccontextmanager
async def serving(exporter: Exporter) -> AsyncIterator[tuple[ClientSession, str]]:
    """Serve ``exporter`` over real HTTP on a loopback port; yield a client session and the base URL."""
    server = TestServer(make_app(exporter), host="127.0.0.1")
    await server.start_server()
    try:
        async with ClientSession() as session:
            yield session, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def eventually(check: Callable[[], object], timeout: float = 20.0, interval: float = 0.2) -> object:
    """Await ``check()`` (sync or async) until it returns a truthy value; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last result: {last!r})")
