"""Alerts: one webhook message per state change, delivered whatever the webhook does.

The decision is tested as the pure function it is. Delivery is tested through
botmon under gunicorn, against a fake Discord webhook that each test starts on
127.0.0.1 and scripts: answering, rate limiting, hanging or not there at all.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import API_KEY, ROOT, free_port, read_database, wait_for
from websockets.sync.client import connect

from botmon import create_app
from botmon.alerts import (
    DOWN,
    REFUSED,
    UNKNOWN,
    UP,
    Observation,
    Rules,
    backoff,
    classify,
    decide,
    duration,
    plain,
)
from botmon.config import ConfigError, Settings
from botmon.storage import Refusals

RULES = Rules(stale_after=180.0, down_grace=60.0, refused_after=120.0)
T0 = 1_800_000_000.0
# Long before T0: the botmon process has been watching all along.
STARTED = T0 - 86_400


def seen(now, accepted_at=None, refused_at=None, status="online", started=STARTED):
    refusals = None
    if refused_at is not None:
        message = "the API key is not valid; use the key botmon was started with"
        refusals = Refusals(7, refused_at, 401, "unauthorized", message)
    return Observation(now, started, accepted_at, status, refusals)


def title(message: dict) -> str:
    return message["embeds"][0]["title"]


# The decision: when the state changes, and what is said.


def test_nothing_is_said_before_the_bot_ever_pushed():
    assert decide(UNKNOWN, T0, seen(T0 + 10 * 86_400), RULES) is None


def test_the_first_push_makes_the_bot_up_without_a_message():
    decision = decide(UNKNOWN, T0, seen(T0 + 5, accepted_at=T0 + 5), RULES)

    assert decision.state == UP
    assert decision.message is None


def test_a_push_late_by_less_than_the_grace_pages_nobody():
    # Past the stale limit (the page says obsoleto), within the grace.
    for silent in (179.0, 181.0, 239.0, 240.0):
        assert decide(UP, T0, seen(T0 + silent, accepted_at=T0), RULES) is None


def test_silence_past_the_grace_is_down_once():
    decision = decide(UP, T0, seen(T0 + 241, accepted_at=T0), RULES)

    assert decision.state == DOWN
    assert decision.since == T0
    assert title(decision.message) == "Bot down"
    assert "4 min 1 s" in decision.message["content"]
    for later in (242.0, 600.0, 86_400.0):
        assert decide(DOWN, T0, seen(T0 + later, accepted_at=T0), RULES) is None


def test_a_push_after_down_is_recovered_once():
    back = T0 + 600
    decision = decide(DOWN, T0, seen(back + 1, accepted_at=back), RULES)

    assert decision.state == UP
    assert title(decision.message) == "Bot recovered"
    assert "10 min" in decision.message["content"]
    assert decide(UP, back, seen(back + 30, accepted_at=back), RULES) is None


def test_silence_is_counted_from_the_start_of_botmon_at_most():
    # botmon was stopped for an hour: the bot could not push meanwhile, so
    # it gets the stale limit and the grace again before it is called down.
    started = T0 + 3600
    assert decide(UP, T0, seen(started + 200, T0, started=started), RULES) is None

    decision = decide(UP, T0, seen(started + 241, T0, started=started), RULES)
    assert decision.state == DOWN


def test_a_restart_while_down_neither_repeats_nor_recovers():
    started = T0 + 3600
    for now in (started, started + 1, started + 241, started + 3600):
        assert decide(DOWN, T0, seen(now, T0, started=started), RULES) is None


def test_pushes_refused_for_the_refused_limit_are_refused():
    within = seen(T0 + 119, accepted_at=T0, refused_at=T0 + 118)
    assert decide(UP, T0, within, RULES) is None

    decision = decide(UP, T0, seen(T0 + 121, T0, refused_at=T0 + 120), RULES)

    assert decision.state == REFUSED
    assert decision.since == T0
    assert title(decision.message) == "Bot pushes refused"
    last_refusal = decision.message["embeds"][0]["fields"][0]["value"]
    assert "401 unauthorized" in last_refusal


def test_a_bot_that_keeps_being_refused_is_never_called_down():
    for now in (T0 + 300, T0 + 3600, T0 + 86_400):
        observation = seen(now, accepted_at=T0, refused_at=now - 5)
        assert decide(REFUSED, T0, observation, RULES) is None


def test_a_refused_push_between_accepted_ones_pages_nobody():
    observation = seen(T0 + 61, accepted_at=T0 + 60, refused_at=T0 + 30)
    assert decide(UP, T0, observation, RULES) is None
    observation = seen(T0 + 40, accepted_at=T0, refused_at=T0 + 30)
    assert decide(UP, T0, observation, RULES) is None


def test_refused_then_accepted_is_recovered():
    observation = seen(T0 + 500, accepted_at=T0 + 499, refused_at=T0 + 495)
    decision = decide(REFUSED, T0, observation, RULES)

    assert decision.state == UP
    assert title(decision.message) == "Bot recovered"
    assert "refused" in decision.message["content"]


def test_refused_then_silent_is_down():
    refused_at = T0 + 500
    observation = seen(refused_at + 240, accepted_at=T0, refused_at=refused_at)
    assert decide(REFUSED, T0, observation, RULES) is None

    observation = seen(refused_at + 241, accepted_at=T0, refused_at=refused_at)
    decision = decide(REFUSED, T0, observation, RULES)

    assert decision.state == DOWN
    assert decision.since == refused_at


def test_a_bot_that_was_never_accepted_is_refused_after_the_limit():
    # Counted from when the alerts started watching (the unknown state's since).
    watching = T0
    observation = seen(watching + 60, refused_at=watching + 59)
    assert decide(UNKNOWN, watching, observation, RULES) is None

    observation = seen(watching + 121, refused_at=watching + 120)
    assert decide(UNKNOWN, watching, observation, RULES).state == REFUSED


def test_a_refused_limit_above_the_down_limit_still_says_refused_not_down():
    rules = Rules(stale_after=60.0, down_grace=0.0, refused_after=3600.0)
    decision = decide(UP, T0, seen(T0 + 61, T0, refused_at=T0 + 60), rules)

    assert decision.state == REFUSED


@pytest.mark.parametrize(
    "status, shown",
    [
        ("@everyone", "@\u200beveryone"),
        ("<@&123> hi", "\\<@\u200b&123\\> hi"),
        ("[click](https://evil.example)", "\\[click\\]\\(https\\:"),
        ("**bold** `code` ~~x~~ ||spoiler||", "\\*\\*bold\\*\\* \\`code\\`"),
        ("# header\nsecond line", "\\# header second line"),
        ("", "(none)"),
        (None, "(none)"),
    ],
)
def test_untrusted_text_pings_nobody_and_forms_no_markup(status, shown):
    decision = decide(UP, T0, seen(T0 + 241, accepted_at=T0, status=status), RULES)

    message = decision.message
    assert message["allowed_mentions"] == {"parse": []}
    assert message["embeds"][0]["fields"][0]["value"].startswith(shown)
    assert "\n" not in message["embeds"][0]["fields"][0]["value"]


def test_long_untrusted_text_is_cut():
    assert len(plain("x" * 5000, 100)) == 100


def test_durations_read_in_the_two_largest_units():
    assert duration(0.2) == "0 s"
    assert duration(61) == "1 min 1 s"
    assert duration(3600) == "1 h"
    assert duration(90_061) == "1 d 1 h"


# What a webhook's answer means.


@pytest.mark.parametrize("status", [200, 204])
def test_a_2xx_is_delivered(status):
    assert classify(status, {}, b"", T0).delivered


@pytest.mark.parametrize(
    "headers, body, wait",
    [
        ({"Retry-After": "3"}, b"", 3.0),
        ({}, b'{"message": "You are being rate limited.", "retry_after": 1.5}', 1.5),
        ({"retry-after": "1"}, b'{"retry_after": 2.25, "global": false}', 2.25),
        ({"Retry-After": "Thu, 15 Jan 2027 08:00:10 GMT"}, b"", 10.0),
        ({"Retry-After": "soon"}, b"not json", None),
        ({}, b"", None),
    ],
)
def test_a_429_waits_as_long_as_the_server_asks(headers, body, wait):
    now = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
    verdict = classify(429, headers, body, now)

    assert not verdict.delivered and not verdict.drop
    expected = None if wait is None else pytest.approx(wait)
    assert verdict.retry_after == expected


@pytest.mark.parametrize("status", [401, 403, 404, 408, 500, 502, 503, 301])
def test_answers_that_may_change_are_retried(status):
    verdict = classify(status, {}, b"", T0)

    assert not verdict.delivered and not verdict.drop
    assert verdict.retry_after is None


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_message_the_webhook_refuses_for_good_is_dropped(status):
    assert classify(status, {}, b"", T0).drop


def test_backoff_doubles_up_to_the_maximum():
    assert [backoff(n, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert backoff(10_000, 300.0) == 300.0


# Settings.


@pytest.mark.parametrize(
    "url",
    [
        "discord.com/api/webhooks/1/secret-token",
        "ftp://discord.com/api/webhooks/1/secret-token",
        "https:///api/webhooks/1/secret-token",
        "https://discord.com/api/webhooks/1/secret-token with space",
        "https://discord.com:99999/api/webhooks/1/secret-token",
    ],
)
def test_a_webhook_url_that_is_not_http_is_refused_without_echoing_it(url):
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({"BOTMON_ALERT_WEBHOOK_URL": url})

    assert "BOTMON_ALERT_WEBHOOK_URL" in str(caught.value)
    assert "secret-token" not in str(caught.value)


@pytest.mark.parametrize(
    "name, value",
    [
        ("BOTMON_ALERT_DOWN_GRACE_SECONDS", "-1"),
        ("BOTMON_ALERT_REFUSED_AFTER_SECONDS", "0"),
        ("BOTMON_ALERT_CHECK_INTERVAL_SECONDS", "0"),
        ("BOTMON_ALERT_TIMEOUT_SECONDS", "0"),
        ("BOTMON_ALERT_MAX_BACKOFF_SECONDS", "0"),
        ("BOTMON_ALERT_MAX_PENDING", "0"),
    ],
)
def test_alert_limits_out_of_range_are_refused(name, value):
    with pytest.raises(ConfigError, match=name):
        Settings.from_environ({name: value})


def test_alerts_are_off_by_default():
    settings = Settings.from_environ({})

    assert settings.alert_webhook_url == ""
    assert settings.alert_down_grace_seconds == 60.0


# The stored state.


def test_the_alert_state_moves_only_from_the_state_it_was_read_in(tmp_path):
    app = create_app({"BOTMON_INSTANCE_PATH": str(tmp_path), "BOT_API_KEY": "k"})
    store = app.extensions["botmon"].store
    with app.app_context():
        assert store.alert_state() is None
        assert store.open_alert_state(T0).state == UNKNOWN
        assert store.open_alert_state(T0 + 1).since == T0

        assert store.save_alert(UNKNOWN, UP, T0, None, 3) == (True, 0)
        # A decision made on a state read before this change is ignored.
        assert store.save_alert(UNKNOWN, DOWN, T0, "0", 3) == (False, 0)
        assert store.alert_state().state == UP
        assert store.alert_state().pending == ()

        store.save_alert(UP, DOWN, T0 + 1, "1", 3)
        store.save_alert(DOWN, UP, T0 + 2, "2", 3)
        store.save_alert(UP, DOWN, T0 + 3, "3", 3)
        # Past the most pending messages, the oldest goes.
        assert store.save_alert(DOWN, UP, T0 + 4, "4", 3) == (True, 1)
        record = store.alert_state()
        assert (record.state, record.since) == (UP, T0 + 4)
        assert [p.body_json for p in record.pending] == ["2", "3", "4"]
        assert [p.seq for p in record.pending] == [2, 3, 4]

        store.ack_alert(3)
        assert [p.seq for p in store.alert_state().pending] == [2, 4]


# Live: botmon under gunicorn and a fake Discord webhook on 127.0.0.1.

STALE = 1.0
GRACE = 1.5
DOWN_AFTER = STALE + GRACE
PUSH_INTERVAL = 0.2
# Long enough for a state change, a check and a delivery on a busy machine.
WAIT = 20.0
HANG_CAP_SECONDS = 30.0


@dataclass
class Received:
    at: float
    body: dict
    answer: object


class FakeWebhook:
    """A Discord webhook on 127.0.0.1 that records every request it gets.

    `script` gives the answers to the first requests, in order: "ok" (204),
    ("429", seconds) with Retry-After and Discord's JSON body, or "hang"
    (never answer, until the test ends). Later requests get 204. `delay`
    holds every answer back that many seconds, as a slow webhook would.
    """

    def __init__(self, script=(), port: int | None = None, delay: float = 0.0):
        self.port = port or free_port()
        self.script = list(script)
        self.delay = delay
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/webhooks/123/secret-token"

    def start(self) -> "FakeWebhook":
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with webhook.lock:
                    index = len(webhook.received)
                    answer = (
                        webhook.script[index] if index < len(webhook.script) else "ok"
                    )
                    webhook.received.append(Received(time.monotonic(), body, answer))
                if answer == "hang":
                    webhook.release.wait(HANG_CAP_SECONDS)
                    self.close_connection = True
                    return
                time.sleep(webhook.delay)
                if answer == "ok":
                    self.send_response(204)
                    self.end_headers()
                    return
                _, seconds = answer
                limited = json.dumps(
                    {
                        "message": "You are being rate limited.",
                        "retry_after": seconds,
                        "global": False,
                    }
                ).encode()
                self.send_response(429)
                self.send_header("Retry-After", str(int(seconds)))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(limited)))
                self.end_headers()
                self.wfile.write(limited)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def delivered(self) -> list[str]:
        """The titles of the messages answered with success, in order."""
        with self.lock:
            return [title(r.body) for r in self.received if r.answer == "ok"]

    def requests(self) -> int:
        with self.lock:
            return len(self.received)


@pytest.fixture
def webhooks():
    """Fake webhooks, each started by the test (or not, to be unreachable)."""
    made: list[FakeWebhook] = []

    def make(script=(), port=None, delay=0.0) -> FakeWebhook:
        webhook = FakeWebhook(script, port, delay)
        made.append(webhook)
        return webhook

    yield make
    for webhook in made:
        webhook.stop()


def alert_env(webhook: FakeWebhook, **extra: str) -> dict[str, str]:
    return {
        "BOTMON_ALERT_WEBHOOK_URL": webhook.url,
        "BOTMON_STALE_AFTER_SECONDS": str(STALE),
        "BOTMON_ALERT_DOWN_GRACE_SECONDS": str(GRACE),
        "BOTMON_ALERT_REFUSED_AFTER_SECONDS": "1",
        "BOTMON_ALERT_CHECK_INTERVAL_SECONDS": "0.1",
        "BOTMON_ALERT_TIMEOUT_SECONDS": "1",
        "BOTMON_ALERT_MAX_BACKOFF_SECONDS": "1",
        **extra,
    }


def push_for(server, seconds: float, seed: dict, key: str = API_KEY) -> None:
    """Push like a live bot, every PUSH_INTERVAL, for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.post(seed, key=key).status_code in {201, 401}
        time.sleep(PUSH_INTERVAL)


