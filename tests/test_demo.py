"""The README's demo command works: it serves /metrics with the seeded trouble visible."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from devtools.pgcluster import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_demo_serves_metrics_with_trouble_in_them() -> None:
    port = free_port()
    result = subprocess.run(
        [sys.executable, "-m", "devtools.demo", "--once", "--port", str(port)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"serving http://127.0.0.1:{port}/metrics" in result.stdout
    values = dict(re.findall(r"^\s+(prefect_db_\w+) = ([\d.e+-]+|nan)", result.stdout, re.M))
    assert float(values["prefect_db_up"]) == 1.0
    for name in (
        "prefect_db_pending_runs_stale",
        "prefect_db_late_runs",
        "prefect_db_running_runs_heartbeat_stale",
    ):
        assert float(values[name]) > 0, (name, result.stdout)
