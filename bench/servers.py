"""Start and stop the servers under test, each as its own process group.

All run on the server core, bind 127.0.0.1 only, and are stopped by the PID
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
from .redis_process import RedisProcess

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

    def pin_to_server_core(self) -> None:
        if self.pin:
            procfs.pin_to(procfs.SERVER_CORE)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as server_log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.environment(),
                stdout=server_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=self.pin_to_server_core,
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

    def worker_pids(self) -> list[int]:
        """The processes that hold listeners."""
        return self.pids()

    def roles(self) -> dict[int, str]:
        """What each of the server's processes is, for per-process figures."""
        return {pid: "server" for pid in self.pids()}

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
    workers = 1

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]

    def environment(self) -> dict[str, str]:
        inherited = super().environment()
        # A backplane set in the caller's shell must not reach the one-worker
        # botmon, nor a stray worker count.
        for name in ("BOTMON_REDIS_URL", "WEB_CONCURRENCY"):
            inherited.pop(name, None)
        return {
            **inherited,
            "BOTMON_INSTANCE_PATH": str(self.workdir / "instance"),
            "BOTMON_BIND": f"127.0.0.1:{self.port}",
            "BOTMON_WORKERS": str(self.workers),
            # The access log would measure the terminal, not botmon; the tests
            # turn it off the same way.
            "BOTMON_ACCESS_LOG": "",
        }

    def worker_pids(self) -> list[int]:
        # gunicorn's master holds no connection; it only watches the workers.
        return self.pids()[1:]

    def roles(self) -> dict[int, str]:
        pids = self.pids()
        workers = {pid: f"worker {n}" for n, pid in enumerate(self.worker_pids(), 1)}
        return {pids[0]: "master", **workers} if pids else {}


class ScaledBotmonServer(BotmonServer):
    """botmon with two gevent workers sharing snapshots through Redis.

    Both workers share one SQLite file, and a private redis-server carries
    the snapshots between them. The redis-server runs on the server core too,
    and counts as part of the server: its CPU and memory are in the figures.
    """

    name = "botmon-redis"
    workers = 2
    channel = "botmon:bench"

    def __init__(self, workdir: Path, pin: bool):
        super().__init__(workdir, pin)
        self.redis = RedisProcess(self.workdir / "redis", free_port())

    def environment(self) -> dict[str, str]:
        return {
            **super().environment(),
            "BOTMON_REDIS_URL": self.redis.url,
            "BOTMON_REDIS_CHANNEL": self.channel,
        }

    def start(self) -> None:
        self.redis.start(self.pin_to_server_core)
        try:
            super().start()
            self._wait_for_subscribers()
        except BaseException:
            self.stop()
            raise

    def _wait_for_subscribers(self) -> None:
        """Wait until every worker listens on the channel: only then do all hear."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.redis.subscribers(self.channel) >= self.workers:
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.name}: not all {self.workers} workers subscribed to Redis "
            f"within {START_TIMEOUT_SECONDS:g} s; see {self.log_path}"
        )

    def pids(self) -> list[int]:
        gunicorn = super().pids()
        return gunicorn + [self.redis.pid] if gunicorn and self.redis.pid else gunicorn

    def worker_pids(self) -> list[int]:
        return [pid for pid in super().worker_pids() if pid != self.redis.pid]

    def roles(self) -> dict[int, str]:
        roles = super().roles()
        if roles and self.redis.pid:
            roles[self.redis.pid] = "redis-server"
        return roles

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.redis.stop()


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
