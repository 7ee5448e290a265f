"""Load: concurrent pushes, a thousand listeners, stalled and vanished peers.

These check behaviour under load (nothing lost, nothing refused, memory flat,
dead peers dropped); speed is the benchmark's business. Each test runs a short
variant by default and a larger one with BOTMON_LONG_TESTS=1. All traffic goes
to the server the test started on 127.0.0.1, and every loop is bounded.
"""

import asyncio
import json
import resource
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest
import requests
import websockets
from conftest import API_KEY, read_database, scaled
from test_websocket import (
    PROMPTLY,
    RawPeer,
    listen,
    make_payload,
    post_ok,
    receive_until,
    seq_of,
    wait_for_listeners,
)


@pytest.fixture(autouse=True, scope="module")
def many_open_files():
    """Raise this process's open-file limit to the hard limit for the test."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# Concurrent pushes.


def test_concurrent_posters_get_201_and_lose_no_write(server):
    posters, seconds = scaled(8, 16), scaled(3.0, 20.0)
    statuses: list[list[int]] = [[] for _ in range(posters)]
    ids: list[list[int]] = [[] for _ in range(posters)]
    deadline = time.monotonic() + seconds

    def post(index: int) -> None:
        url = server.url + "/api/bot/metrics/"
        headers = {"Authorization": f"Bearer {API_KEY}"}
        # Bounded by count as well as by time.
        with requests.Session() as session:
            for number in range(100_000):
                if time.monotonic() >= deadline:
                    return
                answer = session.post(
                    url,
                    json=make_payload(index * 100_000 + number, servers=20),
                    headers=headers,
                    timeout=30,
                )
                statuses[index].append(answer.status_code)
                if answer.status_code == 201:
                    ids[index].append(answer.json()["id"])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(posters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)

    everything = [status for per_poster in statuses for status in per_poster]
    acknowledged = [snapshot_id for per_poster in ids for snapshot_id in per_poster]
    assert all(per_poster for per_poster in statuses), "a poster never got through"
    assert set(everything) == {201}, {s: everything.count(s) for s in set(everything)}
    assert len(set(acknowledged)) == len(acknowledged)
    stored = read_database(server.database_path, "SELECT id FROM snapshots")
    assert sorted(row[0] for row in stored) == sorted(acknowledged)
    assert "database is locked" not in server.log()


# A thousand listeners.


async def _listen_until(url: str, final: int, ready, deadline: float) -> list[int]:
    async with websockets.connect(
        url, compression=None, max_size=None, open_timeout=60, ping_interval=None
    ) as ws:
        ready()
        seen: list[int] = []
        while not seen or seen[-1] < final:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            seen.append(seq_of(await asyncio.wait_for(ws.recv(), remaining)))
        return seen


def run_listeners(url: str, count: int, final: int, deadline: float, connected):
    """Connect `count` listeners and read until snapshot `final`; their seqs."""

    async def main() -> list:
        # Connect in waves, as browsers opening at once would, without a
        # thousand handshakes landing in the same instant.
        gate = asyncio.Semaphore(100)

        async def one() -> list[int] | Exception:
            async with gate:
                pass
            try:
                return await _listen_until(url, final, connected, deadline)
            except Exception as error:  # reported per listener below
                return error

        return await asyncio.gather(*(one() for _ in range(count)))

    return asyncio.run(main())


def test_a_thousand_listeners_each_get_the_final_snapshot(server):
    count, final = scaled(1000, 5000), 30
    deadline = time.monotonic() + scaled(60.0, 180.0)
    connected = []
    results: list = []
    thread = threading.Thread(
        target=lambda: results.extend(
            run_listeners(
                server.ws_url, count, final, deadline, lambda: connected.append(1)
            )
        )
    )
    post_ok(server, make_payload(1))
    thread.start()

    # Pushes flow while listeners join, and after they all have.
    for seq in range(2, final // 2):
        post_ok(server, make_payload(seq, servers=50))
    wait_for_listeners(server, count, timeout=60)
    for seq in range(final // 2, final + 1):
        post_ok(server, make_payload(seq, servers=50))
    thread.join(timeout=max(1.0, deadline - time.monotonic() + 5))

    assert not thread.is_alive()
    errors = [result for result in results if isinstance(result, Exception)]
    assert errors == [], f"{len(errors)} listeners failed, first: {errors[:1]}"
    assert len(results) == count
    short = [seen for seen in results if not seen or seen[-1] != final]
    assert short == [], f"{len(short)} listeners missed snapshot {final}"
    assert all(seen == sorted(set(seen)) for seen in results), "order broken"


# Stalled listeners and large payloads: memory stays flat.


def rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_stalled_listeners_do_not_grow_memory_or_delay_others(start_server):
    stalled_count, posts = 100, scaled(24, 120)
    server = start_server({"BOTMON_WS_SEND_TIMEOUT_SECONDS": "600"})
    worker = server.worker_pid()
    payloads = [
        json.dumps(make_payload(seq, servers=5000)) for seq in range(1, posts + 1)
    ]
    assert len(payloads[0]) > 400_000

    stalled = [RawPeer(server) for _ in range(stalled_count)]
    try:
        with listen(server) as first, listen(server) as second:
            wait_for_listeners(server, stalled_count + 2)
            rss = []
            for seq, payload in enumerate(payloads, start=1):
                assert post_ok(server, payload) < PROMPTLY
                for ws in (first, second):
                    assert receive_until(ws, seq)[-1] == seq
                if seq in (posts // 3, posts):
                    rss.append(rss_bytes(worker))

            # Every stalled listener is still connected, still not reading.
            assert listener_total(server) == stalled_count + 2
    finally:
        for peer in stalled:
            peer.close()

    middle, end = rss
    # Flat: the last two thirds of the pushes add no memory per push (a
    # backlog would add 100 listeners x 500 KB = 50 MB per push).
    assert end - middle < 40 * 2**20, f"RSS grew {(end - middle) / 2**20:.0f} MiB"
    assert end < 400 * 2**20, f"RSS {end / 2**20:.0f} MiB (a third in: {middle})"


def listener_total(server) -> int:
    return server.get("/api/health/").json()["listeners"]


# Listeners that vanish without a close frame.

KILLED_CLIENT = """
import sys, time
from websockets.sync.client import connect
sockets = [connect(sys.argv[1], compression=None) for _ in range(int(sys.argv[2]))]
print("connected", flush=True)
time.sleep(60)
"""


def reset_peers(server, count: int) -> None:
    """Raw peers that leave with a TCP reset (SO_LINGER 0), never a close frame."""
    peers = [RawPeer(server, rcvbuf=1 << 16) for _ in range(count)]
    wait_for_listeners(server, count + 1)
    for peer in peers:
        peer.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
        peer.close()


def killed_process(server, count: int) -> None:
    """A client process holding `count` listeners, killed with SIGKILL."""
    client = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLIENT, server.ws_url, str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout.readline().strip() == "connected"
        wait_for_listeners(server, count + 1)
    finally:
        client.kill()
        client.wait(timeout=10)


@pytest.mark.parametrize("vanish", [reset_peers, killed_process], ids=["rst", "kill"])
def test_listeners_that_vanish_are_dropped_within_the_ping_window(start_server, vanish):
    interval = 0.5
    server = start_server({"BOTMON_WS_PING_INTERVAL_SECONDS": str(interval)})
    post_ok(server, make_payload(1))

    with listen(server) as healthy:
        assert seq_of(healthy.recv(timeout=PROMPTLY)) == 1
        vanish(server, scaled(50, 500))
        took = wait_for_listeners(server, 1, timeout=10)

        assert took < 2 * interval + 1.0, f"dropped after {took:.2f} s"
        post_ok(server, make_payload(2))
        assert receive_until(healthy, 2)[-1] == 2
