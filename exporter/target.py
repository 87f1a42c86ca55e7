"""One watched database: its connections, its collector runs, its sampler and its server-log follower."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from exporter.catalog import Catalog
from exporter.collection import CollectorRuns
from exporter.config import TargetConfig, TargetSettings
from exporter.database import TargetDatabase
from exporter.deadlock_log import DeadlockLog
from exporter.facts import TargetFacts
from exporter.operations import Classifier
from exporter.refresher import Refresher
from exporter.releases import Releases
from exporter.sampler import Sampler
from exporter.status import CollectorResult, TargetStatus


def database_name(target: TargetConfig) -> str:
    """Return the database a target's DSN names (the server log's database filter)."""
    return unquote(urlsplit(target.dsn).path.lstrip("/")) or "prefect"


class Target:
    """Everything the exporter does with one Prefect database, with one lifecycle.

    ``start`` begins the background work (refresher, sampler, log follower), ``before_scrape`` notes a
    scrape (waiting only while the target is cold), ``refresh`` brings the collector results up to date
    now and waits for them, ``status`` publishes a snapshot, ``adopt_counters`` takes over the counters
    of the target this one replaces on reload, and ``close`` ends it all.
    """

    def __init__(
        self, settings: TargetSettings, catalog: Catalog, classifier: Classifier, releases: Releases
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.classifier = classifier
        self.releases = releases
        config = settings.target
        self.db = TargetDatabase(config, settings.thresholds)
        self.runs = CollectorRuns(self.db, catalog, settings.max_series_per_metric)
        self.refresher = Refresher(self.runs)
        self.sampler = (
            Sampler(self.db, classifier, settings.sampler_interval) if settings.sampler_enabled else None
        )
        self.server_log = (
            DeadlockLog(config.server_log, classifier, database_name(config), config.server_log_format)
            if config.server_log
            else None
        )

    @property
    def name(self) -> str:
        """The target's name (its ``target`` label)."""
        return self.settings.target.name

    @property
    def up(self) -> bool:
        """True when the database answered the latest refresh."""
        return self.runs.up

    def same_as(
        self, settings: TargetSettings, catalog: Catalog, classifier: Classifier, releases: Releases
    ) -> bool:
        """True when a target built from these would be this one (a reload keeps it as it is)."""
        return (
            self.settings == settings
            and self.catalog == catalog
            and self.classifier == classifier
            and self.releases == releases
        )

    def start(self, refresh_timeout: float) -> None:
        """Start the background work: the refresher, the sampler and the server-log follower."""
        self.refresher.start(refresh_timeout)
        if self.sampler is not None:
            self.sampler.start()
        if self.server_log is not None:
            self.server_log.start()

    async def before_scrape(self, timeout: float) -> None:
        """Note a scrape; wait (at most ``timeout``) only while there is nothing to serve yet."""
        await self.refresher.before_scrape(timeout)

    async def refresh(self, timeout: float) -> None:
        """Run the expired collectors now and wait for them, at most ``timeout`` (callers share a round)."""
        await self.runs.refresh(timeout)

    async def validate(self, timeout: float) -> TargetFacts:
        """Connect, read the target's facts and decide which collectors run here (for ``--check``).

        Raises ConnectError or QueryError when the database cannot be used.
        """
        await self.db.ensure_connected()
        facts = await self.db.refresh_facts(timeout)
        await self.runs.gate_and_validate(timeout)
        return facts

    async def run_once(self, collector: str) -> CollectorResult:
        """Run one collector now, ignoring its cache (for ``--check`` and timings)."""
        return await self.runs.run_once(self.catalog.get(collector))

    def adopt_counters(self, old: Target) -> None:
        """Carry the counters of the target this one replaces over, so Prometheus sees no reset."""
        self.runs.adopt_counters(old.runs)
        if self.sampler is not None and old.sampler is not None:
            self.sampler.adopt_counters(old.sampler)
        if self.server_log is not None and old.server_log is not None:
            self.server_log.adopt_counters(old.server_log)

    def status(self) -> TargetStatus:
        """Return a snapshot of what this target knows now."""
        facts = self.db.facts
        return TargetStatus(
            name=self.name,
            dsn=self.settings.target.safe_dsn,
            up=self.up,
            last_error=self.db.last_error,
            facts=facts,
            release=self.releases.describe(facts.alembic_revision) if facts else None,
            collectors=self.runs.snapshot(),
            queries_total=dict(self.runs.queries_total),
            sampler=self.sampler.status() if self.sampler is not None else None,
            server_log=self.server_log.status() if self.server_log is not None else None,
        )

    async def stop(self) -> None:
        """Stop the background work (the connections stay open)."""
        await self.refresher.stop()
        if self.sampler is not None:
            await self.sampler.stop()
        if self.server_log is not None:
            await self.server_log.stop()

    async def close(self) -> None:
        """Stop everything and close the connections."""
        await self.stop()
        await self.runs.close()
