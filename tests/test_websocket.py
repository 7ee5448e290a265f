"""The live stream at /ws/bot/metrics/, against botmon under gunicorn's gevent worker.

Healthy listeners are the `websockets` package's sync client. Misbehaving peers
(one that never reads, one that never answers pings) are bare sockets that do
the opening handshake and then only what the test tells them to.
"""

import base64
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import API_KEY, ROOT
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

WS_PATH = "/ws/bot/metrics/"
# Generous bounds: these tests check behaviour, the benchmark measures speed.
PROMPTLY = 5.0
SMALL_BUFFER = 4096
OP_TEXT, OP_PING = 0x1, 0x9


# Payloads ------------------------------------------------------------------


def make_payload(seq: int, servers: int = 1, name_length: int = 12) -> dict:
    """A valid payload numbered by `resumen.eventos_procesados_hoy`.

    Timestamps are written in botmon's normalised form, so the accepted
    payload equals what was sent.
    """
    return {
        "resumen": {
            "servidores_conectados": servers,
            "eventos_procesados_hoy": seq,
            "uptime_porcentaje": 99.5,
            "ultima_sincronizacion": "2025-11-13T18:00:00.000000Z",
        },
        "estado": {
            "status": "online",
            "uptime_dias": 15,
            "latencia_ms": 45.25,
            "ultima_conexion": "2025-11-13T17:58:00.000000Z",
        },
        "servers": [
            {
                "server_id": 10**17 + index,
                "server_name": f"guild {index} ".ljust(name_length, "x"),
                "miembros": index,
                "canales": 12,
                "status": "conectado",
            }
            for index in range(servers)
        ],
    }


def compact(value: object) -> str:
    """The wire format's encoding: compact, UTF-8 kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def seq_of(text: str) -> int:
    return json.loads(text)["resumen"]["eventos_procesados_hoy"]


# Waiting -------------------------------------------------------------------


def listener_count(server) -> int:
    answer = server.get("/api/health/")
    assert answer.status_code == 200, answer.text
    return answer.json()["listeners"]


def wait_until(condition, timeout: float = PROMPTLY, message=None) -> float:
    """Poll `condition` until it is true; return how long that took.

    `message` is the failure's text, or a function that returns it.
    """
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            text = message() if callable(message) else message
            pytest.fail(text or f"condition not met within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - start


def wait_for_listeners(server, count: int, timeout: float = PROMPTLY) -> float:
    seen = []

    def reached() -> bool:
        seen.append(listener_count(server))
        return seen[-1] == count

    return wait_until(
        reached,
        timeout,
        lambda: f"{seen[-1]} listeners after {timeout} s, not {count}",
    )


def listen(server, path: str = WS_PATH, **options):
    """A well-behaved listener; `compression=None` unless the test says so."""
    options.setdefault("compression", None)
    options.setdefault("max_size", None)
    options.setdefault("open_timeout", PROMPTLY)
    url = f"ws://127.0.0.1:{server.port}{path}"
    return connect(url, **options)


def receive_until(ws, seq: int, timeout: float = PROMPTLY) -> list[int]:
    """Receive until snapshot number `seq` (or a newer one); return all seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1] < seq:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"snapshot {seq} not received in {timeout} s; saw {seen}")
        seen.append(seq_of(ws.recv(timeout=remaining)))
    return seen


def post_ok(server, body) -> float:
    """POST and require a 201; return how long the POST took."""
    start = time.monotonic()
    answer = server.post(body)
    elapsed = time.monotonic() - start
    assert answer.status_code == 201, answer.text
    return elapsed


# Bare-socket peers ---------------------------------------------------------


class RawPeer:
    """A WebSocket client on a bare socket with a small receive buffer.

    It completes the opening handshake and then does only what it is told:
    nothing at all (a stalled or dead peer), or read frames without ever
    answering a ping.
    """

    def __init__(self, server, path: str = WS_PATH, rcvbuf: int = SMALL_BUFFER):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Before connect(), so the window the server sees is small from the start.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(PROMPTLY)
        self.sock.connect(("127.0.0.1", server.port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(1024)
            if not chunk:
                break
            self.buffer += chunk
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in header_lines)
        }

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])

    def _read_exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_frame(self) -> tuple[bool, int, bytes]:
        """One frame as sent by the server: (fin, opcode, payload)."""
        first, second = self._read_exactly(2)
        assert not second & 0x80, "a server must not mask its frames"
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exactly(8))
        return bool(first & 0x80), first & 0x0F, self._read_exactly(length)

    def is_closed_by_server(self) -> bool:
        """True once the server has closed its end (after what is buffered)."""
        try:
            self.sock.setblocking(False)
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    return True
        except BlockingIOError:
            return False
        except OSError:
            return True
        finally:
            self.sock.settimeout(PROMPTLY)

    def close(self) -> None:
        self.sock.close()


