"""Every YAML file the exporter reads goes through one loader: a non-mapping document is an error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.catalog import parse_collector
from exporter.config import parse_config
from exporter.errors import CatalogError, ConfigError, Problems
from exporter.operations import parse_operations
from exporter.releases import parse_releases
from exporter.webconfig import parse_web_config


def collector_header(text: str, source: str) -> object:
    problems = Problems(source)
    body = "\n".join(f"-- {line}" for line in text.splitlines()) + "\nSELECT 1 AS v;\n"
    spec = parse_collector(Path(source), body, problems)
    if problems.items:
        raise CatalogError("invalid collector", problems.items)
    return spec


PARSERS: dict[str, Callable[[str, str], object]] = {
    "config": parse_config,
    "web config": parse_web_config,
    "operations": parse_operations,
    "releases": parse_releases,
    "collector header": collector_header,
}


@pytest.mark.parametrize("document", ["[]", "0", "false", "- a\n- b\n", "just text", "'quoted'"])
@pytest.mark.parametrize("kind", PARSERS)
def test_a_document_that_is_not_a_mapping_is_an_error_naming_file_and_line(kind: str, document: str) -> None:
    # The web config used to take [], 0 and false for "no TLS, no users": a typo turned auth off.
    with pytest.raises((ConfigError, CatalogError)) as caught:
        PARSERS[kind](document, "demo.yml")
    (problem,) = caught.value.problems
    assert problem.startswith("demo.yml:1: expected "), problem


@pytest.mark.parametrize("kind", PARSERS)
def test_invalid_yaml_names_the_line(kind: str) -> None:
    with pytest.raises((ConfigError, CatalogError)) as caught:
        PARSERS[kind]("a: 1\nb: [unclosed\n", "demo.yml")
    assert any("not valid YAML" in p and p.startswith("demo.yml:") for p in caught.value.problems)


def test_an_empty_document_is_allowed_where_defaults_make_sense_only() -> None:
    assert parse_config("", "exporter.yml").targets
    assert not parse_web_config("", "web.yml").users
    for kind in ("operations", "releases"):
        with pytest.raises(CatalogError, match="expected"):
            PARSERS[kind]("", "demo.yml")
