"""A pretend Discord bot that pushes realistic, evolving metrics to botmon.

`DemoBot` holds the state a real bot would report (its guilds, its gateway
latency, how many events it handled today) and moves it forward a little at
every push. `push_loop` sends its payloads on a schedule the way a bot's
background task would: it logs every answer, backs off while botmon cannot be
reached, and stops when told to.

Nothing here talks to botmon's internals: the demo bot is a client of the
HTTP contract only, so what it shows is what a real bot would see.
"""

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import requests

log = logging.getLogger(__name__)

METRICS_PATH = "/api/bot/metrics/"
USER_AGENT = "botmon-demo-bot/0.1"
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 60.0

# Discord snowflakes count milliseconds from the first second of 2015 in their
# top 42 bits. Guilds created from 2016 on have 18-digit ids; from mid-2022
# on, 19-digit ones.
DISCORD_EPOCH_MS = 1_420_070_400_000
OLDEST_GUILD = datetime(2016, 1, 1, tzinfo=UTC)
NEWEST_GUILD = datetime(2025, 6, 1, tzinfo=UTC)

CONNECTED = "conectado"
# The status page colours these two; a guild drops out during a Discord outage.
DISCONNECTED = "desconectado"

# Guild names by script, so that even a small demo shows right-to-left text,
# CJK, Cyrillic and emoji (flags, skin tones and ZWJ sequences included).
# Names are taken round-robin across the groups in this order.
NAMES_BY_SCRIPT: dict[str, tuple[str, ...]] = {
    "latin": (
        "RPSOFT",
        "🎮 Gaming Hub",
        "Café ☕ & Código",
        "Lo-fi Study 📚",
        "Minecraft España ⛏️",
        "Los Memes de Juan 😂",
        "Dev Latam 💻",
        "🇧🇷 Brasil Gamers",
        "👋🏽 Welcome Lounge",
        "👨‍👩‍👧‍👦 Family Server",
        "Türk Oyuncular Topluluğu",
        "Polska Społeczność Graczy",
        "Cộng đồng Việt Nam",
        "Comunidad Python 🐍",
        "Esports Academy 🏆",
        "Pixel Art Club 🎨",
    ),
    "japanese": (
        "日本語学習サーバー",
        "ゲーム部 🎮",
        "アニメ好きの集まり",
        "まったり雑談部屋☕",
        "東京ゲーマーズ",
    ),
    "arabic": (
        "مجتمع المبرمجين العرب",
        "نادي الألعاب 🎮",
        "سيرفر القهوة ☕",
        "Dev Talk | نقاش المطورين",
    ),
    "cyrillic": (
        "Русское сообщество",
        "Клуб программистов 🖥️",
        "Українська спільнота 🇺🇦",
        "Български геймъри",
    ),
    "hebrew": (
        "קהילת המפתחים",
        "גיימרים ישראל 🎲",
        "מועדון הספר",
    ),
    "korean": ("한국 게이머 모임", "케이팝 팬클럽 💜"),
    "chinese": ("中文交流群", "原神玩家俱乐部 ✨"),
    "greek": ("Ελληνική Κοινότητα",),
    "thai": ("ชุมชนเกมเมอร์ไทย",),
    "devanagari": ("हिंदी गेमिंग समुदाय",),
}

# For bots in more guilds than the names above: "<theme> <kind>" pairs.
NAME_THEMES = (
    "Anime", "Retro", "Pixel", "Cozy", "Midnight", "Neon", "Café", "Lo-fi",
    "アニメ", "ゲーム", "Кино", "Музыка", "موسيقى", "ألعاب", "מוזיקה", "음악",
    "游戏", "Ciencia", "Música", "Arte", "🐉", "🌸", "🚀", "🎧", "🦊",
)  # fmt: skip
NAME_KINDS = (
    "Club", "Hub", "Lounge", "Squad", "Guild", "Crew", "Comunidad", "Zona",
    "サーバー", "部", "Клуб", "Чат", "نادي", "مجتمع", "קהילה", "모임", "社区",
)  # fmt: skip


