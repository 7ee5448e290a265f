"""Alerts on silence, refusal and recovery, posted to a Discord webhook.

Three parts, each small enough to test alone:

- `decide`, a pure function: from the state last alerted and what the store
  knows now (when the newest push was accepted, on botmon's clock, and the
  last refusal), the next state and the message that announces it, if any.
- `classify` and `backoff`, pure too: what a webhook's answer means for the
  message (delivered, retry after how long, or never deliverable).
- `AlertLoop`, greenlets in the worker. One evaluates every check interval
  and commits each state change together with its message; another delivers
  the stored messages in order, retrying with backoff. Only the second ever
  waits on the webhook, never while holding a database connection, so a
  slow webhook delays nothing but later alerts. A third keeps the alerts
  lease (botmon.lease): of several processes sharing the database, only the
  one holding it evaluates and delivers, so each change is announced once.

The design and its settings are described in docs/alerts.md.
"""

import json
import logging
import math
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import gevent
import gevent.event
import requests

from .config import Settings
from .lease import LeaseKeeper
from .storage import PendingAlert, Refusals, Store

log = logging.getLogger(__name__)

UNKNOWN = "unknown"
UP = "up"
DOWN = "down"
REFUSED = "refused"

# Discord's embed colours for each kind of message.
RED = 0xD83C3E
AMBER = 0xE8A317
GREEN = 0x2E9E5B

# Discord's own limits on an embed field's value; texts are cut below them.
FIELD_VALUE_LIMIT = 1024
STATUS_SHOWN_LIMIT = 100
REFUSAL_SHOWN_LIMIT = 400

# How much of a webhook's answer is read: enough for Discord's rate-limit body.
ANSWER_READ_LIMIT = 64 * 1024
FIRST_BACKOFF_SECONDS = 1.0
LEASE_NAME = "alerts"
# Where the running loop is kept in app.extensions, for `stop`.
EXTENSION_KEY = "botmon.alerts"
USER_AGENT = "botmon-alerts (self-hosted Discord bot monitor)"


@dataclass(frozen=True)
class Rules:
    """The thresholds the decision uses, from the settings."""

    stale_after: float
    down_grace: float
    refused_after: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "Rules":
        return cls(
            stale_after=settings.stale_after_seconds,
            down_grace=settings.alert_down_grace_seconds,
            refused_after=settings.alert_refused_after_seconds,
        )

    @property
    def down_after(self) -> float:
        """Silence longer than this is "down": the stale limit plus the grace."""
        return self.stale_after + self.down_grace

    @property
    def refused_limit(self) -> float:
        # A bot that keeps talking but is refused is reported refused, never
        # down, so this never waits longer than "down" would.
        return min(self.refused_after, self.down_after)


@dataclass(frozen=True)
class Observation:
    """What the store knows about the bot at `now`, all on botmon's clock.

    `watching_since` is when this botmon process started: while botmon was
    not running no push could arrive, so silence counts from then at most.
    """

    now: float
    watching_since: float
    accepted_at: float | None
    status: str | None
    refusals: Refusals | None

    @property
    def refused_at(self) -> float | None:
        return self.refusals.last_at if self.refusals else None


@dataclass(frozen=True)
class Decision:
    """The state to move to, since when, and the webhook message, if any."""

    state: str
    since: float
    message: dict | None


def decide(
    state: str, since: float, seen: Observation, rules: Rules
) -> Decision | None:
    """The next alert state given the stored one, or None to stay as it is.

    - up: a push was accepted within the stale limit;
    - refused: every push for `refused_limit` was refused, and the bot still
      sends them (a refusal within the down limit);
    - down: nothing at all, accepted or refused, for the stale limit plus
      the grace;
    - in between (late, but within the grace): no change, so a single late
      push pages nobody.

    Only a change is announced, once: unknown to up is silent (nothing was
    wrong), down or refused to up is "recovered".
    """
    target = _target(since, seen, rules)
    if target is None or target[0] == state:
        return None
    new_state, new_since = target
    message = compose(state, since, new_state, seen, rules)
    return Decision(new_state, new_since, message)


