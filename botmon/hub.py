"""The broadcast hub: who is listening, and the newest snapshot they should get.

The hub keeps one thing per process: the newest snapshot's JSON text, encoded
once. Publishing replaces it and wakes every listener; each listener then sends
whatever is newest when it gets to it. A listener that is slow therefore skips
the snapshots it could not send in time. That loses nothing, because every
message is a whole state, and it keeps memory flat: however far behind a
listener is, it holds at most a reference to the one current text.

Publishing never waits for a listener; listeners wait for the hub. All the hub
does to a listener is set the wake object it was given (a `threading.Event`,
which the gevent worker makes greenlet-aware, or anything with `set()`); it
knows nothing of Flask or sockets.
"""

import logging
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    """A snapshot as sent on the wire, numbered in the order it was published."""

    seq: int
    text: str


class Wake(Protocol):
    """What the hub sets to wake a listener: a `threading.Event` will do."""

    def set(self) -> None: ...


class Subscription:
    """One listener's place in the hub."""

    def __init__(self, hub: "Hub", wake: Wake):
        self._hub = hub
        self.wake = wake
        self.sent_seq = 0

    def next_message(self) -> Message | None:
        """The newest message this listener has not been given yet, if any."""
        latest = self._hub.latest
        if latest is None or latest.seq <= self.sent_seq:
            return None
        self.sent_seq = latest.seq
        return latest

    def close(self) -> None:
        """Leave the hub; safe to call more than once."""
        self._hub._subscriptions.discard(self)


class Hub:
    """Holds the newest snapshot and wakes the listeners when it changes."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        self._latest: Message | None = None
        self._closing = False

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

    def publish(self, text: str) -> Message:
        """Make `text` the newest snapshot and wake every listener."""
        previous = self._latest.seq if self._latest else 0
        message = Message(previous + 1, text)
        self._latest = message
        self._wake_all()
        return message

    def close(self) -> None:
        """Tell every listener, present and future, that the service stops."""
        if self._closing:
            return
        self._closing = True
        self._wake_all()
        log.info("hub closing: %d listeners told to disconnect", self.listener_count)

    def _wake_all(self) -> None:
        # Copy: a listener may leave while we iterate.
        for subscription in list(self._subscriptions):
            subscription.wake.set()
