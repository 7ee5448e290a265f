"""Alembic's entry point for botmon's migrations.

botmon hands its own connection over (`config.attributes["connection"]`),
already inside the transaction that holds the schema lock. From the alembic
command line, the database is BOTMON_DATABASE_URL.
"""

import os

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from botmon import models  # noqa: F401  (the tables the migrations must match)
from botmon.database import db, sqlalchemy_url


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=db.metadata,
        # SQLite changes most columns by copying the table; batch mode does so.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def _database_url() -> str:
    url = os.environ.get("BOTMON_DATABASE_URL", "").strip()
    if not url:
        raise SystemExit(
            "set BOTMON_DATABASE_URL to the database to run the alembic command on"
        )
    return sqlalchemy_url(url)


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return

    if context.is_offline_mode():
        context.configure(url=_database_url(), target_metadata=db.metadata)
        with context.begin_transaction():
            context.run_migrations()
        return

    engine = create_engine(_database_url())
    with engine.connect() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
