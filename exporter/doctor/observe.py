"""Read what the doctor needs from one database, with the exporter's own safe sessions.

Every query runs on a ``TargetDatabase`` (read-only, ``lock_timeout``, ``statement_timeout``,
``application_name``): one that waits for a lock gives up after ``lock_timeout`` and is listed as
incomplete, so the doctor never hangs behind the lock it is meant to explain.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from exporter.catalog import Catalog, Requires
from exporter.database import TargetDatabase
from exporter.doctor.observations import DeadlockSample, Observations, Row
from exporter.doctor.queries import DiagnosticQuery
from exporter.errors import QueryError
from exporter.facts import TargetFacts
from exporter.gates import unmet_requirement

# Collectors of the catalog whose rows the doctor reads as they are.
CATALOG_QUERIES = (
    "server",
    "tables",
    "database_stats",
    "running_heartbeats",
    # Prefect's machinery (exporter/doctor/machinery.py).
    "late_marking",
    "foreman",
    "retention",
    "invalid_indexes",
    "isolation",
    "concurrency_slot_leaks",
    "cancelling_runs",
)
# Diagnostic queries that run before all others.
FIRST = ("sessions", "connections")


async def _fetch(
    db: TargetDatabase, name: str, sql: str, timeout: float, requires: Requires, facts: TargetFacts
) -> tuple[str, list[Row] | str]:
    unmet = unmet_requirement(requires, facts)
    if unmet is not None:
        return name, f"{name}: not run: {unmet}"
    try:
        rows = await db.fetch(sql, timeout)
    except QueryError as error:
        return name, f"{name}: {error.status}: {error}"
    return name, [dict(r) for r in rows]


DEADLOCKS_SQL = "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"


async def _deadlocks(db: TargetDatabase) -> DeadlockSample | None:
    try:
        rows = await db.fetch(DEADLOCKS_SQL, 2.0)
    except QueryError:
        return None
    if not rows:
        return None
    return DeadlockSample(int(rows[0]["deadlocks"]), time.monotonic())


async def observe(
    db: TargetDatabase,
    catalog: Catalog,
    diagnostics: Mapping[str, DiagnosticQuery],
    release_of: Any,
    window: float,
    previous: DeadlockSample | None = None,
) -> Observations:
    """Read everything the rules need; raise ConnectError when the database cannot be reached.

    The deadlock counter is read at the start and again ``window`` seconds later (from
    ``previous`` instead, when given: ``--watch`` measures between two reports), so that the rate
    is of now, not of the time since statistics were reset.
    """
    await db.ensure_connected()
    # The window opens first: everything else (the facts included) runs inside it, so that a
    # diagnosis takes max(window, queries), not their sum.
    start = previous or await _deadlocks(db)
    facts = await db.refresh_facts(2.0)
    # Sessions first: the doctor's own queries, waiting for a lock they then give up on, must not
    # appear in the lock tree they are meant to explain.
    first = [q for q in diagnostics.values() if q.name in FIRST]
    results = list(
        await asyncio.gather(*(_fetch(db, q.name, q.sql, q.timeout, q.requires, facts) for q in first))
    )
    jobs = [
        _fetch(db, q.name, q.sql, q.timeout, q.requires, facts)
        for q in diagnostics.values()
        if q not in first
    ]
    names = {c.name for c in catalog.collectors}
    for name in CATALOG_QUERIES:
        if name in names:
            spec = catalog.get(name)
            jobs.append(_fetch(db, name, spec.sql, min(spec.timeout, 2.0), spec.requires, facts))
    results.extend(await asyncio.gather(*jobs))
    rows: dict[str, list[Row]] = {}
    incomplete: list[str] = []
    for name, found in results:
        if isinstance(found, str):
            incomplete.append(found)
        else:
            rows[name] = found
    if previous is None and start is not None:
        await asyncio.sleep(max(0.0, window - (time.monotonic() - start.taken)))
    end = await _deadlocks(db)
    return Observations(
        facts=facts,
        release=release_of(facts.alembic_revision),
        rows=rows,
        deadlocks_before=start,
        deadlocks_after=end,
        incomplete=tuple(incomplete),
    )
