"""The live stream: every accepted snapshot, sent to every listener."""

import fcntl
import functools
import logging
import socket
import struct
import termios
import threading
import time

import gevent
from flask import Blueprint, Response, request
from flask_sock import Sock
from simple_websocket import ConnectionClosed
from wsproto.events import Ping

from ..auth import has_read_access
from ..hub import Hub, Message
from ..service import service

log = logging.getLogger(__name__)

bp = Blueprint("websocket", __name__)
sock = Sock()

GOING_AWAY = 1001
POLICY_VIOLATION = 1008
# How long a listener gets to take its close frame, and at shutdown the rest
# of a snapshot under way: a close frame is a few bytes, and a peer that
# cannot take them in this time is not reading.
GOODBYE_SECONDS = 1.0
# Asks the kernel how many bytes written to a socket are not yet acknowledged.
_OUTQ_REQUEST = getattr(termios, "TIOCOUTQ", None)


class SerialSocket:
    """A socket that one writer at a time writes whole buffers to, or gives up.

    simple-websocket writes with a single `send`, which may write only part
    of a large frame, and writes from two greenlets (ours, and its reader
    answering the peer's pings and closes), which could interleave frames.
    Every write goes through here instead: under a lock, all of it, within a
    time limit. A peer that does not drain a message in that time is cut
    off, which is what frees a stalled listener's resources.
    """

    def __init__(self, raw: socket.socket, send_timeout: float):
        self._raw = raw
        self._lock = threading.Lock()
        self.send_timeout = send_timeout
        self.bytes_sent = 0

    def send(self, data: bytes) -> int:
        with self._lock:
            # Most frames fit in the socket buffer at once: try that without
            # arming a timer, which would cost more than the write itself.
            try:
                sent = self._raw.send(data, 0, 0.0)
            except BlockingIOError:
                sent = 0
            if sent < len(data):
                self._send_rest(memoryview(data)[sent:])
            self.bytes_sent += len(data)
        return len(data)

    def _send_rest(self, rest: memoryview) -> None:
        try:
            with gevent.Timeout(self.send_timeout):
                self._raw.sendall(rest)
        except gevent.Timeout:
            self._raw.close()
            raise ConnectionAbortedError("listener did not read in time") from None

    def bytes_taken(self) -> int | None:
        """How many bytes the peer has acknowledged, where the OS can tell."""
        if _OUTQ_REQUEST is None:
            return None
        try:
            answer = fcntl.ioctl(self._raw.fileno(), _OUTQ_REQUEST, bytes(4))
        except OSError:
            return None
        (unacknowledged,) = struct.unpack("i", answer)
        return self.bytes_sent - unacknowledged

    def __getattr__(self, name: str):
        return getattr(self._raw, name)


class Keepalive:
    """Pings a listener, and tells when it has gone silent.

    A pong comes back only after the peer has read everything queued before
    the ping, and a slow but healthy peer may spend several ping intervals
    reading one large snapshot. So a peer counts as alive while it answers
    pings or keeps taking bytes off its socket; one that does neither for a
    whole interval is gone. Where the OS does not say how much the peer has
    taken (Linux does), a ping must simply be answered within one interval.
    """

    def __init__(self, ws, interval: float):
        self._ws = ws
        self._interval = interval
        self._due = time.monotonic() + interval
        self._taken: int | None = None

    def seconds_to_wait(self) -> float:
        return max(0.0, self._due - time.monotonic())

    def peer_alive(self) -> bool:
        """Ping when one is due; False when the last one went unanswered."""
        now = time.monotonic()
        if now < self._due:
            return True

        taken = self._ws.sock.bytes_taken()
        if self._ws.pong_received:
            self._ws.pong_received = False
            self._ws.sock.send(self._ws.ws.send(Ping()))
        elif taken is None or self._taken is None or taken <= self._taken:
            return False

        self._taken = taken
        self._due = now + self._interval
        return True


class StreamWake:
    """What the hub sets to wake one stream.

    A stream in the middle of sending a snapshot does not look at its event
    until the send ends, which for a stalled peer is the whole send timeout.
    So when the hub closes, this also gives such a send GOODBYE_SECONDS to
    finish before the socket is closed under it: one stuck listener cannot
    hold up the worker's exit.
    """

    def __init__(self, ws, hub: Hub):
        self._ws = ws
        self._hub = hub

    def set(self) -> None:
        self._ws.event.set()
        if self._hub.closing:
            gevent.spawn_later(GOODBYE_SECONDS, self._ws.sock.close)