# Delivery ------------------------------------------------------------------


def test_every_listener_receives_the_accepted_payload_in_wire_format(
    server, seed_bytes, seed
):
    with contextlib.ExitStack() as stack:
        listeners = [stack.enter_context(listen(server)) for _ in range(5)]
        wait_for_listeners(server, 5)
        post_ok(server, seed_bytes)
        received = [ws.recv(timeout=PROMPTLY) for ws in listeners]

    for text in received:
        assert isinstance(text, str), "snapshots are text frames"
        assert text == compact(seed)


def test_listeners_receive_the_normalised_payload_not_the_raw_one(server):
    sent = make_payload(1)
    sent["resumen"]["ultima_sincronizacion"] = "2025-11-13T20:00:00.5+02:00"
    sent["estado"]["ultima_conexion"] = "2025-11-13T17:58:00"
    sent["servers"][0]["server_id"] = "987654321987654321"
    expected = make_payload(1)
    expected["resumen"]["ultima_sincronizacion"] = "2025-11-13T18:00:00.500000Z"
    expected["estado"]["ultima_conexion"] = "2025-11-13T17:58:00.000000Z"
    expected["servers"][0]["server_id"] = 987654321987654321

    with listen(server) as ws:
        post_ok(server, sent)
        text = ws.recv(timeout=PROMPTLY)

    assert json.loads(text) == expected
    assert text == compact(expected)
    assert server.get("/api/bot/servers/").json() == expected["servers"]


def test_a_snapshot_is_one_final_text_frame(server):
    body = make_payload(1, servers=2000)
    peer = RawPeer(server, rcvbuf=1 << 20)
    try:
        post_ok(server, body)
        fin, opcode, payload = peer.read_frame()
    finally:
        peer.close()

    assert (fin, opcode) == (True, OP_TEXT)
    assert payload.decode("utf-8") == compact(body)


def test_refused_pushes_are_not_broadcast(server, seed):
    broken = json.loads(json.dumps(seed))
    broken["servers"][0]["miembros"] = -1

    with listen(server) as ws:
        assert server.post(broken).status_code == 400
        assert server.post(seed, key="wrong-key").status_code == 401
        post_ok(server, make_payload(7))
        assert seq_of(ws.recv(timeout=PROMPTLY)) == 7


def test_a_late_listener_gets_the_latest_snapshot_at_once(server):
    for seq in (1, 2, 3):
        post_ok(server, make_payload(seq))

    with listen(server) as ws:
        assert seq_of(ws.recv(timeout=PROMPTLY)) == 3
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)


def test_a_listener_before_any_metrics_waits_for_the_first_post(server):
    with listen(server) as ws:
        with pytest.raises(TimeoutError):
            ws.recv(timeout=1.0)

        post_ok(server, make_payload(1))
        assert seq_of(ws.recv(timeout=PROMPTLY)) == 1


def test_a_listener_after_a_restart_gets_the_stored_snapshot(server):
    post_ok(server, make_payload(41))
    server.stop()
    server.start()

    with listen(server) as ws:
        assert seq_of(ws.recv(timeout=PROMPTLY)) == 41


@pytest.mark.parametrize("path", ["/ws/bot/metrics/", "/ws/bot/metrics"])
def test_the_stream_answers_with_and_without_the_trailing_slash(server, path):
    post_ok(server, make_payload(5))

    peer = RawPeer(server, path=path, rcvbuf=1 << 16)
    try:
        assert peer.status == 101, peer.status_line
        assert "location" not in peer.headers
    finally:
        peer.close()

    with listen(server, path=path) as ws:
        assert seq_of(ws.recv(timeout=PROMPTLY)) == 5


def test_what_a_listener_sends_is_ignored(server):
    with listen(server) as ws:
        ws.send("hello")
        ws.send(b"\x00" * 1000)
        post_ok(server, make_payload(2))
        assert seq_of(ws.recv(timeout=PROMPTLY)) == 2


