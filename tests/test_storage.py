"""Storage: what a 201 promises, restarts, retention, and another process's lock."""

import json
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from conftest import LiveServer

from botmon import create_app
from botmon.database import db

READ_PATHS = ["/api/bot/resumen/", "/api/bot/estado/", "/api/bot/servers/"]
DAY = 86_400.0


def read_database(path, query: str, *args) -> list[tuple]:
    """Rows read straight from the SQLite file, read-only, as another tool would."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute(query, args).fetchall()
    finally:
        connection.close()


@contextmanager
def write_lock(path):
    """Hold SQLite's write lock from this process, as a backup or script would."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=10)
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def answers(server) -> list[str]:
    return [server.get(path).text for path in READ_PATHS]


def timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


# A 201 means committed.


def test_a_201_means_the_snapshot_is_already_in_the_database_file(server, seed):
    seed["resumen"]["servidores_conectados"] = 41

    response = server.post(seed)

    assert response.status_code == 201
    snapshot_id = response.json()["id"]
    rows = read_database(
        server.database_path,
        "SELECT resumen_json, estado_json FROM snapshots WHERE id = ?",
        snapshot_id,
    )
    assert len(rows) == 1
    assert json.loads(rows[0][0]) == seed["resumen"]
    assert json.loads(rows[0][1]) == seed["estado"]
    latest = read_database(
        server.database_path, "SELECT snapshot_id, servers_json FROM latest_servers"
    )
    assert latest == [(snapshot_id, json.dumps(seed["servers"], separators=(",", ":")))]


def test_the_database_runs_in_wal_mode(server, seed_bytes):
    server.post(seed_bytes)

    assert read_database(server.database_path, "PRAGMA journal_mode") == [("wal",)]


def test_a_refused_push_stores_no_snapshot(server, seed):
    seed["servers"][0]["canales"] = -1

    assert server.post(seed).status_code == 400

    assert read_database(server.database_path, "SELECT count(*) FROM snapshots") == [
        (0,)
    ]


# Restarts: the last state survives, byte for byte.


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_the_last_state_survives_a_restart(server, seed, seed_bytes, how):
    server.post(seed_bytes)
    seed["estado"]["latencia_ms"] = 12.25
    seed["servers"][0]["server_id"] = str(2**63 - 1)
    seed["estado"]["ultima_conexion"] = "2025-11-13T20:00:00+02:00"
    assert server.post(seed).status_code == 201
    server.post(b"[]")
    before = answers(server) + [server.get("/api/bot/rechazos/").text]

    if how == "kill":
        server.kill()
    else:
        assert server.stop() == 0
    server.start()

    assert answers(server) + [server.get("/api/bot/rechazos/").text] == before
    assert '"latencia_ms":12.25,' in before[1]
    assert '"ultima_conexion":"2025-11-13T18:00:00.000000Z"' in before[1]


# History retention.


@pytest.fixture
def store(tmp_path):
    """The store of an app on a temporary database, keeping one day of history."""
    app = create_app(
        {
            "BOTMON_INSTANCE_PATH": str(tmp_path),
            "BOT_API_KEY": "storage-test-key",
            "BOTMON_HISTORY_RETENTION_DAYS": "1",
        }
    )
    with app.app_context():
        yield app.extensions["botmon"].store
        db.engine.dispose()


def save(store, received_at: float) -> int:
    return store.save_snapshot(received_at, '{"n":1}', '{"n":2}', "[]", 0)


def snapshot_ids(store) -> list[int]:
    now = time.time()
    return [row[0] for row in store.history(now - 1000 * DAY, now + DAY, 1000)]


def test_a_push_deletes_history_older_than_the_retention(store):
    now = time.time()
    old = [save(store, now - 3 * DAY), save(store, now - 2 * DAY)]
    assert snapshot_ids(store) == old

    newest = save(store, now)

    assert snapshot_ids(store) == [newest]


def test_history_within_the_retention_is_kept(store):
    now = time.time()
    ids = [save(store, now - hours * 3600) for hours in (20, 10, 1)]

    assert store.prune_history(now - DAY) == 0
    assert snapshot_ids(store) == ids


def test_retention_never_deletes_the_newest_snapshot(store):
    now = time.time()
    save(store, now - 30 * DAY)
    newest = save(store, now - 29 * DAY)

    assert store.prune_history(now) == 1

    assert snapshot_ids(store) == [newest]
    assert store.latest().id == newest