class ReaderGreenlet:
    """Runs simple-websocket's socket reader as a bare greenlet.

    The library asks for a thread class; under the gevent worker a
    `threading.Thread` is a greenlet wrapped in locks, events and bookkeeping
    that a reader which only ever runs to its end does not need, and that
    every idle listener would otherwise carry.
    """

    def __init__(self, target):
        self._target = target
        self.name = "simple_websocket.Base._thread"

    def start(self) -> None:
        gevent.spawn_raw(self._target)


@functools.lru_cache(maxsize=1)
def text_frame(message: Message) -> bytes:
    """The message as one final, unmasked text frame, built once for everyone.

    Every listener that did not negotiate compression is sent these same
    bytes, so a multi-megabyte snapshot is framed once, not once per socket,
    and a listener that is slow to take it holds no copy of its own.
    """
    payload = message.text.encode("utf-8")
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


@bp.before_app_request
def _refuse_compression() -> None:
    # Compressing per listener would deflate the same text once per socket and
    # keep a zlib state of ~300 KiB per connection; the text is built once.
    if request.path.startswith("/ws/") and not service().settings.ws_compression:
        request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


@bp.before_request
def _require_read_token() -> Response | None:
    # Answered before the upgrade, so a client sees a plain HTTP 401.
    botmon = service()
    read_token = botmon.settings.read_token
    if not read_token:
        return None
    if has_read_access(read_token, botmon.api_key):
        return None

    log.info("refused a listener from %s: no read token", request.remote_addr)
    response = Response(
        "listening needs the read token: the cookie set by opening "
        "/?token=<read token>, or ?token=<read token> on this URL\n",
        status=401,
        mimetype="text/plain",
    )
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


@sock.route("/ws/bot/metrics/", bp=bp, strict_slashes=False)
def metrics_stream(ws) -> None:
    """Send the newest snapshot now, then each newer one as it is published."""
    botmon = service()
    settings = botmon.settings
    ws.sock = SerialSocket(ws.sock, settings.ws_send_timeout_seconds)
    keepalive = Keepalive(ws, settings.ws_ping_interval_seconds)
    subscription = botmon.hub.subscribe(StreamWake(ws, botmon.hub))
    peer = request.remote_addr
    log.debug("listener %s joined (%d listening)", peer, botmon.hub.listener_count)

    try:
        _stream(ws, subscription, botmon.hub, keepalive, settings.ws_compression)
    except (ConnectionClosed, OSError) as error:
        log.debug("listener %s dropped: %s", peer, error)
    finally:
        subscription.close()
        log.debug("listener %s left (%d listening)", peer, botmon.hub.listener_count)


def _stream(ws, subscription, hub, keepalive: Keepalive, compression: bool) -> None:
    # ws.event is set by the hub on publish and by simple-websocket's reader
    # on a message, a close or a broken socket, so one wait covers them all.
    while ws.connected:
        ws.event.wait(keepalive.seconds_to_wait())
        ws.event.clear()
        # Listeners have nothing to tell us; do not let what they send pile up.
        ws.input_buffer.clear()

        if hub.closing:
            _close(ws, GOING_AWAY, "botmon is shutting down")
            return

        message = subscription.next_message()
        if message is not None and ws.connected:
            if compression:
                ws.send(message.text)
            else:
                ws.sock.send(text_frame(message))

        if ws.connected and not keepalive.peer_alive():
            _close(ws, POLICY_VIOLATION, "no pong within the ping timeout")
            return


def _close(ws, code: int, reason: str) -> None:
    ws.sock.send_timeout = min(ws.sock.send_timeout, GOODBYE_SECONDS)
    ws.close(code, reason)


def init_app(app) -> None:
    """Configure simple-websocket and register the route."""
    app.config["SOCK_SERVER_OPTIONS"] = {
        # The stream sends and judges the pings itself (see Keepalive): it can
        # tell a peer still reading a large snapshot from one that is gone.
        "ping_interval": None,
        "max_message_size": 64 * 1024,
        "thread_class": ReaderGreenlet,
    }
    app.register_blueprint(bp)
    sock.init_app(app)
