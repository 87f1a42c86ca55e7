"""Classify SQL statements into a fixed set of Prefect operations, by ordered patterns from a data file."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from exporter.errors import CatalogError
from exporter.validation import Problems, Section, as_str
from exporter.yamlload import LineDict, load_yaml, yaml_error_line, yaml_error_text

OTHER = "other"
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
        self._cache: dict[tuple[str, str], str] = {}

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


def parse_operations(text: str, source: str) -> Classifier:
    """Parse an operations file; raise CatalogError listing every problem."""
    problems = Problems(source)
    try:
        document = load_yaml(text)
    except yaml.YAMLError as error:
        problems.add(yaml_error_line(error), "", f"not valid YAML: {yaml_error_text(error)}")
        raise CatalogError("invalid operations file", problems.items) from None
    if not isinstance(document, LineDict):
        problems.add(1, "", "expected a mapping with an operations: list")
        raise CatalogError("invalid operations file", problems.items)
    top = Section(document, "", problems, ("operations",))
    rules = []
    for section in top.sections("operations", ("operation", "pattern", "application_name")):
        name = section.get("operation", as_str)
        if name is not None and not _OPERATION_NAME.match(name):
            section.problem(
                "operation", f"{name!r}: use lower-case letters, digits and _ (it becomes a label)"
            )
        pattern, app = _compile(section, "pattern"), _compile(section, "application_name")
        if "pattern" not in section.mapping and "application_name" not in section.mapping:
            section.problem(None, "give a pattern, an application_name, or both")
        if name:
            rules.append(Rule(name, pattern, app, section.line()))
    if not rules and not problems.items:
        top.problem("operations", "list at least one operation")
    if problems.items:
        raise CatalogError("invalid operations file", problems.items)
    return Classifier(rules)


def load_operations(path: Path) -> Classifier:
    """Read the operations file at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CatalogError("cannot read the operations file", [f"{path}: {error}"]) from None
    return parse_operations(text, str(path))