def _target(since: float, seen: Observation, rules: Rules) -> tuple[str, float] | None:
    accepted_at, refused_at = seen.accepted_at, seen.refused_at
    heard = [moment for moment in (accepted_at, refused_at) if moment is not None]
    if not heard:
        return None
    heard_at = max(heard)

    refusing = (
        refused_at is not None
        and (accepted_at is None or refused_at > accepted_at)
        and seen.now - refused_at <= rules.down_after
    )
    # Before the first accepted push, refusals count from when the alerts
    # started watching this database (the stored unknown state's since).
    accepted_or_start = accepted_at if accepted_at is not None else since
    unaccepted_for = seen.now - max(accepted_or_start, seen.watching_since)
    if refusing and unaccepted_for >= rules.refused_limit:
        return REFUSED, accepted_or_start

    if accepted_at is not None and seen.now - accepted_at <= rules.stale_after:
        return UP, accepted_at

    silent_for = seen.now - max(heard_at, seen.watching_since)
    if silent_for > rules.down_after:
        return DOWN, heard_at
    return None


# The messages.


def compose(
    old_state: str, old_since: float, state: str, seen: Observation, rules: Rules
) -> dict | None:
    """The Discord webhook body announcing a move to `state`, or None.

    Only botmon's own words go in `content`; the bot's texts go in embed
    fields, made inert by `plain`.
    """
    if state == DOWN:
        return _down_message(seen, rules)
    if state == REFUSED:
        return _refused_message(seen)
    if state == UP and old_state in {DOWN, REFUSED}:
        return _recovered_message(old_state, old_since, seen)
    return None


def _down_message(seen: Observation, rules: Rules) -> dict:
    heard_at = max(t for t in (seen.accepted_at, seen.refused_at) if t is not None)
    silent = duration(seen.now - heard_at)
    fields = [
        _field("Last status", plain(seen.status, STATUS_SHOWN_LIMIT)),
        _field("Last accepted push", _moment(seen.accepted_at)),
    ]
    if seen.refusals is not None and seen.refused_at > (seen.accepted_at or 0):
        fields.append(_field("Last refused push", _refusal_text(seen.refusals)))
    return _webhook_body(
        f"\N{LARGE RED CIRCLE} **Bot down**: nothing heard from it for {silent}.",
        title="Bot down",
        description=(
            f"botmon has received no push for **{silent}** (stale after "
            f"{duration(rules.stale_after)}, plus {duration(rules.down_grace)} "
            "of grace)."
        ),
        colour=RED,
        fields=fields,
        now=seen.now,
    )


def _refused_message(seen: Observation) -> dict:
    refusals = seen.refusals
    return _webhook_body(
        "\N{LARGE ORANGE CIRCLE} **Bot pushes refused**: the bot is alive, "
        "but botmon refuses what it sends.",
        title="Bot pushes refused",
        description=(
            "Every push since the last accepted one was refused: check the "
            "bot's API key and payload."
        ),
        colour=AMBER,
        fields=[
            _field("Last refusal", _refusal_text(refusals)),
            _field("Refused in all", str(refusals.count)),
            _field("Last accepted push", _moment(seen.accepted_at)),
        ],
        now=seen.now,
    )


def _recovered_message(old_state: str, old_since: float, seen: Observation) -> dict:
    away = duration(seen.accepted_at - old_since)
    what = "silence" if old_state == DOWN else "refused pushes"
    return _webhook_body(
        f"\N{LARGE GREEN CIRCLE} **Bot recovered**: pushes are accepted again "
        f"after {away} of {what}.",
        title="Bot recovered",
        description=f"Accepted again after **{away}** of {what}.",
        colour=GREEN,
        fields=[
            _field("Status", plain(seen.status, STATUS_SHOWN_LIMIT)),
            _field("Back at", _moment(seen.accepted_at)),
        ],
        now=seen.now,
    )


def _webhook_body(
    content: str,
    *,
    title: str,
    description: str,
    colour: int,
    fields: list[dict],
    now: float,
) -> dict:
    return {
        "content": content,
        "embeds": [
            {
                "title": title,
                "description": description,
                "color": colour,
                "fields": fields,
                "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
                "footer": {"text": "botmon"},
            }
        ],
        # Whatever the texts say, nobody is pinged: no @everyone, no roles.
        "allowed_mentions": {"parse": []},
    }


