"""The database handle, engine tuning, and writes that wait for a lock politely.

SQLite's own busy handler sleeps inside C, which would freeze every greenlet of
the gevent worker while another process holds the write lock. So the driver is
told never to wait, and a write that finds the database locked is retried here
with a cooperative sleep, up to a bounded time.

PostgreSQL waits for locks in the server, and psycopg waits for the server's
answer cooperatively under gevent; the wait is bounded by the session's
`lock_timeout`, after which the write ends as `DatabaseBusy`.
"""

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from .config import ConfigError, Settings

log = logging.getLogger(__name__)

db = SQLAlchemy()

T = TypeVar("T")


class DatabaseBusy(RuntimeError):
    """The write lock stayed taken by another process for too long."""


# How long opening a PostgreSQL connection may take: a server that is down
# answers a request with 503 after this, instead of after the OS's TCP timeout.
CONNECT_TIMEOUT_SECONDS = 5
# How long a request waits for a free pooled connection before it is a 503.
POOL_TIMEOUT_SECONDS = 10

_POSTGRESQL_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}


def sqlalchemy_url(database_url: str) -> str:
    """`database_url` in SQLAlchemy's spelling, refusing what botmon cannot use.

    PostgreSQL URLs as libpq writes them (`postgresql://`, `postgres://`) are
    given psycopg 3, the driver botmon ships with.
    """
    scheme, separator, rest = database_url.partition("://")
    if not separator:
        raise ConfigError(
            "BOTMON_DATABASE_URL must be a URL such as sqlite:////var/lib/botmon/"
            "botmon.sqlite3 or postgresql://user:password@host/database"
        )
    scheme = scheme.lower()
    if scheme in _POSTGRESQL_SCHEMES:
        return _parsable("postgresql+psycopg://" + rest)
    if scheme in {"sqlite", "sqlite+pysqlite"}:
        return _parsable(database_url)
    raise ConfigError(
        f"BOTMON_DATABASE_URL uses the scheme {scheme!r}, which botmon does not "
        "support; use sqlite:///PATH or postgresql://user:password@host/database"
    )


def _parsable(database_url: str) -> str:
    # The URL may hold a password: say what is wrong, never echo it.
    try:
        make_url(database_url)
    except (ArgumentError, ValueError):
        raise ConfigError(
            "BOTMON_DATABASE_URL is not a valid database URL: check that its "
            "port is a number and that any special character in the user name "
            "or password is percent-encoded"
        ) from None
    return database_url


def safe_url(database_url: str) -> str:
    """The URL with its password masked, for logs and error messages."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unreadable URL)"


def engine_options(
    database_url: str, settings: Settings, pool_size: int | None = None
) -> dict:
    """Engine options for the database `database_url` names.

    `pool_size` overrides BOTMON_DB_POOL_SIZE, for a command that needs one.
    """
    if make_url(database_url).get_backend_name() == "sqlite":
        # No busy wait inside the driver.
        return {"connect_args": {"timeout": 0}}

    return {
        # One worker serves many greenlets; each holds a connection only for
        # one short transaction, so a small pool is plenty, and a fixed bound
        # keeps several workers and hosts under the server's max_connections.
        "pool_size": pool_size or settings.db_pool_size,
        "max_overflow": 0,
        "pool_timeout": POOL_TIMEOUT_SECONDS,
        # A server restart or an idle-connection reaper leaves dead sockets in
        # the pool; test each before use instead of failing a request.
        "pool_pre_ping": True,
        "connect_args": {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": "-c lock_timeout="
            f"{_milliseconds(settings.db_lock_timeout_seconds)}",
        },
    }


def tune_engine(engine: Engine, settings: Settings) -> None:
    """Apply botmon's per-connection settings for the engine's database."""
    if engine.dialect.name == "sqlite":
        tune_sqlite(
            engine, settings.sqlite_synchronous.upper(), settings.sqlite_max_pages
        )
    else:
        _remember_lock_timeout(engine, settings.db_lock_timeout_seconds)


def _milliseconds(seconds: float) -> int:
    # PostgreSQL reads 0 as "wait forever"; botmon's 0 means "do not wait".
    return max(1, round(seconds * 1000))


def _remember_lock_timeout(engine: Engine, lock_timeout: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(_dbapi_connection, record) -> None:
        # The session's lock_timeout, set by the connect options: a
        # transaction that wants another bound sets its own.
        record.info["lock_timeout"] = _milliseconds(lock_timeout)


# SQLite's primary result codes that mean the storage itself is at fault, as
# opposed to a busy lock or a mistake in a statement.
_FULL = {sqlite3.SQLITE_FULL}
_READ_ONLY = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM}
_UNAVAILABLE = {
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_CORRUPT,
    sqlite3.SQLITE_NOTADB,
}


# PostgreSQL's SQLSTATE codes and classes that mean the same, for the server.
_SQLSTATE_FAULTS = {
    "53100": "full",  # disk_full
    "25006": "read_only",  # read_only_sql_transaction: a standby
    "08": "unavailable",  # connection exception
    "57P": "unavailable",  # the server is shutting down or starting up
    "58": "unavailable",  # system error: I/O
}
# Lock waits that ran out, and conflicts that a retry of the whole
# transaction resolves.
_SQLSTATE_LOCK_TIMEOUT = "55P03"
_SQLSTATE_RETRY = {"40P01", "40001"}


def storage_fault(error: BaseException) -> str | None:
    """ "full", "read_only" or "unavailable" when the storage failed, else None."""
    original = getattr(error, "orig", error)
    code = getattr(original, "sqlite_errorcode", None)
    if code is None:
        return _postgresql_fault(error, original)
    primary = code & 0xFF
    if primary in _FULL:
        return "full"
    if primary in _READ_ONLY:
        return "read_only"
    if primary in _UNAVAILABLE:
        return "unavailable"
    return None


def tune_sqlite(engine: Engine, synchronous: str, max_pages: int = 0) -> None:
    """Use WAL (readers never wait for the writer) and explicit transactions.

    `max_pages`, when set, bounds the database file's size in pages.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" event choose how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Some builds zero every freed page, which doubles what replacing the
        # guild list writes per push; nothing botmon stores is secret enough.
        cursor.execute("PRAGMA secure_delete=OFF")
        if max_pages:
            cursor.execute(f"PRAGMA max_page_count={int(max_pages)}")
        cursor.close()

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        # A connection that met a storage fault can keep failing after the
        # fault is fixed: one opened while the file system was read-only
        # holds read-only file handles for good. And SQLite shares one
        # shared-memory handle among a process's connections to a file, so a
        # single stale idle connection would make fresh ones read-only too.
        # So the failed connection is dropped as if lost, idle ones are
        # closed, and busy ones are replaced when they come back to the pool.
        if storage_fault(context.original_exception) is None:
            return
        context.is_disconnect = True
        # SQLAlchemy leaves the cursor of a lost connection open, and an open
        # statement keeps SQLite from closing the files until it is collected.
        cursor = getattr(context.execution_context, "cursor", None)
        if cursor is not None:
            with contextlib.suppress(Exception):
                cursor.close()
        if context.engine is not None:
            context.engine.pool.dispose()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer takes the lock up front, so it never fails half-way through
        # a transaction because another process started writing first.
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def _postgresql_fault(error: BaseException, original: BaseException) -> str | None:
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate is None:
        # psycopg raises OperationalError without a code when it cannot reach
        # the server at all.
        lost = getattr(error, "connection_invalidated", False)
        unreachable = type(original).__name__ == "OperationalError"
        is_psycopg = type(original).__module__.startswith("psycopg")
        return "unavailable" if lost or (unreachable and is_psycopg) else None
    for prefix in (sqlstate, sqlstate[:3], sqlstate[:2]):
        if prefix in _SQLSTATE_FAULTS:
            return _SQLSTATE_FAULTS[prefix]
    return None