def push_until(server, seed: dict, condition, timeout: float = WAIT) -> None:
    """Keep the bot up, pushing every PUSH_INTERVAL, until `condition` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out pushing"
        assert server.post(seed).status_code == 201
        time.sleep(PUSH_INTERVAL)


def pending_alerts(server) -> list:
    rows = read_database(server.database_path, "SELECT pending_json FROM alert_state")
    return json.loads(rows[0][0]) if rows else []


def go_down(server, webhook, seed) -> None:
    """Push for a moment, then stay silent until the down alert is decided."""
    push_for(server, 0.6, seed)
    wait_for(lambda: pending_alerts(server) or webhook.requests(), what="down")


def demo_bot(server, tmp_path, *args: str) -> subprocess.Popen:
    # Its own instance folder, and no key or alert settings inherited.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT")}
    env["BOTMON_INSTANCE_PATH"] = str(tmp_path / "demo-instance")
    command = [sys.executable, "-m", "flask", "--app", "botmon", "demo-bot"]
    options = ["--url", server.url, "--key", API_KEY, "--guilds", "5"]
    return subprocess.Popen(
        [*command, *options, "--interval", str(PUSH_INTERVAL), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_demo_bot(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def test_the_demo_bot_stopped_and_restarted_gets_one_down_and_one_recovered(
    start_server, webhooks, tmp_path
):
    webhook = webhooks().start()
    server = start_server(env=alert_env(webhook))

    first = demo_bot(server, tmp_path, "--count", "5")
    try:
        assert first.wait(30) == 0
    finally:
        stop_demo_bot(first)
    wait_for(lambda: webhook.delivered() == ["Bot down"], what="the down alert")
    # Silent for several more down limits: still the one message.
    time.sleep(2 * DOWN_AFTER)
    assert webhook.delivered() == ["Bot down"]

    second = demo_bot(server, tmp_path)
    try:
        wait_for(lambda: len(webhook.delivered()) >= 2, what="the recovered alert")
        # Pushing on for longer than the down limit: nothing more to say.
        time.sleep(2 * DOWN_AFTER)
        assert second.poll() is None
    finally:
        stop_demo_bot(second)

    assert webhook.delivered() == ["Bot down", "Bot recovered"]
    assert webhook.requests() == 2
    assert "secret-token" not in server.log()


def test_a_restart_while_down_neither_repeats_nor_forgets(start_server, webhooks, seed):
    webhook = webhooks().start()
    server = start_server(env=alert_env(webhook))
    go_down(server, webhook, seed)
    wait_for(lambda: webhook.delivered() == ["Bot down"], what="the down alert")

    server.stop()
    server.start()
    time.sleep(2 * DOWN_AFTER)
    assert webhook.delivered() == ["Bot down"]

    push_until(server, seed, lambda: len(webhook.delivered()) >= 2)
    push_for(server, DOWN_AFTER, seed)
    assert webhook.delivered() == ["Bot down", "Bot recovered"]


def test_an_unreachable_webhook_gets_the_message_once_it_is_back(
    start_server, webhooks, seed
):
    webhook = webhooks()  # not started: connections are refused
    server = start_server(env=alert_env(webhook))
    go_down(server, webhook, seed)
    wait_for(lambda: "not delivered" in server.log(), what="a failed attempt")

    webhook.start()

    wait_for(lambda: webhook.delivered() == ["Bot down"], what="the down alert")
    time.sleep(DOWN_AFTER)
    assert webhook.requests() == 1
    assert pending_alerts(server) == []


def test_an_undelivered_message_survives_a_restart_and_is_sent_once(
    start_server, webhooks, seed
):
    webhook = webhooks()
    server = start_server(env=alert_env(webhook))
    go_down(server, webhook, seed)
    assert [
        json.loads(p["body"])["embeds"][0]["title"] for p in pending_alerts(server)
    ] == ["Bot down"]

    server.stop()
    webhook.start()
    server.start()

    wait_for(lambda: webhook.delivered() == ["Bot down"], what="the down alert")
    time.sleep(2 * DOWN_AFTER)
    assert webhook.requests() == 1
    assert pending_alerts(server) == []


def test_a_rate_limited_webhook_gets_the_message_after_retry_after(
    start_server, webhooks, seed
):
    webhook = webhooks(script=[("429", 2.0)]).start()
    server = start_server(env=alert_env(webhook, BOTMON_ALERT_MAX_BACKOFF_SECONDS="10"))
    go_down(server, webhook, seed)

    wait_for(lambda: webhook.delivered() == ["Bot down"], what="the down alert")
    limited, delivered = webhook.received
    assert delivered.at - limited.at >= 2.0 - 0.05
    assert delivered.body == limited.body
    time.sleep(DOWN_AFTER)
    assert webhook.requests() == 2


def test_a_hanging_webhook_delays_no_request_and_is_retried(
    start_server, webhooks, seed
):
    webhook = webhooks(script=["hang"]).start()
    server = start_server(env=alert_env(webhook, BOTMON_ALERT_TIMEOUT_SECONDS="3"))
    go_down(server, webhook, seed)
    wait_for(lambda: webhook.requests() == 1, what="the hanging request")
    hang_started = time.monotonic()

    started = time.monotonic()
    assert server.post(seed).status_code == 201
    post_seconds = time.monotonic() - started
    started = time.monotonic()
    assert server.get("/api/bot/estado/").json()["obsoleto"] is False
    get_seconds = time.monotonic() - started
    started = time.monotonic()
    with connect(server.ws_url, open_timeout=2) as listener:
        assert "resumen" in listener.recv(timeout=2)
    websocket_seconds = time.monotonic() - started

    # Measured while the webhook still held the first attempt.
    assert webhook.requests() == 1
    assert time.monotonic() - hang_started < 3.0
    assert post_seconds < 0.5
    assert get_seconds < 0.5
    assert websocket_seconds < 0.5

    # The down message is retried, then the recovery is sent after it.
    push_until(server, seed, lambda: len(webhook.delivered()) >= 2)
    assert webhook.delivered() == ["Bot down", "Bot recovered"]
    assert webhook.requests() == 3


def test_refused_pushes_raise_one_refused_alert(start_server, webhooks, seed):
    webhook = webhooks().start()
    server = start_server(env=alert_env(webhook))
    push_for(server, 0.6, seed)

    # Refused for longer than the down limit: refused, once, and never down.
    push_for(server, DOWN_AFTER + 1.0, seed, key="not-the-key")
    wait_for(lambda: webhook.delivered() == ["Bot pushes refused"], what="refused")
    push_for(server, 1.0, seed, key="not-the-key")
    assert webhook.delivered() == ["Bot pushes refused"]
    last_refusal = webhook.received[0].body["embeds"][0]["fields"][0]["value"]
    assert "401 unauthorized" in last_refusal

    push_until(server, seed, lambda: len(webhook.delivered()) >= 2)
    assert webhook.delivered() == ["Bot pushes refused", "Bot recovered"]
