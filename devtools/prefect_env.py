"""Pinned Prefect releases in side virtualenvs, and template databases migrated by them.

Prefect is never a dependency of the exporter. Each pinned release is installed into its
own virtualenv under the cache directory so that Prefect's own Alembic migrations create
the real schema in a test cluster (and so that real servers and workers can be run).

Some releases cannot be installed as published, hence the per-version ``RECIPES``:

* 3.1.15 does not cap fastapi/starlette, and newer ones break ``prefect server start``
  (``Body() got an unexpected keyword argument 'min_items'``); the caps live in
  ``devtools/constraints/3.1.15.txt``, which is applied whenever it exists. Its workers
  also import ``importlib_metadata``, which it declares only for Python < 3.10.
* 2.20.27 installs as published; 2.x runs its migrations with the same
  ``prefect server database upgrade -y`` and ``PREFECT_API_DATABASE_CONNECTION_URL`` as 3.x.
  3.6.29 migrates as published, but its server needs the fastapi/starlette caps of 3.1.15
  (``devtools/constraints/3.6.29.txt``).
* 3.9.1 requires ``certifi>=2026.10.19``, newer than any certifi the package index offers,
  so pip's resolver gives up. certifi only ships a CA bundle, so any release works: the
  wheel is installed with ``--no-deps`` and its requirements, read from the wheel's own
  METADATA, are installed separately with the certifi version pin dropped ("relaxed").

Virtualenvs live in ``<cache>/prefect/<version>/``; the cache is ``$PPE_CACHE_DIR`` or
``<repo>/.cache``. A marker file is written only after a complete, smoke-tested install, so
an interrupted install is redone, and a file lock keeps two processes from building the
same virtualenv at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from devtools.pgcluster import PgCluster

PREFECT_VERSIONS: tuple[str, ...] = ("3.1.15", "3.9.1")
# Schemas only the core and the machinery tests run on (tests/test_machinery.py), so that the
# whole suite does not run once more per release: 2.20.27, the newest 2.x the package index
# serves (2.x never got the last_polled deadlock fix), and 3.6.29, the last release that
# deadlocks, with heartbeats on by default and db_vacuum.
EXTRA_PREFECT_VERSIONS: tuple[str, ...] = ("2.20.27", "3.6.29")
ALL_PREFECT_VERSIONS: tuple[str, ...] = tuple(
    sorted(PREFECT_VERSIONS + EXTRA_PREFECT_VERSIONS, key=lambda v: tuple(map(int, v.split("."))))
)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS_DIR = Path(__file__).resolve().parent / "constraints"
COMPLETE_MARKER = ".ppe-complete"


@dataclass(frozen=True)
class Recipe:
    """How to install one Prefect release into a virtualenv."""

    extra_packages: tuple[str, ...] = ()
    relax: frozenset[str] = field(default_factory=frozenset)


RECIPES: dict[str, Recipe] = {
    # prefect/workers/base.py imports importlib_metadata unconditionally, but 3.1.15
    # declares it only for Python < 3.10, so workers would not start without it.
    "3.1.15": Recipe(extra_packages=("importlib_metadata",)),
    "3.9.1": Recipe(relax=frozenset({"certifi"})),
}


class PrefectEnvError(RuntimeError):
    """Installing Prefect or running its migrations failed."""


def progress(message: str) -> None:
    """Print one progress line to stderr."""
    print(f"[prefect_env] {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """Return the cache root: ``$PPE_CACHE_DIR`` or ``<repo>/.cache``."""
    return Path(os.environ.get("PPE_CACHE_DIR") or REPO_ROOT / ".cache")


def venv_dir(version: str) -> Path:
    """Return where the virtualenv for a Prefect version lives (installed or not)."""
    return cache_dir() / "prefect" / version


def prefect_executable(version: str) -> Path:
    """Return the ``prefect`` CLI inside the virtualenv of a version."""
    return venv_dir(version) / "bin" / "prefect"


def constraints_file(version: str) -> Path | None:
    """Return the pip constraints file for a version, if there is one."""
    path = CONSTRAINTS_DIR / f"{version}.txt"
    return path if path.exists() else None


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` for the duration of the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install_fingerprint(version: str) -> str:
    """Return what the marker of a complete install records: the version, recipe and constraints."""
    constraints = constraints_file(version)
    pinned = constraints.read_text(encoding="utf-8") if constraints else ""
    digest = hashlib.sha256(f"{RECIPES.get(version, Recipe())!r}\n{pinned}".encode()).hexdigest()
    return f"prefect {version} {digest[:16]}\n"


def is_installed(venv: Path, version: str) -> bool:
    """True when ``venv`` holds a complete install made with today's recipe and constraints."""
    marker = venv / COMPLETE_MARKER
    return marker.exists() and marker.read_text(encoding="utf-8") == install_fingerprint(version)


