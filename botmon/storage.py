"""Reading and writing snapshots: the only module that builds SQL."""

import json
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from .database import run_in_transaction
from .models import AlertState, LatestServers, Lease, RefusedPushes, Snapshot

snapshots = Snapshot.__table__
latest_servers = LatestServers.__table__
refused_pushes = RefusedPushes.__table__
alert_state = AlertState.__table__
leases = Lease.__table__

LATEST_ROW_ID = 1

# Built once: a push is the hot path, and composing these per call cost more
# than SQLite's own work.
_INSERT_SNAPSHOT = insert(snapshots)


def _upsert_latest(dialect_insert):
    # Writers may commit out of id order (PostgreSQL hands out ids before
    # commit), so the row only ever moves to a higher snapshot: "latest" is
    # the highest committed id whichever writer finishes last.
    statement = dialect_insert(latest_servers)
    return statement.on_conflict_do_update(
        index_elements=[latest_servers.c.id],
        set_={
            "snapshot_id": statement.excluded.snapshot_id,
            "servers_json": statement.excluded.servers_json,
        },
        where=latest_servers.c.snapshot_id < statement.excluded.snapshot_id,
    )


# The INSERT with ON CONFLICT of each database botmon accepts (the URL check
# at start refuses any other).
_DIALECT_INSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
_UPSERT_LATEST = {
    name: _upsert_latest(build) for name, build in _DIALECT_INSERT.items()
}

# Old history is deleted by the write that finds it, at most this often, so
# retention costs one indexed DELETE a minute rather than one per push.
PRUNE_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class StoredSnapshot:
    """The newest snapshot as stored: canonical JSON texts and receipt time."""

    id: int
    received_at: float
    resumen_json: str
    estado_json: str
    servers_json: str


@dataclass(frozen=True)
class Refusals:
    """How many pushes were refused, and the last refusal's details."""

    count: int
    last_at: float
    last_status: int
    last_error: str
    last_message: str


