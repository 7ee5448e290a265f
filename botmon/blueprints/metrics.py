"""For other tools: Prometheus exposition at /metrics, and status badges.

Both read what the API reads, and both need the read token when one is set:
as `Authorization: Bearer` (what Prometheus sends), `?token=`, or the page's
cookie. BOTMON_BADGE_PUBLIC=true serves the badges without it, for a README
that the world reads.
"""

import gzip
import hashlib
import json
import logging
import time

from flask import Blueprint, Response, request

from .. import badge, telemetry
from ..auth import has_read_access, query_token
from ..errors import ApiError
from ..service import service

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

SVG_TYPE = "image/svg+xml"
STATUS_LABEL = "discord bot"
LATENCY_LABEL = "latency"
# An SVG opened on its own is a document: it may show, never run anything.
BADGE_POLICY = "default-src 'none'; sandbox"
BADGE_ENDPOINTS = {"metrics.status_badge", "metrics.latency_badge"}


@bp.record_once
def _install(state) -> None:
    telemetry.install(state.app)


@bp.before_request
def _require_read_token() -> None:
    botmon = service()
    read_token = botmon.settings.read_token
    if not read_token:
        return
    if request.endpoint in BADGE_ENDPOINTS and botmon.settings.badge_public:
        return
    if has_read_access(read_token, botmon.api_key):
        return

    if query_token(read_token, botmon.api_key) is False:
        reason = "the token in the address is not the read token (BOTMON_READ_TOKEN)"
    elif request.headers.get("Authorization"):
        reason = (
            "the Authorization header does not hold 'Bearer <read token>' "
            "with the read token (BOTMON_READ_TOKEN)"
        )
    else:
        reason = (
            "this needs the read token (BOTMON_READ_TOKEN): send "
            "'Authorization: Bearer <read token>' (Prometheus: the scrape "
            "job's authorization credentials) or add ?token=<read token>"
        )
    log.info("refused a read of %s from %s", request.path, request.remote_addr)
    raise ApiError(401, "unauthorized", reason)


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """The bot's latest numbers and botmon's own, for Prometheus to scrape."""
    current = telemetry.current()
    body, content_type = current.exposition(request.headers.get("Accept", ""))
    response = Response(body, content_type=content_type)
    if request.accept_encodings["gzip"]:
        response.set_data(gzip.compress(body, compresslevel=6))
        response.headers["Content-Encoding"] = "gzip"
    response.headers["Cache-Control"] = "no-store"
    response.vary.update(("Accept", "Accept-Encoding"))
    return response


@bp.get("/badge.svg")
def status_badge() -> Response:
    """The bot's status: online, idle, dnd, offline, silent or no data."""
    estado, stale = _latest_estado()
    word = estado["status"] if estado else None
    label = _label(STATUS_LABEL)
    return _svg_response(badge.status_badge(label, word, stale))


@bp.get("/badge/latency.svg")
def latency_badge() -> Response:
    """The bot's latency, such as `45 ms`; silent or no data as above."""
    estado, stale = _latest_estado()
    latency_ms = float(estado["latencia_ms"]) if estado else None
    label = _label(LATENCY_LABEL)
    return _svg_response(badge.latency_badge(label, latency_ms, stale))


def _latest_estado() -> tuple[dict | None, bool]:
    """The newest estado, and whether the bot went silent since (as the API)."""
    botmon = service()
    latest = botmon.store.latest_summary()
    if latest is None:
        return None, False
    silent_for = time.time() - latest.received_at
    stale = silent_for > botmon.settings.stale_after_seconds
    return json.loads(latest.estado_json), stale


def _label(default: str) -> str:
    """`?label=` when given (the bot's name, say), else the default."""
    given = badge.clean_text(request.args.get("label", ""))
    return given or default


def _svg_response(shown: badge.Badge) -> Response:
    svg = badge.render(shown).encode("utf-8")
    response = Response(svg, mimetype=SVG_TYPE)
    # GitHub's image proxy and browsers must ask again each time; the ETag
    # makes asking cheap when nothing changed.
    response.set_etag(hashlib.sha256(svg).hexdigest()[:32])
    cache = "no-cache, max-age=0"
    if service().settings.read_token and not service().settings.badge_public:
        cache += ", private"
    response.headers["Cache-Control"] = cache
    response.headers["Content-Security-Policy"] = BADGE_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response.make_conditional(request)
