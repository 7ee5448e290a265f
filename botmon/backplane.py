"""The backplane: every worker's listeners hear every worker's snapshots.

With BOTMON_REDIS_URL set, each worker runs two greenlets beside its hub. The
publisher PUBLISHes each snapshot this worker committed on one Redis channel;
the subscriber feeds every snapshot on that channel into this worker's hub,
which ignores those it already holds (its own, or older ones).

A POST never waits for Redis: it publishes to its own hub at once and leaves
the snapshot with the publisher, which keeps only the newest one not yet sent.
That loses nothing, because every message is a whole state.

Redis pub/sub delivers only to whoever is subscribed at that moment, so a
worker that was cut off would stay behind until the next push. Every time the
subscriber (re)subscribes, it therefore reads the latest snapshot from the
database, which every worker commits to before publishing: subscribing first
and reading second leaves no gap between the two.

The subscriber does not use redis-py's own reconnection: on any error it drops
its connection and makes a fresh one, after a bounded, jittered backoff. A
Redis that stops answering without closing the connection (frozen, or its
host gone) is found by pinging it when the channel has been quiet. An outage
is logged once when it starts and once when it ends.
"""

import logging
import random
import time
from urllib.parse import urlsplit

import gevent
import redis
from gevent.event import Event
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import Settings
from .hub import Hub
from .ingest import compose

log = logging.getLogger(__name__)

# The first wait after a failure; each further failure doubles it, up to
# BOTMON_REDIS_MAX_BACKOFF_SECONDS.
FIRST_BACKOFF_SECONDS = 0.1
# How often the subscriber looks up from reading to see whether Redis has
# been quiet for too long.
READ_SLICE_SECONDS = 0.5
STOP_TIMEOUT_SECONDS = 2.0


