"""A small, polite connection pool to one target, with the session settings that keep it safe."""

from __future__ import annotations

import asyncio
import logging
import os
import time

import asyncpg

from exporter.config import TargetConfig, Thresholds
from exporter.errors import ConnectError, QueryError
from exporter.facts import COLUMNS_SQL, REVISION_SQL, VERSION_SQL, TargetFacts
from exporter.redaction import redact

log = logging.getLogger(__name__)

APPLICATION_NAME = "prefect-db-exporter"
FACTS_MAX_AGE = 300.0
MAX_BACKOFF = 30.0

# Errors that mean "this connection (or the server) is gone", as opposed to "this query failed", by
# asyncpg's own SQLSTATE classes: class 08 (connection exception, which asyncpg also raises when the
# socket closes under a query), the operator interventions (57P01 admin shutdown or pg_terminate_backend,
# 57P02 crash shutdown, 57P03 cannot connect now, 57P04 database dropped, 57P05 idle_session_timeout)
# except a cancelled query (57014, a timeout), 25P03 idle_in_transaction_session_timeout, 53300 too
# many connections, 3D000 (the database does not exist: dropped) and class 28 (the login is refused).
_LOST: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.IdleInTransactionSessionTimeoutError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
)
_NOT_LOST: tuple[type[BaseException], ...] = (asyncpg.QueryCanceledError, TimeoutError)