class Store:
    """Snapshot storage bound to the lock timeout the settings give."""

    def __init__(self, lock_timeout: float, retention_seconds: float):
        self.lock_timeout = lock_timeout
        self.retention_seconds = retention_seconds
        self._next_prune = 0.0

    def _write(self, work):
        return run_in_transaction(work, write=True, lock_timeout=self.lock_timeout)

    def _read(self, work):
        return run_in_transaction(work, write=False, lock_timeout=self.lock_timeout)

    def save_snapshot(
        self,
        received_at: float,
        resumen_json: str,
        estado_json: str,
        servers_json: str,
        server_count: int,
    ) -> int:
        """Commit one snapshot and make its guilds the latest; return its id.

        The same transaction deletes history past the retention limit, at most
        once a minute.
        """
        prune_before = None
        if received_at >= self._next_prune:
            prune_before = received_at - self.retention_seconds

        def work(connection: Connection) -> int:
            snapshot_id = connection.execute(
                _INSERT_SNAPSHOT,
                {
                    "received_at": received_at,
                    "resumen_json": resumen_json,
                    "estado_json": estado_json,
                    "server_count": server_count,
                },
            ).inserted_primary_key[0]

            connection.execute(
                _UPSERT_LATEST[connection.dialect.name],
                {
                    "id": LATEST_ROW_ID,
                    "snapshot_id": snapshot_id,
                    "servers_json": servers_json,
                },
            )

            if prune_before is not None:
                _delete_history_before(connection, prune_before)
            return snapshot_id

        snapshot_id = self._write(work)
        # Only once committed: a push refused by a full disk must not use up
        # the prune that could free space.
        if prune_before is not None:
            self._next_prune = received_at + PRUNE_EVERY_SECONDS
        return snapshot_id

    def latest(self) -> StoredSnapshot | None:
        """The newest snapshot, or None before the first push."""

        def work(connection: Connection) -> StoredSnapshot | None:
            row = connection.execute(
                select(
                    snapshots.c.id,
                    snapshots.c.received_at,
                    snapshots.c.resumen_json,
                    snapshots.c.estado_json,
                    latest_servers.c.servers_json,
                )
                .join(latest_servers, latest_servers.c.snapshot_id == snapshots.c.id)
                .where(latest_servers.c.id == LATEST_ROW_ID)
            ).first()
            return StoredSnapshot(*row) if row else None

        return self._read(work)

    def latest_summary(self) -> StoredSnapshot | None:
        """The newest snapshot without its (possibly large) guild list.

        Found through `latest_servers`, as `latest()` finds it, so the two
        always name the same snapshot.
        """

        def work(connection: Connection) -> StoredSnapshot | None:
            row = connection.execute(
                select(
                    snapshots.c.id,
                    snapshots.c.received_at,
                    snapshots.c.resumen_json,
                    snapshots.c.estado_json,
                )
                .join(latest_servers, latest_servers.c.snapshot_id == snapshots.c.id)
                .where(latest_servers.c.id == LATEST_ROW_ID)
            ).first()
            return StoredSnapshot(*row, servers_json="") if row else None

        return self._read(work)

    def latest_servers_json(self) -> str | None:
        """The newest guild list as JSON text, or None before the first push."""

        def work(connection: Connection) -> str | None:
            return connection.execute(
                select(latest_servers.c.servers_json).where(
                    latest_servers.c.id == LATEST_ROW_ID
                )
            ).scalar()

        return self._read(work)

    def history(
        self, since: float, until: float, limit: int
    ) -> list[tuple[int, float, str, str, int]]:
        """The newest `limit` snapshots received in [since, until], oldest first."""

        def work(connection: Connection) -> list:
            rows = connection.execute(
                select(
                    snapshots.c.id,
                    snapshots.c.received_at,
                    snapshots.c.resumen_json,
                    snapshots.c.estado_json,
                    snapshots.c.server_count,
                )
                .where(snapshots.c.received_at.between(since, until))
                .order_by(snapshots.c.received_at.desc(), snapshots.c.id.desc())
                .limit(limit)
            ).all()
            return [tuple(row) for row in reversed(rows)]

        return self._read(work)

    def prune_history(self, before: float) -> int:
        """Delete history older than `before`, keeping the newest snapshot."""
        return self._write(
            lambda connection: _delete_history_before(connection, before)
        )

    def check(self) -> None:
        """Raise if the database cannot answer a query."""
        self._read(lambda connection: connection.exec_driver_sql("SELECT 1"))

    def snapshot_count(self) -> int:
        """How many snapshots the history holds."""
        return self._read(
            lambda connection: connection.execute(
                select(func.count()).select_from(snapshots)
            ).scalar_one()
        )

    def record_refusal(self, at: float, status: int, error: str, message: str) -> None:
        """Count one refused push and remember its details.

        The record is evidence, not data: while another process holds the
        write lock it is skipped (DatabaseBusy) rather than waited for, so a
        refused push is answered at once instead of after the lock timeout.
        """

        def work(connection: Connection) -> None:
            values = {
                "last_at": at,
                "last_status": status,
                "last_error": error[:64],
                "last_message": message[:300],
            }
            changed = connection.execute(
                update(refused_pushes)
                .where(refused_pushes.c.id == LATEST_ROW_ID)
                .values(count=refused_pushes.c.count + 1, **values)
            ).rowcount
            if not changed:
                connection.execute(
                    insert(refused_pushes).values(id=LATEST_ROW_ID, count=1, **values)
                )

        run_in_transaction(work, write=True, lock_timeout=0)

    def refusals(self) -> Refusals | None:
        """The refused-push record, or None if no push was ever refused."""

        def work(connection: Connection) -> Refusals | None:
            row = connection.execute(
                select(
                    refused_pushes.c.count,
                    refused_pushes.c.last_at,
                    refused_pushes.c.last_status,
                    refused_pushes.c.last_error,
                    refused_pushes.c.last_message,
                ).where(refused_pushes.c.id == LATEST_ROW_ID)
            ).first()
            return Refusals(*row) if row else None

        return self._read(work)

    # Alerts: the state last alerted and the messages not yet delivered.

    def open_alert_state(self, now: float) -> "AlertRecord":
        """The alert record, created as `unknown` since `now` if there is none."""

        def work(connection: Connection) -> AlertRecord:
            record = _read_alert_state(connection)
            if record is None:
                connection.execute(
                    insert(alert_state).values(
                        id=LATEST_ROW_ID,
                        state="unknown",
                        since=now,
                        next_seq=1,
                        pending_json="[]",
                    )
                )
                record = AlertRecord("unknown", now, 1, ())
            return record

        return self._write(work)

    def alert_state(self) -> "AlertRecord | None":
        """The alert record, or None before the alerts ever ran."""
        return self._read(_read_alert_state)

    def save_alert(
        self,
        expected_state: str,
        state: str,
        since: float,
        body_json: str | None,
        max_pending: int,
    ) -> "tuple[bool, int]":
        """Move the alert state on and queue its message, in one transaction.

        Nothing changes unless the stored state is still `expected_state`.
        Returns whether it changed and how many of the oldest undelivered
        messages were dropped to keep at most `max_pending`.
        """

        def work(connection: Connection) -> tuple[bool, int]:
            record = _read_alert_state(connection)
            if record is None or record.state != expected_state:
                return False, 0
            pending = [{"seq": p.seq, "body": p.body_json} for p in record.pending]
            next_seq = record.next_seq
            if body_json is not None:
                pending.append({"seq": next_seq, "body": body_json})
                next_seq += 1
            dropped = max(0, len(pending) - max_pending)
            connection.execute(
                update(alert_state)
                .where(alert_state.c.id == LATEST_ROW_ID)
                .values(
                    state=state,
                    since=since,
                    next_seq=next_seq,
                    pending_json=json.dumps(pending[dropped:]),
                )
            )
            return True, dropped

        return self._write(work)

    def ack_alert(self, seq: int) -> None:
        """Forget the undelivered message `seq`: it was delivered or dropped."""

        def work(connection: Connection) -> None:
            record = _read_alert_state(connection)
            if record is None:
                return
            pending = [
                {"seq": p.seq, "body": p.body_json}
                for p in record.pending
                if p.seq != seq
            ]
            connection.execute(
                update(alert_state)
                .where(alert_state.c.id == LATEST_ROW_ID)
                .values(pending_json=json.dumps(pending))
            )

        self._write(work)

    # Leases: which one of several processes does a job that must run once.

    def acquire_lease(self, name: str, holder: str, now: float, ttl: float) -> bool:
        """Take the lease `name` until `now + ttl`, or renew it; True if held.

        It is taken when nobody holds it or its holder let it expire, and
        renewed when `holder` already holds it, expired or not (nobody else
        took it meanwhile). Safe with several processes trying at once: on
        SQLite the write lock serializes them; on PostgreSQL the UPDATE waits
        for a competing one and re-checks its condition against the row that
        one committed, and of two INSERTs racing for a free name one finds
        the other's row and inserts nothing.
        """
        values = {"holder": holder, "expires_at": now + ttl}

        def work(connection: Connection) -> bool:
            taken = connection.execute(
                update(leases)
                .where(
                    leases.c.name == name,
                    or_(leases.c.holder == holder, leases.c.expires_at <= now),
                )
                .values(**values)
            ).rowcount
            if taken:
                return True
            # RETURNING rather than rowcount: through psycopg, SQLAlchemy gives
            # -1 as this INSERT's row count, whether it inserted or not.
            inserted = connection.execute(
                _insert_unless_present(connection, leases, ["name"])
                .values(name=name, **values)
                .returning(leases.c.name)
            ).first()
            return inserted is not None

        return self._write(work)

    def release_lease(self, name: str, holder: str) -> bool:
        """Give the lease up, if `holder` holds it, so another takes it at once."""

        def work(connection: Connection) -> bool:
            return bool(
                connection.execute(
                    delete(leases).where(
                        leases.c.name == name, leases.c.holder == holder
                    )
                ).rowcount
            )

        return self._write(work)


