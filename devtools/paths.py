"""Where things are in the repository, for tests, benchmarks and tools."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The least-privilege role for the exporter, as an operator runs it (psql -f, with :exporter_password).
ROLE_SCRIPT = REPO_ROOT / "deploy" / "exporter-role.sql"
