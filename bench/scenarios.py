"""The scenarios, each run the same way against botmon and the reference.

A scenario gets the server, the plan and a Meter; it opens the meter around
the part it measures (not the connecting and closing around it) and returns
its figures. Every loop is bounded by a count and by a time.
"""

import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import client, procfs
from .measure import Meter, PeakRss, mib, ms, percentile
from .payloads import Payload
from .plan import FanOut, Plan
from .servers import WS_PATH, Server

log = logging.getLogger(__name__)

GREETING_TIMEOUT_SECONDS = 60.0
IDLE_SETTLE_SECONDS = 1.0
INGEST_DRAIN_SECONDS = 10.0
SMALL = Payload(1)

Run = Callable[[Server, Plan, Meter], Awaitable[dict]]


@dataclass(frozen=True)
class Figure:
    """One figure of a scenario as the table shows it."""

    key: str
    label: str
    # Which way is better decides nothing here; it only explains the ratio.
    higher_is_better: bool = False


# The servers most scenarios compare: botmon as production runs it by
# default, and the reference.
PAIR = ("botmon", "reference")


@dataclass(frozen=True)
class Scenario:
    id: str
    title: Callable[[Plan], str]
    run: Run
    figures: tuple[Figure, ...]
    servers: tuple[str, ...] = PAIR


LATENCY = (
    Figure("p50_ms", "p50 ms"),
    Figure("p99_ms", "p99 ms"),
    Figure("max_ms", "max ms"),
    Figure("missed", "missed messages"),
    # The client's share is a floor under both servers' latencies: one core
    # has to read every listener's copy before the last one counts as arrived.
    Figure("server_cpu_ms_per_post", "server CPU ms per POST"),
    Figure("client_cpu_ms_per_post", "client CPU ms per POST"),
)


async def _connect(server: Server, shape_listeners: int, compress: int = 0):
    tally = client.Tally()
    pool = client.ListenerPool(server.ws_url, tally, compress)
    await pool.open(shape_listeners)
    if server.has_latest:
        await pool.wait_greeted(GREETING_TIMEOUT_SECONDS)
    return tally, pool


async def fan_out(
    server: Server,
    plan: Plan,
    meter: Meter,
    shape: FanOut,
    payload: Payload = SMALL,
    compress: int = 0,
    stalled: int = 0,
) -> dict:
    """POST one snapshot at a time; time it from send to the last listener."""
    tally, pool = await _connect(server, shape.listeners, compress)
    peers = []
    try:
        if stalled:
            peers = await client.open_stalled(
                server.host, server.port, WS_PATH, stalled
            )
        figures = await _post_one_at_a_time(
            server, plan, meter, shape, tally, len(pool.sockets), payload
        )
    finally:
        for peer in peers:
            peer.close()
        await pool.close()

    return {
        "listeners": len(pool.sockets),
        "connect_failed": pool.failed,
        "stalled_listeners": len(peers),
        "deflate_negotiated": pool.negotiated_compression,
        **figures,
    }


async def _post_one_at_a_time(
    server: Server,
    plan: Plan,
    meter: Meter,
    shape: FanOut,
    tally: client.Tally,
    connected: int,
    payload: Payload = SMALL,
) -> dict:
    """The measured part of a fan-out: POSTs in turn, each awaited by everyone."""
    tally.expected = connected
    latencies: list[float] = []
    missed = errors = posts = 0
    log.info("%d listeners connected; posting", connected)
    async with client.poster_session(1) as session, PeakRss(server.pids()) as rss:
        meter.start()
        deadline = time.monotonic() + shape.seconds
        while posts < shape.posts and time.monotonic() < deadline:
            posts += 1
            seq = server.next_seq()
            started = time.perf_counter()
            status = await client.post(session, server.post_url, payload.body(seq))
            if status != 201:
                errors += 1
                continue
            server.has_latest = True
            got = await tally.wait_for_all(seq, plan.delivery_timeout)
            missed += connected - got
            if got == connected:
                latencies.append(tally.last_at[seq] - started)
        meter.stop()

    return {
        "posts": posts,
        "post_errors": errors,
        "missed": missed,
        "p50_ms": ms(percentile(latencies, 0.50)),
        "p99_ms": ms(percentile(latencies, 0.99)),
        "max_ms": ms(max(latencies, default=None)),
        "rss_peak_mib": mib(rss.peak),
        "body_kib": round(payload.size / 1024, 1),
        **_per_post(meter, posts),
    }


