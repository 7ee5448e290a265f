"""The status page: one HTML shell; the script in static/ fills it live."""

import re

from flask import Blueprint, Response, redirect, render_template, request

from ..auth import has_read_cookie, query_token, set_read_cookie
from ..service import service

bp = Blueprint("page", __name__)

# A Host header is client input; only a plain host[:port] goes into the policy.
_PLAIN_HOST = re.compile(r"([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")


def content_security_policy(host: str) -> str:
    """Everything from botmon itself; no inline script, no third parties.

    'self' does not cover ws: and wss: in every browser, so the socket of the
    same host is named explicitly.
    """
    sockets = f" ws://{host} wss://{host}" if _PLAIN_HOST.fullmatch(host) else ""
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self'{sockets}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


TOKEN_NEEDED = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>botmon</title></head>
<body><h1>botmon</h1>
<p>{problem} Open <code>/?token=&lt;read token&gt;</code> in this browser, with
the read token (BOTMON_READ_TOKEN) your team was given. botmon then remembers
this browser and takes the token out of the address.</p>
</body></html>
"""


@bp.before_request
def _require_read_token() -> Response | None:
    botmon = service()
    read_token = botmon.settings.read_token
    if not read_token:
        return None

    # The token goes into a cookie at once, and the redirect takes it out of
    # the address bar and the history.
    given = query_token(read_token, botmon.api_key)
    if given:
        response = redirect("/", code=303)
        set_read_cookie(response, read_token)
        response.headers["Cache-Control"] = "no-store"
        return response
    if given is None and has_read_cookie(read_token):
        return None

    problem = (
        "That token is not valid."
        if given is False
        else "This page needs the read token."
    )
    response = Response(
        TOKEN_NEEDED.format(problem=problem), status=401, mimetype="text/html"
    )
    response.headers["WWW-Authenticate"] = "Bearer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    return response


@bp.get("/")
def status_page() -> Response:
    """The page a person leaves open on a screen."""
    response = Response(render_template("status.html"), mimetype="text/html")
    response.headers["Content-Security-Policy"] = content_security_policy(request.host)
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.after_app_request
def _no_sniffing(response: Response) -> Response:
    # A script or stylesheet must be run as what it is declared to be.
    if request.path == "/" or request.path.startswith("/static/"):
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response