def test_listener_count_follows_connections(server):
    assert listener_count(server) == 0
    with listen(server):
        with listen(server):
            wait_for_listeners(server, 2)
        wait_for_listeners(server, 1)
    wait_for_listeners(server, 0)


# Compression ---------------------------------------------------------------


def test_permessage_deflate_is_refused_by_default(server, seed_bytes, seed):
    with listen(server, compression="deflate") as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        post_ok(server, seed_bytes)
        assert ws.recv(timeout=PROMPTLY) == compact(seed)


def test_permessage_deflate_is_negotiated_when_enabled(start_server, seed):
    server = start_server({"BOTMON_WS_COMPRESSION": "true"})
    big = make_payload(3, servers=3000)

    with listen(server, compression="deflate") as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert "permessage-deflate" in extensions
        post_ok(server, seed)
        post_ok(server, big)
        received = [ws.recv(timeout=PROMPTLY) for _ in range(2)]

    assert received == [compact(seed), compact(big)]


# Database ------------------------------------------------------------------


def test_waiting_listeners_hold_no_database_connection(server):
    post_ok(server, make_payload(1))
    with contextlib.ExitStack() as stack:
        listeners = [stack.enter_context(listen(server)) for _ in range(50)]
        wait_for_listeners(server, 50)
        for seq in range(2, 7):
            assert post_ok(server, make_payload(seq)) < PROMPTLY
            for path in ("/api/bot/resumen/", "/api/bot/estado/", "/api/bot/servers/"):
                start = time.monotonic()
                assert server.get(path).status_code == 200
                assert time.monotonic() - start < PROMPTLY

        for ws in listeners:
            assert receive_until(ws, 6)[-1] == 6


# Slow, stalled and dead listeners -----------------------------------------


class ThrottledSocket(socket.socket):
    """A client socket that reads little at a time, as a slow device would."""

    chunk = 8192
    pause = 0.005

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        time.sleep(self.pause)
        return super().recv(min(bufsize, self.chunk), flags)


def slow_listener(server, chunk: int = 8192, pause: float = 0.005, **options):
    """A listener with a small receive buffer that drains it slowly."""
    sock = ThrottledSocket(socket.AF_INET, socket.SOCK_STREAM)
    sock.chunk, sock.pause = chunk, pause
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER)
    sock.connect(("127.0.0.1", server.port))
    return listen(server, sock=sock, **options)


def test_a_stalled_listener_delays_no_one_and_is_dropped(start_server):
    server = start_server({"BOTMON_WS_SEND_TIMEOUT_SECONDS": "2"})
    with listen(server) as first, listen(server) as second:
        stalled = RawPeer(server)
        wait_for_listeners(server, 3)

        for seq in range(1, 9):
            assert post_ok(server, make_payload(seq, servers=5000)) < PROMPTLY
            for ws in (first, second):
                receive_until(ws, seq)

        # Its buffers are full now: it is cut off once a send has waited 2 s.
        wait_for_listeners(server, 2, timeout=10)
        wait_until(stalled.is_closed_by_server, message="socket left open")
        stalled.close()

        post_ok(server, make_payload(9))
        for ws in (first, second):
            assert receive_until(ws, 9)[-1] == 9


def test_a_slow_listener_skips_to_the_newest_snapshot(server):
    with slow_listener(server, max_queue=1) as slow, listen(server) as fast:
        wait_for_listeners(server, 2)
        seen: list[int] = []

        def read_slowly() -> None:
            while not seen or seen[-1] < 20:
                seen.append(seq_of(slow.recv(timeout=30)))
                time.sleep(0.2)

        reader = threading.Thread(target=read_slowly)
        reader.start()
        for seq in range(1, 21):
            assert post_ok(server, make_payload(seq, servers=5000)) < PROMPTLY
        assert receive_until(fast, 20)[-1] == 20
        reader.join(timeout=60)

    assert not reader.is_alive(), f"the slow listener never got 20; saw {seen}"
    assert seen == sorted(set(seen)), "an older snapshot came after a newer one"
    assert seen[-1] == 20
    assert len(seen) < 20, "a slow listener should skip what it could not take"