async def scale_out(server: Server, plan: Plan, meter: Meter) -> dict:
    """Fan-out to listeners spread over the server's processes, and their split.

    Which worker takes a connection is the kernel's choice; the split is read
    back from /proc, so the figures say how many listeners each process held
    rather than assuming an even share.
    """
    shape = plan.scaleout
    before = procfs.rss_bytes(server.pids())
    tally, pool = await _connect(server, shape.listeners)
    try:
        await asyncio.sleep(IDLE_SETTLE_SECONDS)
        after = procfs.rss_bytes(server.pids())
        split = procfs.established_by_process(server.port, server.worker_pids())
        log.info("listeners per process: %s", split)
        roles = server.roles()
        cpu_before = {pid: procfs.cpu_seconds([pid]) for pid in roles}
        figures = await _post_one_at_a_time(
            server, plan, meter, shape, tally, len(pool.sockets)
        )
        cpu_spent = {
            role: procfs.cpu_seconds([pid]) - cpu_before[pid]
            for pid, role in roles.items()
        }
    finally:
        await pool.close()

    connected = len(pool.sockets)
    held = sorted(split.values(), reverse=True)
    return {
        "listeners": connected,
        "connect_failed": pool.failed,
        "processes": len(split),
        "listeners_by_pid": {str(pid): count for pid, count in split.items()},
        "listeners_split": " / ".join(f"{count:,}" for count in held),
        "busiest_share": round(held[0] / connected, 3) if connected else None,
        "kib_per_listener": round((after - before) / max(connected, 1) / 1024, 1),
        # Where the server's CPU went: the workers, and Redis when it is used.
        "cpu_ms_per_post_by_process": {
            role: round(spent * 1000 / max(figures["posts"], 1), 2)
            for role, spent in cpu_spent.items()
        },
        **figures,
    }


def _per_post(meter: Meter, posts: int) -> dict:
    spent = meter.figures
    return {
        f"{side}_cpu_ms_per_post": round(spent[f"{side}_cpu_s"] * 1000 / posts, 2)
        if posts
        else None
        for side in ("server", "client")
    }


async def idle_memory(server: Server, plan: Plan, meter: Meter) -> dict:
    """Resident memory added by idle listeners, per listener."""
    before = procfs.rss_bytes(server.pids())
    meter.start()
    _tally, pool = await _connect(server, plan.idle_listeners)
    meter.stop()
    try:
        await asyncio.sleep(IDLE_SETTLE_SECONDS)
        after = procfs.rss_bytes(server.pids())
    finally:
        await pool.close()
    connected = len(pool.sockets)
    return {
        "listeners": connected,
        "connect_failed": pool.failed,
        "rss_before_mib": mib(before),
        "rss_after_mib": mib(after),
        "kib_per_listener": round((after - before) / max(connected, 1) / 1024, 1),
        "connects_per_s": round(connected / meter.figures["wall_s"], 1),
    }


async def ingest(server: Server, plan: Plan, meter: Meter, listeners: int) -> dict:
    """POSTs per second from several keep-alive connections at once."""
    tally, pool = await _connect(server, listeners)
    accepted = errors = 0
    budget = plan.ingest_posts
    deadline = time.monotonic() + plan.ingest_seconds
    try:
        async with client.poster_session(plan.ingest_posters) as session:

            async def poster() -> None:
                nonlocal accepted, errors, budget
                while budget > 0 and time.monotonic() < deadline:
                    budget -= 1
                    body = SMALL.body(server.next_seq())
                    if await client.post(session, server.post_url, body) == 201:
                        accepted += 1
                    else:
                        errors += 1

            meter.start()
            await asyncio.gather(*(poster() for _ in range(plan.ingest_posters)))
            meter.stop()
        server.has_latest = True
        # Listeners may skip snapshots they could not keep up with; let the
        # last ones arrive before counting what each heard.
        await asyncio.sleep(min(INGEST_DRAIN_SECONDS, 0.5 + listeners / 2000))
    finally:
        await pool.close()

    connected = len(pool.sockets)
    heard = sum(tally.counts.values())
    return {
        "posters": plan.ingest_posters,
        "listeners": connected,
        "connect_failed": pool.failed,
        "posts": accepted,
        "post_errors": errors,
        "posts_per_s": round(accepted / meter.figures["wall_s"], 1),
        "heard_per_listener": round(heard / connected, 1) if connected else None,
    }


