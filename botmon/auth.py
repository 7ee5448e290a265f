"""Bearer-key checks for the bot's pushes."""

import hmac
import logging

from flask import request

from .errors import ApiError

log = logging.getLogger(__name__)


def require_bearer_key(expected_key: str) -> None:
    """Raise a 401 ApiError unless the request carries the expected key.

    The comparison takes the same time wherever the keys differ, so response
    times do not reveal how much of a guessed key is right.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()

    if not header:
        reason = "missing bearer token in the Authorization header"
    elif scheme.lower() != "bearer":
        reason = "the Authorization header must use the Bearer scheme: 'Bearer <key>'"
    elif not token:
        reason = "the Authorization header has the Bearer scheme but no key"
    elif not hmac.compare_digest(token.encode(), expected_key.encode()):
        reason = "the API key is not valid; use the key botmon was started with"
    else:
        return

    log.warning("refused a push from %s: %s", request.remote_addr, reason)
    raise ApiError(401, "unauthorized", reason)
