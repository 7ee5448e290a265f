"""botmon: a self-hosted monitor for Discord bots."""

import logging
import os
from pathlib import Path

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError

from .config import ConfigError, Settings, load_api_key
from .database import db, run_in_transaction, sqlite_engine_options, tune_sqlite
from .errors import register_error_handlers
from .hub import Hub
from .ingest import compose
from .schemas import metrics_schema
from .service import Botmon
from .storage import Store

log = logging.getLogger(__name__)

DATABASE_FILE_NAME = "botmon.sqlite3"


def create_app(environ: dict[str, str] | None = None) -> Flask:
    """Build the botmon app from `environ` (the process environment by default)."""
    environ = dict(os.environ if environ is None else environ)
    app = Flask(__name__, instance_path=environ.get("BOTMON_INSTANCE_PATH") or None)
    # Owner-only: the folder holds the key file and the database, whose
    # numbers a team may keep private with a read token.
    Path(app.instance_path).mkdir(mode=0o700, parents=True, exist_ok=True)

    settings = Settings.from_environ(environ)
    database_url = settings.database_url or _default_database_url(app)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(database_url),
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
        if db.engine.dialect.name == "sqlite":
            tune_sqlite(
                db.engine,
                settings.sqlite_synchronous.upper(),
                settings.sqlite_max_pages,
            )
        _open_database(database_url, botmon)

    register_error_handlers(app)
    _register_blueprints(app)
    _register_commands(app)
    _log_settings(database_url, settings, botmon)
    return app


def _open_database(database_url: str, botmon: Botmon) -> None:
    try:
        # Workers starting together race to create the tables (and to turn a
        # new SQLite file to WAL): whoever finds the lock taken waits for it.
        run_in_transaction(
            db.metadata.create_all,
            write=True,
            lock_timeout=botmon.settings.db_lock_timeout_seconds,
        )
        _replay_latest(botmon)
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or error
        raise ConfigError(
            f"cannot open the database {_without_password(database_url)}: "
            f"{reason}; check that its folder exists and is writable by this "
            "user, or set BOTMON_DATABASE_URL"
        ) from error


def _without_password(database_url: str) -> str:
    return database_url.split("@")[-1] if "@" in database_url else database_url


def _default_database_url(app: Flask) -> str:
    return "sqlite:///" + str(Path(app.instance_path) / DATABASE_FILE_NAME)


def _engine_options(database_url: str) -> dict:
    return sqlite_engine_options() if database_url.startswith("sqlite") else {}


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
    safe_url = _without_password(database_url)
    log.info(
        "botmon ready: database %s, stale after %gs, history %g days, "
        "at most %d servers and %d bytes per push",
        safe_url,
        settings.stale_after_seconds,
        settings.history_retention_days,
        settings.max_servers,
        settings.max_body_bytes,
    )
