"""What a Prefect schema revision says about the release behind it, from a data file (prefect_releases.yaml).

Prefect's migrations leave one alembic revision as the schema head; the revision identifies the
range of releases that could have migrated the database. The data file lists, per head, the first
release that leaves it and whether that release's worker polls can deadlock; a new Prefect
release is one line there. A revision the file does not know is reported as unknown, never guessed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from exporter.errors import CatalogError, Problems
from exporter.validation import Section, as_bool, as_str
from exporter.yamlload import load_mapping, read_document

UNKNOWN = "unknown"
_REVISION = re.compile(r"^[0-9a-f]{12}$")
_RELEASE = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True)
class PrefectRelease:
    """What the schema revision says about the Prefect release that migrated the database."""

    alembic_revision: str
    # The first Prefect release whose migrations end at this revision, or "unknown".
    first_release: str
    # "true" when the releases at this revision lock deployment rows in an unstable order on every
    # worker poll (2.18.1 to 3.6.x: several workers on one queue deadlock), "false", or "unknown".
    poll_deadlocks: str


@dataclass(frozen=True)
class Releases:
    """The known schema heads."""

    by_revision: Mapping[str, PrefectRelease]

    def describe(self, revision: str | None) -> PrefectRelease | None:
        """Return what ``revision`` says; None without a revision, ``unknown`` fields for a new one."""
        if revision is None:
            return None
        return self.by_revision.get(revision) or PrefectRelease(revision, UNKNOWN, UNKNOWN)


def _release(value: object) -> str:
    text = as_str(str(value) if isinstance(value, float | int) else value)
    if not _RELEASE.match(text):
        raise ValueError(f"expected a release such as 3.7.0 (quote it), got {text!r}")
    return text


def _revision(value: object) -> str:
    text = as_str(value)
    if not _REVISION.match(text):
        raise ValueError(f"expected a 12-digit hexadecimal alembic revision, got {text!r}")
    return text


def parse_releases(text: str, source: str) -> Releases:
    """Parse a releases file; raise CatalogError listing every problem."""
    problems = Problems(source)
    document = load_mapping(text, problems, "a mapping with a releases: list")
    known: dict[str, PrefectRelease] = {}
    if document is not None:
        top = Section(document, "", problems, ("releases",))
        for section in top.sections("releases", ("revision", "first_release", "poll_deadlocks")):
            revision = section.get("revision", _revision)
            first = section.get("first_release", _release)
            deadlocks = section.get("poll_deadlocks", as_bool)
            if revision in known:
                section.problem("revision", f"{revision} is listed twice")
            elif revision and first and deadlocks is not None:
                known[revision] = PrefectRelease(revision, first, "true" if deadlocks else "false")
    if problems.items:
        raise CatalogError("invalid releases file", problems.items)
    return Releases(known)


def load_releases(path: Path) -> Releases:
    """Read the releases file at ``path``."""
    return parse_releases(read_document(path, CatalogError, "releases file"), str(path))
