"""A lease in the database, so that one process of several does a job.

Every process that could do the job runs a `LeaseKeeper`. The keeper that
holds the lease renews it three times per lease; the others try to take it
every retry interval, which succeeds once the holder released it (a clean
stop) or let it expire (it died, froze or lost the database).

A keeper trusts its lease for the lease's length from the moment it *asked*
for it, on the monotonic clock, and not a moment longer: the database row may
say a little more, never less. A failed renewal ends the holding at once.
Expiry in the row is on the wall clock of the process that wrote it, so the
hosts sharing a database need clocks that agree to well within a lease.
"""

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable

from .storage import Store

log = logging.getLogger(__name__)

HOLDER_LIMIT = 128
RENEWALS_PER_LEASE = 3
STOP_POLL_SECONDS = 0.2


def holder_identity() -> str:
    """This process's name as a lease holder: host, PID and a random part.

    The random part keeps a restarted process that got the same PID (in a
    container, PID 1 every time) from mistaking a dead holder's lease for its
    own.
    """
    suffix = f":{os.getpid()}:{secrets.token_hex(4)}"
    return socket.gethostname()[: HOLDER_LIMIT - len(suffix)] + suffix


class LeaseKeeper:
    """Holds the lease `name` for this process whenever it can."""

    def __init__(
        self,
        store: Store,
        name: str,
        seconds: float,
        retry_every: float,
        running: Callable[[], bool],
    ):
        self.store = store
        self.name = name
        self.seconds = seconds
        self.retry_every = retry_every
        self.running = running
        self.holder = holder_identity()
        self._held_until = 0.0
        self._stopped = False
        # True while the row may name this process: taken, or the outcome
        # of the last try is unknown because the database failed.
        self._row_may_be_ours = False
        self._failing = False

    def held(self) -> bool:
        """Whether this process holds the lease now."""
        return self.remaining() > 0

    def remaining(self) -> float:
        """Seconds this process still holds the lease for; 0 when it does not."""
        return max(0.0, self._held_until - time.monotonic())

    def keep(self) -> None:
        """Take and renew the lease until the process stops; `release` follows."""
        while self.running() and not self._stopped:
            self.renew()
            pause = self.seconds / RENEWALS_PER_LEASE
            self._pause(pause if self.held() else min(pause, self.retry_every))

    def _pause(self, seconds: float) -> None:
        # In short steps: a stopping process releases the lease within one,
        # even while it still waits for its connections to close.
        deadline = time.monotonic() + seconds
        while self.running() and not self._stopped:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, STOP_POLL_SECONDS))

    def renew(self) -> bool:
        """Take or renew the lease once; whether this process holds it now."""
        asked_at = time.monotonic()
        was_held = self.held()
        taken = self._try_to_take()
        if self._stopped:
            # Stopped while asking: `release` removes what may have been taken.
            return False

        self._held_until = asked_at + self.seconds if taken else 0.0
        if taken and not was_held:
            log.info("holding the %s lease as %s", self.name, self.holder)
        elif was_held and not taken:
            log.warning("no longer holding the %s lease: could not renew it", self.name)
        return taken

    def _try_to_take(self) -> bool:
        try:
            taken = self.store.acquire_lease(
                self.name, self.holder, time.time(), self.seconds
            )
        except Exception:
            self._row_may_be_ours = True
            if not self._failing:
                log.exception(
                    "could not reach the %s lease in the database; retrying",
                    self.name,
                )
            self._failing = True
            return False

        if self._failing:
            log.info("reached the %s lease in the database again", self.name)
        self._failing = False
        self._row_may_be_ours = taken
        return taken

    def stop_holding(self) -> None:
        """Stop trusting and renewing the lease, for good; the row stays."""
        self._stopped = True
        self._held_until = 0.0

    def release(self) -> None:
        """Stop holding and delete the row, so another process takes it at once."""
        self.stop_holding()
        if not self._row_may_be_ours:
            return
        try:
            self.store.release_lease(self.name, self.holder)
        except Exception:
            log.exception(
                "could not release the %s lease; another process takes it "
                "over when it expires, in %g s at most",
                self.name,
                self.seconds,
            )
            return
        self._row_may_be_ours = False
        log.info("released the %s lease", self.name)
