"""One bench run: start the servers, run every scenario on its servers, stop them."""

import json
import logging
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from . import client, procfs
from .measure import Meter
from .plan import Plan
from .scenarios import SCENARIOS, SMALL, Scenario
from .servers import BotmonServer, ReferenceServer, ScaledBotmonServer, Server

log = logging.getLogger(__name__)

# In the order their columns appear; a server is started only when a chosen
# scenario runs on it, so the scaled-out botmon costs nothing to other runs.
SERVERS = {
    "botmon": BotmonServer,
    "botmon-redis": ScaledBotmonServer,
    "reference": ReferenceServer,
}
PACKAGES = (
    "flask",
    "flask-sock",
    "simple-websocket",
    "gunicorn",
    "gevent",
    "greenlet",
    "sqlalchemy",
    "marshmallow",
    "aiohttp",
)


def machine() -> dict:
    """What the figures were measured on."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "nproc": os.cpu_count(),
        "cpu": procfs.cpu_model(),
        "python": platform.python_version(),
        "packages": versions,
        "load_average": procfs.load_average(),
    }


async def post_small(server: Server) -> None:
    """Make a small snapshot the newest one.

    Listeners that connect next are greeted with it: a few hundred bytes each
    rather than the last 1.3 MB payload, which at 10,000 listeners would cost
    more than the scenario itself.
    """
    async with client.poster_session(1) as session:
        status = await client.post(session, server.post_url, SMALL.body(0))
    if status != 201:
        raise RuntimeError(
            f"{server.name} refused a small POST with {status}; see {server.log_path}"
        )
    server.has_latest = True


async def warm_up(server: Server) -> None:
    """One POST and one listener, so imports and first-use costs are paid."""
    await post_small(server)
    pool = client.ListenerPool(server.ws_url, client.Tally())
    await pool.open(1)
    await pool.wait_greeted(10)
    await pool.close()


async def run_scenario(scenario: Scenario, server: Server, plan: Plan) -> dict:
    meter = Meter(server.pids())
    started = time.monotonic()
    figures = await scenario.run(server, plan, meter)
    if server.process.poll() is not None:
        raise RuntimeError(
            f"{server.name} exited during {scenario.id}; its log ends:\n"
            f"{server.log_text()}"
        )
    await post_small(server)
    return {
        "kind": "result",
        "server": server.name,
        "scenario": scenario.id,
        "title": scenario.title(plan),
        **figures,
        **meter.figures,
        "scenario_s": round(time.monotonic() - started, 1),
    }


def _pinning(wanted: bool) -> bool:
    """Pin this client to its core if asked and possible; say whether it is."""
    if not wanted:
        log.warning("not pinned: servers and client run on any core")
        return False
    if not procfs.can_pin():
        log.warning("fewer than two cores: server and client share them")
        return False
    procfs.pin_to(procfs.CLIENT_CORE)
    return True


async def run(
    plan: Plan,
    results_dir: Path,
    only: set[str],
    servers: list[str],
    pin: bool = True,
) -> tuple[dict, Path]:
    """Run the chosen scenarios on the chosen servers; return rows and file."""
    pin = _pinning(pin)
    open_files = procfs.raise_open_file_limit()
    log.info("open file limit %d, pinned %s", open_files, pin)

    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_path = results_dir / f"{stamp}-{plan.mode}.jsonl"
    chosen = [s for s in SCENARIOS if not only or s.id in only]
    needed = [
        name
        for name in SERVERS
        if name in servers and any(name in s.servers for s in chosen)
    ]
    rows: dict[tuple[str, str], dict] = {}

    with tempfile.TemporaryDirectory(prefix="botmon-bench-") as workdir:
        started = []
        try:
            for name in needed:
                started.append(SERVERS[name](Path(workdir), pin))
                started[-1].start()
                await warm_up(started[-1])
            with open(out_path, "w", encoding="utf-8") as out:
                header = {
                    "kind": "run",
                    "mode": plan.mode,
                    "at": stamp,
                    "pinned": pin,
                    **machine(),
                }
                out.write(json.dumps(header) + "\n")
                for scenario in chosen:
                    for server in started:
                        if server.name not in scenario.servers:
                            continue
                        log.info("%s: %s ...", server.name, scenario.title(plan))
                        row = await run_scenario(scenario, server, plan)
                        rows[(server.name, scenario.id)] = row
                        out.write(json.dumps(row) + "\n")
                        out.flush()
                        log.info(
                            "%s: %s done in %.1f s",
                            server.name,
                            scenario.id,
                            row["scenario_s"],
                        )
        finally:
            for server in started:
                server.stop()
    return rows, out_path
