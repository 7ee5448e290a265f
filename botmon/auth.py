"""Credential checks: the bot's key for pushes, and the optional read token.

Each kind of credential has its own function: the bearer header, the browser's
cookie, and `?token=` in the address. Every secret is compared in constant
time, so response times do not reveal how much of a guessed secret is right,
and none is ever logged or echoed.
"""

import hashlib
import hmac
import logging

from flask import Response, request

from .errors import ApiError

log = logging.getLogger(__name__)

READ_COOKIE_NAME = "botmon_read"
# A screen is left open for months; it should not need the token again soon.
READ_COOKIE_MAX_AGE_SECONDS = 400 * 86_400


def _same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _is_read_secret(given: str, read_token: str, api_key: str) -> bool:
    # Both are compared every time, so timing tells nothing about which matched.
    matches_token = _same_secret(given, read_token)
    matches_key = _same_secret(given, api_key)
    return bool(given) and (matches_token or matches_key)


def _bearer() -> tuple[str | None, str]:
    """The bearer token of the request, or None and the reason it has none."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()

    if not header:
        return None, "missing bearer token in the Authorization header"
    if scheme.lower() != "bearer":
        return None, (
            "the Authorization header must use the Bearer scheme: 'Bearer <key>'"
        )
    if not token:
        return None, "the Authorization header has the Bearer scheme but no key"
    return token, ""


def require_bearer_key(expected_key: str) -> None:
    """Raise a 401 ApiError unless the request carries the expected key."""
    token, reason = _bearer()
    if token is not None and not _same_secret(token, expected_key):
        reason = "the API key is not valid; use the key botmon was started with"
    if reason:
        log.warning("refused a push from %s: %s", request.remote_addr, reason)
        raise ApiError(401, "unauthorized", reason)


def read_cookie_value(read_token: str) -> str:
    """What the read cookie holds: derived from the token, not the token itself.

    A cookie copied out of a browser then opens the page and the reads, but is
    not the token a team shares; and changing the token ends every cookie.
    """
    digest = hmac.new(read_token.encode(), b"botmon read cookie", hashlib.sha256)
    return digest.hexdigest()


def has_read_bearer(read_token: str, api_key: str) -> bool:
    """Whether `Authorization: Bearer` holds the read token or the API key."""
    token, _ = _bearer()
    return token is not None and _is_read_secret(token, read_token, api_key)


def has_read_cookie(read_token: str) -> bool:
    """Whether the browser sent the cookie that opening /?token= set."""
    cookie = request.cookies.get(READ_COOKIE_NAME, "")
    return bool(cookie) and _same_secret(cookie, read_cookie_value(read_token))


def query_token(read_token: str, api_key: str) -> bool | None:
    """None without `?token=`; else whether it is the read token or API key."""
    given = request.args.get("token")
    if given is None:
        return None
    return _is_read_secret(given.strip(), read_token, api_key)


def has_read_access(read_token: str, api_key: str) -> bool:
    """Whether the request carries any read credential: bearer, cookie or ?token=."""
    return (
        bool(query_token(read_token, api_key))
        or has_read_bearer(read_token, api_key)
        or has_read_cookie(read_token)
    )


def require_read_access(read_token: str, api_key: str) -> None:
    """Raise a 401 ApiError unless a read of the API carries a read credential.

    Nothing is needed while no read token is set.
    """
    if not read_token:
        return
    if has_read_bearer(read_token, api_key) or has_read_cookie(read_token):
        return

    token, reason = _bearer()
    if token is not None:
        reason = "the bearer token is not the read token (BOTMON_READ_TOKEN)"
    elif request.cookies.get(READ_COOKIE_NAME):
        reason = "the read cookie is out of date; open /?token=<read token> again"
    else:
        reason = (
            "reading needs the read token: send 'Authorization: Bearer <read "
            "token>', or open /?token=<read token> in the browser first"
        )
    log.info("refused a read of %s from %s", request.path, request.remote_addr)
    raise ApiError(401, "unauthorized", reason)


def set_read_cookie(response: Response, read_token: str) -> None:
    """Let this browser read: HttpOnly, so no script of any page can take it."""
    response.set_cookie(
        READ_COOKIE_NAME,
        read_cookie_value(read_token),
        max_age=READ_COOKIE_MAX_AGE_SECONDS,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
