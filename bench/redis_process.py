"""A private redis-server for the bench's scaled-out botmon.

It binds 127.0.0.1 on a free port, keeps nothing on disk, runs on the same
core as the server it serves, and is stopped by the PID this module started.
"""

import logging
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 5.0
ANSWER_TIMEOUT_SECONDS = 1.0


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "redis-server is not installed, and the scaled-out botmon needs one: "
            "install Debian's redis-server (apt-get install redis-server, or "
            "scripts/ensure-test-tools as root)"
        )
    return found


class RedisProcess:
    """One redis-server the bench started, on a port of its own."""

    def __init__(self, directory: Path, port: int):
        self.directory = directory
        self.port = port
        self.log_path = directory / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    def start(self, preexec: Callable[[], None] | None) -> None:
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
            try:
                if self.command("PING") == b"+PONG":
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"redis-server did not answer within {START_TIMEOUT_SECONDS:g} s; "
            f"see {self.log_path}"
        )

    def subscribers(self, channel: str) -> int:
        """How many connections are subscribed to `channel` now."""
        # The answer is an array of the channel's name and its count; the
        # count is the last integer reply in it.
        answer = self.command("PUBSUB", "NUMSUB", channel)
        return int(answer.rsplit(b":", 1)[1])

    def command(self, *words: str) -> bytes:
        """Send one command; return its reply without the final line break."""
        request = f"*{len(words)}\r\n" + "".join(
            f"${len(word.encode())}\r\n{word}\r\n" for word in words
        )
        address = ("127.0.0.1", self.port)
        with socket.create_connection(address, ANSWER_TIMEOUT_SECONDS) as conn:
            conn.sendall(request.encode())
            return conn.recv(4096).rstrip(b"\r\n")

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
