"""The status page: one HTML shell; the script in static/ fills it live."""

import re

from flask import Blueprint, Response, render_template, request

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
