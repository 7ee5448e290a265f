"""The load client's parts: WebSocket listeners, stalled sockets and posters.

Everything runs in one asyncio process. Listeners only note which sequence
number arrived and when; the bench does the arithmetic afterwards.
"""

import asyncio
import base64
import logging
import os
import socket
import time

import aiohttp

from .payloads import API_KEY, seq_of

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 30.0
CLOSE_TIMEOUT_SECONDS = 20.0
POST_TIMEOUT_SECONDS = 60.0
HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


class Tally:
    """How many listeners received each sequence number, and when the last did."""

    def __init__(self) -> None:
        self.expected = 0
        self.counts: dict[int, int] = {}
        self.last_at: dict[int, float] = {}
        self._waiting: dict[int, asyncio.Event] = {}

    def record(self, seq: int, at: float) -> None:
        count = self.counts.get(seq, 0) + 1
        self.counts[seq] = count
        self.last_at[seq] = at
        if count >= self.expected and seq in self._waiting:
            self._waiting[seq].set()

    async def wait_for_all(self, seq: int, timeout: float) -> int:
        """Wait until every expected listener has `seq`; return how many have."""
        if self.counts.get(seq, 0) < self.expected:
            arrived = self._waiting[seq] = asyncio.Event()
            try:
                await asyncio.wait_for(arrived.wait(), timeout)
            except TimeoutError:
                pass
            finally:
                del self._waiting[seq]
        return self.counts.get(seq, 0)


class ListenerPool:
    """Many WebSocket listeners on one aiohttp session, feeding one Tally."""

    def __init__(self, url: str, tally: Tally, compress: int = 0):
        self.url = url
        self.tally = tally
        self.compress = compress
        self.sockets: list[aiohttp.ClientWebSocketResponse] = []
        self.greeted = 0
        self.failed = 0
        self._tasks: list[asyncio.Task] = []
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True)
        )

    @property
    def negotiated_compression(self) -> int:
        """How many listeners agreed permessage-deflate with the server."""
        return sum(1 for ws in self.sockets if ws.compress)

    async def open(self, count: int, concurrency: int = 200) -> int:
        """Connect `count` listeners, at most `concurrency` handshakes at once."""
        gate = asyncio.Semaphore(concurrency)

        async def connect_one() -> None:
            async with gate:
                try:
                    ws = await asyncio.wait_for(
                        self._session.ws_connect(
                            self.url,
                            compress=self.compress,
                            max_msg_size=0,
                            autoping=True,
                        ),
                        CONNECT_TIMEOUT_SECONDS,
                    )
                except (TimeoutError, aiohttp.ClientError, OSError) as error:
                    self.failed += 1
                    log.debug("listener failed to connect: %r", error)
                    return
            self.sockets.append(ws)
            self._tasks.append(asyncio.create_task(self._listen(ws)))

        await asyncio.gather(*(connect_one() for _ in range(count)))
        if self.failed:
            log.warning("%d of %d listeners failed to connect", self.failed, count)
        return len(self.sockets)

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        greeted = False
        record = self.tally.record
        while True:
            message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                return
            now = time.perf_counter()
            if not greeted:
                greeted = True
                self.greeted += 1
            seq = seq_of(message.data)
            if seq is not None:
                record(seq, now)

    async def wait_greeted(self, timeout: float) -> bool:
        """Wait until every listener has had the snapshot sent on connect."""
        deadline = time.monotonic() + timeout
        while self.greeted < len(self.sockets):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def close(self) -> None:
        """Close every listener cleanly, within a bounded time."""
        closing = [asyncio.create_task(ws.close()) for ws in self.sockets]
        if closing:
            _, late = await asyncio.wait(closing, timeout=CLOSE_TIMEOUT_SECONDS)
            for task in late:
                task.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, *closing, return_exceptions=True)
        await self._session.close()


async def open_stalled(host: str, port: int, path: str, count: int) -> list:
    """WebSocket peers that complete the handshake and then never read.

    A small receive buffer makes the server's writes block after a few KiB,
    which is what a listener on a stalled network looks like from the server.
    """
    loop = asyncio.get_running_loop()
    opened = []
    for _ in range(count):
        peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        peer.setblocking(False)
        try:
            await asyncio.wait_for(
                _handshake(loop, peer, host, port, path), CONNECT_TIMEOUT_SECONDS
            )
        except (TimeoutError, OSError) as error:
            log.warning("a stalled listener failed its handshake: %r", error)
            peer.close()
            continue
        opened.append(peer)
    return opened


async def _handshake(loop, peer: socket.socket, host: str, port: int, path: str):
    await loop.sock_connect(peer, (host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(peer, request.encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = await loop.sock_recv(peer, 1024)
        if not chunk:
            raise ConnectionError("server closed during the handshake")
        answer += chunk
    if b" 101 " not in answer.split(b"\r\n", 1)[0]:
        raise ConnectionError(f"handshake refused: {answer[:80]!r}")


def poster_session(connections: int) -> aiohttp.ClientSession:
    """A session of keep-alive connections, closed before the server drops them."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections, keepalive_timeout=3),
        timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS),
    )


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    """POST one body; return the HTTP status, or 0 if no answer came."""
    try:
        async with session.post(url, data=body, headers=HEADERS) as response:
            await response.read()
            return response.status
    except (TimeoutError, aiohttp.ClientError, OSError) as error:
        log.debug("a POST failed: %r", error)
        return 0
