"""make test on a machine without the system packages: it installs them (as root) or stops at once
with one line. The "missing" path is walked with a fake PATH and file root, never by removing
anything from this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devtools import system_packages
from devtools.paths import REPO_ROOT
from devtools.system_packages import NEEDS, advice, missing

SCRIPT = REPO_ROOT / "devtools" / "system_packages.py"


def fake_system(root: Path, without: set[str]) -> dict[str, str]:
    """A PATH and a file root holding what every package but ``without`` brings."""
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for need in NEEDS:
        if need.package in without:
            continue
        for command in need.commands:
            tool = bin_dir / command
            tool.write_text("#!/bin/sh\nexit 0\n")
            tool.chmod(0o755)
        for pattern in need.files:
            path = root / pattern.lstrip("/").replace("*", "15")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
    return {"PPE_SYSTEM_PATH": str(bin_dir), "PPE_SYSTEM_ROOT": str(root), "PPE_NO_INSTALL": "1"}


def run_script(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # The system python and no virtualenv: make test runs it before one exists.
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_this_machine_has_every_package_the_suite_needs() -> None:
    assert missing(os.environ) == [], advice(missing(os.environ))


def test_a_machine_with_everything_passes_the_check(tmp_path: Path) -> None:
    result = run_script(fake_system(tmp_path, without=set()), "ensure")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_a_machine_without_the_prometheus_packages_gets_one_line_naming_them(tmp_path: Path) -> None:
    env = fake_system(tmp_path, without={"prometheus", "prometheus-alertmanager", "postgresql-contrib"})
    result = run_script(env, "ensure")
    assert result.returncode == 1 and result.stderr == ""
    (line,) = result.stdout.splitlines()
    names = "postgresql-contrib prometheus prometheus-alertmanager"
    assert line.startswith(f"make test needs the system packages {names}: ")
    assert f"`sudo apt-get install -y {names}`" in line


def test_the_contrib_package_is_checked_by_its_extension_files(tmp_path: Path) -> None:
    env = fake_system(tmp_path, without=set())
    control = next(tmp_path.glob("usr/share/postgresql/*/extension/pg_stat_statements.control"))
    control.unlink()
    assert [n.package for n in missing(env)] == ["postgresql-contrib"]


def test_make_test_stops_before_running_anything_when_packages_are_missing(tmp_path: Path) -> None:
    env = fake_system(tmp_path, without={"docker-compose"})
    result = subprocess.run(
        ["make", "--no-print-directory", "test", f"VENV={tmp_path / 'never-created'}"],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    assert not (tmp_path / "never-created").exists(), "make test went on past the package check"
    # One line, and nothing else: make's own "*** ... Stop." wraps the script's line.
    (line,) = (result.stdout + result.stderr).splitlines()
    assert "*** make test needs the system packages docker-compose: run `sudo apt-get install" in line


def test_ci_runs_only_the_readme_test_command() -> None:
    commands = [
        line.strip()
        for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands == ["set -euo pipefail", 'cd "$(dirname "$0")/.."', "make test"]
    assert "make test" in (REPO_ROOT / "README.md").read_text()


def test_installing_is_only_tried_as_root_with_apt_and_not_when_forbidden(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert system_packages.can_install({}) is (system_packages.shutil.which("apt-get") is not None)
    assert system_packages.can_install({"PPE_NO_INSTALL": "1"}) is False
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert system_packages.can_install({}) is False


def test_make_test_fails_a_skipped_test(tmp_path: Path) -> None:
    test = tmp_path / "test_skips.py"
    test.write_text("import pytest\n\ndef test_needs_a_tool():\n    pytest.skip('no tool here')\n")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "devtools.noskip", "-p", "no:cacheprovider", str(test)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "1 failed" in result.stdout
    assert "skipped under make test, which allows no skips: Skipped: no tool here" in result.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="the install path runs as root only")
def test_installing_as_root_keeps_apt_output_off_the_line_make_reads(tmp_path: Path) -> None:
    """make stops with whatever `ensure` prints on stdout: apt-get's progress must go to stderr."""
    env = fake_system(tmp_path / "system", without={"prometheus"})
    del env["PPE_NO_INSTALL"]
    prometheus = next(need for need in NEEDS if need.package == "prometheus")
    made = " ".join(f"{env['PPE_SYSTEM_PATH']}/{command}" for command in prometheus.commands)
    fake_apt = tmp_path / "apt" / "apt-get"
    fake_apt.parent.mkdir()
    fake_apt.write_text(
        "#!/bin/sh\necho 'Reading package lists... Done'\n"
        f'if [ "$1" = install ]; then for t in {made}; do\n'
        '  printf "#!/bin/sh\\n" > "$t"; chmod 755 "$t"\ndone; fi\n'
    )
    fake_apt.chmod(0o755)
    result = run_script({**env, "PATH": f"{fake_apt.parent}:{os.environ['PATH']}"}, "ensure")
    assert (result.returncode, result.stdout) == (0, ""), result
    assert "Reading package lists" in result.stderr
