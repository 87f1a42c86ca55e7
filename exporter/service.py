"""The exporter as a whole: its config, its catalog, one collector per target, and the samplers."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import unquote, urlsplit

from exporter.catalog import Catalog, load_catalog
from exporter.collection import TargetCollector
from exporter.config import Config, TargetConfig
from exporter.database import TargetDatabase
from exporter.deadlock_log import DeadlockLog
from exporter.exposition import render
from exporter.operations import Classifier, load_operations
from exporter.sampler import Sampler


def database_name(target: TargetConfig) -> str:
    """Return the database a target's DSN names (the server log's database filter)."""
    return unquote(urlsplit(target.dsn).path.lstrip("/")) or "prefect"


class Exporter:
    """Everything ``/metrics``, ``/readyz`` and ``/`` need."""

    def __init__(self, config: Config, catalog: Catalog, classifier: Classifier) -> None:
        self.config = config
        self.catalog = catalog
        self.classifier = classifier
        self.started = time.time()
        self.targets: list[TargetCollector] = []
        self.samplers: dict[str, Sampler] = {}
        self.deadlock_logs: dict[str, DeadlockLog] = {}
        self.last_reload_ok = True
        self.last_reload_success = self.started
        self.background_started = False
        for target in config.targets:
            self._add_target(target)

    def _add_target(self, target: TargetConfig) -> None:
        config = self.config
        db = TargetDatabase(target, config.thresholds)
        self.targets.append(TargetCollector(db, self.catalog, config.max_series_per_metric))
        if config.sampler_enabled:
            self.samplers[target.name] = Sampler(db, self.classifier, config.sampler_interval)
        if target.server_log:
            self.deadlock_logs[target.name] = DeadlockLog(
                target.server_log, self.classifier, database_name(target), target.server_log_format
            )

    @classmethod
    def from_config(cls, config: Config) -> Exporter:
        """Load the catalog and operations named by ``config``; raise on invalid input."""
        catalog = load_catalog(config.query_dirs).select(config.include, config.exclude)
        return cls(config, catalog, load_operations(config.operations_file))

    def target(self, name: str) -> TargetCollector | None:
        """Return the target called ``name``."""
        return next((t for t in self.targets if t.name == name), None)

    def start_background(self) -> None:
        """Start the samplers and server-log followers."""
        self.background_started = True
        for sampler in self.samplers.values():
            sampler.start()
        for follower in self.deadlock_logs.values():
            follower.start()

    async def refresh(self, timeout: float, targets: list[TargetCollector] | None = None) -> None:
        """Refresh every target (or those given) in parallel, within ``timeout``."""
        chosen = self.targets if targets is None else targets
        await asyncio.gather(*(t.refresh(timeout) for t in chosen))

    async def scrape(self, timeout: float | None = None, target: str | None = None) -> bytes:
        """Refresh and render; never raises because a database is slow or down."""
        chosen = self.targets if target is None else [t for t in self.targets if t.name == target]
        await self.refresh(timeout or self.config.scrape_timeout, chosen)
        names = {t.name for t in chosen}
        samplers = {n: s for n, s in self.samplers.items() if n in names}
        logs = {n: f for n, f in self.deadlock_logs.items() if n in names}
        reload_state = (self.last_reload_ok, self.last_reload_success)
        return render(self.catalog, chosen, samplers, logs, reload_state)

    async def reload(self, config: Config) -> None:
        """Apply a new configuration, keeping every counter of the targets that stay.

        The new catalog and operations file are loaded first; if they are invalid this raises and
        nothing changes. A target whose settings changed gets new connections, but its counters
        (queries, transitions, sampler, deadlocks) carry over: Prometheus sees no counter reset.
        """
        catalog = load_catalog(config.query_dirs).select(config.include, config.exclude)
        classifier = load_operations(config.operations_file)
        old_targets = {t.name: t for t in self.targets}
        old_samplers, old_logs = self.samplers, self.deadlock_logs
        self.config, self.catalog, self.classifier = config, catalog, classifier
        self.targets, self.samplers, self.deadlock_logs = [], {}, {}
        for target in config.targets:
            self._add_target(target)
        for collector in self.targets:
            old = old_targets.pop(collector.name, None)
            if old is not None:
                collector.adopt_counters(old)
            sampler, old_sampler = self.samplers.get(collector.name), old_samplers.pop(collector.name, None)
            if sampler is not None and old_sampler is not None:
                sampler.adopt_counters(old_sampler)
            follower, old_follower = (
                self.deadlock_logs.get(collector.name),
                old_logs.pop(collector.name, None),
            )
            if follower is not None and old_follower is not None:
                follower.adopt_counters(old_follower)
            if old is not None:
                await old.close()
            if old_sampler is not None:
                await old_sampler.stop()
            if old_follower is not None:
                await old_follower.stop()
        # Targets that are gone.
        await asyncio.gather(
            *(t.close() for t in old_targets.values()),
            *(s.stop() for s in old_samplers.values()),
            *(f.stop() for f in old_logs.values()),
        )
        if self.background_started:
            self.start_background()
        self.last_reload_ok, self.last_reload_success = True, time.time()

    @property
    def ready(self) -> bool:
        """True when at least one target is reachable."""
        return any(t.up for t in self.targets)

    async def close(self) -> None:
        """Stop the background work and close every connection."""
        await asyncio.gather(
            *(s.stop() for s in self.samplers.values()),
            *(f.stop() for f in self.deadlock_logs.values()),
            *(t.close() for t in self.targets),
        )
