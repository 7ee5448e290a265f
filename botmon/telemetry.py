"""botmon's Prometheus metrics: the bot's latest numbers, and botmon's own.

Each app has its own registry (tests start many apps in one process; the
library's global registry would mix them). The bot's numbers are not copied
into gauges on every push: a collector reads the newest snapshot when
Prometheus scrapes, so the figures are exactly what the API answers. botmon's
own figures (pushes accepted and refused, listeners, broadcast time) live in
this process's memory and start again from zero at a restart, which
Prometheus's rate() and increase() expect of a counter.

docs/integrations.md lists every series and the reasons behind the names.
"""

import heapq
import json
import logging
import re
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from flask import Flask, Response, current_app
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy.exc import SQLAlchemyError

from .config import Settings
from .database import DatabaseBusy
from .service import Botmon
from .storage import Store

log = logging.getLogger(__name__)

EXTENSION = "botmon.telemetry"

# The error codes a refused push is answered with. Each is exported from the
# start at 0, so that rate() works before the first refusal of its kind.
REFUSAL_REASONS = (
    "invalid_payload",
    "unauthorized",
    "payload_too_large",
    "unsupported_media_type",
    "database_busy",
    "storage_full",
    "storage_read_only",
    "storage_unavailable",
    "internal_error",
)
# Codes are botmon's own words, never the client's; the pattern only keeps a
# surprise from becoming an odd label value.
_REASON = re.compile(r"[a-z][a-z0-9_]{0,39}")

# Discord's presence words: each is exported with 0 or 1, so an alert on
# `botmon_bot_status{status="offline"} == 1` finds the series at all times.
BOT_STATUSES = ("online", "idle", "dnd", "offline", "invisible")
# Guild statuses are free text from the bot: the most common few are labels.
MAX_GUILD_STATUSES = 10

# From a publish on a quiet loopback (about a millisecond) to a listener cut
# off after BOTMON_WS_SEND_TIMEOUT_SECONDS (30 s by default).
BROADCAST_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


class Telemetry:
    """The registry of one app, and the figures botmon keeps about itself."""

    def __init__(self, botmon: Botmon, clock: Callable[[], float] = time.time):
        self.registry = CollectorRegistry(auto_describe=False)
        self.pushes_accepted = Counter(
            "botmon_pushes_accepted",
            "Pushes answered 201: committed and broadcast.",
            registry=self.registry,
        )
        self.pushes_refused = Counter(
            "botmon_pushes_refused",
            "Pushes answered with an error, by the error code of the answer.",
            ["reason"],
            registry=self.registry,
        )
        for reason in REFUSAL_REASONS:
            self.pushes_refused.labels(reason)

        listeners = Gauge(
            "botmon_listeners",
            "WebSocket listeners connected now.",
            registry=self.registry,
        )
        hub = botmon.hub
        listeners.set_function(lambda: hub.listener_count)

        self.broadcast_seconds = Histogram(
            "botmon_broadcast_seconds",
            "From an accepted push's publish until every listener connected "
            "then was handed it (or a newer one) or left; one broadcast timed "
            "at a time.",
            buckets=BROADCAST_BUCKETS,
            registry=self.registry,
        )
        # Open file descriptors against their limit matter to a server whose
        # every listener holds a socket; memory and CPU come with them.
        ProcessCollector(registry=self.registry)
        self.registry.register(BotCollector(botmon.settings, botmon.store, clock))

    def count_push(self, response: Response) -> None:
        """Count the answer to one push: accepted, or refused and why."""
        if response.status_code == 201:
            self.pushes_accepted.inc()
        elif response.status_code >= 400:
            body = response.get_json(silent=True)
            code = body.get("error") if isinstance(body, dict) else None
            reason = code if isinstance(code, str) and _REASON.fullmatch(code) else None
            self.pushes_refused.labels(reason or "other").inc()

    def exposition(self, accept_header: str) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for, and its type.

        Without an Accept header that asks for OpenMetrics, this is the
        classic text format (0.0.4) every Prometheus reads.
        """
        encoder, content_type = choose_encoder(accept_header)
        return encoder(self.registry), content_type


def install(app: Flask) -> Telemetry:
    """Give `app` its telemetry and let its hub time broadcasts into it."""
    botmon: Botmon = app.extensions["botmon"]
    telemetry = Telemetry(botmon)
    app.extensions[EXTENSION] = telemetry
    botmon.hub.on_broadcast = telemetry.broadcast_seconds.observe
    return telemetry


def current() -> Telemetry | None:
    """The telemetry of the app handling this request; None when not set up."""
    return current_app.extensions.get(EXTENSION)


def count_push(response: Response) -> None:
    """Count a push's answer, when this app exports metrics."""
    telemetry = current()
    if telemetry is not None:
        telemetry.count_push(response)


