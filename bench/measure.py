"""Measuring tools: a CPU and wall-clock window, peak RSS, percentiles."""

import asyncio
import math
import os
import time

from . import procfs

RSS_SAMPLE_SECONDS = 0.2
# A client that is busy this share of the wall time cannot push any harder.
CLIENT_BOUND_SHARE = 0.85


class Meter:
    """CPU seconds of the server's processes and of this client, over a window."""

    def __init__(self, server_pids: list[int]):
        self._server_pids = server_pids
        self._started: tuple[float, float, float] | None = None
        self.figures: dict[str, float | bool] = {}

    def _read(self) -> tuple[float, float, float]:
        return (
            time.perf_counter(),
            procfs.cpu_seconds(self._server_pids),
            procfs.cpu_seconds([os.getpid()]),
        )

    def start(self) -> None:
        self._started = self._read()

    def stop(self) -> None:
        wall, server, client = (
            end - start for end, start in zip(self._read(), self._started, strict=True)
        )
        self.figures = {
            "wall_s": round(wall, 3),
            "server_cpu_s": round(server, 3),
            "client_cpu_s": round(client, 3),
            "client_bound": wall > 0 and client >= CLIENT_BOUND_SHARE * wall,
        }


class PeakRss:
    """Samples the server's resident memory while the block runs; keeps the peak."""

    def __init__(self, pids: list[int]):
        self._pids = pids
        self.peak = 0
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> "PeakRss":
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *_exc) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._take()

    def _take(self) -> None:
        self.peak = max(self.peak, procfs.rss_bytes(self._pids))

    async def _sample(self) -> None:
        while True:
            self._take()
            await asyncio.sleep(RSS_SAMPLE_SECONDS)


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile: a value that was actually measured."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def mib(size: int) -> float:
    return round(size / 2**20, 1)