def test_a_multi_megabyte_snapshot_reaches_a_slow_reader_whole(start_server):
    server = start_server(
        {
            "BOTMON_MAX_BODY_BYTES": str(64 * 1024 * 1024),
            "BOTMON_WS_PING_INTERVAL_SECONDS": "0.5",
        }
    )
    big = make_payload(1, servers=25_000, name_length=100)
    expected = compact(big)
    assert len(expected.encode()) > 4_000_000

    with slow_listener(server) as slow, listen(server) as fast:
        wait_for_listeners(server, 2)
        post_ok(server, big)
        assert fast.recv(timeout=PROMPTLY) == expected
        started = time.monotonic()
        assert slow.recv(timeout=60) == expected
        took = time.monotonic() - started
        # Long enough that pings were sent while the snapshot was under way.
        assert took > 1.0, f"the reader was not slow ({took:.2f} s)"

        # The stream is still in step: the next frame parses as the next state.
        post_ok(server, make_payload(2))
        assert seq_of(slow.recv(timeout=PROMPTLY)) == 2
        assert seq_of(fast.recv(timeout=PROMPTLY)) == 2
        assert listener_count(server) == 2


@pytest.mark.parametrize("reads", [False, True], ids=["never-reads", "never-pongs"])
def test_a_peer_that_does_not_answer_pings_is_dropped(start_server, reads):
    interval = 0.5
    server = start_server({"BOTMON_WS_PING_INTERVAL_SECONDS": str(interval)})
    post_ok(server, make_payload(1))

    with listen(server) as healthy:
        wait_for_listeners(server, 1)
        peer = RawPeer(server)
        wait_for_listeners(server, 2)
        pings = []
        if reads:

            def read_and_ignore() -> None:
                with contextlib.suppress(OSError):
                    while True:
                        _, opcode, _ = peer.read_frame()
                        pings.append(opcode == OP_PING)

            threading.Thread(target=read_and_ignore, daemon=True).start()

        took = wait_for_listeners(server, 1, timeout=10)
        peer.close()
        assert took < 4 * interval + 1.0, f"dropped after {took:.2f} s"
        if reads:
            assert any(pings), "the peer was never pinged"

        # A listener that answers pings stays, however many intervals pass.
        time.sleep(4 * interval)
        assert listener_count(server) == 1
        post_ok(server, make_payload(2))
        assert receive_until(healthy, 2)[-1] == 2


# Shutdown ------------------------------------------------------------------


