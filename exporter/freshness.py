"""The timing of background refresh, with the clock given: when a collector runs next, when refreshing
pauses because nobody scrapes, and how long an old result may still be served.

Pure functions and records only; ``exporter.refresher`` applies them to a running target and
``exporter.collection.collector_status`` to a snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

# Start a collector's next run this long before its result expires (at most a tenth of its TTL), so
# that the new result usually arrives before the old one expires; a run still in flight keeps the old
# result served anyway (``is_fresh``).
AHEAD = 1.0
# A background round also starts the collectors due this soon, so that collectors of one TTL share
# a round (one connect check and one lock look) instead of each waking the refresher.
COALESCE = 0.5
# No collector runs more often than this, whatever its TTL (tests use TTL 0).
MIN_INTERVAL = 1.0
# A collector left out because a table it reads was locked, or that waited out its lock_timeout, is
# tried again this soon: locks taken for a migration or a VACUUM FULL usually go as fast as they came.
LOCKED_RETRY = 5.0
# While the target is down, try again this often (the connection's own back-off spaces the connects).
DOWN_RETRY = 1.0
# Refreshing pauses after this many scrape intervals without a scrape, and never sooner than IDLE_MIN.
IDLE_INTERVALS = 3
IDLE_MIN = 60.0
PAUSE_GAPS = 2
# The last good result of a collector whose refreshes fail is served, as stale, for at most
# max(STALE_MIN, STALE_TTLS x TTL) after it was taken; then the collector reports failed.
STALE_MIN = 60.0
STALE_TTLS = 4
# Statuses of a run that a held lock explains (retried after LOCKED_RETRY).
LOCK_STATUSES = frozenset({"locked", "lock_timeout"})


def is_fresh(finished: float, ttl: float, refresh_started: float, now: float, running: bool) -> bool:
    """True when a result that ended at ``finished`` is current: fresh when the latest round began, or
    being replaced.

    Judged as of the round's start: a result that was fresh then was not re-run, so it must not
    expire because the round took a while. A result of the latest round stays current until the next
    round; a collector still running (within its own timeout) keeps its previous result current until
    the new one arrives. ``refresh_started`` is infinite while refreshing is paused.
    """
    as_of = min(now, refresh_started)
    return finished >= refresh_started or as_of - finished < ttl or running


def stale_limit(ttl: float) -> float:
    """Return how long after it was taken a good result may still be served, as stale."""
    return max(STALE_MIN, STALE_TTLS * ttl)


def next_run(ttl: float, finished: float, status: str) -> float:
    """Return when a collector whose latest run ended at ``finished`` with ``status`` should run again."""
    due = finished + max(MIN_INTERVAL, ttl - min(AHEAD, ttl / 10))
    if status in LOCK_STATUSES:
        return min(due, finished + LOCKED_RETRY)
    return due


@dataclass(frozen=True)
class ScrapeActivity:
    """When the exporter was scraped, and so whether refreshing should go on or pause.

    ``interval`` is the longest of the recent gaps between scrapes (an HA pair of Prometheus servers
    scraping at once makes short and long gaps alternate: the long one is the interval that matters).
    A gap of twice the idle time or more is a pause, not an interval, and is not kept.
    """

    started: float
    last: float | None = None
    gaps: tuple[float, ...] = ()
    idle_min: float = IDLE_MIN
    kept_gaps: int = 5

    @property
    def interval(self) -> float | None:
        """The scrape interval as seen lately (None before two scrapes)."""
        return max(self.gaps) if self.gaps else None

    @property
    def idle_after(self) -> float:
        """How long without a scrape makes refreshing pause."""
        interval = self.interval
        return max(self.idle_min, IDLE_INTERVALS * interval) if interval is not None else self.idle_min

    def idle(self, now: float) -> bool:
        """True when nobody scraped for long enough that refreshing should pause (counted from start)."""
        return now - (self.last if self.last is not None else self.started) >= self.idle_after

    def idle_at(self) -> float:
        """When refreshing pauses if no scrape comes."""
        return (self.last if self.last is not None else self.started) + self.idle_after

    def scraped(self, now: float) -> ScrapeActivity:
        """Return the activity after a scrape at ``now``."""
        if self.last is None:
            return replace(self, last=now)
        gap = now - self.last
        # A gap up to twice the idle time is an interval (a 60 s scrape interval pauses refreshing once,
        # until it has been seen); a longer one was a pause.
        if gap >= PAUSE_GAPS * self.idle_after:
            return replace(self, last=now)
        return replace(self, last=now, gaps=(*self.gaps, gap)[-self.kept_gaps :])
