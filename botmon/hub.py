"""The broadcast hub: who is listening, and the newest snapshot they should get.

The hub keeps one thing per process: the newest snapshot's JSON text, encoded
once, with the snapshot's id. Publishing replaces it and wakes every listener;
each listener then sends whatever is newest when it gets to it. A listener
that is slow therefore skips the snapshots it could not send in time. That
loses nothing, because every message is a whole state, and it keeps memory
flat: however far behind a listener is, it holds at most a reference to the
one current text.

A snapshot no newer than the one held is ignored. With several workers a
snapshot reaches a hub twice (from the worker's own POST and from the
backplane) and two POSTs may arrive in either order; ordering by id means a
listener is never sent an older state after a newer one.

Publishing never waits for a listener; listeners wait for the hub. All the hub
does to a listener is set the wake object it was given (a `threading.Event`,
which the gevent worker makes greenlet-aware, or anything with `set()`); it
knows nothing of Flask or sockets.

The hub can also time its broadcasts (see `Hub.on_broadcast`), for whoever
wants the figure; it does not know where the figure goes.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """A snapshot as sent on the wire, with its id in the database."""

    snapshot_id: int
    text: str


class Wake(Protocol):
    """What the hub sets to wake a listener: a `threading.Event` will do."""

    def set(self) -> None: ...


class Subscription:
    """One listener's place in the hub."""

    def __init__(self, hub: "Hub", wake: Wake):
        self._hub = hub
        self.wake = wake
        self.sent_id = 0
        # Messages up to this one were published before the listener joined.
        self.joined_after_id = hub.latest.snapshot_id if hub.latest else 0

    def next_message(self) -> Message | None:
        """The newest message this listener has not been given yet, if any."""
        latest = self._hub.latest
        if latest is None or latest.snapshot_id <= self.sent_id:
            return None
        self._hub._handed_over(self)
        self.sent_id = latest.snapshot_id
        return latest

    def close(self) -> None:
        """Leave the hub; safe to call more than once."""
        if self in self._hub._subscriptions:
            self._hub._subscriptions.discard(self)
            self._hub._handed_over(self)


@dataclass
class _Broadcast:
    """A publish being timed: how many listeners have yet to take it."""

    snapshot_id: int
    started: float
    pending: int


class Hub:
    """Holds the newest snapshot and wakes the listeners when it changes."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._latest: Message | None = None
        self._closing = False
        # Called with the seconds from a publish until every listener present
        # then has been handed it (or a newer message) or has left. One
        # broadcast is timed at a time: a publish while one is being timed,
        # or with no one listening, is not timed.
        self.on_broadcast: Callable[[float], None] | None = None
        self._timed: _Broadcast | None = None

    @property
    def latest(self) -> Message | None:
        return self._latest

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def listener_count(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, wake: Wake) -> Subscription:
        """Join the hub; `wake` is set whenever there is something to do.

        The caller owns `wake` so it can share it with other reasons to wake
        up (a closed socket, say) and wait for all of them at once.
        """
        subscription = Subscription(self, wake)
        self._subscriptions.add(subscription)
        if self._latest is not None or self._closing:
            wake.set()
        return subscription

    def publish(self, text: str, snapshot_id: int) -> Message | None:
        """Make `text` the newest snapshot and wake every listener.

        A snapshot whose id is not higher than the one held is older news:
        it is ignored, and None returned.
        """
        latest = self._latest
        if latest is not None and snapshot_id <= latest.snapshot_id:
            return None
        message = Message(snapshot_id, text)
        self._latest = message
        if self.on_broadcast and self._timed is None and self._subscriptions:
            self._timed = _Broadcast(
                snapshot_id, time.perf_counter(), len(self._subscriptions)
            )
        self._wake_all()
        return message

    def close(self) -> None:
        """Tell every listener, present and future, that the service stops."""
        if self._closing:
            return
        self._closing = True
        self._timed = None
        self._wake_all()
        log.info("hub closing: %d listeners told to disconnect", self.listener_count)

    def _wake_all(self) -> None:
        # Copy: a listener may leave while we iterate.
        for subscription in list(self._subscriptions):
            subscription.wake.set()

    def _handed_over(self, subscription: Subscription) -> None:
        """`subscription` takes the newest message, or leaves: time that."""
        timed = self._timed
        if timed is None:
            return
        # Only the listeners present at the publish are waited for, and each
        # once: a listener that skips to a newer message has been handed it.
        joined_before = subscription.joined_after_id < timed.snapshot_id
        if not joined_before or subscription.sent_id >= timed.snapshot_id:
            return
        timed.pending -= 1
        if timed.pending > 0:
            return
        self._timed = None
        try:
            self.on_broadcast(time.perf_counter() - timed.started)
        except Exception:
            # A figure is not worth a listener: never let it break the stream.
            log.exception("could not record a broadcast's duration")
