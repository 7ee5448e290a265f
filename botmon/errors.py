"""One error shape for the API: `{"error": code, "message": sentence, ...}`."""

import logging
import time

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from .database import DatabaseBusy, storage_fault

log = logging.getLogger(__name__)

API_PREFIX = "/api"

# Messages that tell the caller what to do, for the statuses Werkzeug raises.
_HTTP_ERRORS = {
    404: ("not_found", "no such endpoint; see /api/openapi.json for the API"),
    405: ("method_not_allowed", "this endpoint does not accept that method"),
    413: (
        "payload_too_large",
        "the body exceeds the size limit (BOTMON_MAX_BODY_BYTES); send fewer "
        "or shorter server rows",
    ),
    500: ("internal_error", "botmon failed unexpectedly; see its log"),
}


# What a failing database means for the caller and what the operator must do:
# the code, the cause, and the fix. Every one of them is answered only after
# the transaction was rolled back.
_STORAGE_ERRORS = {
    "full": (
        "storage_full",
        "botmon's database is full (its disk is out of space, or it reached "
        "BOTMON_SQLITE_MAX_PAGES)",
        "free disk space, raise the bound or shorten BOTMON_HISTORY_RETENTION_DAYS",
    ),
    "read_only": (
        "storage_read_only",
        "botmon's database cannot be written (read-only file system or file "
        "permissions)",
        "make the database file and its folder writable for botmon",
    ),
    None: (
        "storage_unavailable",
        "botmon cannot use its database right now (database server "
        "unreachable, I/O error, missing or damaged file)",
        "see botmon's log and fix the storage",
    ),
}
_STORAGE_ERRORS["unavailable"] = _STORAGE_ERRORS[None]

# A database that is down fails every request until it is back: one log line
# per kind of fault this often is enough to tell an operator, where one per
# request would bury the log under tracebacks.
STORAGE_LOG_INTERVAL_SECONDS = 60.0


def storage_error_message(kind: str | None, writing: bool) -> tuple[str, str]:
    """The code and the sentence for a storage fault met by a write or a read."""
    code, cause, fix = _STORAGE_ERRORS[kind]
    if writing:
        return code, f"{cause}; nothing was stored; {fix}, then resend"
    return code, f"{cause}; {fix}, then retry"


class StorageFaultLog:
    """Logs database faults at most once a minute per kind, with a count."""

    def __init__(self, interval: float = STORAGE_LOG_INTERVAL_SECONDS):
        self._interval = interval
        self._last_logged: dict[str | None, float] = {}
        self._unlogged: dict[str | None, int] = {}

    def record(self, kind: str | None, error: SQLAlchemyError) -> None:
        now = time.monotonic()
        last = self._last_logged.get(kind)
        if last is not None and now - last < self._interval:
            self._unlogged[kind] = self._unlogged.get(kind, 0) + 1
            return

        self._last_logged[kind] = now
        unlogged = self._unlogged.pop(kind, 0)
        since = f" ({unlogged} more since the last report)" if unlogged else ""
        reason = str(getattr(error, "orig", None) or error).strip().splitlines()
        if kind is None:
            # Not a known storage fault: the traceback may show a defect.
            log.error("database error%s: %s", since, error, exc_info=error)
        else:
            log.error("database %s%s: %s", kind, since, reason[0] if reason else "")


class ApiError(Exception):
    """An error answered to the client with a status, a code and a sentence."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra


def error_response(status: int, code: str, message: str, **extra) -> Response:
    """The JSON body every API error is answered with."""
    response = jsonify({"error": code, "message": message, **extra})
    response.status_code = status
    return response


def is_api_path(path: str) -> bool:
    """Whether `path` is under /api, where every answer is JSON."""
    return path == API_PREFIX or path.startswith(API_PREFIX + "/")


def register_error_handlers(app: Flask) -> None:
    """Answer errors under /api/ as JSON, whatever raised them."""

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        response = error_response(
            error.status, error.code, error.message, **error.extra
        )
        if error.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        if not is_api_path(request.path):
            return error
        code, message = _HTTP_ERRORS.get(
            error.code, (error.name.lower().replace(" ", "_"), error.description)
        )
        response = error_response(error.code or 500, code, message)
        allowed = getattr(error, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.errorhandler(DatabaseBusy)
    def _database_busy(error: DatabaseBusy) -> Response:
        log.warning("refused a request: %s", error)
        response = error_response(
            503,
            "database_busy",
            "the database is locked by another process; retry in a few seconds",
        )
        response.headers["Retry-After"] = "5"
        return response

    fault_log = StorageFaultLog()

    @app.errorhandler(SQLAlchemyError)
    def _database_error(error: SQLAlchemyError) -> Response:
        kind = storage_fault(error)
        fault_log.record(kind, error)
        writing = request.method not in {"GET", "HEAD", "OPTIONS"}
        response = error_response(503, *storage_error_message(kind, writing))
        response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.error("unhandled error on %s", request.path, exc_info=error)
        if not is_api_path(request.path):
            return "internal server error", 500
        return error_response(500, *_HTTP_ERRORS[500])