def ensure_prefect(version: str) -> Path:
    """Return the virtualenv holding Prefect ``version``, installing it if needed."""
    venv = venv_dir(version)
    if is_installed(venv, version):
        return venv
    with file_lock(venv.parent / f"{version}.lock"):
        # Another process may have finished the install while we waited for the lock.
        if not is_installed(venv, version):
            install_prefect(version, venv)
    return venv


def install_prefect(version: str, venv: Path) -> None:
    """Build the virtualenv from scratch and mark it complete once it imports."""
    recipe = RECIPES.get(version, Recipe())
    log = venv.parent / f"{version}.log"
    progress(f"installing prefect {version} into {venv} (about a minute; log: {log})")
    shutil.rmtree(venv, ignore_errors=True)
    log.write_text("")
    run_logged([sys.executable, "-m", "venv", str(venv)], log)
    constraints = constraints_file(version)
    pins = ["-c", str(constraints)] if constraints else []
    if recipe.relax:
        install_relaxed(version, venv, recipe, pins, log)
    else:
        pip(venv, [f"prefect=={version}", *recipe.extra_packages, *pins], log)
    check_installed_version(version, venv, log)
    (venv / COMPLETE_MARKER).write_text(install_fingerprint(version))


def install_relaxed(version: str, venv: Path, recipe: Recipe, pins: Sequence[str], log: Path) -> None:
    """Install the wheel without deps, then its requirements minus the relaxed pins."""
    with tempfile.TemporaryDirectory(prefix="ppe-wheel-") as tmp:
        pip_command(venv, "download", ["--no-deps", "-d", tmp, f"prefect=={version}"], log)
        wheels = sorted(Path(tmp).glob("prefect-*.whl"))
        if len(wheels) != 1:
            raise PrefectEnvError(f"expected one prefect wheel in {tmp}, found {wheels}")
        requirements = relaxed_requirements(wheels[0], recipe.relax)
        req_file = venv / "relaxed-requirements.txt"
        req_file.write_text("\n".join(requirements) + "\n")
        pip(venv, ["--no-deps", str(wheels[0])], log)
    pip(venv, ["-r", str(req_file), *recipe.extra_packages, *pins], log)


def normalize_name(name: str) -> str:
    """Normalize a distribution name as PEP 503 does."""
    return re.sub(r"[-_.]+", "-", name).lower()


def relaxed_requirements(wheel: Path, relax: frozenset[str]) -> list[str]:
    """Read a wheel's non-extra ``Requires-Dist`` lines, unpinning the names in ``relax``."""
    relaxed_names = {normalize_name(n) for n in relax}
    result = []
    for line in wheel_requirements(wheel):
        spec, _, marker = (part.strip() for part in line.partition(";"))
        if re.search(r"\bextra\s*==", marker):
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?", spec)
        if match is None:
            raise PrefectEnvError(f"cannot parse requirement {line!r} in {wheel.name}")
        if normalize_name(match.group(1)) in relaxed_names:
            spec = match.group(1) + (match.group(2) or "")
        result.append(f"{spec}; {marker}" if marker else spec)
    return result


def wheel_requirements(wheel: Path) -> list[str]:
    """Return the ``Requires-Dist`` header values from a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        if len(names) != 1:
            raise PrefectEnvError(f"{wheel.name} has {len(names)} METADATA files")
        metadata = archive.read(names[0]).decode()
    return HeaderParser().parsestr(metadata).get_all("Requires-Dist") or []


def pip(venv: Path, args: Sequence[str], log: Path) -> None:
    """Run ``pip install -q`` in the virtualenv, logging its output."""
    pip_command(venv, "install", args, log)


def pip_command(venv: Path, command: str, args: Sequence[str], log: Path) -> None:
    """Run one quiet pip command with the virtualenv's interpreter."""
    python = venv / "bin" / "python"
    run_logged([str(python), "-m", "pip", command, "-q", *args], log)


