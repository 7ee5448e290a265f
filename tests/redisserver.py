"""Private Redis servers for the tests, on free loopback ports.

Each server is Debian's `redis-server` (scripts/ensure-test-tools installs
it), bound to 127.0.0.1, keeping nothing on disk. A test can kill it as a
crash would, start it again on the same port, or freeze and thaw it.
"""

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def redis_server_binary() -> str:
    """The redis-server program; a missing one fails the test that needs it."""
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "redis-server is not installed: run scripts/ensure-test-tools "
            "(as root) or apt-get install redis-server"
        )
    return found


class RedisServer:
    """One redis-server process we started, and the port it keeps."""

    def __init__(self, directory: Path, password: str = ""):
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.log_path = directory / "redis.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        """Start it (again, after kill()) on the same port; wait until it answers."""
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
        )
        self._wait_until_answering()
        return self

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start:\n{self.log()}")
            if self.answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer in {START_TIMEOUT} s")

    def answers(self, timeout: float = 0.5) -> bool:
        """Whether it answers a PING now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout) as conn:
                if self.password:
                    conn.sendall(f"AUTH {self.password}\r\n".encode())
                    if not conn.recv(16).startswith(b"+OK"):
                        return False
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL it, as a crash would; the port stays ours for start()."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open, nothing is answered."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def log(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")
