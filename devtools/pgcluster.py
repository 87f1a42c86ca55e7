"""A throwaway PostgreSQL cluster driven through the server's own command-line tools.

The cluster is meant for tests and local experiments only: durability is switched off
(``fsync=off`` and friends) because the data is discarded afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

import asyncpg

PG_LIB_ROOT = Path("/usr/lib/postgresql")
OS_SUPERUSER = "postgres"
DB_SUPERUSER = "postgres"
HOST = "127.0.0.1"

BASE_SETTINGS: dict[str, str] = {
    "listen_addresses": HOST,
    "shared_preload_libraries": "pg_stat_statements",
    "log_lock_waits": "on",
    "deadlock_timeout": "200ms",
    "log_line_prefix": "%m [%p] %q%u@%d ",
    "max_connections": "200",
    "password_encryption": "scram-sha-256",
    # Durability is pointless for a cluster that is thrown away; these make tests faster.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}

HBA_LINES = (
    "local all all trust",
    f"host all {DB_SUPERUSER} {HOST}/32 trust",
    f"host all all {HOST}/32 scram-sha-256",
)


class PgClusterError(RuntimeError):
    """A PostgreSQL command or the server itself failed."""


def find_bindir() -> Path:
    """Return the bin directory of the newest installed PostgreSQL major version."""
    override = os.environ.get("PPE_PG_BINDIR")
    if override:
        return Path(override)
    majors = [p for p in PG_LIB_ROOT.glob("*") if p.name.isdigit() and (p / "bin" / "initdb").exists()]
    if not majors:
        raise PgClusterError(f"no PostgreSQL server binaries found under {PG_LIB_ROOT}")
    return max(majors, key=lambda p: int(p.name)) / "bin"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def quote_ident(name: str) -> str:
    """Quote an SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def conf_line(name: str, value: str) -> str:
    """Render one postgresql.conf line; every value type accepts the quoted form."""
    return f"{name} = '{value.replace(chr(39), chr(39) * 2)}'"


def clean_env() -> dict[str, str]:
    """Return the environment without PG* variables that could redirect the tools."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def progress(message: str) -> None:
    """Print one progress line to stderr."""
    print(f"[pgcluster] {message}", file=sys.stderr, flush=True)


def running_as_root() -> bool:
    """Tell whether this process has euid 0."""
    return os.geteuid() == 0


def tail(path: Path, lines: int = 30) -> str:
    """Return the last lines of a text file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


