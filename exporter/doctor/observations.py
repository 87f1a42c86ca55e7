"""What the doctor read from one database: plain records, no database objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.facts import TargetFacts
from exporter.releases import PrefectRelease

Row = Mapping[str, Any]


@dataclass(frozen=True)
class DeadlockSample:
    """pg_stat_database.deadlocks of the database at one moment."""

    deadlocks: int
    # time.monotonic() of the sample.
    taken: float


@dataclass(frozen=True)
class Observations:
    """What one database showed, as rows per query name (diagnostic queries and catalog collectors)."""

    facts: TargetFacts
    release: PrefectRelease | None
    rows: Mapping[str, Sequence[Row]]
    # The deadlock counter at the start and at the end of the diagnosis (None: not readable).
    deadlocks_before: DeadlockSample | None
    deadlocks_after: DeadlockSample | None
    # Deadlocks per Prefect operation from the server log since the exporter started (empty: not configured).
    deadlocks_by_operation: Mapping[str, int] = field(default_factory=dict)
    # Queries that could not run, one line each.
    incomplete: tuple[str, ...] = ()

    def get(self, name: str) -> Sequence[Row]:
        """Return the rows of query ``name`` (none when it did not run)."""
        return self.rows.get(name, ())