def utc_timestamp(moment: datetime) -> str:
    """The wire format's timestamp: UTC, microseconds, and a `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def snowflake(rng: random.Random, created: datetime) -> int:
    """A Discord-shaped id for something created at `created`."""
    milliseconds = int(created.timestamp() * 1000) - DISCORD_EPOCH_MS
    return (milliseconds << 22) | rng.getrandbits(22)


def guild_names(rng: random.Random, count: int) -> list[str]:
    """`count` distinct guild names, mixing scripts from the very first ones."""
    pools = [list(names) for names in NAMES_BY_SCRIPT.values()]
    for pool in pools:
        rng.shuffle(pool)

    names: list[str] = []
    while len(names) < count and any(pools):
        for pool in pools:
            if pool and len(names) < count:
                names.append(pool.pop())

    taken = set(names)
    while len(names) < count:
        name = f"{rng.choice(NAME_THEMES)} {rng.choice(NAME_KINDS)}"
        if name in taken:
            name = f"{name} {len(names) + 1}"
        taken.add(name)
        names.append(name)
    return names


def _member_count(rng: random.Random) -> int:
    # Most guilds are small, a few are huge: a log-uniform spread fits that.
    return int(math.exp(rng.uniform(math.log(3), math.log(250_000))))


@dataclass
class Guild:
    """One guild as the bot sees it."""

    guild_id: int
    name: str
    members: int
    channels: int
    status: str = CONNECTED
    # Some bot libraries send ids as strings, as Discord's own API does.
    id_as_string: bool = False

    def as_row(self) -> dict:
        return {
            "server_id": str(self.guild_id) if self.id_as_string else self.guild_id,
            "server_name": self.name,
            "miembros": self.members,
            "canales": self.channels,
            "status": self.status,
        }


@dataclass
class DemoBot:
    """The state of a pretend bot, moved forward one push at a time.

    The same seed and the same sequence of `now` values give the same payloads.
    """

    guild_count: int = 25
    seed: int | None = None
    rng: random.Random = field(init=False, repr=False)
    guilds: list[Guild] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.guilds = self._make_guilds()
        self.latency_base_ms = self.rng.uniform(35.0, 110.0)
        self.latency_ms = self.latency_base_ms
        self.uptime_percent = self.rng.uniform(99.0, 99.98)
        self.uptime_age = timedelta(days=self.rng.uniform(0.2, 90.0))
        self.status = "online"
        self.started_at: datetime | None = None
        self.last_push: datetime | None = None
        self.events_today = 0

    def _make_guilds(self) -> list[Guild]:
        span = (NEWEST_GUILD - OLDEST_GUILD).total_seconds()
        ids: set[int] = set()
        guilds = []
        for name in guild_names(self.rng, self.guild_count):
            created = OLDEST_GUILD + timedelta(seconds=self.rng.uniform(0, span))
            guild_id = snowflake(self.rng, created)
            while guild_id in ids:
                guild_id = snowflake(self.rng, created)
            ids.add(guild_id)
            members = _member_count(self.rng)
            channels = max(1, min(500, int(self.rng.gauss(8, 4) + members**0.25)))
            guilds.append(
                Guild(
                    guild_id,
                    name,
                    members,
                    channels,
                    id_as_string=self.rng.random() < 0.3,
                )
            )
        return guilds

    @property
    def total_members(self) -> int:
        return sum(guild.members for guild in self.guilds)

    def next_payload(self, now: datetime | None = None) -> dict:
        """Advance the bot to `now` (UTC, default: the clock) and report it."""
        now = (now or datetime.now(UTC)).astimezone(UTC)
        if self.started_at is None:
            self.started_at = now - self.uptime_age
        self._advance_events(now)
        self._drift_guilds()
        self._drift_health()
        self.last_push = now

        # The last heartbeat acknowledgement: a moment ago, never in the future.
        heartbeat_ack = now - timedelta(seconds=self.rng.uniform(0.0, 2.0))
        connected = sum(1 for guild in self.guilds if guild.status == CONNECTED)
        return {
            "resumen": {
                "servidores_conectados": connected,
                "eventos_procesados_hoy": self.events_today,
                "uptime_porcentaje": round(self.uptime_percent, 2),
                "ultima_sincronizacion": utc_timestamp(now),
            },
            "estado": {
                "status": self.status,
                "uptime_dias": (now - self.started_at).days,
                "latencia_ms": round(self.latency_ms, 2),
                "ultima_conexion": utc_timestamp(heartbeat_ack),
            },
            "servers": [guild.as_row() for guild in self.guilds],
        }

    def _events_per_second(self, now: datetime) -> float:
        # Busier in the evening (UTC) than at dawn, scaled by audience.
        hour = now.hour + now.minute / 60
        daily_wave = 1.0 + 0.6 * math.sin((hour - 12.0) / 24.0 * 2 * math.pi)
        return (0.5 + self.total_members / 40_000) * daily_wave

    def _advance_events(self, now: datetime) -> None:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        new_day = self.last_push is None or self.last_push < midnight
        if new_day:
            # First push, or the first after UTC midnight: only today's events.
            elapsed = (now - midnight).total_seconds()
            self.events_today = 0
        else:
            elapsed = max(0.0, (now - self.last_push).total_seconds())
        jitter = self.rng.uniform(0.7, 1.3)
        grown = int(self._events_per_second(now) * elapsed * jitter)
        # A bot that pushed at all handled at least its own heartbeat.
        self.events_today += max(grown, 0 if new_day else 1)

    def _drift_guilds(self) -> None:
        for guild in self.guilds:
            step = max(1.0, guild.members * 0.0004)
            guild.members = max(2, guild.members + round(self.rng.gauss(0.2, step)))
            if self.rng.random() < 0.01:
                guild.channels = max(1, guild.channels + self.rng.choice((-1, 1)))
            if guild.status == CONNECTED:
                if self.rng.random() < 0.003:
                    guild.status = DISCONNECTED
            elif self.rng.random() < 0.5:
                guild.status = CONNECTED

    def _drift_health(self) -> None:
        pull = (self.latency_base_ms - self.latency_ms) * 0.2
        self.latency_ms = max(8.0, self.latency_ms + pull + self.rng.gauss(0, 4))
        if self.rng.random() < 0.02:
            self.latency_ms += self.rng.uniform(80, 400)  # a gateway hiccup

        if self.status == "online" and self.rng.random() < 0.04:
            self.status = "idle"
        elif self.status == "idle" and self.rng.random() < 0.5:
            self.status = "online"

        drift = self.rng.gauss(0.0, 0.01)
        self.uptime_percent = min(100.0, max(95.0, self.uptime_percent + drift))


def encode(payload: dict) -> bytes:
    """The request body: compact UTF-8 JSON, non-ASCII kept as it is."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class PushStats:
    """What a push loop did: pushes tried, accepted, refused and failed."""

    attempted: int = 0
    accepted: int = 0
    refused: int = 0
    failed: int = 0
    # Failures since the last push botmon answered; sets the backoff.
    failing_streak: int = 0


