"""The exporter's exceptions.

* ExporterError: anything the user can act on; ``str()`` is a complete message.
  * ConfigError: the config file or command line is invalid (all problems at once).
  * CatalogError: a collector file is invalid (file, line and key in each problem).
  * TargetError: a database cannot be used.
    * ConnectError: no connection (down, refused, wrong password, unknown database).
    * QueryError: a collector's query failed; ``status`` is the ``queries_total`` label.
"""

from __future__ import annotations

from collections.abc import Sequence


class ExporterError(Exception):
    """Base class of the errors this project raises on purpose."""


class ProblemsError(ExporterError):
    """An error made of several problems, each a line a user can act on."""

    def __init__(self, summary: str, problems: Sequence[str]) -> None:
        self.summary = summary
        self.problems = tuple(problems)
        super().__init__("\n".join([summary, *(f"  - {p}" for p in self.problems)]))


class ConfigError(ProblemsError):
    """The configuration is invalid."""


class CatalogError(ProblemsError):
    """One or more collector files are invalid."""


class TargetError(ExporterError):
    """A database target cannot be used."""


class ConnectError(TargetError):
    """The target database cannot be reached or refuses the exporter's role."""


class QueryError(TargetError):
    """A collector's query failed; ``status`` names the kind of failure."""

    def __init__(self, message: str, status: str) -> None:
        super().__init__(message)
        self.status = status


class Problems:
    """Problems found in one source file, each rendered as ``file:line: path: message``."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, line: int | None, path: str, message: str) -> None:
        """Record one problem."""
        where = f"{self.source}:{line}" if line else self.source
        self.items.append(f"{where}: {path}: {message}" if path else f"{where}: {message}")
