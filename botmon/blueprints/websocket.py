"""The live stream: every accepted snapshot, sent to every listener."""

import logging
import socket
import threading

import gevent
from flask import Blueprint, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from ..service import service

log = logging.getLogger(__name__)

bp = Blueprint("websocket", __name__)
sock = Sock()

GOING_AWAY = 1001


class SerialSocket:
    """A socket that one writer at a time writes whole buffers to, or gives up.

    simple-websocket writes with a single `send`, which may write only part
    of a large frame, and writes from two greenlets (ours, and its reader
    answering pings), which could interleave frames. Every write goes through
    here instead: under a lock, all of it, within a time limit. A peer that
    does not drain a message in that time is cut off, which is what frees a
    stalled listener's resources.
    """

    def __init__(self, raw: socket.socket, send_timeout: float):
        self._raw = raw
        self._lock = threading.Lock()
        self._send_timeout = send_timeout

    def send(self, data: bytes) -> int:
        with self._lock:
            try:
                with gevent.Timeout(self._send_timeout):
                    self._raw.sendall(data)
            except gevent.Timeout:
                self._raw.close()
                raise ConnectionAbortedError("listener did not read in time") from None
        return len(data)

    def __getattr__(self, name: str):
        return getattr(self._raw, name)


@bp.before_app_request
def _refuse_compression() -> None:
    # Compressing per listener would deflate the same text once per socket and
    # keep a zlib state of ~300 KiB per connection; the text is built once.
    if request.path.startswith("/ws/") and not service().settings.ws_compression:
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


@sock.route("/ws/bot/metrics/", bp=bp, strict_slashes=False)
def metrics_stream(ws) -> None:
    """Send the newest snapshot now, then each newer one as it is published."""
    botmon = service()
    ws.sock = SerialSocket(ws.sock, botmon.settings.ws_send_timeout_seconds)
    subscription = botmon.hub.subscribe(ws.event)
    peer = request.remote_addr
    log.debug("listener %s joined (%d listening)", peer, botmon.hub.listener_count)

    try:
        _stream(ws, subscription, botmon.hub)
    except (ConnectionClosed, OSError) as error:
        log.debug("listener %s dropped: %s", peer, error)
    finally:
        subscription.close()
        log.debug("listener %s left (%d listening)", peer, botmon.hub.listener_count)


def _stream(ws, subscription, hub) -> None:
    # ws.event is set by the hub on publish and by simple-websocket's reader
    # on a message, a close or a failed ping, so one wait covers them all.
    while ws.connected:
        ws.event.wait()
        ws.event.clear()
        # Listeners have nothing to tell us; do not let what they send pile up.
        ws.input_buffer.clear()

        if hub.closing:
            ws.close(GOING_AWAY, "botmon is shutting down")
            return

        message = subscription.next_message()
        if message is not None and ws.connected:
            ws.send(message.text)


def init_app(app) -> None:
    """Configure simple-websocket from the settings and register the route."""
    settings = app.extensions["botmon"].settings
    app.config["SOCK_SERVER_OPTIONS"] = {
        "ping_interval": settings.ws_ping_interval_seconds,
        "max_message_size": 64 * 1024,
    }
    app.register_blueprint(bp)
    sock.init_app(app)
