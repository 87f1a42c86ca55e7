"""The schema revision says which Prefect release migrated a database, from one data file.

tests/test_devtools.py checks the heads of the pinned Prefect versions' real migrations against it.
"""

from __future__ import annotations

import pytest

from exporter.config import DEFAULT_RELEASES_FILE
from exporter.errors import CatalogError
from exporter.releases import load_releases, parse_releases


def test_the_deadlock_fix_of_3_7_0_splits_the_revisions() -> None:
    releases = load_releases(DEFAULT_RELEASES_FILE)
    ordered = list(releases.by_revision.values())
    prone = [r.first_release for r in ordered if r.poll_deadlocks == "true"]
    assert (prone[0], prone[-1]) == ("2.18.1", "3.6.21")
    assert all(
        r.poll_deadlocks == "false" for r in ordered[ordered.index(releases.by_revision["7218aad17905"]) :]
    )


def test_an_unknown_revision_says_so_and_no_revision_says_nothing() -> None:
    releases = load_releases(DEFAULT_RELEASES_FILE)
    release = releases.describe("0123456789ab")
    assert release is not None
    assert (release.first_release, release.poll_deadlocks) == ("unknown", "unknown")
    assert releases.describe(None) is None


def test_a_bad_line_names_file_line_and_key() -> None:
    text = (
        "releases:\n"
        "  - {revision: 5d03c01be85e, first_release: '3.1.6', poll_deadlocks: true}\n"
        "  - {revision: 5d03c01be85e, first_release: '3.1.7', poll_deadlocks: true}\n"
        "  - {revision: nothex, first_release: 3.7, poll_deadlocks: maybe}\n"
    )
    with pytest.raises(CatalogError) as caught:
        parse_releases(text, "releases.yaml")
    problems = "\n".join(caught.value.problems)
    assert "releases.yaml:3: releases[1].revision: 5d03c01be85e is listed twice" in problems
    assert (
        "releases.yaml:4: releases[2].revision: expected a 12-digit hexadecimal alembic revision" in problems
    )
    assert "releases.yaml:4: releases[2].first_release: expected a release such as 3.7.0" in problems
    assert "releases.yaml:4: releases[2].poll_deadlocks: expected true or false" in problems
