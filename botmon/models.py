"""What botmon keeps: a small history row per snapshot and the latest guilds.

A snapshot's summary and state are a few hundred bytes and are kept for the
charts until they age out. The guild list can be megabytes and only the latest
one is ever asked for, so it lives in a single row that each push replaces:
storage grows with the number of pushes, not with pushes times guilds.
"""

from .database import db


class Snapshot(db.Model):
    """One accepted push: its `resumen` and `estado` as canonical JSON text.

    The JSON text is stored exactly as it is served, so an answer is identical
    before and after a restart, and an integer latency stays an integer.
    """

    __tablename__ = "snapshots"

    id = db.Column(db.Integer, primary_key=True)
    received_at = db.Column(db.Float, nullable=False, index=True)
    resumen_json = db.Column(db.Text, nullable=False)
    estado_json = db.Column(db.Text, nullable=False)
    server_count = db.Column(db.Integer, nullable=False)


class LatestServers(db.Model):
    """The single row holding the guild list of the newest snapshot."""

    __tablename__ = "latest_servers"

    id = db.Column(db.Integer, primary_key=True)
    snapshot_id = db.Column(db.Integer, db.ForeignKey("snapshots.id"), nullable=False)
    servers_json = db.Column(db.Text, nullable=False)


class RefusedPushes(db.Model):
    """The single row counting refused pushes, with the last one's details.

    A bot whose pushes are refused is alive but misconfigured; this is what
    lets the page tell that apart from a silent bot.
    """

    __tablename__ = "refused_pushes"

    id = db.Column(db.Integer, primary_key=True)
    count = db.Column(db.Integer, nullable=False, default=0)
    last_at = db.Column(db.Float, nullable=False)
    last_status = db.Column(db.Integer, nullable=False)
    last_error = db.Column(db.String(64), nullable=False)
    last_message = db.Column(db.String(300), nullable=False)


class AlertState(db.Model):
    """The single row holding what the alerts last said, and what is unsent.

    Stored so that a restart neither repeats an alert nor forgets one: the
    state that was alerted, since when, and the webhook messages decided but
    not yet delivered, oldest first, as a JSON list of {"seq", "body"}.
    """

    __tablename__ = "alert_state"

    id = db.Column(db.Integer, primary_key=True)
    state = db.Column(db.String(16), nullable=False)
    since = db.Column(db.Float, nullable=False)
    next_seq = db.Column(db.Integer, nullable=False, default=1)
    pending_json = db.Column(db.Text, nullable=False, default="[]")


class Lease(db.Model):
    """A named lease: which process holds it, and until when (epoch seconds).

    With several processes, only the holder of the "alerts" lease evaluates
    and delivers the alerts, so each change is announced once, not once per
    process.
    """

    __tablename__ = "leases"

    name = db.Column(db.String(64), primary_key=True)
    holder = db.Column(db.String(128), nullable=False)
    expires_at = db.Column(db.Float, nullable=False)
