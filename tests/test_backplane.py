"""Several workers sharing snapshots through Redis, and Redis failing under them.

Each test runs botmon under gunicorn with two gevent workers on one SQLite
file, and a private redis-server. Which worker holds a connection is read
from /proc: the socket's inode from /proc/net/tcp, and the worker whose open
files include that socket.
"""

import contextlib
import copy
import http.client
import json
import os
import re
import signal
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import API_KEY, REDIS_PASSWORD, wait_for
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from botmon.config import ConfigError, Settings

# Listeners are opened until every worker holds this many, within MOST_TRIES.
PER_WORKER = 3
MOST_TRIES = 60
# gunicorn closes an idle keep-alive connection after 5 s.
KEEPALIVE_MARGIN_SECONDS = 3.0
PROMPTLY = 15.0
# Far above a POST's usual few milliseconds, far below a Redis timeout that
# a POST waiting on Redis would have to sit out.
POST_BOUND_SECONDS = 1.5
REDIS_TIMEOUT_SECONDS = 2.0

# The workers share SQLite in one run and PostgreSQL in the other.
pytestmark = pytest.mark.both_backends


# Who holds a connection ------------------------------------------------------


def owner_pid(server, client_port: int) -> int:
    """The worker holding the server end of the connection from `client_port`."""
    target = f"socket:[{server_side_inode(server.port, client_port)}]"
    for pid in server.worker_pids():
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == target:
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def server_side_inode(server_port: int, client_port: int) -> int:
    def find() -> int | None:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            if (local_port, remote_port) == (server_port, client_port):
                return int(fields[9])
        return None

    return wait_for(find, 5, "the server end of a connection")


# Listeners and posters -------------------------------------------------------


def payload(seed: dict, number: int) -> str:
    """The seed, tagged with `number` so a listener can tell pushes apart."""
    body = copy.deepcopy(seed)
    body["resumen"]["eventos_procesados_hoy"] = number
    return json.dumps(body)


class Listener:
    """A WebSocket listener that records the tag of every snapshot it gets."""

    def __init__(self, server):
        self._closing = contextlib.ExitStack()
        self.ws = self._closing.enter_context(
            connect(server.ws_url, open_timeout=10, compression=None)
        )
        self.port = self.ws.socket.getsockname()[1]
        self.received: list[int] = []
        self.worker = owner_pid(server, self.port)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                text = self.ws.recv()
                self.received.append(json.loads(text)["resumen"][EVENTS])
        except ConnectionClosed:
            pass

    def never_went_back(self) -> bool:
        pairs = zip(self.received, self.received[1:], strict=False)
        return all(earlier < later for earlier, later in pairs)

    @property
    def last(self) -> int | None:
        return self.received[-1] if self.received else None

    def close(self) -> None:
        self._closing.close()
        self._thread.join(5)


EVENTS = "eventos_procesados_hoy"


def spread_listeners(server) -> dict[int, list[Listener]]:
    """Open listeners until every worker holds PER_WORKER of them."""
    pids = server.worker_pids()
    by_worker: dict[int, list[Listener]] = defaultdict(list)
    for _ in range(MOST_TRIES):
        if all(len(by_worker[pid]) >= PER_WORKER for pid in pids):
            return dict(by_worker)
        listener = Listener(server)
        by_worker[listener.worker].append(listener)
    counts = {pid: len(by_worker[pid]) for pid in pids}
    raise AssertionError(f"{MOST_TRIES} listeners did not reach every worker: {counts}")


def everyone(by_worker: dict[int, list[Listener]]) -> list[Listener]:
    return [listener for group in by_worker.values() for listener in group]


def pinned_connection(server, worker: int) -> http.client.HTTPConnection:
    """A keep-alive connection that `worker` holds."""
    for _ in range(MOST_TRIES):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        connection.connect()
        if owner_pid(server, connection.sock.getsockname()[1]) == worker:
            return connection
        connection.close()
    raise AssertionError(f"{MOST_TRIES} connections did not reach worker {worker}")


class Poster:
    """POSTs through a keep-alive connection held by one given worker."""

    def __init__(self, server, worker: int):
        self.server = server
        self.worker = worker
        self.connection = pinned_connection(server, worker)
        self.used_at = time.monotonic()

    def post(self, body: str) -> tuple[int, dict, float]:
        """Status, answer and seconds taken."""
        if time.monotonic() - self.used_at > KEEPALIVE_MARGIN_SECONDS:
            self.connection.close()
            self.connection = pinned_connection(self.server, self.worker)

        started = time.monotonic()
        self.connection.request(
            "POST",
            "/api/bot/metrics/",
            body=body,
            headers={
                "Authorization": f"Bearer {API_KEY}",
                "Content-Type": "application/json",
            },
        )
        response = self.connection.getresponse()
        answer = json.loads(response.read())
        self.used_at = time.monotonic()
        return response.status, answer, self.used_at - started