def test_the_retention_setting_applies_to_a_running_server(start_server, seed):
    # 0.00001 days is under a second; a restart lets the next push prune.
    server = start_server({"BOTMON_HISTORY_RETENTION_DAYS": "0.00001"})
    server.post(seed)
    server.post(seed)
    time.sleep(1.0)
    server.stop()
    server.start()

    newest = server.post(seed).json()["id"]

    assert read_database(server.database_path, "SELECT id FROM snapshots") == [
        (newest,)
    ]


# Another process holding the write lock.

PATIENT_LOCK_TIMEOUT = 10.0
SHORT_LOCK_TIMEOUT = 1.5


@pytest.fixture
def locked_server(start_server, seed_bytes):
    """Start a server with metrics that waits `timeout` s for the write lock."""

    def start(timeout: float):
        server = start_server({"BOTMON_DB_LOCK_TIMEOUT_SECONDS": str(timeout)})
        assert server.post(seed_bytes).status_code == 201
        return server

    return start


def test_a_push_waits_for_the_lock_and_succeeds_when_it_is_released(
    locked_server, seed
):
    server = locked_server(PATIENT_LOCK_TIMEOUT)
    before = answers(server)
    seed["resumen"]["servidores_conectados"] = 6

    with ThreadPoolExecutor(1) as pool:
        with write_lock(server.database_path):
            waiting_post = pool.submit(timed, lambda: server.post(seed))
            time.sleep(0.5)

            # Nothing freezes: reads answer while the push waits for the lock.
            # A worker stuck in SQLite's own busy wait would answer them only
            # after the lock timeout.
            for path, expected in zip(READ_PATHS, before, strict=True):
                response, took = timed(lambda path=path: server.get(path))
                assert response.text == expected
                assert took < 2.0
            assert server.get("/api/health/").status_code == 200
            assert not waiting_post.done()
            time.sleep(0.5)

        response, took = waiting_post.result(timeout=30)

    assert response.status_code == 201, response.text
    assert 0.9 <= took < PATIENT_LOCK_TIMEOUT
    assert server.get("/api/bot/resumen/").json()["servidores_conectados"] == 6


def test_a_push_gets_503_when_the_lock_is_held_too_long(locked_server, seed):
    server = locked_server(SHORT_LOCK_TIMEOUT)
    before = answers(server)
    seed["resumen"]["servidores_conectados"] = 7

    with write_lock(server.database_path):
        started = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            waiting_post = pool.submit(lambda: server.post(seed))
            reads = 0
            while not waiting_post.done():
                assert answers(server) == before
                reads += 1
            response = waiting_post.result()
        took = time.monotonic() - started

    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "database_busy"
    assert response.json()["message"]
    assert int(response.headers["Retry-After"]) > 0
    assert SHORT_LOCK_TIMEOUT - 0.1 <= took < SHORT_LOCK_TIMEOUT + 5
    assert reads >= 2
    assert answers(server) == before
    assert read_database(server.database_path, "SELECT count(*) FROM snapshots") == [
        (1,)
    ]
    assert server.post(seed).status_code == 201


def test_a_refused_push_is_answered_at_once_during_the_lock(locked_server, seed):
    server = locked_server(PATIENT_LOCK_TIMEOUT)
    seed["estado"]["uptime_dias"] = -1

    with write_lock(server.database_path):
        response, took = timed(lambda: server.post(seed))

    assert response.status_code == 400
    assert took < 2.0
    assert "could not record a refused push" in server.log()


def test_pushes_waiting_for_the_lock_all_succeed_when_it_is_released(
    locked_server, seed_bytes
):
    server = locked_server(PATIENT_LOCK_TIMEOUT)

    with ThreadPoolExecutor(5) as pool:
        with write_lock(server.database_path):
            waiting = [pool.submit(server.post, seed_bytes) for _ in range(5)]
            time.sleep(0.5)
            assert not any(future.done() for future in waiting)

        responses = [future.result(timeout=30) for future in waiting]

    assert [response.status_code for response in responses] == [201] * 5
    assert len({response.json()["id"] for response in responses}) == 5
    count = read_database(server.database_path, "SELECT count(*) FROM snapshots")
    assert count == [(6,)]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"BOTMON_DATABASE_URL": "sqlite:///{tmp}/missing/botmon.sqlite3"},
            "cannot open the database",
        ),
        ({"BOTMON_STALE_AFTER_SECONDS": "abc"}, "BOTMON_STALE_AFTER_SECONDS"),
    ],
)
def test_a_start_it_cannot_make_ends_with_one_clear_line(tmp_path, env, message):
    env = {name: value.format(tmp=tmp_path) for name, value in env.items()}
    server = LiveServer(tmp_path / "instance", env)

    with pytest.raises(RuntimeError, match="exited at start"):
        server.start()

    assert f"cannot start: {message}" in server.log()
    assert "Traceback" not in server.log()
