"""Strict reading of YAML mappings: every problem is collected with its file, line and dotted path."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

from exporter.durations import parse_duration
from exporter.errors import Problems
from exporter.yamlload import LineDict

T = TypeVar("T")
_MISSING: Any = object()


def _type_name(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


class Section:
    """One mapping of a YAML document, read key by key; unknown keys are problems."""

    def __init__(
        self,
        mapping: LineDict,
        path: str,
        problems: Problems,
        allowed: Collection[str],
        line_offset: int = 0,
    ) -> None:
        self.mapping = mapping
        self.path = path
        self.problems = problems
        self.offset = line_offset
        for key in mapping:
            if key not in allowed:
                close = difflib.get_close_matches(key, list(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                known = ", ".join(sorted(allowed))
                self.problem(key, f"unknown key{hint}; known keys: {known}")

    def line(self, key: str | None = None) -> int:
        """Return the file line of ``key`` (or of the mapping itself)."""
        line = self.mapping.lines.get(key, self.mapping.line) if key else self.mapping.line
        return line + self.offset

    def key_path(self, key: str) -> str:
        """Return the dotted path of ``key``."""
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str | None, message: str) -> None:
        """Record a problem about ``key`` (or the whole mapping)."""
        self.problems.add(self.line(key), self.key_path(key) if key else self.path, message)

    def get(self, key: str, convert: Callable[[Any], T], default: T | Any = _MISSING) -> T | Any:
        """Return ``convert(value)``; a missing required key or a bad value is a problem."""
        if self.mapping.get(key) is None:
            if default is not _MISSING:
                return default
            if key in self.mapping:
                self.problem(key, "must not be empty")
            else:
                self.problem(None, f"missing required key {key!r}")
            return None
        try:
            return convert(self.mapping[key])
        except (TypeError, ValueError) as error:
            self.problem(key, str(error))
            return default if default is not _MISSING else None

    def section(self, key: str, allowed: Collection[str]) -> Section | None:
        """Return the nested mapping under ``key`` as a Section, or None when absent."""
        value = self.mapping.get(key)
        if value is None:
            return None
        if not isinstance(value, LineDict):
            self.problem(key, f"expected a mapping, got {_type_name(value)}")
            return None
        return Section(value, self.key_path(key), self.problems, allowed, self.offset)

    def sections(self, key: str, allowed: Collection[str]) -> list[Section]:
        """Return the list of mappings under ``key``, each as a Section."""
        value = self.mapping.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, f"expected a list, got {_type_name(value)}")
            return []
        found = []
        for index, item in enumerate(value):
            if isinstance(item, LineDict):
                path = f"{self.key_path(key)}[{index}]"
                found.append(Section(item, path, self.problems, allowed, self.offset))
            else:
                self.problem(key, f"item {index}: expected a mapping, got {_type_name(item)}")
        return found


def as_str(value: object) -> str:
    """Accept a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {_type_name(value)} {value!r}")
    return value


def as_bool(value: object) -> bool:
    """Accept true or false."""
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_type_name(value)} {value!r}")
    return value


def as_int(value: object) -> int:
    """Accept an integer (not a boolean)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {_type_name(value)} {value!r}")
    return value


def as_positive_int(value: object) -> int:
    """Accept an integer above zero."""
    number = as_int(value)
    if number < 1:
        raise ValueError(f"expected a whole number of at least 1, got {number}")
    return number


def as_seconds(value: object) -> float:
    """Accept a duration (``15s``, ``500ms``, ``5m`` or a number of seconds)."""
    return parse_duration(value)


def as_path(base: Path) -> Callable[[object], Path]:
    """Accept a file-system path; a relative one is taken from ``base``."""

    def convert(value: object) -> Path:
        text = as_str(value)
        # The operating system cannot represent it, and pathlib would raise a bare ValueError.
        if "\x00" in text:
            raise ValueError(f"a path cannot contain a NUL character: {text!r}")
        return (base / text).resolve()

    return convert


def as_str_list(value: object) -> tuple[str, ...]:
    """Accept a list of non-empty strings (or a single string)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {_type_name(value)}")
    return tuple(as_str(item) for item in value)


def one_of(*choices: str) -> Callable[[object], str]:
    """Accept one of ``choices``."""

    def convert(value: object) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)

    return convert
