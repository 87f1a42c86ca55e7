"""The layers of ARCHITECTURE.md hold: import-linter keeps the contracts in pyproject.toml, and they bite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.paths import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # --no-cache: the package in `root` may differ from the one last analysed.
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )


def verdict(report: str, contract: str) -> str:
    """Return KEPT or BROKEN for the contract whose name starts with ``contract`` (names wrap)."""
    words = " ".join(report.split())
    after = words[words.index(contract) :]
    return min(("KEPT", "BROKEN"), key=lambda v: after.find(v) if v in after else len(after))


def test_every_import_contract_is_kept() -> None:
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden_import", "contract"),
    [
        ("database", "import exporter.catalog", "The database layer knows no catalog"),
        ("config", "import asyncpg", "Definitions (config, catalog, operations, releases, web config)"),
        ("web", "import exporter.collection", "Endpoints talk to the registry"),
        ("collection", "import exporter.cli", "Layers, top to bottom"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, forbidden_import: str, contract: str
) -> None:
    shutil.copytree(
        REPO_ROOT / "exporter", tmp_path / "exporter", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "exporter" / f"{module}.py").open("a", encoding="utf-8") as source:
        source.write(f"\n{forbidden_import}  # noqa: E402\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert verdict(result.stdout, contract) == "BROKEN", result.stdout
