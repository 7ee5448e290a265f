"""Start and stop the two servers under test, each as its own process group.

Both run on the server core, bind 127.0.0.1 only, and are stopped by the PID
this module started, never by name.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import procfs
from .payloads import API_KEY

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
WS_PATH = "/ws/bot/metrics/"
POST_PATH = "/api/bot/metrics/"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server process the bench started, and how to reach it."""

    name = ""

    def __init__(self, workdir: Path, pin: bool):
        self.workdir = workdir / self.name
        self.port = free_port()
        self.pin = pin
        self.process: subprocess.Popen | None = None
        self.log_path = self.workdir / "server.log"
        # Whether a snapshot exists, so new listeners are greeted with it.
        self.has_latest = False
        self.seq = 0

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def post_url(self) -> str:
        return f"http://{self.host}:{self.port}{POST_PATH}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{WS_PATH}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {**os.environ, "BOT_API_KEY": API_KEY}

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        pin = (lambda: procfs.pin_to(procfs.SERVER_CORE)) if self.pin else None
        with open(self.log_path, "ab") as server_log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.environment(),
                stdout=server_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=pin,
            )
        self._wait_until_ready()
        log.info(
            "%s listening on 127.0.0.1:%d, pids %s", self.name, self.port, self.pids()
        )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        probe_url = f"http://{self.host}:{self.port}{WS_PATH}"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited at start; its log says:\n{self.log_text()}"
                )
            try:
                # A plain GET of the WebSocket path answers 400 once the app is
                # loaded, which is all readiness means here.
                urllib.request.urlopen(probe_url, timeout=1).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{self.name} did not answer within {START_TIMEOUT_SECONDS:g} s; "
            f"see {self.log_path}"
        )

    def pids(self) -> list[int]:
        if self.process is None or self.process.poll() is not None:
            return []
        return procfs.process_tree(self.process.pid)

    def worker_pid(self) -> int | None:
        pids = self.pids()
        return pids[-1] if pids else None

    def stop(self) -> None:
        """SIGTERM the process we started, then SIGKILL its group if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("%s ignored SIGTERM; killing its process group", self.name)
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-4000:]


class BotmonServer(Server):
    """botmon as production runs it: gunicorn, one gevent worker, SQLite."""

    name = "botmon"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            "BOTMON_INSTANCE_PATH": str(self.workdir / "instance"),
            "BOTMON_BIND": f"127.0.0.1:{self.port}",
            # The access log would measure the terminal, not botmon; the tests
            # turn it off the same way.
            "BOTMON_ACCESS_LOG": "",
        }


class ReferenceServer(Server):
    """The minimal asyncio broadcast server in bench/reference_server.py."""

    name = "reference"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.reference_server",
            "--port",
            str(self.port),
        ]