def _field(name: str, value: str) -> dict:
    return {"name": name, "value": value[:FIELD_VALUE_LIMIT], "inline": False}


def _refusal_text(refusals: Refusals) -> str:
    detail = plain(
        f"{refusals.last_status} {refusals.last_error}: {refusals.last_message}",
        REFUSAL_SHOWN_LIMIT,
    )
    return f"{_moment(refusals.last_at)}: {detail}"


def _moment(epoch: float | None) -> str:
    """A time Discord shows in each reader's own zone, and how long ago."""
    if epoch is None:
        return "never"
    seconds = int(epoch)
    return f"<t:{seconds}:f> (<t:{seconds}:R>)"


_MARKDOWN = set("\\*_~`|>#-[]()<:")
_INVISIBLE = {"Cc", "Cf", "Zl", "Zp"}
ZERO_WIDTH_JOINER = "\u200d"


def plain(text: str | None, limit: int) -> str:
    """Untrusted text made inert for Discord: one line, no markup, no mention.

    Markdown characters are escaped, so a bot's status cannot forge a link or
    a header; a zero-width space after each `@` keeps `@everyone` from even
    looking like a mention (allowed_mentions already stops the ping).
    """
    if text is None or text == "":
        return "(none)"
    if len(text) > limit:
        text = text[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"
    out = []
    for char in text:
        # Controls, line breaks and bidi overrides go; the joiner that
        # holds emoji sequences together stays.
        if char != ZERO_WIDTH_JOINER and unicodedata.category(char) in _INVISIBLE:
            out.append(" ")
        elif char in _MARKDOWN:
            out.append("\\" + char)
        elif char == "@":
            out.append("@\u200b")
        else:
            out.append(char)
    return "".join(out)


def duration(seconds: float) -> str:
    """A length of time in the two largest units: "4 min 3 s", "2 d 5 h"."""
    total = max(0, round(seconds))
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        if total >= size or (unit == "s" and not parts):
            amount, total = divmod(total, size)
            parts.append(f"{amount} {unit}")
    return " ".join(parts[:2])


# What a webhook's answer means.


@dataclass(frozen=True)
class Verdict:
    """What to do with a message after one delivery attempt."""

    delivered: bool = False
    drop: bool = False
    # Seconds the server asked us to wait (429); None: use the backoff.
    retry_after: float | None = None


def classify(status: int, headers: dict, body: bytes, now: float) -> Verdict:
    """Read a webhook's answer to one message.

    2xx: delivered. 429: retry when the server says (Retry-After, or
    Discord's `retry_after` in the body, whichever is later). 401, 403 and
    404 mean the URL is wrong or the webhook was deleted: retried, so fixing
    the setting and restarting delivers what is waiting. Any other 4xx says
    the message itself is refused, and resending it cannot help: dropped, so
    it does not hold back the messages after it. Anything else is retried.
    """
    if 200 <= status < 300:
        return Verdict(delivered=True)
    if status == 429:
        return Verdict(retry_after=_retry_after(headers, body, now))
    if 400 <= status < 500 and status not in {401, 403, 404, 408}:
        return Verdict(drop=True)
    return Verdict()


def _retry_after(headers: dict, body: bytes, now: float) -> float | None:
    waits = []
    header = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    if header:
        waits.append(_header_seconds(header.strip(), now))
    try:
        document = json.loads(body)
        waits.append(float(document["retry_after"]))
    except (ValueError, TypeError, KeyError):
        pass
    waits = [wait for wait in waits if wait is not None and math.isfinite(wait)]
    return max(0.0, *waits) if waits else None


def _header_seconds(value: str, now: float) -> float | None:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parsedate_to_datetime(value).timestamp() - now
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def backoff(failures: int, most: float) -> float:
    """Seconds to wait after `failures` failed attempts in a row: 1, 2, 4, …"""
    exponent = min(max(failures - 1, 0), 30)
    return min(FIRST_BACKOFF_SECONDS * 2**exponent, most)


# The loop in the worker.


class WebhookTimeout(Exception):
    """The webhook did not answer within the alert timeout."""


class _Trouble:
    """A failure retried every few seconds, logged once per outage.

    A broken disk would otherwise put a traceback in the log at every check.
    """

    def __init__(self, what: str):
        self.what = what
        self.active = False

    def failed(self) -> None:
        if not self.active:
            log.exception("could not %s; retrying until it works", self.what)
        self.active = True

    def cleared(self) -> None:
        if self.active:
            log.info("could %s again", self.what)
        self.active = False


class AlertLoop:
    """Evaluates the bot's state and delivers the alerts while holding the lease."""

    def __init__(
        self,
        app,
        settings: Settings,
        store: Store,
        running: Callable[[], bool],
    ):
        self.app = app
        self.settings = settings
        self.store = store
        self.running = running
        self.rules = Rules.from_settings(settings)
        self.watching_since = time.time()
        self.lease = LeaseKeeper(
            store,
            LEASE_NAME,
            settings.alert_lease_seconds,
            retry_every=settings.alert_check_interval_seconds,
            running=running,
        )
        self._wake = gevent.event.Event()
        # Clear while a message is being sent and not yet recorded as sent.
        self._settled = gevent.event.Event()
        self._settled.set()

    def start(self) -> None:
        # The keeper first: its first try ends before the evaluator's first
        # look on SQLite, so a single process alerts from its first check.
        gevent.spawn(self._in_app, self._keep_lease)
        gevent.spawn(self._in_app, self._evaluate_forever)
        gevent.spawn(self._in_app, self._deliver_forever)

    def _keep_lease(self) -> None:
        self.lease.keep()
        self.stop()

    def stop(self) -> None:
        """Stop alerting here and release the lease, so another process goes on.

        A message being sent is first let finish and recorded (within the
        alert timeout): released earlier, the next holder would send it again.
        """
        self.lease.stop_holding()
        self._settled.wait(self.settings.alert_timeout_seconds)
        with self.app.app_context():
            self.lease.release()

    def _in_app(self, loop: Callable[[], None]) -> None:
        with self.app.app_context():
            loop()

    def _evaluate_forever(self) -> None:
        interval = self.settings.alert_check_interval_seconds
        trouble = _Trouble("evaluate the bot's alert state")
        while self.running():
            if self.lease.held():
                try:
                    self.evaluate(time.time())
                    trouble.cleared()
                except Exception:
                    trouble.failed()
            time.sleep(interval)

    def evaluate(self, now: float) -> Decision | None:
        """Look at the store once; commit a state change and its message."""
        record = self.store.alert_state() or self.store.open_alert_state(now)
        latest = self.store.latest_summary()
        status = None
        if latest is not None:
            status = json.loads(latest.estado_json).get("status")
        seen = Observation(
            now=now,
            watching_since=self.watching_since,
            accepted_at=latest.received_at if latest else None,
            status=status,
            refusals=self.store.refusals(),
        )
        decision = decide(record.state, record.since, seen, self.rules)
        if decision is None:
            return None

        body = None if decision.message is None else json.dumps(decision.message)
        changed, dropped = self.store.save_alert(
            record.state,
            decision.state,
            decision.since,
            body,
            self.settings.alert_max_pending,
        )
        if not changed:
            return None
        log.info("the bot is %s (was %s)", decision.state, record.state)
        if dropped:
            log.warning(
                "dropped the %d oldest undelivered alert(s) to keep at most %d "
                "(BOTMON_ALERT_MAX_PENDING); is the webhook reachable?",
                dropped,
                self.settings.alert_max_pending,
            )
        if body is not None:
            self._wake.set()
        return decision

    def _deliver_forever(self) -> None:
        failures = 0
        trouble = _Trouble("read the undelivered alerts")
        while self.running():
            self._wake.clear()
            if not self.lease.held():
                self._wake.wait(self.settings.alert_check_interval_seconds)
                continue
            try:
                record = self.store.alert_state()
                trouble.cleared()
            except Exception:
                trouble.failed()
                record = None
            if record is None or not record.pending:
                self._wake.wait(self.settings.alert_check_interval_seconds)
                continue

            message = record.pending[0]
            self._settled.clear()
            try:
                verdict, reason = self._attempt(message)
                if verdict.delivered or verdict.drop:
                    if verdict.drop:
                        log.error(
                            "the webhook refused alert %d for good (%s); dropped it",
                            message.seq,
                            reason,
                        )
                    else:
                        log.info("alert %d delivered", message.seq)
                    self._forget(message)
                    failures = 0
                    continue
            finally:
                self._settled.set()

            failures += 1
            most = self.settings.alert_max_backoff_seconds
            if verdict.retry_after is not None:
                wait = min(verdict.retry_after, most)
            else:
                wait = backoff(failures, most)
            log.warning(
                "alert %d not delivered (%s); retrying in %g s",
                message.seq,
                reason,
                wait,
            )
            time.sleep(wait)

    def _attempt(self, message: PendingAlert) -> tuple[Verdict, str]:
        """One POST of `message` to the webhook, bounded in time as a whole.

        The bound is the alert timeout, or the time left on the lease if that
        is shorter: once the lease may pass to another process, which would
        send the same message, this one must no longer be sending it.
        """
        timeout = self.settings.alert_timeout_seconds
        bound = min(timeout, self.lease.remaining())
        if bound <= 0:
            return Verdict(), "the alerts lease ended before the attempt"
        try:
            # requests bounds each connect and read; this bounds the whole,
            # so a server trickling its answer cannot hold the message longer.
            with gevent.Timeout(bound, WebhookTimeout):
                with requests.post(
                    self.settings.alert_webhook_url,
                    data=message.body_json.encode(),
                    headers={
                        "Content-Type": "application/json",
                        "User-Agent": USER_AGENT,
                    },
                    timeout=timeout,
                    allow_redirects=False,
                    stream=True,
                ) as response:
                    body = response.raw.read(ANSWER_READ_LIMIT, decode_content=True)
                    status, headers = response.status_code, dict(response.headers)
        except WebhookTimeout:
            if bound < timeout:
                return Verdict(), f"no answer within {bound:g} s, the lease's end"
            return Verdict(), f"no answer within {timeout:g} s"
        except requests.RequestException as error:
            # The exception's text can hold the URL, and so the token.
            return Verdict(), f"could not reach the webhook: {type(error).__name__}"
        return classify(status, headers, body, time.time()), f"HTTP {status}"

    def _forget(self, message: PendingAlert) -> None:
        # Until this commits the message would be sent again after a restart,
        # so it is retried rather than given up.
        trouble = _Trouble(f"mark alert {message.seq} as sent")
        while True:
            try:
                self.store.ack_alert(message.seq)
                trouble.cleared()
                return
            except Exception:
                trouble.failed()
                time.sleep(FIRST_BACKOFF_SECONDS)


def start(app, running: Callable[[], bool]) -> AlertLoop | None:
    """Start the alerts in this worker if a webhook URL is set.

    `running` tells the loops when the worker is stopping.
    """
    botmon = app.extensions["botmon"]
    settings: Settings = botmon.settings
    if not settings.alert_webhook_url:
        log.info("alerts off: set BOTMON_ALERT_WEBHOOK_URL to get them")
        return None

    parts = urlsplit(settings.alert_webhook_url)
    if parts.scheme == "http" and parts.hostname not in {
        "127.0.0.1",
        "::1",
        "localhost",
    }:
        log.warning(
            "the alert webhook URL is plain http: its secret token travels "
            "unencrypted; use https"
        )
    rules = Rules.from_settings(settings)
    log.info(
        "alerts on: webhook at %s; down after %gs without a push, refused "
        "after %gs of refused pushes, checked every %gs by the process "
        "holding the alerts lease (%gs)",
        parts.hostname,
        rules.down_after,
        rules.refused_limit,
        settings.alert_check_interval_seconds,
        settings.alert_lease_seconds,
    )
    loop = AlertLoop(app, settings, botmon.store, running)
    app.extensions[EXTENSION_KEY] = loop
    loop.start()
    return loop


def stop(app) -> None:
    """Release the alerts lease on a clean stop, so another process takes over.

    At once, rather than when the lease would have expired.
    """
    loop = app.extensions.get(EXTENSION_KEY)
    if loop is not None:
        loop.stop()
