"""``--check`` connects, runs every collector once, prints a table and fails with one line per problem."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from helpers import PASSWORD_ENV, split_password

from devtools.pgcluster import TestDatabase

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_check(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if password is not None:
        env[PASSWORD_ENV] = password
    return subprocess.run(
        [sys.executable, "-m", "exporter", "--check", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
        cwd=REPO_ROOT,
    )


def write_config(tmp_path: Path, db: TestDatabase, extra: str = "") -> Path:
    dsn, _ = split_password(db.exporter_dsn)
    path = tmp_path / "exporter.yaml"
    path.write_text(f"targets:\n  - name: prod\n    dsn: {dsn}\n    password_env: {PASSWORD_ENV}\n{extra}")
    return path


def test_check_passes_on_a_prefect_database(prefect_db: TestDatabase, tmp_path: Path) -> None:
    _, password = split_password(prefect_db.exporter_dsn)
    result = run_check("--config", str(write_config(tmp_path, prefect_db)), password=password)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].split() == ["target", "collector", "rows", "ms", "result"]
    assert re.search(r"^prod\s+flow_runs\s+\d+\s+[\d.]+\s+ok$", result.stdout, re.M)
    assert "0 problems" in result.stdout
    assert password is not None and password not in result.stdout + result.stderr


def test_check_fails_without_a_prefect_schema(plain_db: TestDatabase, tmp_path: Path) -> None:
    _, password = split_password(plain_db.exporter_dsn)
    result = run_check("--config", str(write_config(tmp_path, plain_db)), password=password)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "target prod: no Prefect schema in postgresql://prefect_exporter@" in errors[0]
    # The PostgreSQL collectors still ran and passed.
    assert re.search(r"^prod\s+server\s+1\s+[\d.]+\s+ok$", result.stdout, re.M), result.stdout


def test_check_fails_on_a_wrong_password(prefect_db: TestDatabase, tmp_path: Path) -> None:
    result = run_check("--config", str(write_config(tmp_path, prefect_db)), password="not-the-password")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert 'password authentication failed for user "prefect_exporter"' in errors[0]
    assert "not-the-password" not in result.stdout + result.stderr


def test_check_fails_on_a_broken_user_collector_header(prefect_db: TestDatabase, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "mine.sql").write_text("-- description: Mine.\n-- metrics:\n--   - name: my_thing\nSELECT 1;\n")
    config = write_config(tmp_path, prefect_db, "collectors:\n  extra_query_dirs: [extra]\n")
    _, password = split_password(prefect_db.exporter_dsn)
    result = run_check("--config", str(config), password=password)
    assert result.returncode == 1
    assert f"{extra / 'mine.sql'}:3: metrics[0]: missing required key 'type'" in result.stderr
    assert f"{extra / 'mine.sql'}:3: metrics[0]: missing required key 'help'" in result.stderr


def test_check_fails_on_a_label_column_the_query_lacks(prefect_db: TestDatabase, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "mine.sql").write_text(
        "-- description: Mine.\n-- metrics:\n--   - name: my_thing\n--     type: gauge\n"
        "--     help: Mine.\n--     value: v\n--     labels: [colour]\nSELECT 1 AS v;\n"
    )
    config = write_config(tmp_path, prefect_db, "collectors:\n  extra_query_dirs: [extra]\n")
    _, password = split_password(prefect_db.exporter_dsn)
    result = run_check("--config", str(config), password=password)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: target prod: collector mine: {extra / 'mine.sql'}:3: metrics[0].labels: "
        "column 'colour' is not in the query's result (it returns: v)"
    ]
