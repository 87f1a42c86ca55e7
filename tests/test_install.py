"""The README's install command for a PEP 668 system: `uv tool install .` puts the exporter into a
virtualenv of its own and its command on PATH (pipx does the same; it is not installed here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import exporter
from devtools.paths import REPO_ROOT


def test_uv_tool_install_gives_a_working_command(tmp_path: Path) -> None:
    uv = Path(sys.prefix) / "bin" / "uv"
    env = {
        **os.environ,
        "UV_TOOL_DIR": str(tmp_path / "tools"),
        "UV_TOOL_BIN_DIR": str(tmp_path / "bin"),
        "UV_PYTHON": sys.executable,
    }
    installed = subprocess.run(
        [str(uv), "tool", "install", "-q", str(REPO_ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    command = tmp_path / "bin" / "prefect-db-exporter"
    version = subprocess.run([str(command), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"prefect-db-exporter {exporter.__version__}"
    # The installed package carries its collectors: --check-config loads them without a database.
    checked = subprocess.run(
        [str(command), "--dsn", "postgresql://nobody@127.0.0.1:1/prefect", "--check-config"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    assert "configuration ok" in checked.stdout
