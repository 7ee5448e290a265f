"""Push a discord.py bot's real metrics to botmon from inside the bot.

`BotmonReporter` runs as one asyncio task in the bot's own event loop. It
reads what the client already knows (guilds, gateway latency, status), counts
gateway events and tracks the gateway connection through the client's event
dispatch, and POSTs a snapshot every `interval` seconds with aiohttp.

It never blocks the loop: the guild list is turned into JSON a slice at a
time, yielding to the loop between slices, and every request has a timeout.
While botmon cannot be reached, or answers 5xx or 429, it backs off
exponentially with jitter (honouring Retry-After), and returns to the normal
interval with the first accepted push. A refused push (400, 401, ...) is
logged with botmon's message and the reporter keeps going.

discord.py is not imported: the client is duck-typed, so this module imports
without it. The client needs `guilds`, `latency`, `status`, `is_ready()`,
`is_closed()` and `wait_for()`, as `discord.Client` and `commands.Bot` have.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .demo import CONNECTED, DISCONNECTED, METRICS_PATH, PushStats
from .schemas import SERVER_NAME_MAX_LENGTH, STATUS_MAX_LENGTH, utc_text

try:
    import aiohttp
except ImportError as error:
    raise ImportError(
        "botmon.reporter needs aiohttp: pip install 'botmon[discord]'"
    ) from error

if TYPE_CHECKING:
    import discord

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
USER_AGENT = "botmon-reporter/0.1"
# Every gateway dispatch (MESSAGE_CREATE, GUILD_CREATE, ...): discord.py
# reports these only to a client created with enable_debug_events=True.
GATEWAY_EVENTS = "socket_event_type"
# Guild rows encoded per slice: about a millisecond of work between yields.
ROWS_PER_SLICE = 500
SECONDS_PER_DAY = 86_400
# How long close() waits for its last push, which reports the bot offline.
FINAL_PUSH_TIMEOUT_SECONDS = 5.0


class DailyCounter:
    """A count that starts again from zero at every UTC midnight."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._count = 0
        self.total = 0
        self._day_ends = _next_midnight(clock())

    def add(self) -> None:
        self._roll_over()
        self._count += 1
        self.total += 1

    def today(self) -> int:
        self._roll_over()
        return self._count

    def _roll_over(self) -> None:
        now = self._clock()
        if now >= self._day_ends:
            self._count = 0
            self._day_ends = _next_midnight(now)


