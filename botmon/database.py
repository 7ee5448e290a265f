"""The database handle, SQLite tuning, and writes that wait for a lock politely.

SQLite's own busy handler sleeps inside C, which would freeze every greenlet of
the gevent worker while another process holds the write lock. So the driver is
told never to wait, and a write that finds the database locked is retried here
with a cooperative sleep, up to a bounded time.
"""

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

log = logging.getLogger(__name__)

db = SQLAlchemy()

T = TypeVar("T")


class DatabaseBusy(RuntimeError):
    """The write lock stayed taken by another process for too long."""


def sqlite_engine_options() -> dict:
    """Engine options for SQLite: no busy wait inside the driver."""
    return {"connect_args": {"timeout": 0}}


def tune_sqlite(engine: Engine, synchronous: str) -> None:
    """Use WAL (readers never wait for the writer) and explicit transactions."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" event choose how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

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
    while True:
        try:
            with db.engine.connect() as connection:
                if write and connection.dialect.name == "sqlite":
                    connection.execution_options(sqlite_begin="IMMEDIATE")
                with connection.begin():
                    return work(connection)
        except OperationalError as error:
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
