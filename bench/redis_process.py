"""A private redis-server, for the bench's scaled-out botmon and for the tests.

It binds 127.0.0.1 on the port it is given, keeps nothing on disk, and is
stopped by the PID this module started.
"""

import logging
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
ANSWER_TIMEOUT_SECONDS = 1.0


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "redis-server is not installed: install Debian's redis-server "
            "(apt-get install redis-server, or scripts/ensure-test-tools as root)"
        )
    return found


class RedisProcess:
    """One redis-server we started, on a port of its own."""

    def __init__(self, directory: Path, port: int, password: str = ""):
        self.directory = directory
        self.port = port
        self.password = password
        self.log_path = directory / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    def start(self, preexec: Callable[[], None] | None = None) -> None:
        """Start it (again, after a stop or a kill) and wait until it answers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=preexec,
        )
        self._wait_until_answering()
        log.info("redis-server on 127.0.0.1:%d, pid %d", self.port, self.pid)

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start; see {self.log_path}")
            if self.answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"redis-server did not answer within {START_TIMEOUT_SECONDS:g} s; "
            f"see {self.log_path}"
        )

    def answers(self) -> bool:
        """Whether it answers a PING now."""
        try:
            with self.client() as client:
                return client.ping()
        except redis.RedisError:
            return False

    def subscribers(self, channel: str) -> int:
        """How many connections are subscribed to `channel` now."""
        with self.client() as client:
            ((_, count),) = client.pubsub_numsub(channel)
        return count

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(
            self.url,
            socket_timeout=ANSWER_TIMEOUT_SECONDS,
            socket_connect_timeout=ANSWER_TIMEOUT_SECONDS,
        )

    def stop(self) -> None:
        """SIGTERM the redis-server we started; SIGKILL it if it lingers."""
        if self.pid is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("redis-server ignored SIGTERM; killing it")
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_SECONDS)