def _insert_unless_present(connection: Connection, table, key: list[str]):
    """An INSERT that does nothing when a row with the same `key` exists.

    Another process may insert the same key between our look and our insert;
    this turns that into "nothing inserted" instead of an error that would
    roll back the transaction (and, on PostgreSQL, poison it).
    """
    build = _DIALECT_INSERT[connection.dialect.name]
    return build(table).on_conflict_do_nothing(index_elements=key)


@dataclass(frozen=True)
class PendingAlert:
    """A webhook message decided but not yet delivered."""

    seq: int
    body_json: str


@dataclass(frozen=True)
class AlertRecord:
    """The state the alerts last reported, since when, and what is unsent."""

    state: str
    since: float
    next_seq: int
    pending: tuple[PendingAlert, ...]


def _read_alert_state(connection: Connection) -> AlertRecord | None:
    row = connection.execute(
        select(
            alert_state.c.state,
            alert_state.c.since,
            alert_state.c.next_seq,
            alert_state.c.pending_json,
        ).where(alert_state.c.id == LATEST_ROW_ID)
    ).first()
    if row is None:
        return None
    pending = tuple(
        PendingAlert(item["seq"], item["body"]) for item in json.loads(row[3])
    )
    return AlertRecord(row[0], row[1], row[2], pending)


def _delete_history_before(connection: Connection, before: float) -> int:
    newest = select(latest_servers.c.snapshot_id).scalar_subquery()
    return connection.execute(
        delete(snapshots).where(
            snapshots.c.received_at < before, snapshots.c.id != func.coalesce(newest, 0)
        )
    ).rowcount