def run_logged(argv: Sequence[str], log: Path) -> None:
    """Run a command with its output appended to ``log``; raise with the log's tail."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        last = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise PrefectEnvError(
            f"command failed ({result.returncode}): {' '.join(argv)}\n"
            f"full log: {log}\n--- last lines ---\n{last}"
        )


def check_installed_version(version: str, venv: Path, log: Path) -> None:
    """Import the installed Prefect and make sure it is the requested release."""
    code = "import prefect, sys; sys.stdout.write(prefect.__version__)"
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0 or result.stdout != version:
        with log.open("a") as out:
            out.write(result.stdout + result.stderr)
        raise PrefectEnvError(
            f"prefect {version} in {venv} does not import cleanly (got {result.stdout!r}); "
            f"see {log}:\n{result.stderr[-2000:]}"
        )


def sqlalchemy_url(dsn: str) -> str:
    """Turn a ``postgresql://`` DSN into the ``postgresql+asyncpg://`` URL Prefect wants."""
    scheme, sep, rest = dsn.partition("://")
    if not sep or scheme not in ("postgres", "postgresql", "postgresql+asyncpg"):
        raise ValueError(f"not a PostgreSQL URL: {dsn!r}")
    return f"postgresql+asyncpg://{rest}"


def prefect_env(dsn: str, prefect_home: Path) -> dict[str, str]:
    """Build the environment for running Prefect's CLI against a database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_API_DATABASE_CONNECTION_URL=sqlalchemy_url(dsn),
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    return env


def migrate(version: str, dsn: str) -> None:
    """Run Prefect ``version``'s database migrations against ``dsn`` up to its head."""
    prefect = ensure_prefect(version) / "bin" / "prefect"
    with tempfile.TemporaryDirectory(prefix="ppe-prefect-home-") as home:
        result = subprocess.run(
            [str(prefect), "server", "database", "upgrade", "-y"],
            env=prefect_env(dsn, Path(home)),
            cwd=home,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if result.returncode != 0:
        raise PrefectEnvError(
            f"prefect {version} migrations failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )


def template_name(version: str) -> str:
    """Return the template database name for a version, e.g. ``prefect_tpl_3_1_15``."""
    return "prefect_tpl_" + re.sub(r"[^0-9a-z]+", "_", version.lower())


def template_marker(version: str) -> str:
    """Return the database comment that marks a completely built template."""
    return f"prefect {version} schema, built by devtools.prefect_env"


def database_comment(cluster: PgCluster, name: str) -> str:
    """Return a database's comment, or "" if it has none or does not exist."""
    sql = "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :'db';"
    return cluster.psql(sql, variables={"db": name}).strip()


def ensure_template(cluster: PgCluster, version: str) -> str:
    """Return the name of a template database holding Prefect ``version``'s schema."""
    name = template_name(version)
    marker = template_marker(version)
    if database_comment(cluster, name) == marker:
        return name
    ensure_prefect(version)
    progress(f"building template database {name} with prefect {version} migrations")
    cluster.drop_database(name)
    cluster.create_database(name)
    migrate(version, cluster.dsn(name))
    head = cluster.psql("SELECT version_num FROM alembic_version;", name).strip()
    if not head:
        raise PrefectEnvError(f"prefect {version} migrations left alembic_version empty in {name}")
    # As on most Prefect databases whose server preloads it (the test clusters do): the
    # poll_amplification collector reads it, and every copy of the template gets it.
    cluster.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements;", name)
    # Nobody may connect to a template: CREATE DATABASE ... TEMPLATE fails while anyone is.
    cluster.psql(
        'ALTER DATABASE :"db" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false;\n'
        "COMMENT ON DATABASE :\"db\" IS :'marker';\n",
        variables={"db": name, "marker": marker},
    )
    return name
