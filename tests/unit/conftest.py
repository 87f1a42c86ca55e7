"""Pure tests: no database, no server, no external tool; ``make test-fast`` runs only these."""

from __future__ import annotations

import pytest

# Fixtures of tests/conftest.py that start a PostgreSQL cluster.
_CLUSTER_FIXTURES = {"cluster", "prefect_templates", "prefect_db", "plain_db"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test under tests/unit that asks for a database: it belongs one directory up."""
    for item in items:
        if "tests/unit/" in item.nodeid and _CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
            raise pytest.UsageError(f"{item.nodeid} needs a database: move it out of tests/unit")
