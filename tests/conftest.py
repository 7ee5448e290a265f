"""Shared fixtures: botmon under gunicorn's gevent worker on a free loopback port."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from pgserver import PostgresCluster, read_postgresql
from redisserver import RedisServer

ROOT = Path(__file__).resolve().parent.parent
SEED_PATH = ROOT / "examples" / "seed.json"
API_KEY = "test-key-0123456789"
START_TIMEOUT = 20.0
REDIS_PASSWORD = "redis-secret-4242"
# BOTMON_LONG_TESTS=1 runs the load and durability tests at a larger scale.
LONG_TESTS = os.environ.get("BOTMON_LONG_TESTS", "") == "1"
# A module marked `both_backends` runs its server tests once per database.
BACKENDS = ["sqlite", "postgresql"]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "both_backends: run the module's server tests on SQLite and on PostgreSQL",
    )


def pytest_generate_tests(metafunc):
    marked = metafunc.definition.get_closest_marker("both_backends")
    if marked and "backend" in metafunc.fixturenames:
        # Module scope: a module's own servers start once per backend.
        metafunc.parametrize("backend", BACKENDS, scope="module")


def scaled(short, long):
    """`long` when BOTMON_LONG_TESTS=1, else `short`."""
    return long if LONG_TESTS else short


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float = 30.0, what: str = "condition"):
    """Poll `condition` until it returns something true, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def read_database(where, query: str, *args) -> list[tuple]:
    """Run `query` on a botmon database from outside botmon, read-only.

    `where` is a SQLite file's path or a database URL; parameters are `%s`.
    """
    where = str(where)
    if where.startswith("postgresql://"):
        return read_postgresql(where, query, *args)

    path = where.removeprefix("sqlite:///")
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return connection.execute(query.replace("%s", "?"), args).fetchall()
    finally:
        connection.close()


class LiveServer:
    """A botmon started the way production starts it, on its own instance folder.

    `start()` may be called again after `stop()` or `kill()`: the same database
    file and port are reused, which is what a restart test needs.
    """

    def __init__(self, instance_path: Path, env: dict[str, str] | None = None):
        self.instance_path = instance_path
        self.port = free_port()
        self.env = {
            **os.environ,
            "BOT_API_KEY": API_KEY,
            "BOTMON_INSTANCE_PATH": str(instance_path),
            "BOTMON_BIND": f"127.0.0.1:{self.port}",
            "BOTMON_ACCESS_LOG": "",
            **(env or {}),
        }
        self.log_path = instance_path / "server.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/bot/metrics/"

    @property
    def database_path(self) -> Path:
        return self.instance_path / "botmon.sqlite3"

    @property
    def database(self) -> str:
        """Where its database is, for `read_database`: a URL or a file path."""
        return self.env.get("BOTMON_DATABASE_URL") or str(self.database_path)

    def read(self, query: str, *args) -> list[tuple]:
        """Rows from this server's database, read from outside botmon."""
        return read_database(self.database, query, *args)

    def start(self) -> "LiveServer":
        self.instance_path.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"botmon exited at start:\n{self.log()}")
            try:
                if requests.get(self.url + "/api/health/", timeout=1).ok:
                    return
            except (requests.ConnectionError, requests.Timeout):
                # A loaded machine may answer the first request late.
                pass
            time.sleep(0.05)
        raise RuntimeError(f"botmon did not start in {START_TIMEOUT} s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Signal the gunicorn master (only the process we started) and wait."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL the master and its worker, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def worker_pids(self) -> list[int]:
        """The gunicorn workers' PIDs: the children of the master we started."""
        master = self.process.pid
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        return sorted(int(child) for child in children)

    def worker_pid(self) -> int:
        """The gunicorn worker's PID, when it runs one."""
        pids = self.worker_pids()
        assert len(pids) == 1, f"expected one worker, found {pids}"
        return pids[0]

    def log(self) -> str:
        return (
            self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        )

    def post(self, body, key: str = API_KEY, **kwargs) -> requests.Response:
        """POST metrics; `body` is bytes, str, or an object to encode as JSON."""
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        headers.update(kwargs.pop("headers", {}))
        return requests.post(
            self.url + "/api/bot/metrics/", data=body, headers=headers, timeout=30
        )

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)


@pytest.fixture(scope="session")
def backend() -> str:
    """The database the servers of a test use; see `both_backends`."""
    return "sqlite"


class LazyCluster:
    """The session's private PostgreSQL server, started when first asked for."""

    def __init__(self):
        self.cluster: PostgresCluster | None = None

    def get(self) -> PostgresCluster:
        if self.cluster is None:
            self.cluster = PostgresCluster(free_port()).start()
        return self.cluster

    def destroy(self) -> None:
        if self.cluster is not None:
            self.cluster.destroy()


@pytest.fixture(scope="session")
def lazy_cluster():
    holder = LazyCluster()
    yield holder
    holder.destroy()


@pytest.fixture(scope="session")
def postgres(lazy_cluster) -> PostgresCluster:
    """The session's private PostgreSQL server."""
    return lazy_cluster.get()


@pytest.fixture(scope="session")
def database_env(lazy_cluster):
    """Gives the environment for a new botmon's fresh database on a backend.

    A plain function of the backend rather than a fixture that depends on
    it, so a session-wide server never outlives the backend it was made for.
    """

    def fresh(backend: str) -> dict[str, str]:
        if backend == "sqlite":
            return {}
        return {"BOTMON_DATABASE_URL": lazy_cluster.get().create_database()}

    return fresh


@pytest.fixture
def start_server(tmp_path_factory, database_env, backend):
    """Start botmon servers on fresh instance folders; all are stopped at the end.

    Each gets a fresh database of the test's backend unless `env` names one.
    """
    started: list[LiveServer] = []

    def start(env: dict[str, str] | None = None, instance_path=None) -> LiveServer:
        path = instance_path or tmp_path_factory.mktemp("botmon")
        env = {**database_env(backend), **(env or {})}
        server = LiveServer(Path(path), env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def server(start_server) -> LiveServer:
    """A fresh botmon with an empty database."""
    return start_server()


@pytest.fixture(scope="session")
def shared_servers(tmp_path_factory, database_env):
    """One botmon per backend, started when first asked for."""
    servers: dict[str, LiveServer] = {}

    def get(backend: str) -> LiveServer:
        if backend not in servers:
            path = tmp_path_factory.mktemp(f"botmon-shared-{backend}")
            servers[backend] = LiveServer(path, database_env(backend)).start()
        return servers[backend]

    yield get
    for server in servers.values():
        server.kill()


@pytest.fixture(scope="module")
def shared_server(shared_servers, backend) -> LiveServer:
    """One botmon for tests that only send refused pushes or read."""
    return shared_servers(backend)


@pytest.fixture
def redis_server(tmp_path_factory):
    """A private redis-server on a free loopback port, killed at the end.

    It wants a password, so that the tests see botmon keep it out of its log.
    """
    server = RedisServer(tmp_path_factory.mktemp("redis"), REDIS_PASSWORD).start()
    yield server
    server.kill()


@pytest.fixture
def seed_bytes() -> bytes:
    """The contract's example payload, exactly as written in the spec."""
    return SEED_PATH.read_bytes()


@pytest.fixture
def seed() -> dict:
    return json.loads(SEED_PATH.read_text())
