"""Durability: a crash loses nothing that was acknowledged, a stop finishes POSTs.

A 201 promises that the snapshot is committed. These tests hold botmon to it
when the whole server is killed with SIGKILL in the middle of a stream of
concurrent pushes, several times over the same database file, and when it is
told to stop while several pushes are still arriving.
"""

import itertools
import json
import signal
import threading
import time

import requests
from conftest import API_KEY, read_database, scaled, wait_for
from test_websocket import finish_post, make_payload, start_post

ROUNDS = scaled(3, 8)
POSTERS = scaled(4, 8)
# Acknowledged pushes to wait for in a round before the kill, so the kill
# lands in a stream that is flowing, and the longest a round may take.
ACKS_BEFORE_KILL = scaled(20, 200)
ROUND_DEADLINE = 20.0


class Posters:
    """Threads pushing numbered snapshots until the server stops answering.

    Every 201 is remembered as (snapshot id, number). A push whose answer was
    lost in the crash proves nothing either way and is not remembered.
    """

    def __init__(self, server, numbers: itertools.count, count: int):
        self.server = server
        self.numbers = numbers
        self.acknowledged: list[tuple[int, int]] = []
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._post, daemon=True) for _ in range(count)
        ]

    def __enter__(self) -> "Posters":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=ROUND_DEADLINE)
        assert not any(thread.is_alive() for thread in self._threads)

    def _post(self) -> None:
        url = self.server.url + "/api/bot/metrics/"
        headers = {"Authorization": f"Bearer {API_KEY}"}
        deadline = time.monotonic() + ROUND_DEADLINE
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    number = next(self.numbers)
                try:
                    answer = session.post(
                        url, json=make_payload(number, servers=3), headers=headers
                    )
                except requests.RequestException:
                    return
                with self._lock:
                    if answer.status_code == 201:
                        self.acknowledged.append((answer.json()["id"], number))
                    else:
                        self.failures.append(f"{answer.status_code} {answer.text}")

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)


def test_sigkill_mid_stream_loses_no_acknowledged_snapshot(server):
    numbers = itertools.count(1)
    acknowledged: dict[int, int] = {}

    for round_number in range(1, ROUNDS + 1):
        with Posters(server, numbers, POSTERS) as posters:
            wait_for(
                lambda: posters.count() >= ACKS_BEFORE_KILL,
                ROUND_DEADLINE,
                f"{ACKS_BEFORE_KILL} acknowledged pushes in round {round_number}",
            )
            server.kill()
        assert posters.failures == []
        acknowledged.update(posters.acknowledged)

        server.start()

        rows = dict(
            read_database(
                server.database_path,
                "SELECT id, json_extract(resumen_json, '$.eventos_procesados_hoy') "
                "FROM snapshots",
            )
        )
        lost = {i: n for i, n in acknowledged.items() if rows.get(i) != n}
        assert lost == {}, f"round {round_number}: acknowledged but lost: {lost}"
        assert read_database(server.database_path, "PRAGMA integrity_check") == [
            ("ok",)
        ]

        # The API answers the newest stored snapshot, which is the last one
        # acknowledged or one committed whose answer the crash swallowed.
        newest_id = max(rows)
        assert newest_id >= max(acknowledged)
        newest = make_payload(rows[newest_id], servers=3)
        assert server.get("/api/bot/resumen/").json() == newest["resumen"]
        estado = server.get("/api/bot/estado/").json()
        assert {key: estado[key] for key in newest["estado"]} == newest["estado"]
        assert server.get("/api/bot/servers/").json() == newest["servers"]


def test_sigterm_finishes_every_post_in_flight(server):
    in_flight = scaled(4, 16)
    bodies = [
        json.dumps(make_payload(seq, servers=5000)).encode()
        for seq in range(1, in_flight + 1)
    ]

    # Every POST has sent half its body: the worker is reading all of them.
    posters = [start_post(server, body, 0.5) for body in bodies]
    assert server.get("/api/health/").status_code == 200
    server.process.send_signal(signal.SIGTERM)
    answers = [
        finish_post(poster, body, 0.5)
        for poster, body in zip(posters, bodies, strict=True)
    ]
    assert server.process.wait(timeout=30) == 0

    assert all(answer.startswith(b"HTTP/1.1 201") for answer in answers), [
        answer[:100] for answer in answers
    ]
    stored = read_database(
        server.database_path,
        "SELECT json_extract(resumen_json, '$.eventos_procesados_hoy') "
        "FROM snapshots ORDER BY 1",
    )
    assert stored == [(seq,) for seq in range(1, in_flight + 1)]
