"""One error shape for the API: `{"error": code, "message": sentence, ...}`."""

import logging

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


# What a failing database means for the caller and what the operator must do.
# Every one of them is answered only after the transaction was rolled back.
_STORAGE_ERRORS = {
    "full": (
        "storage_full",
        "botmon's database is full (its disk is out of space, or it reached "
        "BOTMON_SQLITE_MAX_PAGES); nothing was stored; free disk space, raise "
        "the bound or shorten BOTMON_HISTORY_RETENTION_DAYS, then resend",
    ),
    "read_only": (
        "storage_read_only",
        "botmon's database cannot be written (read-only file system or file "
        "permissions); nothing was stored; make the database file and its "
        "folder writable for botmon, then resend",
    ),
    None: (
        "storage_unavailable",
        "botmon cannot use its database right now (database server "
        "unreachable, I/O error, missing or damaged file); nothing was stored; "
        "see botmon's log, fix the storage, then resend",
    ),
}
_STORAGE_ERRORS["unavailable"] = _STORAGE_ERRORS[None]


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

    @app.errorhandler(SQLAlchemyError)
    def _database_error(error: SQLAlchemyError) -> Response:
        kind = storage_fault(error)
        log.error("database error (%s): %s", kind or "unknown", error, exc_info=error)
        response = error_response(503, *_STORAGE_ERRORS[kind])
        response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        log.error("unhandled error on %s", request.path, exc_info=error)
        if not is_api_path(request.path):
            return "internal server error", 500
        return error_response(500, *_HTTP_ERRORS[500])