# Setting up ------------------------------------------------------------------


def start_workers(start_server, redis_server, workers: int = 2, **env):
    server = start_server(
        {
            "BOTMON_REDIS_URL": redis_server.url,
            "BOTMON_WORKERS": str(workers),
            "BOTMON_REDIS_TIMEOUT_SECONDS": str(REDIS_TIMEOUT_SECONDS),
            "BOTMON_REDIS_MAX_BACKOFF_SECONDS": "0.5",
            **env,
        }
    )
    wait_for(
        lambda: (
            len(server.worker_pids()) == workers
            and server.log().count("backplane on") == workers
        ),
        PROMPTLY,
        "every worker on the backplane",
    )
    return server


def all_reached(listeners: list[Listener], number: int):
    return lambda: all(listener.last == number for listener in listeners)


def log_lines(server, pattern: str) -> dict[int, int]:
    """How many log lines match `pattern`, by the PID that wrote them."""
    counts: dict[int, int] = defaultdict(int)
    for line in server.log().splitlines():
        match = re.search(r"\[(\d+)\] \[\w+\] ", line)
        if match and re.search(pattern, line):
            counts[int(match.group(1))] += 1
    return dict(counts)


@pytest.fixture
def listeners_and_posters(start_server, redis_server):
    """Two workers on Redis, listeners spread over both, a poster per worker."""
    server = start_workers(start_server, redis_server)
    by_worker = spread_listeners(server)
    by_poster = {pid: Poster(server, pid) for pid in server.worker_pids()}
    yield server, by_worker, by_poster
    for listener in everyone(by_worker):
        listener.close()


# The tests -------------------------------------------------------------------


def test_every_listener_on_every_worker_hears_every_push_in_order(
    listeners_and_posters, seed
):
    server, by_worker, by_poster = listeners_and_posters
    listeners = everyone(by_worker)
    pids = sorted(by_poster)

    # One push at a time, through alternate workers: every one reaches all.
    for number in range(1, 9):
        status, _, _ = by_poster[pids[number % 2]].post(payload(seed, number))
        assert status == 201
        wait_for(all_reached(listeners, number), PROMPTLY, f"push {number}")
    assert all(listener.received == list(range(1, 9)) for listener in listeners)

    # A burst: listeners may skip, never go back, and end on the last.
    for number in range(9, 31):
        status, _, _ = by_poster[pids[number % 2]].post(payload(seed, number))
        assert status == 201
    wait_for(all_reached(listeners, 30), PROMPTLY, "the burst's last push")
    assert all(listener.never_went_back() for listener in listeners)

    assert REDIS_PASSWORD not in server.log()


def test_a_listener_joining_either_worker_gets_the_latest_at_once(
    listeners_and_posters, seed
):
    server, by_worker, by_poster = listeners_and_posters
    first, second = sorted(by_poster)
    by_poster[first].post(payload(seed, 1))
    status, _, _ = by_poster[second].post(payload(seed, 2))
    assert status == 201
    # Once both workers' listeners have it, both hubs hold it.
    wait_for(all_reached(everyone(by_worker), 2), PROMPTLY, "the second push")

    late = spread_listeners(server)
    try:
        wait_for(
            lambda: all(listener.received for listener in everyone(late)),
            PROMPTLY,
            "the latest snapshot",
        )
        assert all(listener.received[0] == 2 for listener in everyone(late))
    finally:
        for listener in everyone(late):
            listener.close()


def test_two_instances_on_two_ports_share_one_database_and_every_push(
    start_server, redis_server, seed
):
    first = start_workers(start_server, redis_server)
    database_url = first.env.get("BOTMON_DATABASE_URL") or (
        f"sqlite:///{first.database_path}"
    )
    second = start_workers(start_server, redis_server, BOTMON_DATABASE_URL=database_url)
    groups = [spread_listeners(first), spread_listeners(second)]
    listeners = [listener for group in groups for listener in everyone(group)]
    try:
        # The seed to one instance, then a newer push to the other: every
        # listener of every worker of both hears each.
        assert first.post(payload(seed, 1)).status_code == 201
        wait_for(all_reached(listeners, 1), PROMPTLY, "the push to the first")
        assert second.post(payload(seed, 2)).status_code == 201
        wait_for(all_reached(listeners, 2), PROMPTLY, "the push to the second")

        for server in (first, second):
            resumen = server.get("/api/bot/resumen/").json()
            assert resumen[EVENTS] == 2
        assert len(first.read("SELECT id FROM snapshots")) == 2
    finally:
        for listener in listeners:
            listener.close()