def describe(url: str) -> str:
    """Where `url` points, without its user name or password, for the logs."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    database = parts.path.lstrip("/") or "0"
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}/{database}"


class Backoff:
    """How long to wait before the next attempt: doubling, bounded, jittered.

    The jitter keeps the workers of every host from reconnecting in step
    when Redis comes back.
    """

    def __init__(self, cap: float):
        self._cap = cap
        self._failures = 0

    def next_delay(self) -> float:
        ceiling = min(self._cap, FIRST_BACKOFF_SECONDS * 2**self._failures)
        self._failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._failures = 0


class Link:
    """Whether this worker reaches Redis, told to the log once per outage.

    The publisher and the subscriber each report on their own connection;
    the link is up when both are. It starts down, as nothing is subscribed
    yet, but a first connection is not an outage.
    """

    def __init__(self, where: str):
        self._where = where
        self._broken = {"subscriber"}
        self._outage_started: float | None = None

    @property
    def up(self) -> bool:
        return not self._broken

    def broke(self, part: str, reason: BaseException) -> None:
        if self._outage_started is None:
            self._outage_started = time.monotonic()
            log.warning(
                "lost the backplane (Redis at %s): %s; this worker's listeners "
                "hear only its own pushes until it is back",
                self._where,
                # redis-py ends some reasons with a full stop of their own.
                str(reason).rstrip("."),
            )
        self._broken.add(part)

    def mended(self, part: str) -> None:
        if part not in self._broken:
            return
        self._broken.discard(part)
        if self._broken:
            return
        if self._outage_started is None:
            log.info("backplane on: Redis at %s", self._where)
            return
        log.info(
            "backplane back (Redis at %s) after an outage of %.1f s",
            self._where,
            time.monotonic() - self._outage_started,
        )
        self._outage_started = None


class Backplane:
    """This worker's publisher and subscriber on one Redis channel."""

    def __init__(self, app, settings: Settings, hub: Hub):
        self._app = app
        self._url = settings.redis_url
        self._channel = settings.redis_channel
        self._timeout = settings.redis_timeout_seconds
        self._max_backoff = settings.redis_max_backoff_seconds
        self._hub = hub
        self._store = app.extensions["botmon"].store
        self.link = Link(describe(settings.redis_url))
        self._unsent: tuple[int, str] | None = None
        self._ready = Event()
        self._greenlets: list[gevent.Greenlet] = []

    @property
    def up(self) -> bool:
        return self.link.up

    def start(self) -> None:
        self._greenlets = [
            gevent.spawn(self._publish_forever),
            gevent.spawn(self._subscribe_forever),
        ]

    def stop(self) -> None:
        """Stop both greenlets; their connections close as they end."""
        gevent.killall(self._greenlets, timeout=STOP_TIMEOUT_SECONDS)

    def send(self, snapshot_id: int, text: str) -> None:
        """Leave a committed snapshot for the publisher; never waits."""
        if self._unsent is None or snapshot_id > self._unsent[0]:
            self._unsent = (snapshot_id, text)
        self._ready.set()

    # The publisher ---------------------------------------------------------

    def _publish_forever(self) -> None:
        backoff = Backoff(self._max_backoff)
        client: redis.Redis | None = None
        try:
            while True:
                self._ready.wait()
                self._ready.clear()
                snapshot = self._unsent
                self._unsent = None
                if snapshot is None:
                    continue
                try:
                    client = self._publish(client, *snapshot)
                    self.link.mended("publisher")
                    backoff.reset()
                except Exception as error:
                    client = None
                    self.link.broke("publisher", error)
                    self.send(*snapshot)
                    gevent.sleep(backoff.next_delay())
        finally:
            _close(client)

    def _publish(
        self, client: redis.Redis | None, snapshot_id: int, text: str
    ) -> redis.Redis:
        """PUBLISH one snapshot; return the connection to use next time."""
        message = f"{snapshot_id} {text}".encode()
        if client is not None:
            try:
                client.publish(self._channel, message)
                return client
            except Exception:
                # The connection may have gone stale while idle (Redis was
                # restarted, say): one fresh attempt before calling it lost.
                _close(client)
        client = self._connect()
        try:
            client.publish(self._channel, message)
        except Exception:
            _close(client)
            raise
        return client

    # The subscriber --------------------------------------------------------

    def _subscribe_forever(self) -> None:
        backoff = Backoff(self._max_backoff)
        while True:
            client = pubsub = None
            try:
                client = self._connect()
                pubsub = client.pubsub()
                pubsub.subscribe(self._channel)
                self._await_subscription(pubsub)
                self._catch_up()
                self.link.mended("subscriber")
                backoff.reset()
                self._listen(pubsub)
            except Exception as error:
                self.link.broke("subscriber", error)
            finally:
                _close(pubsub)
                _close(client)
            gevent.sleep(backoff.next_delay())

    def _await_subscription(self, pubsub) -> None:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            message = pubsub.get_message(timeout=self._timeout)
            if message is not None and message["type"] == "subscribe":
                return
        raise TimeoutError(f"no answer to SUBSCRIBE within {self._timeout:g} s")

    def _catch_up(self) -> None:
        """Publish the database's latest snapshot: what was missed while away."""
        with self._app.app_context():
            latest = self._store.latest()
        if latest is not None:
            text = compose(latest.resumen_json, latest.estado_json, latest.servers_json)
            self._hub.publish(text, latest.id)

    def _listen(self, pubsub) -> None:
        """Feed the hub until the connection fails or Redis stops answering."""
        heard_at = time.monotonic()
        pinged_at: float | None = None
        while True:
            message = pubsub.get_message(timeout=READ_SLICE_SECONDS)
            now = time.monotonic()
            if message is not None:
                heard_at, pinged_at = now, None
                if message["type"] == "message":
                    self._deliver(message["data"])
            elif pinged_at is not None and now - pinged_at > self._timeout:
                raise TimeoutError(f"no answer to PING within {self._timeout:g} s")
            elif pinged_at is None and now - heard_at > self._timeout:
                pubsub.ping()
                pinged_at = now

    def _deliver(self, data: bytes) -> None:
        head, _, body = data.partition(b" ")
        try:
            snapshot_id = int(head)
        except ValueError:
            log.debug("ignored a message on %s that is not a snapshot", self._channel)
            return
        latest = self._hub.latest
        # This worker's own snapshots come back too: skip decoding those.
        if latest is None or snapshot_id > latest.snapshot_id:
            self._hub.publish(body.decode(), snapshot_id)

    def _connect(self) -> redis.Redis:
        # No retries inside redis-py: a failure comes straight back here,
        # where a fresh connection replaces it.
        return redis.Redis.from_url(
            self._url,
            socket_timeout=self._timeout,
            socket_connect_timeout=self._timeout,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )


def _close(resource) -> None:
    if resource is None:
        return
    try:
        resource.close()
    except Exception:
        # A connection that broke may fail to close as well; it is dropped.
        log.debug("could not close a Redis connection cleanly", exc_info=True)


def start(app) -> Backplane | None:
    """Start this worker's backplane if BOTMON_REDIS_URL is set."""
    botmon = app.extensions["botmon"]
    settings: Settings = botmon.settings
    if not settings.redis_url:
        return None

    backplane = Backplane(app, settings, botmon.hub)
    backplane.start()
    botmon.backplane = backplane
    log.info(
        "backplane: channel %s at %s, Redis counted lost after %gs without answer",
        settings.redis_channel,
        describe(settings.redis_url),
        settings.redis_timeout_seconds,
    )
    return backplane
