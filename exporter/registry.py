"""The exporter as a whole: a registry of Targets, built from one configuration and rebuilt on reload."""

from __future__ import annotations

import asyncio
import time

from exporter import __version__
from exporter.catalog import Catalog, load_catalog
from exporter.config import DEFAULT_RELEASES_FILE, Config
from exporter.exposition import Exposition, render_parts
from exporter.operations import Classifier, load_operations
from exporter.releases import Releases, load_releases
from exporter.status import ExporterStatus
from exporter.target import Target


class Exporter:
    """Every watched database, by name, and what ``/metrics``, ``/readyz``, ``/`` and ``doctor`` read."""

    def __init__(self, config: Config, catalog: Catalog, classifier: Classifier, releases: Releases) -> None:
        self.config = config
        self.catalog = catalog
        self.classifier = classifier
        self.releases = releases
        self.started = time.time()
        self.targets: dict[str, Target] = {
            s.target.name: Target(s, catalog, classifier, self.releases) for s in config.target_settings()
        }
        self.last_reload_ok = True
        self.last_reload_success = self.started
        self.background_started = False

    @classmethod
    def from_config(cls, config: Config) -> Exporter:
        """Load the catalog, operations and releases named by ``config``; raise on invalid input."""
        catalog, classifier, releases = load_definitions(config)
        return cls(config, catalog, classifier, releases)

    def target(self, name: str) -> Target | None:
        """Return the target called ``name``."""
        return self.targets.get(name)

    def start_background(self) -> None:
        """Start every target's background work (refreshers, samplers, server-log followers)."""
        self.background_started = True
        for target in self.targets.values():
            target.start(self.config.scrape_timeout)

    async def refresh(self, timeout: float, targets: list[Target] | None = None) -> None:
        """Run the expired collectors of every target (or of those given) now, waiting at most ``timeout``.

        Scrapes do not call this: the targets' refreshers keep the results up to date in the background.
        """
        chosen = list(self.targets.values()) if targets is None else targets
        await asyncio.gather(*(t.refresh(timeout) for t in chosen))

    def status(self, target: str | None = None) -> ExporterStatus:
        """Return a snapshot of the exporter and of every target (or of ``target`` only)."""
        chosen = [t for name, t in self.targets.items() if target is None or name == target]
        return ExporterStatus(
            version=__version__,
            started=self.started,
            config_source=self.config.source,
            reload_ok=self.last_reload_ok,
            reload_success_time=self.last_reload_success,
            targets=tuple(t.status() for t in chosen),
        )

    async def scrape(
        self, timeout: float | None = None, target: str | None = None, open_metrics: bool = False
    ) -> Exposition:
        """Render the newest good results (as OpenMetrics when asked); never waits on SQL, nor raises.

        Only a cold target (just started, or resuming after nobody scraped it for a while) makes the
        scrape wait for its first results, and then for at most ``timeout``.
        """
        chosen = list(self.targets.values()) if target is None else [self.targets[target]]
        limit = timeout or self.config.scrape_timeout
        await asyncio.gather(*(t.before_scrape(limit) for t in chosen))
        return render_parts(self.catalog, self.status(target), open_metrics)

    async def reload(self, config: Config) -> None:
        """Apply a new configuration, keeping every counter of the targets that stay.

        The new catalog, operations and releases files are loaded first; if they are invalid this
        raises and nothing changes. A target whose settings, catalog and operations are unchanged is
        kept as it is, with its connections and cached results. Any other target is rebuilt with new
        connections, and its counters (queries, transitions, sampler, deadlocks) carry over:
        Prometheus sees no counter reset.
        """
        catalog, classifier, releases = load_definitions(config)
        old = self.targets
        new: dict[str, Target] = {}
        for settings in config.target_settings():
            previous = old.get(settings.target.name)
            if previous is not None and previous.same_as(settings, catalog, classifier, releases):
                new[settings.target.name] = previous
                continue
            target = Target(settings, catalog, classifier, releases)
            if previous is not None:
                target.adopt_counters(previous)
            new[settings.target.name] = target
        self.config, self.catalog, self.classifier, self.releases = config, catalog, classifier, releases
        self.targets = new
        kept, before = {id(t) for t in new.values()}, {id(t) for t in old.values()}
        await asyncio.gather(*(t.close() for t in old.values() if id(t) not in kept))
        if self.background_started:
            for target in new.values():
                if id(target) not in before:
                    target.start(config.scrape_timeout)
        self.last_reload_ok, self.last_reload_success = True, time.time()

    @property
    def ready(self) -> bool:
        """True when at least one target is reachable."""
        return any(t.up for t in self.targets.values())

    async def close(self) -> None:
        """Stop the background work and close every connection."""
        await asyncio.gather(*(t.close() for t in self.targets.values()))


def load_definitions(config: Config) -> tuple[Catalog, Classifier, Releases]:
    """Load the catalog (as selected), the operations and the releases that ``config`` names."""
    catalog = load_catalog(config.query_dirs).select(config.include, config.exclude, config.enable)
    return catalog, load_operations(config.operations_file), load_releases(DEFAULT_RELEASES_FILE)