def start_post(server, body: bytes, sent_fraction: float) -> socket.socket:
    """Begin a POST on a bare socket, sending only part of its body."""
    poster = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    head = "\r\n".join(
        [
            "POST /api/bot/metrics/ HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            f"Authorization: Bearer {API_KEY}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
    )
    poster.sendall(head.encode() + b"\r\n\r\n" + body[: int(len(body) * sent_fraction)])
    return poster


def finish_post(poster: socket.socket, body: bytes, sent_fraction: float) -> bytes:
    """Send the rest of the body and return the whole answer."""
    poster.sendall(body[int(len(body) * sent_fraction) :])
    answer = b""
    while chunk := poster.recv(65536):
        answer += chunk
    poster.close()
    return answer


def closing_code(ws) -> int | None:
    """Read until the server closes; the code of its close frame, if any."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=PROMPTLY)
    return closed.value.rcvd.code if closed.value.rcvd else None


def test_shutdown_closes_listeners_with_1001_and_finishes_a_post_in_flight(server):
    post_ok(server, make_payload(1))
    body = json.dumps(make_payload(2, servers=5000)).encode()

    with contextlib.ExitStack() as stack:
        listeners = [stack.enter_context(listen(server)) for _ in range(3)]
        for ws in listeners:
            assert seq_of(ws.recv(timeout=PROMPTLY)) == 1
        silent = RawPeer(server)
        stack.callback(silent.close)
        wait_for_listeners(server, 4)

        # Half a body sent: the worker is reading this POST when told to stop
        # (a later request's round trip means the worker has accepted it).
        poster = start_post(server, body, 0.5)
        assert listener_count(server) == 4
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        codes = [closing_code(ws) for ws in listeners]
        answer = finish_post(poster, body, 0.5)
        returncode = server.process.wait(timeout=30)
        took = time.monotonic() - started

    assert codes == [1001, 1001, 1001]
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    assert returncode == 0
    assert took < 10, f"the master took {took:.1f} s to exit"

    # What the in-flight POST was told is true: its snapshot was committed.
    server.start()
    assert server.get("/api/bot/resumen/").json()["eventos_procesados_hoy"] == 2


def test_shutdown_closes_a_listener_that_never_got_a_snapshot(server):
    with listen(server) as ws:
        wait_for_listeners(server, 1)
        server.process.send_signal(signal.SIGTERM)
        assert closing_code(ws) == 1001
    assert server.process.wait(timeout=30) == 0


def test_a_listener_stuck_in_a_send_does_not_hold_up_shutdown(server):
    with listen(server) as healthy:
        stalled = RawPeer(server)
        wait_for_listeners(server, 2)
        # Enough to fill the stalled peer's buffers: its send is now waiting.
        for seq in range(1, 13):
            post_ok(server, make_payload(seq, servers=5000))
        assert receive_until(healthy, 12)[-1] == 12
        assert listener_count(server) == 2

        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = closing_code(healthy)
        returncode = server.process.wait(timeout=30)
        took = time.monotonic() - started
        stalled.close()

    assert code == 1001
    assert returncode == 0
    assert took < 10, f"the master took {took:.1f} s to exit"
    assert "graceful timeout" not in server.log()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["INT", "QUIT"])
def test_a_quick_stop_still_closes_listeners_with_1001(server, sig):
    post_ok(server, make_payload(1))
    with listen(server) as ws:
        assert seq_of(ws.recv(timeout=PROMPTLY)) == 1
        server.process.send_signal(sig)
        assert closing_code(ws) == 1001
    server.process.wait(timeout=30)


# One process holds every listener -----------------------------------------


def run_gunicorn(tmp_path, args: list[str], env: dict[str, str]):
    """Start gunicorn as production does; return (exit code, output)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *args, "wsgi:app"],
        cwd=ROOT,
        env={
            **os.environ,
            "BOT_API_KEY": API_KEY,
            "BOTMON_INSTANCE_PATH": str(tmp_path),
            "BOTMON_BIND": "127.0.0.1:0",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"gunicorn kept running:\n{output.decode(errors='replace')}")
    return process.returncode, output.decode(errors="replace")


@pytest.mark.parametrize(
    "args, env",
    [
        ([], {"BOTMON_WORKERS": "2"}),
        (["-w", "2"], {}),
        (["--workers=3"], {}),
        ([], {"WEB_CONCURRENCY": "2"}),
    ],
    ids=["BOTMON_WORKERS", "-w", "--workers", "WEB_CONCURRENCY"],
)
def test_gunicorn_refuses_more_than_one_worker(tmp_path, args, env):
    code, output = run_gunicorn(tmp_path, args, env)

    assert code != 0
    assert "botmon keeps its listeners in one process" in output
    assert "Booting worker" not in output


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_gunicorn_refuses_a_worker_class_other_than_gevent(tmp_path, worker_class):
    code, output = run_gunicorn(tmp_path, ["-k", worker_class], {})

    assert code != 0
    assert "botmon needs gunicorn's gevent worker" in output
    assert "Booting worker" not in output


def test_an_explicit_single_worker_overrides_web_concurrency(start_server):
    server = start_server({"WEB_CONCURRENCY": "4", "BOTMON_WORKERS": "1"})
    assert listener_count(server) == 0


def worker_pids(master_pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == master_pid:
                children.append(int(stat.parent.name))
    return children


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_gunicorn_refuses_to_add_a_worker_at_run_time(server):
    assert len(worker_pids(server.process.pid)) == 1

    server.process.send_signal(signal.SIGTTIN)
    wait_until(lambda: "botmon keeps its listeners in one process" in server.log())
    # The master would fork right after the hook; give it the chance to.
    time.sleep(0.5)

    assert len(worker_pids(server.process.pid)) == 1


# Framing -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["", "x" * 125, "x" * 126, "ñ" * 100, "x" * 65535, "x" * 65536, "é" * 70_000],
    ids=["empty", "125", "126", "multibyte", "65535", "65536", "long"],
)
def test_a_shared_frame_is_what_the_websocket_library_would_send(text):
    from wsproto.frame_protocol import FrameProtocol

    from botmon.blueprints.websocket import text_frame
    from botmon.hub import Message

    expected = FrameProtocol(client=False, extensions=[]).send_data(text, fin=True)

    assert text_frame(Message(1, text)) == bytes(expected)
