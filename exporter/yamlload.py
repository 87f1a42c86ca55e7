"""Load YAML keeping the line of every mapping key, so errors can name file and line.

``load_mapping`` is the one way the exporter reads a YAML document (config, web config, operations,
releases, collector headers): a document that is not YAML, or not a mapping, becomes a problem with
its line, for the caller to raise with its own error class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from exporter.errors import Problems, ProblemsError


class LineDict(dict[str, Any]):
    """A mapping from YAML that remembers the (1-based) line of itself and of each key."""

    line: int
    lines: dict[str, int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings are LineDicts and whose duplicate keys are errors."""


# PyYAML's own constructors raise these for values such as the date 2001-13-45 or a
# sexagesimal number too large for a float; they are YAML errors too, at the value's line.
_VALUE_ERRORS = (ValueError, OverflowError, IndexError, AttributeError, TypeError)


def _construct_value(loader: _LineLoader, node: yaml.Node) -> Any:
    try:
        return loader.construct_object(node, deep=True)
    except _VALUE_ERRORS as error:
        raise yaml.constructor.ConstructorError(
            None, None, f"cannot read this value: {error}", node.start_mark
        ) from None


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    mapping = LineDict()
    mapping.line = node.start_mark.line + 1
    mapping.lines = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):  # `? [a, b]`: no setting is named by a list
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain name, not a list or mapping", key_node.start_mark
            )
        key = _construct_value(loader, key_node)
        if not isinstance(key, str):
            key = str(key)
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = _construct_value(loader, value_node)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str) -> Any:
    """Parse one YAML document; mappings come back as LineDict."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass: no arbitrary objects
    except RecursionError:
        raise yaml.YAMLError("the document is nested too deeply") from None
    except _VALUE_ERRORS as error:  # a bad scalar outside any mapping
        raise yaml.YAMLError(f"cannot read a value: {error}") from None


def yaml_error_line(error: yaml.YAMLError) -> int | None:
    """Return the 1-based line a YAML error points at, if it says."""
    mark = getattr(error, "problem_mark", None)
    return None if mark is None else int(mark.line) + 1


def yaml_error_text(error: yaml.YAMLError) -> str:
    """Return a YAML error's message without PyYAML's multi-line position dump."""
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    text = " ".join(str(part) for part in (context, problem) if part)
    return text or str(error).splitlines()[0]


def _is_empty(text: str) -> bool:
    """True when ``text`` holds no YAML node at all (a document of ``~`` or ``null`` holds one)."""
    return yaml.compose(text, Loader=yaml.SafeLoader) is None


def load_mapping(
    text: str,
    problems: Problems,
    expected: str,
    *,
    empty_ok: bool = False,
    line_offset: int = 0,
    subject: str = "",
) -> LineDict | None:
    """Parse a document that must be a mapping; record what is wrong in ``problems`` and return None.

    ``expected`` completes "expected …" in the problem (e.g. "a mapping with an operations: list");
    an empty document (nothing but comments and blank lines; not ``~`` or ``null``) is an empty
    mapping when ``empty_ok``, else a problem. ``line_offset`` is added
    to every line (for a document embedded in a larger file); ``subject`` names it in the problem.
    """
    lead = f"{subject} is not" if subject else "not"
    try:
        document = load_yaml(text)
    except yaml.YAMLError as error:
        line = yaml_error_line(error)
        problems.add(line and line + line_offset, "", f"{lead} valid YAML: {yaml_error_text(error)}")
        return None
    if document is None and empty_ok and _is_empty(text):
        document = LineDict()
        document.line, document.lines = 1, {}
    if not isinstance(document, LineDict):
        if document is None:
            got = "an empty document" if _is_empty(text) else "null"
        else:
            got = f"{type(document).__name__} {document!r}"[:80]
        problems.add(1 + line_offset, "", f"expected {expected}, got {got}")
        return None
    return document


def read_document(path: Path, error: type[ProblemsError], what: str) -> str:
    """Return the text of ``path``; raise ``error`` ("cannot read <what> <path>") when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as failure:
        raise error(f"cannot read {what} {path}", [failure.strerror or str(failure)]) from None
    except UnicodeDecodeError:
        raise error(f"cannot read {what} {path}", ["not UTF-8 text"]) from None
