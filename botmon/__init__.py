"""botmon: a self-hosted monitor for Discord bots."""

import logging
import os
from pathlib import Path

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from .config import ConfigError, Settings, load_api_key
from .database import (
    DatabaseBusy,
    db,
    engine_options,
    safe_url,
    sqlalchemy_url,
    tune_engine,
)
from .errors import register_error_handlers
from .hub import Hub
from .ingest import compose
from .schema import SCHEMA_LOCK_TIMEOUT_SECONDS, ensure_schema
from .schemas import metrics_schema
from .service import Botmon
from .storage import Store

log = logging.getLogger(__name__)

DATABASE_FILE_NAME = "botmon.sqlite3"


def create_app(environ: dict[str, str] | None = None) -> Flask:
    """Build the botmon app from `environ` (the process environment by default)."""
    environ = dict(os.environ if environ is None else environ)
    app = _flask_app(environ)
    settings = Settings.from_environ(environ)
    database_url = resolve_database_url(settings, app.instance_path)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_url, settings),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.json.sort_keys = False
    app.json.ensure_ascii = False

    botmon = Botmon(
        settings=settings,
        api_key=load_api_key(environ, app.instance_path),
        store=Store(
            settings.db_lock_timeout_seconds,
            settings.history_retention_days * 86_400,
        ),
        schema=metrics_schema(settings.max_servers),
        hub=Hub(),
    )
    app.extensions["botmon"] = botmon

    db.init_app(app)
    with app.app_context():
        tune_engine(db.engine, settings)
        _open_database(database_url, settings, botmon)

    register_error_handlers(app)
    _register_blueprints(app)
    _register_commands(app)
    _log_settings(database_url, settings, botmon)
    return app


def _flask_app(environ: dict[str, str]) -> Flask:
    app = Flask(__name__, instance_path=environ.get("BOTMON_INSTANCE_PATH") or None)
    # Owner-only: the folder holds the key file and the database, whose
    # numbers a team may keep private with a read token.
    Path(app.instance_path).mkdir(mode=0o700, parents=True, exist_ok=True)
    return app


def instance_path(environ: dict[str, str]) -> str:
    """The instance folder botmon uses for `environ`, created if missing."""
    return _flask_app(environ).instance_path


def resolve_database_url(settings: Settings, instance_folder: str) -> str:
    """The database URL in SQLAlchemy's spelling; SQLite in the instance folder
    unless BOTMON_DATABASE_URL says otherwise."""
    default = "sqlite:///" + str(Path(instance_folder) / DATABASE_FILE_NAME)
    return sqlalchemy_url(settings.database_url or default)


def _open_database(database_url: str, settings: Settings, botmon: Botmon) -> None:
    try:
        ensure_schema(db.engine, settings.auto_migrate)
        _replay_latest(botmon)
    except DatabaseBusy as error:
        raise ConfigError(
            "another botmon process held the database's schema lock for "
            f"{SCHEMA_LOCK_TIMEOUT_SECONDS:g} s; check for a stuck migration"
        ) from error
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        raise ConfigError(
            f"cannot open the database {safe_url(database_url)}: {reason}; "
            f"{_open_hint(database_url)}"
        ) from error


def _open_hint(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        return (
            "check that its folder exists and is writable by this user, or set "
            "BOTMON_DATABASE_URL"
        )
    return (
        "check that the server is running and reachable from here, that the "
        "database exists, and the user name and password in BOTMON_DATABASE_URL"
    )


def _replay_latest(botmon: Botmon) -> None:
    # A listener connecting right after a restart still gets the last state.
    latest = botmon.store.latest()
    if latest is not None:
        botmon.hub.publish(
            compose(latest.resumen_json, latest.estado_json, latest.servers_json),
            latest.id,
        )


def _register_blueprints(app: Flask) -> None:
    from .blueprints import api, metrics, page, websocket

    app.register_blueprint(api.bp)
    app.register_blueprint(page.bp)
    app.register_blueprint(metrics.bp)
    websocket.init_app(app)


def _register_commands(app: Flask) -> None:
    from .cli import register

    register(app)


def _log_settings(database_url: str, settings: Settings, botmon: Botmon) -> None:
    log.info(
        "botmon ready: database %s, stale after %gs, history %g days, "
        "at most %d servers and %d bytes per push",
        safe_url(database_url),
        settings.stale_after_seconds,
        settings.history_retention_days,
        settings.max_servers,
        settings.max_body_bytes,
    )
