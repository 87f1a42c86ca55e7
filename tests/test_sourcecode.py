"""Code quality is a test too: ruff and mypy --strict must pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=300)


def test_ruff_is_clean() -> None:
    result = run(str(BIN / "ruff"), "check", "exporter", "devtools", "dashboards", "bench", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean_for_the_exporter() -> None:
    result = run(str(BIN / "ruff"), "format", "--check", "exporter")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean_for_the_exporter() -> None:
    result = run(str(BIN / "mypy"), "--strict", "exporter")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean_for_the_tools() -> None:
    result = run(str(BIN / "mypy"), "--strict", "devtools", "dashboards", "bench")
    assert result.returncode == 0, result.stdout + result.stderr
