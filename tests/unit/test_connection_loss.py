"""Which driver errors mean a lost connection: asyncpg's own SQLSTATE classes, not a hand list."""

from __future__ import annotations

import asyncpg
import pytest

from exporter.database import is_connection_loss, query_status

LOST = [
    asyncpg.AdminShutdownError,  # 57P01: pg_terminate_backend, pg_ctl stop -m fast
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.CannotConnectNowError,  # 57P03: starting up or shutting down
    asyncpg.exceptions.DatabaseDroppedError,  # 57P04
    asyncpg.exceptions.IdleSessionTimeoutError,  # 57P05
    asyncpg.IdleInTransactionSessionTimeoutError,  # 25P03
    asyncpg.TooManyConnectionsError,  # 53300
    asyncpg.InvalidCatalogNameError,  # 3D000: the database was dropped
    asyncpg.InvalidPasswordError,  # 28P01
    asyncpg.ConnectionDoesNotExistError,  # 08003: the socket closed under a query
    asyncpg.exceptions.ConnectionRejectionError,  # 08004
    asyncpg.exceptions.ProtocolViolationError,  # 08P01
]
NOT_LOST = [
    asyncpg.QueryCanceledError,  # 57014: statement_timeout, a timeout
    asyncpg.LockNotAvailableError,
    asyncpg.InsufficientPrivilegeError,
    asyncpg.UndefinedTableError,
    asyncpg.DivisionByZeroError,
]


@pytest.mark.parametrize("error", LOST, ids=lambda e: e.__name__)
def test_the_server_going_away_is_a_lost_connection(error: type[Exception]) -> None:
    assert is_connection_loss(error("gone"))
    assert query_status(error("gone")) == "connection"


@pytest.mark.parametrize("error", NOT_LOST, ids=lambda e: e.__name__)
def test_a_failed_query_is_not_a_lost_connection(error: type[Exception]) -> None:
    assert not is_connection_loss(error("failed"))
    assert query_status(error("failed")) != "connection"


def test_an_interface_error_is_a_bug_not_a_lost_connection() -> None:
    misuse = asyncpg.InterfaceError("cannot perform operation: another operation is in progress")
    assert not is_connection_loss(misuse)
    assert query_status(misuse) == "error"
    confused = asyncpg.InternalClientError("cannot switch to state 11; another operation (2) is in progress")
    assert not is_connection_loss(confused)  # only with a closed connection (see TargetDatabase._fetch_once)
