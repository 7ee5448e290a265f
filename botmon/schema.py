"""The database schema: brought to the newest migration, one process at a time.

Every botmon checks the schema at start. Several workers or hosts may start
at once, so the check and any migration run inside one transaction holding
the schema lock: the first process migrates, the others wait and then find
the schema up to date.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection, Engine

from .config import ConfigError
from .database import run_in_transaction, take_schema_lock

log = logging.getLogger(__name__)

MIGRATIONS_PATH = Path(__file__).with_name("migrations")
# The tables a database made before migrations existed may hold.
BASELINE_TABLES = {"snapshots", "latest_servers", "refused_pushes", "alert_state"}
# How long a starting process waits for another one's migration.
SCHEMA_LOCK_TIMEOUT_SECONDS = 120.0
MIGRATE_COMMAND = "python -m botmon.migrate"


class _WithoutSetupChatter(logging.Filter):
    """Drop alembic's two lines per opened context, which every start repeats."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl", "Will assume"))


logging.getLogger("alembic.runtime.migration").addFilter(_WithoutSetupChatter())


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands against the migrations this botmon ships."""

    current: str | None
    head: str
    known: bool
    has_tables: bool

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def empty(self) -> bool:
        return self.current is None and not self.has_tables

    def describe(self) -> str:
        if self.current is not None:
            return f"revision {self.current}"
        if self.has_tables:
            return "tables made before migrations existed"
        return "no tables"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for botmon's migrations, bound to `connection`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_PATH))
    config.attributes["connection"] = connection
    return config


def read_state(connection: Connection) -> SchemaState:
    """The database's revision, compared with the newest one shipped."""
    script = ScriptDirectory.from_config(alembic_config())
    current = MigrationContext.configure(connection).get_current_revision()
    known = current is None or current in {r.revision for r in script.walk_revisions()}
    tables = set(inspect(connection).get_table_names())
    return SchemaState(
        current=current,
        head=script.get_current_head(),
        known=known,
        has_tables=bool(tables & BASELINE_TABLES),
    )


def check_known(state: SchemaState) -> None:
    """Refuse a database migrated by a newer botmon."""
    if not state.known:
        raise ConfigError(
            f"the database is at schema revision {state.current}, which this "
            f"botmon does not know (it knows up to {state.head}): a newer botmon "
            "migrated it; run that version, or restore a backup made before it"
        )


def ensure_schema(engine: Engine, auto_migrate: bool) -> SchemaState:
    """Bring the schema to the newest revision under the schema lock.

    An empty database is always created. An existing one that is behind is
    migrated only when `auto_migrate` is on; otherwise the operator is told
    to run the migrate command. Returns the state found before.
    """

    def work(connection: Connection) -> SchemaState:
        take_schema_lock(connection)
        state = read_state(connection)
        check_known(state)
        if state.up_to_date:
            return state
        if not state.empty and not auto_migrate:
            raise ConfigError(
                f"the database schema is behind (it has {state.describe()}, this "
                f"botmon needs {state.head}) and BOTMON_AUTO_MIGRATE is off; back "
                f"the database up, then run `{MIGRATE_COMMAND}`"
            )
        command.upgrade(alembic_config(connection), "head")
        return state

    state = run_in_transaction(
        work, write=True, lock_timeout=SCHEMA_LOCK_TIMEOUT_SECONDS, engine=engine
    )
    _log_outcome(state)
    return state


def current_state(engine: Engine) -> SchemaState:
    """The schema's state, read without changing anything."""
    return run_in_transaction(
        read_state, write=False, lock_timeout=SCHEMA_LOCK_TIMEOUT_SECONDS, engine=engine
    )


def _log_outcome(state: SchemaState) -> None:
    if state.up_to_date:
        log.debug("database schema is at revision %s", state.head)
    elif state.empty:
        log.info("created the database schema at revision %s", state.head)
    else:
        log.info(
            "migrated the database schema from %s to revision %s",
            state.describe(),
            state.head,
        )
