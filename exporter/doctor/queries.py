"""Diagnostic queries: SQL files in ``queries/diagnostics`` with a small YAML header, runnable in psql.

They return what metrics never carry (pids, run ids and names, statement text), so they are not
collectors: the catalog loads only the top of ``queries/``, never this folder. The header has a
``description``, a ``timeout`` and the same ``requires:`` gates as a collector.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from exporter.catalog import REQUIRES_KEYS, Requires, read_requires, split_header
from exporter.config import DEFAULT_QUERY_DIR
from exporter.errors import CatalogError, Problems
from exporter.validation import Section, as_seconds, as_str
from exporter.yamlload import load_mapping

DIAGNOSTICS_DIR = DEFAULT_QUERY_DIR / "diagnostics"
_HEADER_KEYS = ("description", "timeout", "requires")


@dataclass(frozen=True)
class DiagnosticQuery:
    """One diagnostic query file."""

    name: str
    path: Path
    description: str
    sql: str
    timeout: float
    requires: Requires


def parse_diagnostic(path: Path, text: str, problems: Problems) -> DiagnosticQuery | None:
    """Parse one diagnostic query file; problems are added to ``problems``."""
    header_text, header_line, sql, sql_line = split_header(text)
    header = load_mapping(
        header_text,
        problems,
        "a YAML header (description:, timeout:, requires:)",
        line_offset=header_line - 1,
        subject="header",
    )
    if header is None:
        return None
    top = Section(header, "", problems, _HEADER_KEYS, line_offset=header_line - 1)
    if not sql:
        problems.add(sql_line, "", "no query after the header")
    query = DiagnosticQuery(
        name=path.stem,
        path=path,
        description=top.get("description", as_str),
        sql=sql,
        timeout=top.get("timeout", as_seconds, 2.0),
        requires=read_requires(top.section("requires", REQUIRES_KEYS)),
    )
    return None if problems.items else query


def load_diagnostics(directory: Path = DIAGNOSTICS_DIR) -> Mapping[str, DiagnosticQuery]:
    """Load every diagnostic query of ``directory`` by name; raise CatalogError listing every problem."""
    found: dict[str, DiagnosticQuery] = {}
    every: list[str] = []
    for path in sorted(directory.glob("*.sql")):
        problems = Problems(str(path))
        query = parse_diagnostic(path, path.read_text(encoding="utf-8"), problems)
        every.extend(problems.items)
        if query is not None:
            found[query.name] = query
    if every:
        raise CatalogError("invalid diagnostic queries", every)
    return found