# The bot's numbers, read from the newest snapshot at scrape time.


@dataclass(frozen=True)
class GuildFigures:
    """What the collector exports of one snapshot's guild list."""

    rows: int
    # The most common statuses, with how many guilds have each.
    statuses: list[tuple[str, int]]
    # The largest guilds by members: (server_id, server_name, members, channels).
    largest: list[tuple[int, str, int, int]]


def guild_figures(servers_json: str, max_guilds: int) -> GuildFigures:
    """Status counts and, when `max_guilds` > 0, the largest guilds."""
    servers = json.loads(servers_json)
    statuses = Tally(server["status"] for server in servers).most_common(
        MAX_GUILD_STATUSES
    )
    largest = []
    if max_guilds > 0:
        rows = heapq.nsmallest(
            max_guilds,
            servers,
            key=lambda server: (-server["miembros"], server["server_id"]),
        )
        largest = [
            (row["server_id"], row["server_name"], row["miembros"], row["canales"])
            for row in rows
        ]
    return GuildFigures(len(servers), statuses, largest)


class BotCollector:
    """Exports the newest snapshot's figures each time Prometheus scrapes.

    The guild list can be megabytes of JSON, so what is exported of it is
    worked out once per snapshot and kept until a newer one arrives.
    """

    def __init__(self, settings: Settings, store: Store, clock: Callable[[], float]):
        self._settings = settings
        self._store = store
        self._clock = clock
        self._figures_of: int | None = None
        self._figures: GuildFigures | None = None

    def describe(self) -> list[Metric]:
        # Registering must not read the database; these names are unique.
        return []

    def collect(self) -> Iterator[Metric]:
        try:
            summary = self._store.latest_summary()
            figures = self._guild_figures(summary.id) if summary else None
        except (DatabaseBusy, SQLAlchemyError) as error:
            # botmon's own figures still go out; this says the bot's did not.
            log.warning("metrics: could not read the newest snapshot: %s", error)
            yield _gauge("botmon_database_readable", _READABLE_HELP, 0)
            return
        yield _gauge("botmon_database_readable", _READABLE_HELP, 1)
        if summary is None:
            return

        resumen = json.loads(summary.resumen_json)
        estado = json.loads(summary.estado_json)
        yield from _bot_gauges(resumen, estado)
        yield _status_family(estado["status"])

        # Measured on botmon's clock, as the API's `obsoleto` is.
        silent_for = max(0.0, self._clock() - summary.received_at)
        yield _gauge(
            "botmon_bot_last_push_timestamp_seconds",
            "When botmon received the newest accepted push (Unix time, "
            "botmon's clock).",
            summary.received_at,
        )
        yield _gauge(
            "botmon_bot_seconds_since_last_push",
            "Seconds since botmon received the newest accepted push.",
            silent_for,
        )
        yield _gauge(
            "botmon_bot_stale",
            "1 when no push was accepted for BOTMON_STALE_AFTER_SECONDS "
            "(the API's estado.obsoleto), else 0.",
            int(silent_for > self._settings.stale_after_seconds),
        )
        yield from self._guild_families(figures)

    def _guild_figures(self, snapshot_id: int) -> GuildFigures:
        if self._figures_of != snapshot_id or self._figures is None:
            servers_json = self._store.latest_servers_json() or "[]"
            max_guilds = (
                self._settings.metrics_max_guilds
                if self._settings.metrics_per_guild
                else 0
            )
            self._figures = guild_figures(servers_json, max_guilds)
            self._figures_of = snapshot_id
        return self._figures

    def _guild_families(self, figures: GuildFigures) -> Iterator[Metric]:
        yield _gauge(
            "botmon_bot_guild_rows",
            "Guild rows in the newest push.",
            figures.rows,
        )
        by_status = GaugeMetricFamily(
            "botmon_bot_guilds",
            f"Guild rows of the newest push by their status; the "
            f"{MAX_GUILD_STATUSES} most common statuses only.",
            labels=["status"],
        )
        for status, count in figures.statuses:
            by_status.add_metric([status], count)
        yield by_status

        if not self._settings.metrics_per_guild:
            return
        members = GaugeMetricFamily(
            "botmon_guild_members",
            "Members of a guild, for the largest guilds (BOTMON_METRICS_MAX_GUILDS).",
            labels=["server_id", "server_name"],
        )
        channels = GaugeMetricFamily(
            "botmon_guild_channels",
            "Channels of a guild, for the largest guilds (BOTMON_METRICS_MAX_GUILDS).",
            labels=["server_id", "server_name"],
        )
        for server_id, name, member_count, channel_count in figures.largest:
            labels = [str(server_id), name]
            members.add_metric(labels, member_count)
            channels.add_metric(labels, channel_count)
        yield members
        yield channels
        yield _gauge(
            "botmon_guilds_not_exported",
            "Guild rows left out of botmon_guild_* by BOTMON_METRICS_MAX_GUILDS.",
            figures.rows - len(figures.largest),
        )


