"""Fixtures shared by every database test: one throwaway cluster per session."""

from __future__ import annotations

import logging
import os
import secrets
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The project is not installed into the venv and pytest is not configured with a
# pythonpath, so make the repo's packages (devtools, exporter) importable from here.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from devtools.paths import ROLE_SCRIPT  # noqa: E402
from devtools.pgcluster import (  # noqa: E402
    PgCluster,
    TestDatabase,
    admin_connect,
    exporter_connect,
)
from devtools.prefect_env import (  # noqa: E402
    ALL_PREFECT_VERSIONS,
    PREFECT_VERSIONS,
    ensure_template,
)

__all__ = [
    "ALL_PREFECT_VERSIONS", "PREFECT_VERSIONS", "TestDatabase", "admin_connect", "exporter_connect",
]  # fmt: skip

EXPORTER_ROLE = "prefect_exporter"


@contextmanager
def uncaptured(config: pytest.Config) -> Iterator[None]:
    """Let progress lines reach the terminal, so a first-run install does not look hung."""
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        yield
        return
    with capture.global_and_fixture_disabled():
        sys.stderr.write("\n")  # start below pytest's progress dots
        yield


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config) -> Iterator[PgCluster]:
    """A started throwaway cluster; ``PPE_KEEP_CLUSTER=1`` keeps its directory afterwards."""
    # Not tmp_path_factory: pytest makes its temp root 0700 for root, and as root the
    # server runs as the postgres user, which must be able to reach the directory.
    base_dir = Path(tempfile.mkdtemp(prefix="ppe-pg-"))
    with uncaptured(pytestconfig):
        pg = PgCluster.create(base_dir)
        pg.start()
    try:
        yield pg
    finally:
        if os.environ.get("PPE_KEEP_CLUSTER") == "1":
            if pg.is_running():
                pg.stop()
            print(f"\n[conftest] kept stopped cluster in {base_dir}", file=sys.stderr)
        else:
            pg.destroy()


@pytest.fixture(scope="session")
def exporter_password() -> str:
    """The exporter role's password for this session."""
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def prefect_templates(cluster: PgCluster, pytestconfig: pytest.Config) -> dict[str, str]:
    """Template database names by Prefect version, built once per session."""
    with uncaptured(pytestconfig):
        return {version: ensure_template(cluster, version) for version in PREFECT_VERSIONS}


def apply_role_script(cluster: PgCluster, dbname: str, password: str) -> None:
    """Run deploy/exporter-role.sql in a database, as an operator would."""
    cluster.psql("", dbname, file=ROLE_SCRIPT, variables={"exporter_password": password})


def make_database(
    cluster: PgCluster, password: str, template: str | None, version: str | None
) -> TestDatabase:
    """Create a uniquely named database, set up the exporter role in it, describe it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    cluster.create_database(name, template=template)
    apply_role_script(cluster, name, password)
    return TestDatabase(
        name=name,
        prefect_version=version,
        admin_dsn=cluster.dsn(name),
        exporter_dsn=cluster.dsn(name, user=EXPORTER_ROLE, password=password),
    )


@pytest.fixture(params=PREFECT_VERSIONS, ids=lambda version: f"prefect-{version}")
def prefect_db(
    request: pytest.FixtureRequest,
    cluster: PgCluster,
    prefect_templates: dict[str, str],
    exporter_password: str,
) -> Iterator[TestDatabase]:
    """A fresh database with the real schema of one Prefect version, dropped afterwards."""
    version: str = request.param
    db = make_database(cluster, exporter_password, prefect_templates[version], version)
    try:
        yield db
    finally:
        cluster.drop_database(db.name)


@pytest.fixture(scope="session")
def lazy_templates(cluster: PgCluster, pytestconfig: pytest.Config) -> Callable[[str], str]:
    """Build a version's template database the first time a test asks for it (2.20.x, 3.6.29)."""
    built: dict[str, str] = {}

    def template(version: str) -> str:
        if version not in built:
            with uncaptured(pytestconfig):
                built[version] = ensure_template(cluster, version)
        return built[version]

    return template


@pytest.fixture(params=ALL_PREFECT_VERSIONS, ids=lambda version: f"prefect-{version}")
def any_prefect_db(
    request: pytest.FixtureRequest,
    cluster: PgCluster,
    lazy_templates: Callable[[str], str],
    exporter_password: str,
) -> Iterator[TestDatabase]:
    """Like ``prefect_db``, on every supported schema including 2.20.x and 3.6.29.

    Only the core and machinery tests use it: the rest of the suite runs on ``PREFECT_VERSIONS``.
    """
    version: str = request.param
    db = make_database(cluster, exporter_password, lazy_templates(version), version)
    try:
        yield db
    finally:
        cluster.drop_database(db.name)


@pytest.fixture
def plain_db(cluster: PgCluster, exporter_password: str) -> Iterator[TestDatabase]:
    """A fresh database without any Prefect schema, dropped afterwards."""
    db = make_database(cluster, exporter_password, None, None)
    try:
        yield db
    finally:
        cluster.drop_database(db.name)


@pytest.fixture(autouse=True)
def keep_root_logging() -> Iterator[None]:
    """Give each test back the root logger's level it started with.

    Commands run in process (``doctor``'s main calls ``setup_logging("error", …)``) set the root
    level; without this, every later test's warnings were dropped before caplog saw them. (pytest
    attaches its own capture handlers anew for each phase, so only the level needs restoring.)
    """
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)