def is_connection_loss(error: BaseException, connection: asyncpg.Connection | None = None) -> bool:
    """True when ``error`` means the connection or the server is gone, not that the query failed.

    An ``InterfaceError`` (or ``InternalClientError``) is the driver refusing a misuse or losing track
    of its state (a bug to report as ``error``), unless the connection it came from is closed: then the
    server closed it under us.
    """
    if isinstance(error, _NOT_LOST):
        return False
    if isinstance(error, _LOST):
        return True
    if isinstance(error, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return connection is not None and connection.is_closed()
    return False


class _ConnectionLost(Exception):
    """Carries a lost connection's error from ``_fetch_once`` to the retry in ``fetch``."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


# The driver parses the DSN only when connecting; what it rejects there is a connect failure.
_DSN_ERRORS: tuple[type[BaseException], ...] = (ValueError, OverflowError)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Release a connection to the pool as it is (asyncpg still rolls back an open transaction).

    asyncpg's default reset sends ``RESET ALL``, ``CLOSE ALL``, ``UNLISTEN *`` and an advisory
    unlock after every query: a round trip per query for state the exporter never creates. The
    only setting it changes is an incremental collector's pass, which is set before every use.
    """


def query_status(error: BaseException) -> str:
    """Return the ``status`` label for a failed query."""
    if isinstance(error, asyncio.TimeoutError | asyncpg.QueryCanceledError):
        return "timeout"
    if isinstance(error, asyncpg.LockNotAvailableError):
        return "lock_timeout"
    if isinstance(error, asyncpg.InsufficientPrivilegeError):
        return "permission"
    if isinstance(error, asyncpg.UndefinedTableError | asyncpg.UndefinedColumnError):
        return "schema"
    if is_connection_loss(error):
        return "connection"
    return "error"


def describe(error: BaseException) -> str:
    """Return a one-line description of a driver error (never containing the DSN)."""
    if isinstance(error, asyncio.TimeoutError):
        return "timed out"
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    sqlstate = getattr(error, "sqlstate", None)
    # A driver message may quote what it was given (a DSN it could not parse, a host it cannot reach).
    return redact(f"{text} (SQLSTATE {sqlstate})" if sqlstate else text)


def _milliseconds(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


class TargetDatabase:
    """The exporter's connections to one Prefect database."""

    def __init__(self, config: TargetConfig, thresholds: Thresholds) -> None:
        self.config = config
        self.thresholds = thresholds
        self.facts: TargetFacts | None = None
        self.facts_generation = 0
        self.last_error: str | None = None
        self._facts_loaded_at = 0.0
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self._next_attempt = 0.0
        self._backoff = 1.0

    @property
    def connected(self) -> bool:
        """True while a pool is open."""
        return self._pool is not None

    def server_settings(self) -> dict[str, str]:
        """Return the settings every session of the exporter runs with."""
        return {
            "application_name": APPLICATION_NAME,
            "statement_timeout": _milliseconds(self.config.statement_timeout),
            # Never queue behind an ACCESS EXCLUSIVE lock: give up fast and report it instead.
            "lock_timeout": _milliseconds(self.config.lock_timeout),
            "idle_in_transaction_session_timeout": _milliseconds(self.config.idle_in_transaction_timeout),
            "default_transaction_read_only": "on",
            # Compiling tiny monitoring queries costs more than running them.
            "jit": "off",
            **self.thresholds.as_settings(),
        }

    def _password(self) -> str | None:
        # Read at every connect, so a rotated secret file is picked up without a restart.
        if self.config.password_file is not None:
            try:
                return self.config.password_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ConnectError(
                    f"cannot read password_file {self.config.password_file}: {error.strerror}"
                ) from None
        if self.config.password_env is not None:
            return os.environ.get(self.config.password_env)
        return None

    async def ensure_connected(self) -> None:
        """Open the pool if needed; raise ConnectError (and back off) when the database is unreachable."""
        if self._pool is not None:
            return
        async with self._lock:
            if self._pool is not None:
                return
            wait = self._next_attempt - time.monotonic()
            if wait > 0:
                raise ConnectError(f"{self.last_error} (next attempt in {wait:.0f}s)")
            try:
                pool = await asyncpg.create_pool(
                    self.config.dsn,
                    password=self._password(),
                    min_size=1,
                    max_size=self.config.pool_size,
                    timeout=self.config.connect_timeout,
                    max_inactive_connection_lifetime=60.0,
                    server_settings=self.server_settings(),
                    reset=_keep_session,
                )
            except ConnectError as error:
                self._failed(str(error))
                raise
            # Whatever stops a connect (refused, login, driver configuration) is a connect failure.
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, *_DSN_ERRORS) as error:
                self._failed(describe(error))
                raise ConnectError(self.last_error or "cannot connect") from None
            self._pool = pool
            self._backoff = 1.0
            self.last_error = None
            log.info("connected", extra={"fields": {"target": self.config.name, "dsn": self.config.safe_dsn}})

    async def connect_single(self) -> asyncpg.Connection:
        """Open one connection outside the pool (for the sampler), with the same safety settings."""
        try:
            return await asyncpg.connect(
                self.config.dsn,
                password=self._password(),
                timeout=self.config.connect_timeout,
                server_settings=self.server_settings(),
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, *_DSN_ERRORS) as error:
            raise ConnectError(f"cannot connect to {self.config.safe_dsn}: {describe(error)}") from None

    def _failed(self, message: str) -> None:
        self.last_error = f"cannot connect to {self.config.safe_dsn}: {message}"
        self._next_attempt = time.monotonic() + self._backoff
        self._backoff = min(MAX_BACKOFF, self._backoff * 2)
        fields = {"target": self.config.name, "error": self.last_error}
        log.warning("connect failed", extra={"fields": fields})

    async def disconnect(self) -> None:
        """Close the pool; the next use reconnects."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()

    async def close(self) -> None:
        """Close the pool gracefully (at shutdown)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=2.0)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pool.terminate()

    async def fetch(
        self,
        sql: str,
        timeout: float,
        settings: dict[str, str] | None = None,
        acquire_timeout: float | None = None,
    ) -> list[asyncpg.Record]:
        """Run one read-only query; raise QueryError with a status label on failure.

        ``timeout`` bounds the query once it has a connection; waiting for a connection of the
        small pool is bounded separately by ``acquire_timeout`` (default: ``timeout``), so that
        queries stuck behind someone else's lock do not use up the time of the queries queued after them.
        """
        error: BaseException | None = None
        for attempt in range(3):
            await self.ensure_connected()
            pool = self._pool
            assert pool is not None
            try:
                return await self._fetch_once(pool, sql, timeout, settings, acquire_timeout)
            except _ConnectionLost as lost:
                error = lost.error
            # One dead connection (a terminated backend) is replaced by the pool on the next
            # acquire, so retry on the same pool first; a second one in a row means the server
            # restarted, and only then is the pool replaced, unless a concurrent query already did.
            if attempt > 0 and self._pool is pool:
                await self.disconnect()
        assert error is not None
        # The query failed, not the connect: no back-off, the next scrape tries again at once.
        self.last_error = f"lost the connection to {self.config.safe_dsn}: {describe(error)}"
        raise QueryError(describe(error), "connection") from None

    async def _fetch_once(
        self,
        pool: asyncpg.Pool,
        sql: str,
        timeout: float,
        settings: dict[str, str] | None,
        acquire_timeout: float | None,
    ) -> list[asyncpg.Record]:
        waiting = acquire_timeout if acquire_timeout is not None else timeout
        try:
            async with pool.acquire(timeout=max(0.001, waiting)) as conn:
                try:
                    for name, value in (settings or {}).items():
                        await conn.execute("SELECT set_config($1, $2, false)", name, value, timeout=timeout)
                    rows: list[asyncpg.Record] = await conn.fetch(sql, timeout=timeout)
                    return rows
                # asyncpg raises InternalClientError ("cannot switch to state …") when the server closed
                # a pooled session while it sat idle (pg_terminate_backend, idle_session_timeout).
                except (asyncpg.InterfaceError, asyncpg.InternalClientError) as error:
                    if is_connection_loss(error, conn):
                        raise _ConnectionLost(error) from None
                    raise QueryError(describe(error), "error") from None
        # TimeoutError is an OSError: it must be caught before the connection errors.
        except TimeoutError:
            raise QueryError(f"no answer within {timeout:g}s", "timeout") from None
        except (OSError, asyncpg.PostgresError) as error:
            if is_connection_loss(error):
                raise _ConnectionLost(error) from None
            raise QueryError(describe(error), query_status(error)) from None
        except asyncpg.InterfaceError as error:
            # From the pool itself: a concurrent reconnect closed it under this query; retry on the new one.
            raise _ConnectionLost(error) from None

    async def result_columns(self, sql: str, timeout: float) -> list[str]:
        """Return the column names ``sql`` would return, without running it."""
        await self.ensure_connected()
        assert self._pool is not None
        try:
            async with self._pool.acquire(timeout=timeout) as conn:
                statement = await conn.prepare(sql, timeout=timeout)
                return [attribute.name for attribute in statement.get_attributes()]
        except TimeoutError:
            raise QueryError(f"no answer within {timeout:g}s", "timeout") from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            raise QueryError(describe(error), query_status(error)) from None

    async def ping(self, timeout: float) -> None:
        """Check the database answers; raise ConnectError when it does not."""
        try:
            await self.fetch("SELECT 1", timeout)
        except QueryError as error:
            await self.disconnect()
            raise ConnectError(f"{self.config.safe_dsn} does not answer: {error}") from None

    async def refresh_facts(self, timeout: float) -> TargetFacts:
        """Return what the target offers, re-reading it after a reconnect or every few minutes."""
        if self.facts is not None and time.monotonic() - self._facts_loaded_at < FACTS_MAX_AGE:
            return self.facts
        version = await self.fetch(VERSION_SQL, timeout)
        rows = await self.fetch(COLUMNS_SQL, timeout)
        columns: dict[str, set[str]] = {}
        for row in rows:
            columns.setdefault(row["table_name"], set()).add(row["column_name"])
        revision = None
        if "version_num" in columns.get("alembic_version", ()):
            found = await self.fetch(REVISION_SQL, timeout)
            revision = found[0]["version_num"] if found else None
        facts = TargetFacts(
            server_version_num=version[0]["num"],
            server_version=str(version[0]["v"]).split()[0],
            columns={table: frozenset(names) for table, names in columns.items()},
            alembic_revision=revision,
        )
        if facts != self.facts:
            self.facts_generation += 1
        self.facts, self._facts_loaded_at = facts, time.monotonic()
        return facts

    def forget_facts(self) -> None:
        """Make the next refresh_facts read them again (after a reconnect)."""
        self._facts_loaded_at = 0.0