def _sqlstate(error: DBAPIError) -> str:
    return getattr(error.orig, "sqlstate", None) or ""


def _is_lock_error(error: DBAPIError) -> bool:
    if _sqlstate(error) in _SQLSTATE_RETRY:
        return True
    if not isinstance(error, OperationalError):
        return False
    text = str(error.orig).lower()
    return "database is locked" in text or "database is busy" in text


def _bound_lock_wait(connection: Connection, lock_timeout: float) -> None:
    if connection.dialect.name == "sqlite":
        # SQLite does not wait: run_in_transaction retries instead.
        return
    wanted = _milliseconds(lock_timeout)
    if connection.info.get("lock_timeout") != wanted:
        # SET LOCAL: the pooled session keeps its own bound afterwards.
        connection.exec_driver_sql(f"SET LOCAL lock_timeout = {wanted}")


def run_in_transaction(
    work: Callable[[Connection], T],
    *,
    write: bool,
    lock_timeout: float,
    engine: Engine | None = None,
) -> T:
    """Run `work` in one transaction, retrying while the database is locked.

    `work` may run more than once, so it must do nothing but database work.
    `engine` defaults to the app's.
    """
    deadline = time.monotonic() + lock_timeout
    delay = 0.002
    fresh_connection_tried = False
    while True:
        try:
            with (engine or db.engine).connect() as connection:
                if write and connection.dialect.name == "sqlite":
                    connection.execution_options(sqlite_begin="IMMEDIATE")
                with connection.begin():
                    _bound_lock_wait(connection, lock_timeout)
                    return work(connection)
        except DBAPIError as error:
            if _sqlstate(error) == _SQLSTATE_LOCK_TIMEOUT:
                # The server already waited for the whole bound.
                raise DatabaseBusy(
                    f"a lock stayed taken by another session for {lock_timeout:g} s"
                ) from error
            if storage_fault(error) is not None and not fresh_connection_tried:
                # The connection may be older than the storage's repair (one
                # opened while the file system was read-only stays read-only).
                # The pool was emptied on the fault, so this try gets a new one.
                fresh_connection_tried = True
                continue
            if not _is_lock_error(error):
                raise
            if time.monotonic() >= deadline:
                raise DatabaseBusy(
                    "the database stayed locked by another process for "
                    f"{lock_timeout:g} s"
                ) from error

        # time.sleep is cooperative under the gevent worker.
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


# Any constant key, the same in every botmon: it names the schema lock.
_SCHEMA_LOCK_KEY = 0x626F746D6F6E


def take_schema_lock(connection: Connection) -> None:
    """Hold the schema lock until the connection's transaction ends.

    SQLite's write transaction (BEGIN IMMEDIATE) is the lock already; on
    PostgreSQL an advisory lock serialises processes that start at once.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK_KEY})")
