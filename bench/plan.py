"""How big each scenario is: the full run, and a quick one for the tests."""

from dataclasses import dataclass


@dataclass(frozen=True)
class FanOut:
    """Listeners, how many POSTs, and the time the POSTs may take in all."""

    listeners: int
    posts: int
    seconds: float


@dataclass(frozen=True)
class Plan:
    mode: str
    idle_listeners: int
    fanout_small: FanOut
    fanout_medium: FanOut
    fanout_large: FanOut
    deflate: FanOut
    ingest_posters: int
    ingest_posts: int
    ingest_seconds: float
    ingest_listeners: int
    big_servers: int
    big_posts: int
    big_fanout: FanOut
    stalled_listeners: int
    # Listeners spread over botmon's workers, compared with one worker.
    scaleout: FanOut
    # How long one POST may take to reach every listener before the ones that
    # have not got it are counted as having missed it.
    delivery_timeout: float


FULL = Plan(
    mode="full",
    idle_listeners=1000,
    fanout_small=FanOut(100, 200, 60),
    fanout_medium=FanOut(1000, 100, 90),
    fanout_large=FanOut(10_000, 100, 150),
    deflate=FanOut(100, 100, 60),
    ingest_posters=8,
    ingest_posts=30_000,
    ingest_seconds=10,
    ingest_listeners=1000,
    big_servers=10_000,
    big_posts=7,
    big_fanout=FanOut(100, 20, 60),
    stalled_listeners=100,
    scaleout=FanOut(10_000, 100, 150),
    delivery_timeout=15,
)

QUICK = Plan(
    mode="quick",
    idle_listeners=100,
    fanout_small=FanOut(20, 30, 3),
    fanout_medium=FanOut(100, 30, 3),
    fanout_large=FanOut(500, 10, 4),
    deflate=FanOut(20, 10, 3),
    ingest_posters=4,
    ingest_posts=400,
    ingest_seconds=2,
    ingest_listeners=50,
    big_servers=1000,
    big_posts=3,
    big_fanout=FanOut(10, 5, 3),
    stalled_listeners=10,
    scaleout=FanOut(400, 20, 5),
    delivery_timeout=10,
)
