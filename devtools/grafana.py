"""What Grafana does to a dashboard's queries before Prometheus sees them, for the live test and the pictures.

Grafana replaces its variables in every query: the dashboard's own (``$job``, ``$target``, …, here with the
values a board opened on "All" would use) and its built-in intervals. :class:`Variables` does the same, so a
query the live test evaluates, or the pictures plot, is the one Grafana would send.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

Board = dict[str, Any]
# Grafana's own variables are spelled $__name.
BUILT_IN = frozenset({"rate_interval", "interval", "range"})


@dataclass(frozen=True)
class Variables:
    """Values of the dashboards' variables ("All" unless named) and of Grafana's interval variables."""

    job: str
    target: str
    instance: str = ".+"
    work_pool: str = ".*"
    rate_interval: str = "1m"
    interval: str = "15s"
    range: str = "5m"

    def pairs(self) -> list[tuple[str, str]]:
        """(``$name`` or ``${name}``, value), longest names first so none replaces part of another."""
        values = {
            (f"__{f.name}" if f.name in BUILT_IN else f.name): str(getattr(self, f.name))
            for f in fields(self)
        }
        found = [(f"${{{name}}}", value) for name, value in values.items()]
        found += [(f"${name}", value) for name, value in values.items()]
        return sorted(found, key=lambda pair: -len(pair[0]))

    def substitute(self, text: str) -> str:
        """``text`` with every variable replaced."""
        for variable, value in self.pairs():
            text = text.replace(variable, value)
        return text


def load(path: Path) -> Board:
    """One dashboard's JSON."""
    board: Board = json.loads(path.read_text(encoding="utf-8"))
    return board


def panels(board: Board) -> Iterator[Board]:
    """Every panel, rows included, with those of collapsed rows after their row."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])
