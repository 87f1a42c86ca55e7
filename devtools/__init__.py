"""Developer tooling: throwaway PostgreSQL clusters and Prefect schema templates."""

from __future__ import annotations

from devtools.pgcluster import (
    PgCluster,
    PgClusterError,
    TestDatabase,
    admin_connect,
    exporter_connect,
)

__all__ = ["PgCluster", "PgClusterError", "TestDatabase", "admin_connect", "exporter_connect"]
