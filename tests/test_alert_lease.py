"""One alerter among several botmon processes: the alerts lease.

The lease is tested in the store, then live: two botmon instances (two
gunicorn masters, one worker each) on two ports share one SQLite file, both
with alerts on, and a fake Discord webhook on 127.0.0.1 counts what arrives.
The webhook answers slowly, so that a second sender would be caught sending
the same message while the first waits for its answer.
"""

import json
import threading
import time

import pytest
from conftest import read_database, wait_for
from test_alerts import (
    DOWN_AFTER,
    WAIT,
    FakeWebhook,
    alert_env,
    push_for,
    push_until,
)

from botmon import create_app
from botmon.config import ConfigError, Settings

T0 = 1_800_000_000.0
LEASE = 3.0
# Long enough that a takeover by expiry could not pass for a release.
LONG_LEASE = 30.0
WEBHOOK_DELAY = 0.5


# The lease in the store.


@pytest.fixture
def store_app(tmp_path, backend, database_env):
    env = database_env(backend)
    app = create_app({"BOTMON_INSTANCE_PATH": str(tmp_path), "BOT_API_KEY": "k", **env})
    app.config["TEST_DATABASE"] = env.get("BOTMON_DATABASE_URL") or str(
        tmp_path / "botmon.sqlite3"
    )
    with app.app_context():
        yield app


def lease_row(app) -> tuple | None:
    rows = read_database(
        app.config["TEST_DATABASE"], "SELECT holder, expires_at FROM leases"
    )
    return rows[0] if rows else None


@pytest.mark.both_backends
def test_a_lease_is_taken_renewed_left_to_expire_and_released(store_app):
    store = store_app.extensions["botmon"].store

    assert store.acquire_lease("alerts", "a", T0, 10) is True
    assert lease_row(store_app) == ("a", T0 + 10)
    assert store.acquire_lease("alerts", "b", T0 + 1, 10) is False
    assert store.acquire_lease("alerts", "a", T0 + 5, 10) is True
    assert lease_row(store_app) == ("a", T0 + 15)

    # Held until it expires, then anyone's.
    assert store.acquire_lease("alerts", "b", T0 + 14.9, 10) is False
    assert store.acquire_lease("alerts", "b", T0 + 15, 10) is True
    assert lease_row(store_app) == ("b", T0 + 25)
    assert store.acquire_lease("alerts", "a", T0 + 16, 10) is False

    # Only the holder can release it; then it is free at once.
    assert store.release_lease("alerts", "a") is False
    assert lease_row(store_app) == ("b", T0 + 25)
    assert store.release_lease("alerts", "b") is True
    assert lease_row(store_app) is None
    assert store.acquire_lease("alerts", "a", T0 + 17, 10) is True

    # Leases of other names are independent.
    assert store.acquire_lease("other", "b", T0 + 17, 10) is True