class PgCluster:
    """A PostgreSQL cluster in a private directory, listening on 127.0.0.1."""

    host: str = HOST

    def __init__(self, base_dir: Path, port: int, bindir: Path | None = None) -> None:
        """Attach to a cluster directory created by ``PgCluster.create``."""
        self.base_dir = base_dir
        self.port = port
        self.bindir = bindir or find_bindir()

    @property
    def data_dir(self) -> Path:
        """The PGDATA directory."""
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory holding the server's Unix socket."""
        return self.base_dir / "sock"

    @property
    def log_path(self) -> Path:
        """The server log file written by ``pg_ctl -l``."""
        return self.base_dir / "postgresql.log"

    @property
    def major_version(self) -> int:
        """The PostgreSQL major version of the binaries in use."""
        return int(self.bindir.parent.name)

    @classmethod
    def create(
        cls,
        base_dir: Path,
        *,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> PgCluster:
        """Run initdb in ``base_dir/data`` and write the test configuration."""
        cluster = cls(base_dir, port or free_port())
        base_dir.mkdir(parents=True, exist_ok=True)
        cluster.socket_dir.mkdir(exist_ok=True)
        cluster._hand_over_to_os_superuser()
        progress(f"initdb PostgreSQL {cluster.major_version} into {cluster.data_dir}")
        # --no-sync: the cluster is disposable, so skip the slow fsync of the new files.
        args = ["-D", str(cluster.data_dir), "-U", DB_SUPERUSER, "--auth=trust"]
        args += ["-E", "UTF8", "--locale=C", "--no-sync"]
        cluster._run_server_tool("initdb", args)
        cluster._write_config(settings or {})
        return cluster

    def _hand_over_to_os_superuser(self) -> None:
        """As root, give the directory to the postgres user, which the server needs."""
        if not running_as_root():
            return
        for path in (self.base_dir, self.socket_dir):
            shutil.chown(path, OS_SUPERUSER, OS_SUPERUSER)
        probe = subprocess.run(
            ["runuser", "-u", OS_SUPERUSER, "--", "test", "-w", str(self.base_dir)],
            check=False,
        )
        if probe.returncode != 0:
            raise PgClusterError(
                f"user {OS_SUPERUSER!r} cannot reach {self.base_dir}; "
                "put the cluster under a world-traversable directory such as /tmp"
            )

    def _write_config(self, settings: Mapping[str, str]) -> None:
        """Append our settings to postgresql.conf and replace pg_hba.conf."""
        merged = {
            **BASE_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            **settings,
        }
        lines = ["", "# --- devtools.pgcluster ---", *(conf_line(k, v) for k, v in merged.items())]
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n".join(lines) + "\n")
        (self.data_dir / "pg_hba.conf").write_text("\n".join(HBA_LINES) + "\n")

    def _server_tool_argv(self, tool: str, args: Sequence[str]) -> list[str]:
        """Build the argv for a server binary, dropping root privileges when needed."""
        argv = [str(self.bindir / tool), *args]
        if running_as_root():
            # initdb and postgres refuse to run as root.
            return ["runuser", "-u", OS_SUPERUSER, "--", *argv]
        return argv

    def _run_server_tool(
        self, tool: str, args: Sequence[str], *, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run initdb/pg_ctl and raise with its output when it fails."""
        result = subprocess.run(
            self._server_tool_argv(tool, args),
            capture_output=True,
            text=True,
            cwd=self.base_dir,
            env=clean_env(),
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise PgClusterError(
                f"{tool} {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        return result

    def start(self, timeout: float = 30) -> None:
        """Start the server and wait until it accepts connections."""
        progress(f"starting PostgreSQL {self.major_version} on {self.host}:{self.port}")
        args = ["-D", str(self.data_dir), "-l", str(self.log_path), "-w"]
        args += ["-t", str(int(timeout)), "start"]
        try:
            self._run_server_tool("pg_ctl", args, timeout=timeout + 10)
            self._wait_ready(timeout)
        except (PgClusterError, subprocess.TimeoutExpired) as exc:
            raise PgClusterError(
                f"PostgreSQL did not start: {exc}\n--- {self.log_path} ---\n{tail(self.log_path)}"
            ) from exc

    def _wait_ready(self, timeout: float) -> None:
        """Poll pg_isready over TCP until the server accepts connections."""
        deadline = time.monotonic() + timeout
        argv = [str(self.bindir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)]
        while subprocess.run(argv, env=clean_env(), check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise PgClusterError(f"server not ready after {timeout} s")
            time.sleep(0.1)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server with ``pg_ctl -m fast|smart|immediate``."""
        self._run_server_tool("pg_ctl", ["-D", str(self.data_dir), "-m", mode, "-w", "stop"])

    def restart(self) -> None:
        """Stop the server (fast) and start it again."""
        self.stop()
        self.start()

    def is_running(self) -> bool:
        """Tell whether a postmaster is running on the data directory."""
        result = subprocess.run(
            self._server_tool_argv("pg_ctl", ["-D", str(self.data_dir), "status"]),
            capture_output=True,
            cwd=self.base_dir,
            env=clean_env(),
            check=False,
        )
        return result.returncode == 0

    def destroy(self) -> None:
        """Stop the server if it runs and delete the whole cluster directory."""
        if self.data_dir.exists() and self.is_running():
            self.stop("immediate")
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", user: str = DB_SUPERUSER, password: str | None = None) -> str:
        """Return a postgresql:// URL reaching the cluster over TCP."""
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    def psql(
        self,
        sql: str,
        dbname: str = "postgres",
        *,
        variables: Mapping[str, str] | None = None,
        file: Path | None = None,
        timeout: float = 300,
    ) -> str:
        """Run SQL (then ``file``, if given) as superuser with psql; return its stdout."""
        argv = [str(self.bindir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", self.host, "-p", str(self.port), "-U", DB_SUPERUSER, "-d", dbname]
        for name, value in (variables or {}).items():
            argv += ["-v", f"{name}={value}"]
        # Feeding SQL on stdin (rather than -c) runs statements one by one, so
        # CREATE DATABASE and psql meta-commands such as \gexec work.
        if sql:
            argv += ["-f", "-"]
        if file is not None:
            argv += ["-f", str(file)]
        result = subprocess.run(
            argv,
            input=sql,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            what = f"file {file}" if file is not None else "SQL"
            raise PgClusterError(
                f"psql on {dbname!r} failed ({result.returncode}) running {what}:\n{result.stderr.strip()}"
            )
        return result.stdout

    def create_database(self, name: str, template: str | None = None) -> None:
        """Create a database, optionally as a copy of a template database."""
        sql = f"CREATE DATABASE {quote_ident(name)}"
        if template is not None:
            sql += f" TEMPLATE {quote_ident(template)}"
        self.psql(sql + ";")

    def drop_database(self, name: str) -> None:
        """Drop a database (even a template) after terminating its sessions."""
        force = " WITH (FORCE)" if self.major_version >= 13 else ""
        self.psql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = :'db' AND pid <> pg_backend_pid();\n"
            "SELECT format('ALTER DATABASE %I IS_TEMPLATE false', datname)"
            " FROM pg_database WHERE datname = :'db' AND datistemplate \\gexec\n"
            f'DROP DATABASE IF EXISTS :"db"{force};\n',
            variables={"db": name},
        )

    def database_exists(self, name: str) -> bool:
        """Tell whether a database of that name exists."""
        out = self.psql("SELECT 1 FROM pg_database WHERE datname = :'db';", variables={"db": name})
        return out.strip() == "1"


@dataclass(frozen=True)
class TestDatabase:
    """A database created for one test, with superuser and exporter-role DSNs."""

    __test__: ClassVar[bool] = False  # not a pytest test class despite the name

    name: str
    prefect_version: str | None
    admin_dsn: str
    exporter_dsn: str


async def admin_connect(db: TestDatabase) -> asyncpg.Connection:
    """Open an asyncpg connection to the test database as superuser."""
    return await asyncpg.connect(db.admin_dsn)


async def exporter_connect(db: TestDatabase) -> asyncpg.Connection:
    """Open an asyncpg connection to the test database as the exporter role."""
    return await asyncpg.connect(db.exporter_dsn)
