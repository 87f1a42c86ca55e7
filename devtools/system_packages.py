"""The system packages the test suite needs, in one place: ``make test`` and ``.ci/run`` both use it.

``python3 devtools/system_packages.py ensure`` checks each package by the files it brings (a command on
PATH, or a file such as PostgreSQL's ``initdb``), installs the missing ones with apt-get when it runs as
root on a Debian-like system, and otherwise stops at once with one line naming the packages and the
command to run. It uses the standard library only and is run by path, before any virtualenv exists.

Three environment variables point the check elsewhere, so that tests can walk the "missing" path without
removing anything from the machine:

- ``PPE_SYSTEM_PATH`` replaces ``PATH`` for finding commands;
- ``PPE_SYSTEM_ROOT`` is prepended to the file patterns (``/usr/lib/postgresql/*/bin/initdb``);
- ``PPE_NO_INSTALL=1`` reports what is missing instead of installing it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    """A Debian package and what shows it is installed (every command and at least one file per pattern)."""

    package: str
    why: str
    commands: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


NEEDS: tuple[Need, ...] = (
    Need(
        "postgresql", "throwaway test clusters (initdb, pg_ctl)", files=("/usr/lib/postgresql/*/bin/initdb",)
    ),
    Need(
        "postgresql-contrib",
        "pg_stat_statements in the test clusters",
        files=("/usr/share/postgresql/*/extension/pg_stat_statements.control",),
    ),
    Need("postgresql-client", "psql runs the collectors and deploy/exporter-role.sql", commands=("psql",)),
    Need("prometheus", "promtool checks the rules; a live Prometheus", commands=("promtool", "prometheus")),
    Need(
        "prometheus-alertmanager",
        "amtool and a live Alertmanager",
        commands=("amtool", "prometheus-alertmanager"),
    ),
    Need("docker-compose", "docker-compose config checks docker-compose.yml", commands=("docker-compose",)),
    Need("kubernetes-client", "kubectl kustomize renders deploy/kubernetes", commands=("kubectl",)),
    Need("systemd", "systemd-analyze verifies the systemd unit", commands=("systemd-analyze",)),
)


def is_installed(need: Need, env: Mapping[str, str]) -> bool:
    """Whether everything ``need`` names is present, looked up through ``env``'s overrides."""
    path = env.get("PPE_SYSTEM_PATH", env.get("PATH", os.defpath))
    root = env.get("PPE_SYSTEM_ROOT", "")
    if any(shutil.which(command, path=path) is None for command in need.commands):
        return False
    return all(glob.glob(root + pattern) for pattern in need.files)


def missing(env: Mapping[str, str], needs: Sequence[Need] = NEEDS) -> list[Need]:
    """The needs that are not installed."""
    return [need for need in needs if not is_installed(need, env)]


def advice(absent: Sequence[Need]) -> str:
    """The one line that names the missing packages and the command that installs them."""
    names = " ".join(n.package for n in absent)
    return (
        f"make test needs the system packages {names}: run `sudo apt-get install -y {names}` "
        "(as root, make test installs them itself)"
    )


def can_install(env: Mapping[str, str]) -> bool:
    """Whether this process may install packages itself: root, apt-get present, not forbidden."""
    return env.get("PPE_NO_INSTALL") != "1" and os.geteuid() == 0 and shutil.which("apt-get") is not None


def install(absent: Sequence[Need]) -> None:
    """Install ``absent`` with apt-get (non-interactive, no recommends)."""
    names = [n.package for n in absent]
    print(f"installing system packages: {' '.join(names)}", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # apt's progress goes to stderr: make stops with whatever `ensure` prints on stdout.
    for args in (["update", "-q"], ["install", "-y", "-q", "--no-install-recommends", *names]):
        subprocess.run(["apt-get", *args], check=True, env=env, stdout=sys.stderr)


def ensure(env: Mapping[str, str]) -> int:
    """Install what is missing when possible; return 0 when everything is there, else print one line.

    The line goes to stdout and nothing else does, so that make can stop with it as its only message.
    """
    absent = missing(env)
    if absent and can_install(env):
        try:
            install(absent)
        except subprocess.CalledProcessError as error:
            print(f"apt-get failed ({error.returncode})", file=sys.stderr)
        absent = missing(env)
    if absent:
        print(advice(absent))
        return 1
    return 0


def main(argv: Sequence[str]) -> int:
    """``ensure`` (install or stop) or ``check`` (report only)."""
    command = argv[0] if argv else "ensure"
    if command == "check":
        absent = missing(os.environ)
        if absent:
            print(advice(absent), file=sys.stderr)
        return 1 if absent else 0
    if command == "ensure":
        return ensure(os.environ)
    if command == "list":
        for need in NEEDS:
            print(f"{need.package}\t{need.why}")
        return 0
    print("usage: system_packages.py [ensure|check|list]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