def test_pushes_are_kept_and_told_while_redis_is_down_and_caught_up_after(
    listeners_and_posters, redis_server, seed
):
    server, by_worker, by_poster = listeners_and_posters
    listeners = everyone(by_worker)
    pids = sorted(by_poster)
    ids = []
    for number in (1, 2):
        status, answer, _ = by_poster[pids[number % 2]].post(payload(seed, number))
        ids.append(answer["id"])
        wait_for(all_reached(listeners, number), PROMPTLY, f"push {number}")

    redis_server.kill()
    for number in range(3, 9):
        worker = pids[number % 2]
        status, answer, _ = by_poster[worker].post(payload(seed, number))
        assert status == 201
        ids.append(answer["id"])
        # The worker that took the push tells its own listeners at once.
        wait_for(all_reached(by_worker[worker], number), PROMPTLY, "own listeners")

    redis_server.start()
    wait_for(all_reached(listeners, 8), PROMPTLY, "every listener caught up")
    assert all(listener.never_went_back() for listener in listeners)

    stored = server.read("SELECT id FROM snapshots")
    assert sorted(row[0] for row in stored) == sorted(ids)

    # And the backplane carries pushes again, through either worker.
    for number in (9, 10):
        by_poster[pids[number % 2]].post(payload(seed, number))
        wait_for(all_reached(listeners, number), PROMPTLY, f"push {number}")
    wait_for(
        lambda: log_lines(server, "backplane back") == {pid: 1 for pid in pids},
        PROMPTLY,
        "one line per worker saying the backplane is back",
    )
    assert log_lines(server, "WARNING.*lost the backplane") == {pid: 1 for pid in pids}


def test_a_frozen_redis_slows_no_push_and_is_recovered_from(
    listeners_and_posters, redis_server, seed
):
    server, by_worker, by_poster = listeners_and_posters
    listeners = everyone(by_worker)
    pids = sorted(by_poster)
    by_poster[pids[0]].post(payload(seed, 1))
    wait_for(all_reached(listeners, 1), PROMPTLY, "the first push")

    redis_server.pause()
    try:
        for number in range(2, 6):
            worker = pids[number % 2]
            status, _, seconds = by_poster[worker].post(payload(seed, number))
            assert status == 201
            assert seconds < POST_BOUND_SECONDS
            wait_for(all_reached(by_worker[worker], number), PROMPTLY, "own listeners")
        # Both workers find out that Redis no longer answers.
        wait_for(
            lambda: log_lines(server, "lost the backplane") == {p: 1 for p in pids},
            PROMPTLY,
            "each worker to notice the frozen Redis",
        )
    finally:
        redis_server.resume()

    wait_for(all_reached(listeners, 5), PROMPTLY, "every listener caught up")
    assert all(listener.never_went_back() for listener in listeners)
    wait_for(
        lambda: log_lines(server, "backplane back") == {pid: 1 for pid in pids},
        PROMPTLY,
        "one line per worker saying the backplane is back",
    )


def test_health_tells_whether_the_answering_worker_reaches_redis(
    start_server, redis_server
):
    server = start_workers(start_server, redis_server, workers=1)
    assert server.get("/api/health/").json()["backplane"] == "up"

    redis_server.kill()
    wait_for(
        lambda: server.get("/api/health/").json()["backplane"] == "down",
        PROMPTLY,
        "the health check to say the backplane is down",
    )
    assert server.get("/api/health/").status_code == 200


def test_with_redis_a_worker_may_be_added_at_run_time(start_server, redis_server):
    server = start_workers(start_server, redis_server, workers=1)

    server.process.send_signal(signal.SIGTTIN)

    wait_for(lambda: len(server.worker_pids()) == 2, PROMPTLY, "a second worker")


def test_without_redis_several_workers_are_refused_with_the_way_out(tmp_path):
    from test_websocket import run_gunicorn

    code, output = run_gunicorn(tmp_path, ["-w", "2"], {"BOTMON_REDIS_URL": ""})

    assert code != 0
    assert "set BOTMON_REDIS_URL to run several workers" in output
    assert "Booting worker" not in output


@pytest.mark.parametrize(
    "url",
    [
        "http://:hunter2@127.0.0.1:6379",
        "redis://:hunter2@127.0.0.1:notaport",
        "redis://:hunter2@:6379",
        "redis://:hunter2@127.0.0.1:6379/zero",
        "127.0.0.1:6379",
    ],
)
def test_a_malformed_redis_url_is_refused_without_echoing_it(url):
    with pytest.raises(ConfigError) as refused:
        Settings.from_environ({"BOTMON_REDIS_URL": url})

    assert "BOTMON_REDIS_URL must be" in str(refused.value)
    assert "hunter2" not in str(refused.value)