async def big_post(server: Server, plan: Plan, meter: Meter) -> dict:
    """The time of one POST carrying many servers, with nobody listening."""
    payload = Payload(plan.big_servers)
    times: list[float] = []
    errors = 0
    async with client.poster_session(1) as session:
        meter.start()
        for _ in range(plan.big_posts):
            started = time.perf_counter()
            status = await client.post(
                session, server.post_url, payload.body(server.next_seq())
            )
            if status == 201:
                times.append(time.perf_counter() - started)
            else:
                errors += 1
        meter.stop()
    server.has_latest = True
    return {
        "servers": plan.big_servers,
        "body_kib": round(payload.size / 1024, 1),
        "posts": len(times),
        "post_errors": errors,
        "median_ms": ms(statistics.median(times)) if times else None,
        "max_ms": ms(max(times, default=None)),
    }


def _big(plan: Plan) -> Payload:
    return Payload(plan.big_servers)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "idle-memory",
        lambda p: f"memory, {p.idle_listeners:,} idle listeners",
        idle_memory,
        (
            Figure("kib_per_listener", "KiB per listener"),
            Figure("rss_after_mib", "server RSS MiB after"),
            Figure("connects_per_s", "connects/s", True),
        ),
    ),
    Scenario(
        "fanout-small",
        lambda p: f"fan-out, {p.fanout_small.listeners:,} listeners",
        lambda s, p, m: fan_out(s, p, m, p.fanout_small),
        LATENCY,
    ),
    Scenario(
        "fanout-medium",
        lambda p: f"fan-out, {p.fanout_medium.listeners:,} listeners",
        lambda s, p, m: fan_out(s, p, m, p.fanout_medium),
        LATENCY,
    ),
    Scenario(
        "fanout-deflate",
        lambda p: f"fan-out, {p.deflate.listeners:,} listeners offering deflate",
        lambda s, p, m: fan_out(s, p, m, p.deflate, compress=15),
        (*LATENCY, Figure("deflate_negotiated", "listeners with deflate")),
    ),
    Scenario(
        "ingest-quiet",
        lambda p: f"ingest, {p.ingest_posters} posters, no listeners",
        lambda s, p, m: ingest(s, p, m, 0),
        (Figure("posts_per_s", "POSTs/s", True), Figure("post_errors", "errors")),
    ),
    Scenario(
        "ingest-listened",
        lambda p: (
            f"ingest, {p.ingest_posters} posters, {p.ingest_listeners:,} listeners"
        ),
        lambda s, p, m: ingest(s, p, m, p.ingest_listeners),
        (
            Figure("posts_per_s", "POSTs/s", True),
            Figure("post_errors", "errors"),
            Figure("heard_per_listener", "messages per listener", True),
        ),
    ),
    Scenario(
        "big-post",
        lambda p: f"one POST of {p.big_servers:,} servers",
        big_post,
        (Figure("median_ms", "median ms"), Figure("max_ms", "max ms")),
    ),
    Scenario(
        "big-fanout",
        lambda p: (
            f"fan-out of {p.big_servers:,} servers, "
            f"{p.big_fanout.listeners:,} listeners"
        ),
        lambda s, p, m: fan_out(s, p, m, p.big_fanout, _big(p)),
        (*LATENCY, Figure("rss_peak_mib", "server RSS peak MiB")),
    ),
    Scenario(
        "big-fanout-stalled",
        lambda p: f"same, plus {p.stalled_listeners:,} listeners that never read",
        lambda s, p, m: fan_out(
            s, p, m, p.big_fanout, _big(p), stalled=p.stalled_listeners
        ),
        (*LATENCY, Figure("rss_peak_mib", "server RSS peak MiB")),
    ),
    Scenario(
        "fanout-large",
        lambda p: f"fan-out, {p.fanout_large.listeners:,} listeners",
        lambda s, p, m: fan_out(s, p, m, p.fanout_large),
        LATENCY,
    ),
    Scenario(
        "scaleout",
        lambda p: f"scale-out, {p.scaleout.listeners:,} listeners over the workers",
        scale_out,
        (
            *LATENCY,
            Figure("listeners_split", "listeners per worker"),
            Figure("kib_per_listener", "KiB per idle listener"),
            Figure("rss_peak_mib", "server RSS peak MiB"),
        ),
        ("botmon", "botmon-redis", "reference"),
    ),
)
