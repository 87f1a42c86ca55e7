"""Classify SQL statements into a fixed set of Prefect operations, by ordered patterns from a data file."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from exporter.errors import CatalogError, Problems
from exporter.labels import OTHER, PREFECT_TABLES
from exporter.validation import Section, as_str
from exporter.yamlload import load_mapping, read_document

_OPERATION_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_WHITESPACE = re.compile(r"\s+")
# Statements repeat endlessly (every poll sends the same text): remember the answers, within reason.
_CACHE_LIMIT = 4096


@dataclass(frozen=True)
class Rule:
    """One line of the operations file: an operation and what identifies it."""

    operation: str
    pattern: re.Pattern[str] | None
    application_name: re.Pattern[str] | None
    line: int
    # The table whose last_polled column the operation updates: its lock waits are the
    # "several pollers collide" signal (prefect_db_last_polled_lock_wait_seconds_total).
    last_polled_table: str | None = None

    def matches(self, statement: str, application_name: str) -> bool:
        """True when both the statement pattern and the application-name pattern (if any) match."""
        if self.application_name is not None and not self.application_name.search(application_name):
            return False
        return self.pattern is None or bool(self.pattern.search(statement))


class Classifier:
    """Maps a statement (and its session's application_name) to an operation name."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self.operations = tuple(dict.fromkeys([*(r.operation for r in rules), OTHER]))
        self.last_polled_tables: dict[str, str] = {
            r.operation: r.last_polled_table for r in rules if r.last_polled_table is not None
        }
        self._cache: dict[tuple[str, str], str] = {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Classifier) and self.rules == other.rules

    __hash__ = None  # type: ignore[assignment]

    def classify(self, statement: str | None, application_name: str | None = None) -> str:
        """Return the operation of ``statement``; ``other`` when no rule matches."""
        key = (statement or "", application_name or "")
        found = self._cache.get(key)
        if found is None:
            folded = _WHITESPACE.sub(" ", key[0]).strip()
            found = next((r.operation for r in self.rules if r.matches(folded, key[1])), OTHER)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[key] = found
        return found


def _compile(section: Section, key: str) -> re.Pattern[str] | None:
    text = section.get(key, as_str, None)
    if text is None:
        return None
    try:
        return re.compile(text, re.IGNORECASE | re.DOTALL)
    except re.error as error:
        section.problem(key, f"not a valid regular expression: {error}")
        return None


def _prefect_table(value: object) -> str:
    name = as_str(value)
    if name not in PREFECT_TABLES:
        raise ValueError(f"{name!r} is not a Prefect table (exporter/labels.py lists them), e.g. deployment")
    return name


def parse_operations(text: str, source: str) -> Classifier:
    """Parse an operations file; raise CatalogError listing every problem."""
    problems = Problems(source)
    document = load_mapping(text, problems, "a mapping with an operations: list")
    if document is None:
        raise CatalogError("invalid operations file", problems.items)
    top = Section(document, "", problems, ("operations",))
    rules = []
    for section in top.sections(
        "operations", ("operation", "pattern", "application_name", "last_polled_table")
    ):
        name = section.get("operation", as_str)
        if name is not None and not _OPERATION_NAME.match(name):
            section.problem(
                "operation", f"{name!r}: use lower-case letters, digits and _ (it becomes a label)"
            )
        pattern, app = _compile(section, "pattern"), _compile(section, "application_name")
        if "pattern" not in section.mapping and "application_name" not in section.mapping:
            section.problem(None, "give a pattern, an application_name, or both")
        polled = section.get("last_polled_table", _prefect_table, None)
        if name:
            rules.append(Rule(name, pattern, app, section.line(), polled))
    if not rules and not problems.items:
        top.problem("operations", "list at least one operation")
    if problems.items:
        raise CatalogError("invalid operations file", problems.items)
    return Classifier(rules)


def load_operations(path: Path) -> Classifier:
    """Read the operations file at ``path``."""
    return parse_operations(read_document(path, CatalogError, "operations file"), str(path))
