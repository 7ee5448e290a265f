"""The database handle, SQLite tuning, and writes that wait for a lock politely.

SQLite's own busy handler sleeps inside C, which would freeze every greenlet of
the gevent worker while another process holds the write lock. So the driver is
told never to wait, and a write that finds the database locked is retried here
with a cooperative sleep, up to a bounded time.
"""

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError

log = logging.getLogger(__name__)

db = SQLAlchemy()

T = TypeVar("T")


class DatabaseBusy(RuntimeError):
    """The write lock stayed taken by another process for too long."""


def sqlite_engine_options() -> dict:
    """Engine options for SQLite: no busy wait inside the driver."""
    return {"connect_args": {"timeout": 0}}


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


def storage_fault(error: BaseException) -> str | None:
    """ "full", "read_only" or "unavailable" when the storage failed, else None."""
    original = getattr(error, "orig", error)
    code = getattr(original, "sqlite_errorcode", None)
    if code is None:
        return None
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


def _is_lock_error(error: OperationalError) -> bool:
    text = str(error.orig).lower()
    return "database is locked" in text or "database is busy" in text


def run_in_transaction(
    work: Callable[[Connection], T], *, write: bool, lock_timeout: float
) -> T:
    """Run `work` in one transaction, retrying while the database is locked.

    `work` may run more than once, so it must do nothing but database work.
    """
    deadline = time.monotonic() + lock_timeout
    delay = 0.002
    fresh_connection_tried = False
    while True:
        try:
            with db.engine.connect() as connection:
                if write and connection.dialect.name == "sqlite":
                    connection.execution_options(sqlite_begin="IMMEDIATE")
                with connection.begin():
                    return work(connection)
        except DBAPIError as error:
            if storage_fault(error) is not None and not fresh_connection_tried:
                # The connection may be older than the storage's repair (one
                # opened while the file system was read-only stays read-only).
                # The pool was emptied on the fault, so this try gets a new one.
                fresh_connection_tried = True
                continue
            if not isinstance(error, OperationalError) or not _is_lock_error(error):
                raise
            if time.monotonic() >= deadline:
                raise DatabaseBusy(
                    "the database stayed locked by another process for "
                    f"{lock_timeout:g} s"
                ) from error

        # time.sleep is cooperative under the gevent worker.
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
