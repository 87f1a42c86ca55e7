"""Refreshing one target's results in the background while it is scraped, so a scrape never waits on SQL.

The refresher starts each collector ahead of its TTL (``freshness.next_run``), pauses when nobody
scraped for a while (``freshness.ScrapeActivity``) and resumes on the next scrape. A scrape waits
only while the target is cold — just started or just resumed — and then for at most its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable

from exporter.collection import CollectorRuns
from exporter.freshness import DOWN_RETRY, IDLE_MIN, ScrapeActivity

log = logging.getLogger(__name__)

# Run a round at least this often while scraped (a ping and a look at pg_locks; no collector that
# is not due).
ROUND_EVERY = 5.0
# Never start rounds back to back faster than this, whatever the schedule says.
MIN_GAP = 0.2


class Refresher:
    """The background refresh of one target's collector runs."""

    def __init__(
        self,
        runs: CollectorRuns,
        clock: Callable[[], float] = time.monotonic,
        idle_min: float = IDLE_MIN,
    ) -> None:
        self.runs = runs
        self.clock = clock
        self.activity = ScrapeActivity(started=clock(), idle_min=idle_min)
        self.timeout = 8.0
        self.paused = False
        self.rounds = 0
        self._cold = True
        self._warming: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_round = -math.inf
        runs.on_result = self._wake.set

    def start(self, timeout: float) -> None:
        """Start refreshing in the background; each round's connect and checks take at most ``timeout``."""
        self.timeout = timeout
        if self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def before_scrape(self, timeout: float) -> None:
        """Note a scrape; while the target is cold, wait (at most ``timeout``) for results to serve."""
        now = self.clock()
        self.activity = self.activity.scraped(now)
        if self.paused:
            self._wake.set()
        if not self._cold:
            return
        # Concurrent first scrapes share one wait.
        if self._warming is None or self._warming.done():
            self._warming = asyncio.create_task(self.runs.refresh(timeout))
            self._warming.add_done_callback(self._warmed)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._warming), timeout)

    def _warmed(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():
            self._cold = False

    async def _loop(self) -> None:
        while True:
            # Cleared before looking, so that a result or a scrape arriving meanwhile is not missed.
            self._wake.clear()
            now = self.clock()
            if self.activity.idle(now):
                if not self.paused:
                    self.paused, self._cold = True, True
                    self.runs.pause()
                    fields = {"target": self.runs.name, "idle_s": round(self.activity.idle_after)}
                    log.info("refresh paused: no scrape", extra={"fields": fields})
                await self._wake.wait()
                continue
            if self.paused:
                self.paused = False
                log.info("refresh resumed", extra={"fields": {"target": self.runs.name}})
            due = self.runs.next_due() if self.runs.up else self._last_round + DOWN_RETRY
            # A round at least every ROUND_EVERY even when no collector is due: its ping notices a
            # target that went away, and its lock look a lock that came, within seconds.
            due = min(due, self._last_round + ROUND_EVERY)
            wake_at = max(min(due, self.activity.idle_at(), now + ROUND_EVERY), self._last_round + MIN_GAP)
            if wake_at > now:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wake_at - now)
                continue
            await self.runs.refresh_ahead(self.timeout)
            self.rounds += 1
            self._last_round = self.clock()

    async def stop(self) -> None:
        """Stop refreshing (work already started is left to ``CollectorRuns.close``)."""
        for task in (self._task, self._warming):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._warming = None
