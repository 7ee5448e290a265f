"""A minimal broadcast server that botmon's figures are measured against.

Same endpoints and payload as botmon, on asyncio with aiohttp, and nothing
else: the bearer key is checked and the body parsed as JSON, but nothing is
validated or stored. Only the newest snapshot is kept, encoded once per POST,
and each listener is sent the newest one it has not had yet, so a slow
listener skips snapshots instead of queueing them, as botmon's do.
"""

import argparse
import asyncio
import hmac
import json
import logging
import os

from aiohttp import WSMsgType, web

from bench.procfs import raise_open_file_limit

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024 * 1024
PING_INTERVAL_SECONDS = 20.0
GOING_AWAY = 1001


class Listener:
    """One WebSocket peer and the newest frame it still has to be sent."""

    __slots__ = ("ws", "pending", "sending")

    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.pending: bytes | None = None
        self.sending = False


class Broadcaster:
    """Holds the newest snapshot and hands it to every listener."""

    def __init__(self) -> None:
        self.listeners: set[Listener] = set()
        self.latest: bytes | None = None
        self.published = 0
        # Keeps the send tasks referenced until they finish.
        self._tasks: set[asyncio.Task] = set()

    def publish(self, frame: bytes) -> int:
        self.latest = frame
        self.published += 1
        for listener in self.listeners:
            self.offer(listener, frame)
        return self.published

    def offer(self, listener: Listener, frame: bytes) -> None:
        listener.pending = frame
        if not listener.sending:
            listener.sending = True
            task = asyncio.create_task(self._drain(listener))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain(self, listener: Listener) -> None:
        try:
            while listener.pending is not None and not listener.ws.closed:
                frame, listener.pending = listener.pending, None
                await listener.ws.send_frame(frame, WSMsgType.TEXT)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            listener.sending = False


def _authorized(request: web.Request, key: str) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), key.encode()
    )


def make_app(key: str) -> web.Application:
    """The reference app: POST metrics, listen on the WebSocket."""
    hub = Broadcaster()

    async def receive_metrics(request: web.Request) -> web.Response:
        if not _authorized(request, key):
            return web.json_response({"error": "unauthorized"}, status=401)
        try:
            document = json.loads(await request.read())
        except ValueError:
            return web.json_response({"error": "invalid_json"}, status=400)
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        published = hub.publish(text.encode())
        return web.json_response({"id": published}, status=201)

    async def metrics_stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            heartbeat=PING_INTERVAL_SECONDS, max_msg_size=64 * 1024
        )
        await ws.prepare(request)
        listener = Listener(ws)
        hub.listeners.add(listener)
        if hub.latest is not None:
            hub.offer(listener, hub.latest)
        try:
            async for _message in ws:
                pass
        finally:
            hub.listeners.discard(listener)
        return ws

    async def close_listeners(_app: web.Application) -> None:
        closing = [
            listener.ws.close(code=GOING_AWAY, message=b"shutting down")
            for listener in list(hub.listeners)
        ]
        await asyncio.gather(*closing, return_exceptions=True)

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    for path in ("/api/bot/metrics/", "/api/bot/metrics"):
        app.router.add_post(path, receive_metrics)
    for path in ("/ws/bot/metrics/", "/ws/bot/metrics"):
        app.router.add_get(path, metrics_stream)
    app.on_shutdown.append(close_listeners)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    key = os.environ.get("BOT_API_KEY", "").strip()
    if not key:
        parser.error("set BOT_API_KEY to the key the bench posts with")
    raise_open_file_limit()

    # Loopback only: this server exists to be measured on this machine.
    web.run_app(
        make_app(key),
        host="127.0.0.1",
        port=args.port,
        backlog=4096,
        access_log=None,
        print=None,
        shutdown_timeout=5,
    )


if __name__ == "__main__":
    main()
