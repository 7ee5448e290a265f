"""Private Redis servers for the tests, on free loopback ports.

The bench's redis-server process (Debian's `redis-server`, which
scripts/ensure-test-tools installs), with what the tests do to it: kill it as
a crash would, start it again on the same port, or freeze and thaw it.
"""

import signal
from pathlib import Path

from bench.redis_process import RedisProcess
from bench.servers import free_port


class RedisServer(RedisProcess):
    """One redis-server process we started, and the port it keeps."""

    def __init__(self, directory: Path, password: str = ""):
        super().__init__(directory, free_port(), password)

    def start(self) -> "RedisServer":
        super().start()
        return self

    def kill(self) -> None:
        """SIGKILL it, as a crash would; the port stays ours for start()."""
        if self.pid is not None:
            self.process.kill()
            self.process.wait(5)

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open, nothing is answered."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)