def _next_midnight(timestamp: float) -> float:
    # Unix time has no leap seconds: every UTC day is 86,400 of its seconds.
    return (timestamp // SECONDS_PER_DAY + 1) * SECONDS_PER_DAY


class ConnectionTracker:
    """Time spent connected to Discord's gateway since the first connection."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._first: float | None = None
        self._since: float | None = None
        self._closed_seconds = 0.0
        self.last_connected_at: datetime | None = None

    @property
    def connected(self) -> bool:
        return self._since is not None

    @property
    def ever_connected(self) -> bool:
        return self._first is not None

    def connect(self) -> None:
        if self._since is not None:
            return
        self._since = self._clock()
        if self._first is None:
            self._first = self._since
        self.last_connected_at = datetime.now(UTC)

    def disconnect(self) -> None:
        if self._since is not None:
            self._closed_seconds += self._clock() - self._since
            self._since = None

    def uptime_percent(self) -> float:
        """Connected time over the time since the first connection, 0 to 100."""
        if self._first is None:
            return 0.0
        now = self._clock()
        elapsed = now - self._first
        connected = self._closed_seconds
        if self._since is not None:
            connected += now - self._since
        if elapsed <= 0:
            return 100.0 if self.connected else 0.0
        return round(min(100.0, 100.0 * connected / elapsed), 2)

    def uptime_days(self) -> int:
        if self._first is None:
            return 0
        return int((self._clock() - self._first) // SECONDS_PER_DAY)


class BotmonReporter:
    """Reports a discord.py client to botmon every `interval` seconds.

    Call `start()` from the bot's `setup_hook` (or use `async with`), and
    `await close()` when the bot shuts down: the last push then reports the
    bot offline. `events` names the client events to count, without `on_`;
    the default counts every gateway dispatch and needs the client to be
    created with `enable_debug_events=True`.
    """

    def __init__(
        self,
        client: discord.Client,
        url: str = DEFAULT_URL,
        *,
        api_key: str,
        interval: float = 30.0,
        events: Iterable[str] = (GATEWAY_EVENTS,),
        timeout: float = 10.0,
        max_backoff: float = 300.0,
    ):
        if not api_key:
            raise ValueError("api_key is empty: pass the key botmon runs with")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://: {url!r}")
        if interval <= 0 or timeout <= 0 or max_backoff <= 0:
            raise ValueError("interval, timeout and max_backoff must be above zero")

        self.client = client
        self.endpoint = url.rstrip("/") + METRICS_PATH
        self.api_key = api_key
        self.interval = interval
        self.events = tuple(events)
        self.timeout = timeout
        self.max_backoff = max(max_backoff, interval)

        self.stats = PushStats()
        self.counter = DailyCounter()
        self.connection = ConnectionTracker()
        self._last_latency_ms = 0.0
        self._was_ready = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None
        self._listeners: list[asyncio.Task] = []
        # The last problem logged, so that a repeat is logged at debug level.
        self._problem: str | None = None

    def start(self) -> None:
        """Start reporting; call it from a coroutine, in the bot's loop."""
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        for name in self.events:
            self._listen(name, self.counter.add)
        self._listen("connect", self.connection.connect)
        self._listen("resumed", self.connection.connect)
        self._listen("ready", self._ready)
        self._listen("disconnect", self.connection.disconnect)
        if self.client.is_ready() and not self.client.is_closed():
            self.connection.connect()
            self._was_ready.set()
        self._task = loop.create_task(self._run(), name="botmon reporter")

    async def close(self) -> None:
        """Stop reporting, push once more to report the bot offline, clean up."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        for listener in self._listeners:
            listener.cancel()
        await asyncio.gather(task, *self._listeners, return_exceptions=True)
        self._listeners.clear()

        try:
            if self.stats.accepted:
                body = await self.encode_payload(offline=True)
                timeout = min(self.timeout, FINAL_PUSH_TIMEOUT_SECONDS)
                status, _, _ = await self._send(body, timeout)
                log.debug("reported the bot offline to botmon: %d", status)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            log.warning("could not report the bot offline to botmon: %s", error)
        except Exception:
            # The bot is shutting down: say what went wrong, do not stop it.
            log.exception("could not report the bot offline to botmon")
        finally:
            if self._session is not None:
                await self._session.close()
                self._session = None

    async def __aenter__(self) -> BotmonReporter:
        self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def _listen(self, event: str, callback: Callable[[], None]) -> None:
        # A wait_for whose check never passes sees every dispatch of the event
        # and stays registered until cancelled. Unlike add_listener (which
        # only commands.Bot has) it works on any client, and the check runs
        # inline in dispatch instead of as a new task per event.
        def check(*args: Any) -> bool:
            callback()
            return False

        waiter = self.client.wait_for(event, check=check)
        self._listeners.append(asyncio.ensure_future(waiter))

    def _ready(self) -> None:
        self.connection.connect()
        self._was_ready.set()
        if GATEWAY_EVENTS in self.events and self.counter.total == 0:
            log.warning(
                "no gateway events counted by the time the bot was ready: create "
                "the client with enable_debug_events=True, or pass events=(...) "
                "naming the events to count, such as ('message',)"
            )

    async def _run(self) -> None:
        # Before the first ready the guild list is still arriving: a push then
        # would report a bot in no guilds.
        await self._was_ready.wait()
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                delay = await self._push_once()
            except Exception:
                # Whatever went wrong, the task must outlive it: the bot keeps
                # running and a later push may work.
                self.stats.failed += 1
                self.stats.failing_streak += 1
                delay = self._backoff()
                log.exception("botmon push failed; retrying in %.1f s", delay)
            await asyncio.sleep(max(0.0, started + delay - loop.time()))

    async def _send(self, body: bytes, timeout: float) -> tuple[int, float, dict]:
        """POST `body`; return the status, Retry-After in seconds, and the answer."""
        async with self._open_session().post(
            self.endpoint, data=body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            retry_after = _seconds(response.headers.get("Retry-After"))
            return response.status, retry_after, _json_object(await response.read())

    async def _push_once(self) -> float:
        """Send one snapshot and return the seconds until the next push."""
        body = await self.encode_payload()
        self.stats.attempted += 1
        try:
            status, retry_after, answer = await self._send(body, self.timeout)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            self.stats.failed += 1
            self.stats.failing_streak += 1
            delay = self._backoff()
            self._report(
                "unreachable",
                logging.WARNING,
                "cannot reach botmon at %s (%s); retrying in %.1f s",
                self.endpoint,
                str(error) or type(error).__name__,
                delay,
            )
            return delay

        if status == 201:
            self.stats.accepted += 1
            self.stats.failing_streak = 0
            if self._problem is not None:
                log.info(
                    "botmon accepts the pushes again (snapshot %s)", answer.get("id")
                )
                self._problem = None
            else:
                log.debug("push accepted: snapshot %s", answer.get("id"))
            return self.interval

        error = answer.get("error", "no error code")
        message = answer.get("message", "no message")
        if status == 429 or status >= 500:
            self.stats.failed += 1
            self.stats.failing_streak += 1
            delay = max(self._backoff(), min(retry_after, self.max_backoff))
            self._report(
                f"{status} {error}",
                logging.WARNING,
                "botmon did not store the push (%d %s): %s; retrying in %.1f s",
                status,
                error,
                message,
                delay,
            )
            return delay

        self.stats.refused += 1
        self.stats.failing_streak = 0
        fields = answer.get("fields")
        self._report(
            f"{status} {error}",
            logging.ERROR,
            "botmon refused the push (%d %s): %s%s",
            status,
            error,
            message,
            f" {fields}" if fields else "",
        )
        return self.interval

    def _report(self, problem: str, level: int, message: str, *args: Any) -> None:
        # The first of a run of identical problems at `level`, repeats at debug:
        # a bot with a wrong key should not fill its log with the same line.
        if problem == self._problem:
            level = logging.DEBUG
        self._problem = problem
        log.log(level, message, *args)

    def _backoff(self) -> float:
        # Doubling from the interval up to the cap, less up to half at random
        # so that many bots do not all knock at once when botmon returns.
        doublings = min(self.stats.failing_streak - 1, 30)
        ceiling = min(self.max_backoff, self.interval * 2**doublings)
        return ceiling * random.uniform(0.5, 1.0)

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers={
                    "Authorization": f"Bearer {self.api_key}",
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                }
            )
        return self._session

    async def encode_payload(self, *, offline: bool = False) -> bytes:
        """The client's snapshot as a request body, built without stalling.

        The guild rows are encoded `ROWS_PER_SLICE` at a time with a yield to
        the loop after each slice, so that a bot in 10,000 guilds keeps
        answering its gateway while its snapshot is built.
        """
        guilds = list(self.client.guilds)
        slices: list[bytes] = []
        connected = 0
        for start in range(0, len(guilds), ROWS_PER_SLICE):
            rows = [
                guild_row(guild) for guild in guilds[start : start + ROWS_PER_SLICE]
            ]
            connected += sum(1 for row in rows if row["status"] == CONNECTED)
            slices.append(_dumps(rows)[1:-1].encode())
            await asyncio.sleep(0)

        now = datetime.now(UTC)
        head = {
            "resumen": {
                "servidores_conectados": connected,
                "eventos_procesados_hoy": self.counter.today(),
                "uptime_porcentaje": self.connection.uptime_percent(),
                "ultima_sincronizacion": utc_text(now),
            },
            "estado": {
                "status": "offline" if offline else self._status(),
                "uptime_dias": self.connection.uptime_days(),
                "latencia_ms": self._latency_ms(),
                "ultima_conexion": utc_text(self.connection.last_connected_at or now),
            },
        }
        head_text = _dumps(head)[:-1] + ',"servers":['
        return b"".join([head_text.encode(), b",".join(slices), b"]}"])

    def _status(self) -> str:
        if not self.connection.connected or self.client.is_closed():
            return "offline"
        # discord.Status prints as its value: online, idle, dnd, invisible.
        return str(self.client.status)[:STATUS_MAX_LENGTH] or "online"

    def _latency_ms(self) -> float:
        # discord.py reports nan without a gateway connection and inf until the
        # first heartbeat is acknowledged: keep the last real value (0 before
        # the first), as the contract takes finite numbers only.
        seconds = self.client.latency
        if isinstance(seconds, int | float) and math.isfinite(seconds) and seconds >= 0:
            self._last_latency_ms = round(seconds * 1000, 2)
        return self._last_latency_ms


def guild_row(guild: discord.Guild) -> dict[str, Any]:
    """One row of `servers` for a discord.py guild."""
    unavailable = getattr(guild, "unavailable", False)
    return {
        "server_id": guild.id,
        "server_name": _guild_name(guild.name, guild.id),
        "miembros": guild.member_count or 0,
        "canales": len(guild.channels),
        "status": DISCONNECTED if unavailable else CONNECTED,
    }


def _guild_name(name: str | None, guild_id: int) -> str:
    # An unavailable guild has no name yet; the contract needs one.
    text = (name or "").replace("\x00", "")[:SERVER_NAME_MAX_LENGTH] or str(guild_id)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _json_object(body: bytes) -> dict:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _seconds(header: str | None) -> float:
    try:
        return max(0.0, float(header or 0))
    except ValueError:
        return 0.0
