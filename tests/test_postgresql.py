"""PostgreSQL as the store: lock waits, concurrent writers, a server that goes away."""

import copy
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import LiveServer, free_port, wait_for
from pgserver import PASSWORD, PostgresCluster

READ_PATHS = ["/api/bot/resumen/", "/api/bot/estado/", "/api/bot/servers/"]


@pytest.fixture(scope="module")
def own_cluster():
    """A cluster of this module's own, which a test may stop and start."""
    cluster = PostgresCluster(free_port()).start()
    yield cluster
    cluster.destroy()


def push_named(server, seed, name: str):
    payload = copy.deepcopy(seed)
    payload["servers"][0]["server_name"] = name
    return server.post(payload)


def test_a_write_waiting_on_a_lock_is_a_503_and_reads_keep_answering(
    postgres, start_server, seed
):
    url = postgres.create_database()
    server = start_server(
        {"BOTMON_DATABASE_URL": url, "BOTMON_DB_LOCK_TIMEOUT_SECONDS": "4"}
    )
    assert server.post(seed).status_code == 201

    with postgres.connect(url.rsplit("/", 1)[1]) as other:
        other.execute("LOCK TABLE latest_servers IN EXCLUSIVE MODE")
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(server.post, seed)
            wait_for(
                lambda: other.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted"
                ).fetchone()[0],
                what="the POST to wait for the lock",
            )

            # The worker keeps serving while one of its greenlets waits for
            # the server: psycopg waits cooperatively under gevent.
            health = server.get("/api/health/")
            reads = [server.get(path) for path in READ_PATHS]
            assert not waiting.done()

            refused = waiting.result(timeout=30)
        other.rollback()

    assert health.status_code == 200
    assert [read.status_code for read in reads] == [200, 200, 200]
    assert refused.status_code == 503
    assert refused.json()["error"] == "database_busy"
    assert refused.headers["Retry-After"] == "5"
    assert server.post(seed).status_code == 201


def test_concurrent_pushes_leave_the_highest_id_as_the_latest(
    postgres, start_server, seed
):
    url = postgres.create_database()
    server = start_server({"BOTMON_DATABASE_URL": url})
    names = [f"guild-{n}" for n in range(120)]

    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda n: push_named(server, seed, n), names))

    assert [response.status_code for response in responses] == [201] * len(names)
    name_of = {
        response.json()["id"]: n for response, n in zip(responses, names, strict=True)
    }
    highest = max(name_of)
    assert server.read("SELECT snapshot_id FROM latest_servers") == [(highest,)]
    assert server.get("/api/bot/servers/").json()[0]["server_name"] == name_of[highest]
    resumen = json.loads(
        server.read("SELECT resumen_json FROM snapshots WHERE id = %s", highest)[0][0]
    )
    assert server.get("/api/bot/resumen/").json() == resumen


def test_a_database_server_that_goes_away_is_a_503_until_it_is_back(
    own_cluster, start_server, seed
):
    server = start_server({"BOTMON_DATABASE_URL": own_cluster.create_database()})
    assert server.post(seed).status_code == 201

    own_cluster.stop()
    try:
        down = [server.get(path) for path in ["/api/health/", *READ_PATHS]]
        refused = server.post(seed)
    finally:
        own_cluster.start()

    for response in [*down, refused]:
        assert response.status_code == 503
        assert response.json()["error"] == "storage_unavailable"
    assert "Traceback" not in refused.text
    # A read is told to retry; only the push is told nothing was stored.
    assert all("then retry" in response.json()["message"] for response in down)
    assert "nothing was stored" in refused.json()["message"]
    # One line for the outage, not a traceback per request.
    assert server.log().count("database unavailable") == 1
    assert "Traceback" not in server.log()
    assert server.get("/api/health/").status_code == 200
    assert server.post(seed).status_code == 201
    assert PASSWORD not in server.log()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            f"postgresql://botmon:{PASSWORD}@127.0.0.1:{{port}}/botmon",
            "cannot open the database postgresql+psycopg://botmon:***@127.0.0.1:",
        ),
        ("mysql://botmon:secret@127.0.0.1/botmon", "does not support"),
        (
            "postgresql://botmon:secret@127.0.0.1:badport/botmon",
            "BOTMON_DATABASE_URL is not a valid database URL",
        ),
    ],
)
def test_a_database_it_cannot_use_stops_the_start_with_one_clear_line(
    tmp_path, url, message
):
    url = url.format(port=free_port())
    server = LiveServer(tmp_path / "instance", {"BOTMON_DATABASE_URL": url})

    with pytest.raises(RuntimeError, match="exited at start"):
        server.start()

    assert message in server.log()
    assert "Traceback" not in server.log()
    assert PASSWORD not in server.log()
    assert "secret" not in server.log()


def test_a_postgres_scheme_is_taken_as_postgresql(postgres, start_server, seed):
    url = postgres.create_database().replace("postgresql://", "postgres://", 1)
    server = start_server({"BOTMON_DATABASE_URL": url})

    assert server.post(seed).status_code == 201
    assert server.get("/api/bot/servers/").json() == seed["servers"]
