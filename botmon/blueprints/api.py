"""The JSON API: the bot pushes metrics here, and anyone reads the latest."""

import json
import logging
import time
from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from .. import ingest, strictjson, telemetry
from ..auth import require_bearer_key, require_read_access
from ..database import DatabaseBusy
from ..errors import ApiError
from ..openapi import build_openapi
from ..schemas import utc_text
from ..service import service

log = logging.getLogger(__name__)


class SlashOptionalBlueprint(Blueprint):
    """A blueprint whose every path answers with and without its final slash.

    Each rule is registered in both forms. Werkzeug's strict_slashes=False
    would also avoid the redirect, but answers a wrong method on the form
    without the slash with 404 instead of 405.
    """

    def add_url_rule(self, rule: str, endpoint=None, view_func=None, **options):
        super().add_url_rule(rule, endpoint, view_func, **options)
        if len(rule) > 1 and rule.endswith("/"):
            super().add_url_rule(rule.rstrip("/"), endpoint, view_func, **options)


bp = SlashOptionalBlueprint("api", __name__, url_prefix="/api")

JSON_TYPE = "application/json"


def format_time(epoch_seconds: float) -> str:
    """A botmon clock reading in the wire format's timestamp form."""
    return utc_text(datetime.fromtimestamp(epoch_seconds, UTC))


def json_text_response(text: str, status: int = 200) -> Response:
    """Answer with JSON text that is already encoded."""
    return Response(text, status=status, mimetype=JSON_TYPE)


def json_response(value: object, status: int = 200) -> Response:
    """Answer with `value` encoded the way snapshots are."""
    return json_text_response(strictjson.dumps(value), status)


# Reachable without the read token: the push has its own key, load balancers
# need the health check, and the document describes how to authenticate.
PUBLIC_ENDPOINTS = {"api.receive_metrics", "api.health", "api.openapi_document"}


@bp.before_request
def _require_read_token() -> None:
    if request.endpoint not in PUBLIC_ENDPOINTS:
        botmon = service()
        require_read_access(botmon.settings.read_token, botmon.api_key)


@bp.post("/bot/metrics/")
def receive_metrics() -> Response:
    """Accept one push from the bot: 201 once it is committed."""
    botmon = service()
    require_bearer_key(botmon.api_key)

    if request.mimetype != JSON_TYPE:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the metrics with 'Content-Type: application/json'",
        )
    body = _read_body(botmon.settings.max_body_bytes)

    try:
        accepted = ingest.accept(botmon, body)
    except ingest.InvalidPayload as error:
        extra = {"fields": error.fields} if error.fields else {}
        if error.total > len(error.fields):
            extra["fields_omitted"] = error.total - len(error.fields)
        raise ApiError(400, "invalid_payload", error.message, **extra) from None

    payload = {
        "id": accepted.snapshot_id,
        "recibido_en": format_time(accepted.received_at),
    }
    return json_response(payload, 201)


def _read_body(max_bytes: int) -> bytes:
    """The request body, or a 413 when it is longer than `max_bytes`.

    Werkzeug refuses a long Content-Length up front, but silently cuts a
    chunked body at the limit. One byte more than allowed is read here, so a
    body that is too long is refused rather than judged on its first part.
    """
    if request.content_length is not None or not request.environ.get(
        "wsgi.input_terminated"
    ):
        return request.get_data(cache=False)

    body = request.environ["wsgi.input"].read(max_bytes + 1)
    if len(body) > max_bytes:
        raise RequestEntityTooLarge()
    return body


@bp.after_request
def _remember_refused_push(response: Response) -> Response:
    # A bot whose pushes bounce is alive but misconfigured: keep the evidence.
    if request.endpoint == "api.receive_metrics" and 400 <= response.status_code < 500:
        body = response.get_json(silent=True) or {}
        try:
            service().store.record_refusal(
                time.time(),
                response.status_code,
                body.get("error", "refused"),
                body.get("message", ""),
            )
        except (SQLAlchemyError, DatabaseBusy) as error:
            log.warning("could not record a refused push: %s", error)
    return response


@bp.after_request
def _count_push(response: Response) -> Response:
    # Every answer to a push, accepted or refused, for Prometheus.
    if request.endpoint == "api.receive_metrics":
        telemetry.count_push(response)
    return response


@bp.get("/bot/resumen/")
def latest_resumen() -> Response:
    """The newest `resumen`, with the keys the bot sent."""
    latest = service().store.latest_summary()
    if latest is None:
        raise _no_metrics_yet()
    return json_text_response(latest.resumen_json)


@bp.get("/bot/estado/")
def latest_estado() -> Response:
    """The newest `estado`, when it arrived, and whether the bot went silent."""
    botmon = service()
    latest = botmon.store.latest_summary()
    if latest is None:
        raise _no_metrics_yet()

    # Measured on botmon's clock: the bot's own timestamps may be wrong.
    silent_for = time.time() - latest.received_at
    estado = json.loads(latest.estado_json)
    estado["recibido_en"] = format_time(latest.received_at)
    estado["obsoleto"] = silent_for > botmon.settings.stale_after_seconds
    return json_response(estado)


