"""How botmon runs in production: gevent workers, each holding a live hub.

Every listener of a worker hears the snapshots that worker's hub is given. On
its own a worker's hub hears only that worker's pushes, so without a shared
backplane more than one worker would split the listeners into groups that miss
each other's updates, and that setting is refused. With BOTMON_REDIS_URL set,
each worker runs the backplane (botmon/backplane.py) and any worker count is
allowed.
"""

import gc
import logging
import os
import re
import resource
import sys

from gunicorn.glogging import Logger

bind = os.environ.get("BOTMON_BIND", "127.0.0.1:8000")
worker_class = "gevent"
# gunicorn reads WEB_CONCURRENCY (set by some hosts) only when this file sets
# no worker count; read it here too, so that asking for more without a
# backplane is refused below rather than ignored. BOTMON_WORKERS overrides it.
workers = int(
    os.environ.get("BOTMON_WORKERS") or os.environ.get("WEB_CONCURRENCY") or "1"
)
# Each WebSocket listener holds one connection for as long as it listens;
# gunicorn's default of 1000 would turn away the 1001st screen.
worker_connections = int(os.environ.get("BOTMON_WORKER_CONNECTIONS", "16000"))
timeout = 60
graceful_timeout = 15
keepalive = 5
accesslog = os.environ.get("BOTMON_ACCESS_LOG", "-") or None


class RedactingLogger(Logger):
    """The access log, without the read token a browser or listener put in a URL."""

    _TOKEN = re.compile(r"((?:^|[?&])token=)[^&\s]*")

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in ("r", "q", "f"):
            if "token=" in (atoms.get(name) or ""):
                atoms[name] = self._TOKEN.sub(r"\1[redacted]", atoms[name])
        return atoms


logger_class = RedactingLogger
errorlog = "-"
loglevel = os.environ.get("BOTMON_LOG_LEVEL", "info")
# The control socket lives at one fixed path per user; botmon does not use it,
# and two instances on one machine would fight over it.
control_socket_disable = True

logging.basicConfig(
    level=loglevel.upper(),
    format="[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s",
    stream=sys.stderr,
)
# Alembic lists every plugin it loads when it is imported, in every worker.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

STOP_POLL_SECONDS = 0.2
GC_YOUNG_THRESHOLD = 50_000
ONE_WORKER = (
    "botmon keeps its listeners in one process unless workers share a "
    "backplane: set BOTMON_REDIS_URL to run several workers, or run one "
    "(BOTMON_WORKERS=1, no -w/--workers or WEB_CONCURRENCY above 1)"
)


def _has_backplane() -> bool:
    return bool(os.environ.get("BOTMON_REDIS_URL", "").strip())


def on_starting(server) -> None:
    """Refuse settings that would split listeners, and raise the file limit."""
    from gunicorn.workers.ggevent import GeventWorker

    if server.cfg.workers != 1 and not _has_backplane():
        server.log.error(ONE_WORKER)
        sys.exit(1)
    if server.worker_class is not GeventWorker:
        server.log.error("botmon needs gunicorn's gevent worker (-k gevent)")
        sys.exit(1)

    _raise_open_file_limit(server, server.cfg.worker_connections + 256)


def _raise_open_file_limit(server, wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        server.log.warning(
            "open file limit %d is below worker_connections; raise it "
            "(ulimit -n) to serve that many listeners",
            target,
        )


def nworkers_changed(server, new_value: int, old_value: int | None) -> None:
    """Without a backplane, stay at one worker when asked for more (SIGTTIN)."""
    if old_value is not None and new_value > 1 and not _has_backplane():
        server.log.error("%s; staying at one worker", ONE_WORKER)
        server.num_workers = 1


def post_worker_init(worker) -> None:
    """Tune the collector, close WebSockets with 1001 on stop, start the rest."""
    import gevent

    _tune_garbage_collector()
    hub = worker.wsgi.extensions["botmon"].hub

    def close_hub_when_stopping() -> None:
        while worker.alive:
            gevent.sleep(STOP_POLL_SECONDS)
        hub.close()

    gevent.spawn(close_hub_when_stopping)

    # Alerts to a webhook, when BOTMON_ALERT_WEBHOOK_URL is set (docs/alerts.md).
    from botmon import alerts

    alerts.start(worker.wsgi, lambda: worker.alive)

    # The Redis backplane, when BOTMON_REDIS_URL is set (botmon/backplane.py).
    # Imported only then: redis-py alone adds about 7 MiB to a worker.
    if _has_backplane():
        from botmon import backplane

        backplane.start(worker.wsgi)


def _tune_garbage_collector() -> None:
    # A fan-out to thousands of listeners allocates a wake-up and a timer per
    # listener. With the default thresholds those short-lived objects trigger
    # collections that walk every listener's long-lived objects, which cost
    # more than the fan-out itself. Rarer young collections let them die
    # first; freezing moves the app's own start-up objects out of every pass.
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 20)


def worker_exit(server, worker) -> None:
    """Release the alerts lease and close this worker's Redis connections."""
    from botmon import alerts

    app = getattr(worker, "wsgi", None)
    if app is None:
        return
    # The lease first: another process can then send alerts at once.
    alerts.stop(app)
    backplane = app.extensions["botmon"].backplane
    if backplane is not None:
        backplane.stop()


def worker_int(worker) -> None:
    """On a quick stop (SIGINT, SIGQUIT), still close the WebSockets with 1001."""
    # gunicorn lets the worker run for a tenth of a second after this hook,
    # which is when the listeners send their close frames.
    worker.wsgi.extensions["botmon"].hub.close()