class Pusher:
    """POSTs payloads to one botmon with one key over a kept-alive session."""

    def __init__(self, url: str, key: str, session: requests.Session | None = None):
        self.endpoint = url.rstrip("/") + METRICS_PATH
        self.session = session or requests.Session()
        self.session.headers.update(
            {
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
            }
        )

    def post(self, payload: dict) -> requests.Response:
        return self.session.post(
            self.endpoint, data=encode(payload), timeout=REQUEST_TIMEOUT_SECONDS
        )

    def close(self) -> None:
        self.session.close()


def push_loop(
    bot: DemoBot,
    pusher: Pusher,
    *,
    interval: float,
    count: int | None = None,
    silent_after: int | None = None,
    stop: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> PushStats:
    """Push every `interval` seconds until `count` pushes or until `stop` is set.

    After `silent_after` pushes the loop stops pushing but keeps waiting for
    `stop`, as a bot whose metrics task died while the process lives on.
    """
    stop = stop or threading.Event()
    stats = PushStats()
    limit = count if silent_after is None else min(count or silent_after, silent_after)

    for number in _numbers(limit):
        started = clock()
        delay = _push_once(bot, pusher, number, stats, interval)
        if limit is not None and number == limit:
            break
        if stop.wait(max(0.0, started + delay - clock())):
            log.info("stopping: %s", _summary(stats))
            return stats

    if silent_after is not None and stats.attempted >= silent_after:
        log.warning(
            "sent %d pushes; going silent now (--silent-after) while still "
            "running: botmon marks the bot obsoleto once BOTMON_STALE_AFTER_SECONDS "
            "(180 s by default) pass without a push. Ctrl-C to stop.",
            stats.attempted,
        )
        stop.wait()
    log.info("stopping: %s", _summary(stats))
    return stats


def _numbers(limit: int | None) -> Iterator[int]:
    number = 1
    while limit is None or number <= limit:
        yield number
        number += 1


def _push_once(
    bot: DemoBot, pusher: Pusher, number: int, stats: PushStats, interval: float
) -> float:
    """Send one push, log the outcome, and return the seconds until the next."""
    payload = bot.next_payload()
    stats.attempted += 1
    try:
        response = pusher.post(payload)
    except requests.RequestException as error:
        stats.failed += 1
        stats.failing_streak += 1
        delay = _backoff(interval, stats)
        log.warning(
            "push %d failed: cannot reach %s (%s); retrying in %.1f s",
            number,
            pusher.endpoint,
            type(error).__name__,
            delay,
        )
        return delay

    if response.status_code >= 500:
        stats.failing_streak += 1
    else:
        stats.failing_streak = 0

    if response.status_code == 201:
        stats.accepted += 1
        body = response.json()
        log.info(
            "push %d accepted: snapshot %s, %d guilds (%d connected), "
            "%d events today, %s, latency %.2f ms",
            number,
            body.get("id"),
            len(payload["servers"]),
            payload["resumen"]["servidores_conectados"],
            payload["resumen"]["eventos_procesados_hoy"],
            payload["estado"]["status"],
            payload["estado"]["latencia_ms"],
        )
        return interval

    body = _json_or_empty(response)
    message = body.get("message") or response.text[:200]
    if response.status_code >= 500:
        stats.failed += 1
        retry_after = _retry_after(response)
        delay = max(_backoff(interval, stats), min(retry_after, MAX_BACKOFF_SECONDS))
        log.warning(
            "push %d not stored (%d %s): %s; retrying in %.1f s",
            number,
            response.status_code,
            body.get("error", "server_error"),
            message,
            delay,
        )
        return delay

    stats.refused += 1
    hint = ""
    if response.status_code == 401:
        hint = " (pass --key, or set BOT_API_KEY to the key botmon runs with)"
    log.error(
        "push %d refused (%d %s): %s%s%s",
        number,
        response.status_code,
        body.get("error", "refused"),
        message,
        f" {body['fields']}" if body.get("fields") else "",
        hint,
    )
    return interval


def _backoff(interval: float, stats: PushStats) -> float:
    # Doubling per consecutive failure, so a botmon that is down for an hour
    # is asked about once a minute rather than every few seconds.
    doubled = interval * 2 ** min(stats.failing_streak, 16)
    return max(interval, min(MAX_BACKOFF_SECONDS, doubled))


def _retry_after(response: requests.Response) -> float:
    try:
        return float(response.headers.get("Retry-After", "0"))
    except ValueError:
        return 0.0


def _json_or_empty(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _summary(stats: PushStats) -> str:
    return (
        f"{stats.attempted} pushes sent, {stats.accepted} accepted, "
        f"{stats.refused} refused, {stats.failed} failed"
    )