@bp.get("/bot/servers/")
def latest_servers() -> Response:
    """The guild rows of the newest push; an empty list before the first."""
    servers_json = service().store.latest_servers_json()
    return json_text_response(servers_json or "[]")


@bp.get("/bot/rechazos/")
def refused_pushes() -> Response:
    """How many pushes were refused, and why the last one was."""
    refusals = service().store.refusals()
    if refusals is None:
        return json_text_response('{"total":0,"ultimo":null}')

    last = {
        "en": format_time(refusals.last_at),
        "status": refusals.last_status,
        "error": refusals.last_error,
        "message": refusals.last_message,
    }
    return json_response({"total": refusals.count, "ultimo": last})


@bp.get("/health/")
def health() -> Response:
    """For load balancers: 200 when the database answers, 503 when not.

    With a backplane, it also says whether this worker reaches Redis. A lost
    backplane is not a 503: the worker still takes pushes and tells its own
    listeners, and every worker of every host would fail the check at once.
    """
    botmon = service()
    botmon.store.check()
    answer = {"status": "ok", "listeners": botmon.hub.listener_count}
    if botmon.backplane is not None:
        answer["backplane"] = "up" if botmon.backplane.up else "down"
    return json_response(answer)


def _no_metrics_yet() -> ApiError:
    return ApiError(
        404,
        "no_metrics_yet",
        "no metrics have been received yet; the bot must POST /api/bot/metrics/",
    )


# History for charts, and what the status page needs to know about the server.

DEFAULT_HISTORY_SECONDS = 24 * 3600.0
TIME_TOLERANCE_SECONDS = 1e-6
EARLIEST = datetime(1, 1, 1, tzinfo=UTC).timestamp()


@bp.get("/bot/history/")
def history() -> Response:
    """`resumen` and `estado` received in a time range, oldest first.

    Query: `since` and `until` (ISO-8601; the last 24 hours by default) and
    `limit` (at most BOTMON_HISTORY_MAX_POINTS). When the range holds more
    points than `limit`, the newest ones are returned and `truncated` says so.
    """
    botmon = service()
    max_points = botmon.settings.history_max_points

    now = time.time()
    until = _time_param("until", now)
    # The default range must not reach before year 1, which cannot be written.
    since = _time_param("since", max(until - DEFAULT_HISTORY_SECONDS, EARLIEST))
    if since > until:
        raise ApiError(
            400, "invalid_range", "'since' must not be later than 'until'; swap them"
        )
    limit = _limit_param(max_points)

    # Receipt times are stored as floats but written to the microsecond, so a
    # bound copied from a point's recibido_en must still include that point.
    # One row more than asked tells whether older points were left out.
    rows = botmon.store.history(
        since - TIME_TOLERANCE_SECONDS, until + TIME_TOLERANCE_SECONDS, limit + 1
    )
    truncated = len(rows) > limit
    points = ",".join(_history_point(row) for row in rows[-limit:])
    return json_text_response(
        f'{{"since":"{format_time(since)}","until":"{format_time(until)}",'
        f'"limit":{limit},"truncated":{"true" if truncated else "false"},'
        f'"points":[{points}]}}'
    )


@bp.get("/bot/config/")
def page_config() -> Response:
    """The limits a client needs to judge freshness, and botmon's clock.

    `now` lets a browser whose clock is wrong measure silence on botmon's clock.
    """
    settings = service().settings
    return json_response(
        {
            "now": format_time(time.time()),
            "stale_after_seconds": settings.stale_after_seconds,
            "history_retention_days": settings.history_retention_days,
            "history_max_points": settings.history_max_points,
        }
    )


def _history_point(row: tuple[int, float, str, str, int]) -> str:
    # The stored texts are already canonical JSON: splice them, do not re-encode.
    _, received_at, resumen_json, estado_json, server_count = row
    return (
        f'{{"recibido_en":"{format_time(received_at)}","resumen":{resumen_json},'
        f'"estado":{estado_json},"servers":{server_count}}}'
    )


def _time_param(name: str, default: float) -> float:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        # The answer echoes the range, so it must be a time botmon can write.
        format_time(moment.timestamp())
        return moment.timestamp()
    except (ValueError, OverflowError, OSError):
        raise ApiError(
            400,
            "invalid_parameter",
            f"'{name}' must be an ISO-8601 date-time such as 2025-11-13T18:00:00Z",
            parameter=name,
        ) from None


def _limit_param(max_points: int) -> int:
    raw = request.args.get("limit")
    if raw is None or raw == "":
        return max_points
    # The length check keeps int() away from huge digit strings.
    valid = raw.isascii() and raw.isdigit() and len(raw) <= 9
    if not valid or not 1 <= int(raw) <= max_points:
        raise ApiError(
            400,
            "invalid_parameter",
            f"'limit' must be a whole number from 1 to {max_points} "
            "(BOTMON_HISTORY_MAX_POINTS)",
            parameter="limit",
        )
    return int(raw)


# The OpenAPI document, built once per app from the marshmallow schemas.


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI document of this API, generated from its schemas."""
    extensions = current_app.extensions
    if "botmon.openapi" not in extensions:
        botmon = service()
        extensions["botmon.openapi"] = strictjson.dumps(
            build_openapi(botmon.schema, botmon.settings)
        )
    return json_text_response(extensions["botmon.openapi"])