@pytest.mark.both_backends
@pytest.mark.parametrize("expired_first", [False, True])
def test_of_many_asking_at_once_exactly_one_gets_the_lease(store_app, expired_first):
    store = store_app.extensions["botmon"].store
    if expired_first:
        store.acquire_lease("alerts", "gone", T0 - 20, 10)
    contenders = 8
    ready = threading.Barrier(contenders)
    results: dict[str, bool] = {}

    def ask(holder: str) -> None:
        with store_app.app_context():
            ready.wait()
            results[holder] = store.acquire_lease("alerts", holder, T0, 10)

    threads = [threading.Thread(target=ask, args=(f"p{n}",)) for n in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    winners = [holder for holder, won in results.items() if won]
    assert len(results) == contenders
    assert len(winners) == 1
    assert lease_row(store_app) == (winners[0], T0 + 10)


@pytest.mark.parametrize(
    "extra",
    [
        {"BOTMON_ALERT_LEASE_SECONDS": "0"},
        {"BOTMON_ALERT_LEASE_SECONDS": "5"},
        {"BOTMON_ALERT_LEASE_SECONDS": "10"},
        {
            "BOTMON_ALERT_LEASE_SECONDS": "20",
            "BOTMON_ALERT_CHECK_INTERVAL_SECONDS": "30",
        },
    ],
)
def test_a_lease_not_longer_than_a_check_and_a_request_is_refused(extra):
    with pytest.raises(ConfigError, match="BOTMON_ALERT_LEASE_SECONDS"):
        Settings.from_environ(extra)


def test_the_lease_lasts_thirty_seconds_by_default():
    assert Settings.from_environ({}).alert_lease_seconds == 30.0
    assert Settings.from_environ({"BOTMON_ALERT_LEASE_SECONDS": "11"})


# Live: two instances sharing one database.


@pytest.fixture
def webhook():
    """A fake webhook that takes its time to answer each message."""
    webhook = FakeWebhook(delay=WEBHOOK_DELAY).start()
    yield webhook
    webhook.stop()


class Pair:
    """Two botmon instances on one SQLite file, both sending alerts."""

    def __init__(self, start_server, tmp_path, webhook, lease: float):
        self.database = tmp_path / "shared.sqlite3"
        env = alert_env(
            webhook,
            BOTMON_DATABASE_URL=f"sqlite:///{self.database}",
            BOTMON_ALERT_LEASE_SECONDS=str(lease),
        )
        self.servers = [start_server(env=env), start_server(env=env)]

    def holder(self):
        """The server whose worker holds the alerts lease, or None."""
        rows = read_database(self.database, "SELECT holder FROM leases")
        if not rows:
            return None
        pid = int(rows[0][0].rsplit(":", 2)[1])
        for server in self.servers:
            if server.process.poll() is None and server.worker_pid() == pid:
                return server
        return None

    def holder_pid(self) -> int | None:
        rows = read_database(self.database, "SELECT holder FROM leases")
        return int(rows[0][0].rsplit(":", 2)[1]) if rows else None

    def other(self, server):
        return next(s for s in self.servers if s is not server)

    def pending(self) -> list:
        rows = read_database(self.database, "SELECT pending_json FROM alert_state")
        return json.loads(rows[0][0]) if rows else []


def settle(pair, webhook, count: int) -> None:
    """Wait for `count` messages to arrive and be recorded as sent."""
    wait_for(lambda: webhook.requests() >= count, timeout=WAIT, what="a message")
    wait_for(lambda: pair.pending() == [], timeout=WAIT, what="it recorded sent")


def test_two_instances_send_each_alert_once_and_a_killed_holder_is_replaced(
    start_server, webhook, tmp_path, seed
):
    pair = Pair(start_server, tmp_path, webhook, LEASE)
    first, second = pair.servers
    holder = wait_for(pair.holder, what="one instance to hold the lease")

    push_for(first, 0.6, seed)
    settle(pair, webhook, 1)
    push_until(second, seed, lambda: webhook.requests() >= 2)
    settle(pair, webhook, 2)
    push_for(second, 0.6, seed)
    assert webhook.delivered() == ["Bot down", "Bot recovered"]
    assert webhook.requests() == 2

    # The holder dies without a word: the other takes over when the lease
    # expires and announces the next change, once.
    survivor = pair.other(holder)
    dead_pid = holder.worker_pid()
    holder.kill()
    settle(pair, webhook, 3)
    assert pair.holder() is survivor
    assert pair.holder_pid() != dead_pid
    # Silent for longer than the down limit: nothing more to say.
    time.sleep(DOWN_AFTER)
    assert webhook.delivered() == ["Bot down", "Bot recovered", "Bot down"]
    assert webhook.requests() == 3
    assert "holding the alerts lease" in survivor.log()


def test_a_clean_stop_hands_the_lease_over_at_once(
    start_server, webhook, tmp_path, seed
):
    pair = Pair(start_server, tmp_path, webhook, LONG_LEASE)
    holder = wait_for(pair.holder, what="one instance to hold the lease")
    survivor = pair.other(holder)
    stopped_pid = holder.worker_pid()
    push_for(survivor, 0.6, seed)

    assert holder.stop() == 0

    # Released, not left to expire: the row names the stopped worker no more.
    assert pair.holder_pid() != stopped_pid
    assert "released the alerts lease" in holder.log()
    # The survivor decides and sends "down", well within the lease it would
    # otherwise have waited out.
    settle(pair, webhook, 1)
    assert pair.holder() is survivor
    # Silent for longer than the down limit: nothing more to say.
    time.sleep(DOWN_AFTER)
    assert webhook.delivered() == ["Bot down"]
    assert webhook.requests() == 1