_READABLE_HELP = (
    "1 when this scrape could read the newest snapshot; 0 when the database "
    "did not answer, and the botmon_bot_* series are missing."
)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _bot_gauges(resumen: dict, estado: dict) -> Iterator[Metric]:
    # Prometheus's base units: seconds, and ratios rather than percentages.
    yield _gauge(
        "botmon_bot_servers_connected",
        "Servers the bot says it is connected to (resumen.servidores_conectados).",
        resumen["servidores_conectados"],
    )
    yield _gauge(
        "botmon_bot_events_today",
        "Events the bot processed today; it resets when the bot's day does "
        "(resumen.eventos_procesados_hoy).",
        resumen["eventos_procesados_hoy"],
    )
    yield _gauge(
        "botmon_bot_uptime_ratio",
        "The bot's uptime as a ratio from 0 to 1 (resumen.uptime_porcentaje / 100).",
        resumen["uptime_porcentaje"] / 100,
    )
    yield _gauge(
        "botmon_bot_uptime_seconds",
        "How long the bot has been up, in the whole days it reports "
        "(estado.uptime_dias * 86400).",
        estado["uptime_dias"] * 86_400,
    )
    yield _gauge(
        "botmon_bot_latency_seconds",
        "The bot's latency to Discord (estado.latencia_ms / 1000).",
        estado["latencia_ms"] / 1000,
    )


def _status_family(word: str) -> GaugeMetricFamily:
    """1 for the bot's status word, 0 for Discord's other presence words."""
    family = GaugeMetricFamily(
        "botmon_bot_status",
        "1 for the status the bot reports (estado.status; Discord's words in "
        "lower case), 0 for Discord's other statuses.",
        labels=["status"],
    )
    normalised = word.strip().lower()
    for status in BOT_STATUSES:
        family.add_metric([status], int(status == normalised))
    if normalised not in BOT_STATUSES:
        family.add_metric([word.strip() or word], 1)
    return family
