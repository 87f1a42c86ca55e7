"""deploy/systemd: the unit passes `systemd-analyze verify`, its sandbox scores as systemd's own
"OK", and the command it starts is the exporter's, with a config that reads the credential systemd
hands over. (The unit is not started here: this machine's PID 1 is not systemd.)"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from devtools.paths import REPO_ROOT

UNIT = REPO_ROOT / "deploy" / "systemd" / "prefect-db-exporter.service"
INSTALLED = "/opt/prefect-db-exporter/bin/prefect-db-exporter"
# systemd-analyze security's scale: 0 (locked down) to 10; below 2 it says "OK".
EXPOSURE_AT_MOST = 2.0


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: apt-get install systemd (make test does)"
    return found


def local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this virtualenv's exporter (verify checks it exists)."""
    text = UNIT.read_text(encoding="utf-8")
    assert f"ExecStart={INSTALLED} " in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED, str(Path(sys.prefix) / "bin" / "prefect-db-exporter")))
    return unit


def directives(name: str) -> list[str]:
    return re.findall(rf"^{name}=(.*)$", UNIT.read_text(encoding="utf-8"), flags=re.M)


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "verify", str(local_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # verify exits 0 on unknown keys and bad values too; it reports them on stderr.
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def test_unit_sandbox_is_rated_ok_by_systemd_analyze_security(tmp_path: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=yes", "--no-pager", str(local_unit(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= EXPOSURE_AT_MOST, result.stdout


def test_unit_starts_the_exporter_with_a_config_that_validates(tmp_path: Path) -> None:
    (exec_start,) = directives("ExecStart")
    argv = shlex.split(exec_start)
    assert argv[0] == INSTALLED
    (credential,) = directives("LoadCredential")
    name, _, source = credential.partition(":")
    assert source.startswith("/etc/prefect-db-exporter/")
    # The config the README tells VM users to write, with the credential's path systemd gives it.
    config = tmp_path / "exporter.yaml"
    password = tmp_path / name
    password.write_text("change-me")
    example = (REPO_ROOT / "deploy" / "exporter.example.yaml").read_text()
    credential_path = f"/run/credentials/{UNIT.name}/{name}"
    assert credential_path in UNIT.read_text()
    config.write_text(
        re.sub(r"password_file: \S+", f"password_file: {password}", example).replace(
            "/run/secrets/", str(tmp_path) + "/"
        )
    )
    result = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "prefect-db-exporter"), f"--config={config}", "--check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert [a.split("=")[0] for a in argv[1:]] == ["--config"]
