"""`python -m botmon.migrate`: bring the database schema to this botmon's.

Reads the same settings as the service (BOTMON_DATABASE_URL, else SQLite in
the instance folder). `--check` changes nothing: it exits 1 when the schema
is behind, for a deploy script that wants to back up before migrating.
"""

import argparse
import logging
import os
import sys

from sqlalchemy import create_engine
from sqlalchemy.exc import SQLAlchemyError

from . import instance_path, resolve_database_url
from .config import ConfigError, Settings
from .database import DatabaseBusy, engine_options, safe_url, tune_engine
from .schema import check_known, current_state, ensure_schema

log = logging.getLogger("botmon.migrate")

LOG_FORMAT = "[%(asctime)s] [%(levelname)s] %(name)s: %(message)s"
UP_TO_DATE, BEHIND, FAILED = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m botmon.migrate", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="change nothing; exit 1 if the schema is behind, 2 on an error",
    )
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)

    try:
        return _run(dict(os.environ), arguments.check)
    except (ConfigError, DatabaseBusy, SQLAlchemyError) as error:
        log.error("cannot migrate: %s", error)
        return FAILED


def _run(environ: dict[str, str], check_only: bool) -> int:
    settings = Settings.from_environ(environ)
    url = resolve_database_url(settings, instance_path(environ))
    engine = create_engine(url, **engine_options(url, settings, pool_size=1))
    tune_engine(engine, settings)
    try:
        if check_only:
            return _check(engine, url)
        state = ensure_schema(engine, auto_migrate=True)
        if state.up_to_date:
            log.info("%s is already at revision %s", safe_url(url), state.head)
        return UP_TO_DATE
    finally:
        engine.dispose()


def _check(engine, url: str) -> int:
    state = current_state(engine)
    check_known(state)
    if state.up_to_date:
        log.info("%s is at revision %s", safe_url(url), state.head)
        return UP_TO_DATE
    log.warning(
        "%s is behind: it has %s, this botmon needs %s; back it up, then run "
        "`python -m botmon.migrate`",
        safe_url(url),
        state.describe(),
        state.head,
    )
    return BEHIND


if __name__ == "__main__":
    sys.exit(main())
