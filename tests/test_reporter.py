"""The discord.py reporter: it pushes a client's real metrics to a live botmon,
counts events, backs off while botmon is down, survives refusals, and never
stalls the bot's event loop. The client is a fake with discord.Client's
attributes and event dispatch: no Discord connection, no discord.py."""

import ast
import asyncio
import enum
import gc
import inspect
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from aiohttp import web
from conftest import API_KEY, ROOT, free_port

from botmon import strictjson
from botmon.demo import DemoBot
from botmon.reporter import BotmonReporter, ConnectionTracker, DailyCounter
from botmon.schemas import metrics_schema

TIMEOUT = 30.0
INTERVAL = 0.2
EXAMPLE_PATH = ROOT / "examples" / "discord_bot.py"


class Status(enum.Enum):
    """discord.Status: an enum that prints as its value."""

    online = "online"
    idle = "idle"
    dnd = "dnd"
    invisible = "invisible"

    def __str__(self) -> str:
        return self.value


@dataclass
class FakeGuild:
    """The attributes of discord.Guild that the reporter reads."""

    id: int
    name: str
    member_count: int | None
    channel_count: int
    unavailable: bool = False

    @property
    def channels(self) -> list:
        # discord.py builds a new list on every access, too.
        return [None] * self.channel_count


class FakeClient:
    """discord.Client as the reporter sees it, including how it dispatches.

    `dispatch` and `wait_for` keep discord.Client's contract for waiters: a
    waiter's check runs on every dispatch of its event until it passes.
    """

    def __init__(self, guilds: list[FakeGuild], latency: float = 0.0451):
        self.guilds = guilds
        self.latency = latency
        self.status = Status.online
        self.ready = False
        self.closed = False
        self._waiters: dict[str, list[tuple[asyncio.Future, object]]] = {}

    def is_ready(self) -> bool:
        return self.ready

    def is_closed(self) -> bool:
        return self.closed

    def wait_for(self, event: str, /, *, check=None, timeout=None):
        future = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(event.lower(), [])
        waiters.append((future, check or (lambda *args: True)))
        return asyncio.wait_for(future, timeout)

    def dispatch(self, event: str, /, *args) -> None:
        waiters = self._waiters.get(event, [])
        for waiter in list(waiters):
            future, check = waiter
            if future.cancelled():
                waiters.remove(waiter)
            elif check(*args):
                future.set_result(args[0] if len(args) == 1 else args or None)
                waiters.remove(waiter)

    def waiting(self) -> int:
        """Waiters still registered and not cancelled."""
        return sum(
            not future.done()
            for waiters in self._waiters.values()
            for future, _ in waiters
        )

    def come_online(self) -> None:
        """What discord.py dispatches when the bot first reaches the gateway."""
        self.dispatch("connect")
        self.dispatch("socket_event_type", "READY")
        self.ready = True
        self.dispatch("ready")


def fake_guilds(count: int, seed: int = 7) -> list[FakeGuild]:
    """Guilds with real-looking snowflakes and names in many scripts."""
    return [
        FakeGuild(guild.guild_id, guild.name, guild.members, guild.channels)
        for guild in DemoBot(guild_count=count, seed=seed).guilds
    ]


def reporter_for(client, server, **options) -> BotmonReporter:
    options = {"api_key": API_KEY, "interval": INTERVAL, **options}
    return BotmonReporter(client, server.url, **options)


async def get(server, path: str):
    """GET from botmon without blocking the loop the reporter runs in."""

    def fetch():
        response = server.get(path)
        return response.json() if response.ok else None

    return await asyncio.to_thread(fetch)


async def eventually(condition, what: str, timeout: float = TIMEOUT):
    """Await `condition()` (a coroutine function) until it returns something true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await condition()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def pushes(reporter: BotmonReporter, count: int, what: str = "pushes"):
    """Wait until `count` more pushes than now have been accepted."""
    target = reporter.stats.accepted + count

    async def reached():
        return reporter.stats.accepted >= target

    await eventually(reached, f"{count} accepted {what}")


def run(scenario):
    """Run a test's coroutine in a fresh event loop, as a bot's would run."""
    return asyncio.run(asyncio.wait_for(scenario, 4 * TIMEOUT))


def test_the_gets_show_the_clients_guilds_latency_and_status(server):
    guilds = fake_guilds(12)
    guilds[3] = FakeGuild(guilds[3].id, "", None, 0, unavailable=True)
    client = FakeClient(guilds)
    client.status = Status.idle

    async def scenario():
        async with reporter_for(client, server) as reporter:
            client.come_online()
            await pushes(reporter, 1)
            servers = await get(server, "/api/bot/servers/")
            estado = await get(server, "/api/bot/estado/")
            resumen = await get(server, "/api/bot/resumen/")

        assert [row["server_id"] for row in servers] == [g.id for g in guilds]
        assert servers[0] == {
            "server_id": guilds[0].id,
            "server_name": guilds[0].name,
            "miembros": guilds[0].member_count,
            "canales": guilds[0].channel_count,
            "status": "conectado",
        }
        # An unavailable guild has no name or member count yet in discord.py.
        assert servers[3] == {
            "server_id": guilds[3].id,
            "server_name": str(guilds[3].id),
            "miembros": 0,
            "canales": 0,
            "status": "desconectado",
        }
        assert estado["status"] == "idle"
        assert estado["latencia_ms"] == 45.1
        assert estado["uptime_dias"] == 0
        assert resumen["servidores_conectados"] == 11
        assert resumen["uptime_porcentaje"] == 100.0
        synced = datetime.fromisoformat(resumen["ultima_sincronizacion"])
        assert abs((datetime.now(UTC) - synced).total_seconds()) < 10

    run(scenario())


def test_it_follows_the_client_as_it_changes(server):
    client = FakeClient(fake_guilds(3))

    async def scenario():
        async with reporter_for(client, server) as reporter:
            client.come_online()
            await pushes(reporter, 1)
            client.guilds.append(FakeGuild(1234567890123456789, "Nuevo 🎉", 5, 2))
            client.latency = 0.21234
            client.status = Status.dnd
            await pushes(reporter, 2)
            servers = await get(server, "/api/bot/servers/")
            estado = await get(server, "/api/bot/estado/")

        assert servers[-1]["server_name"] == "Nuevo 🎉"
        assert len(servers) == 4
        assert (estado["status"], estado["latencia_ms"]) == ("dnd", 212.34)

    run(scenario())


def test_it_counts_gateway_events_dispatched_to_the_client(server):
    client = FakeClient(fake_guilds(2))

    async def scenario():
        async with reporter_for(client, server) as reporter:
            client.come_online()
            for kind in ["GUILD_CREATE", "MESSAGE_CREATE", "PRESENCE_UPDATE"] * 3:
                client.dispatch("socket_event_type", kind)
            client.dispatch("message", object())
            await pushes(reporter, 2)
            first = await get(server, "/api/bot/resumen/")
            for _ in range(5):
                client.dispatch("socket_event_type", "MESSAGE_CREATE")
            await pushes(reporter, 2)
            second = await get(server, "/api/bot/resumen/")

        # READY and nine more; the message event is not a gateway dispatch.
        assert first["eventos_procesados_hoy"] == 10
        assert second["eventos_procesados_hoy"] == 15

    run(scenario())


def test_it_counts_the_events_it_is_told_to(server):
    client = FakeClient(fake_guilds(2))

    async def scenario():
        reporter = reporter_for(client, server, events=["message", "interaction"])
        async with reporter:
            client.come_online()
            for event in ["message", "message", "interaction", "typing"]:
                client.dispatch(event, object())
            await pushes(reporter, 2)
            return await get(server, "/api/bot/resumen/")

    assert run(scenario())["eventos_procesados_hoy"] == 3


def test_it_warns_when_gateway_events_cannot_be_counted(server, caplog):
    client = FakeClient(fake_guilds(1))

    async def scenario():
        async with reporter_for(client, server) as reporter:
            # A client without enable_debug_events: READY is not dispatched.
            client.dispatch("connect")
            client.ready = True
            client.dispatch("ready")
            await pushes(reporter, 1)

    with caplog.at_level(logging.WARNING, logger="botmon.reporter"):
        run(scenario())
    assert "enable_debug_events=True" in caplog.text


def test_it_waits_for_ready_and_reports_a_lost_gateway_as_offline(server):
    client = FakeClient(fake_guilds(4), latency=math.inf)

    async def scenario():
        async with reporter_for(client, server) as reporter:
            await asyncio.sleep(5 * INTERVAL)
            assert reporter.stats.attempted == 0, "pushed before the bot was ready"
            assert await get(server, "/api/bot/estado/") is None

            client.come_online()
            await pushes(reporter, 1)
            # Before the first heartbeat acknowledgement discord.py says inf.
            assert (await get(server, "/api/bot/estado/"))["latencia_ms"] == 0

            client.latency = 0.05
            await pushes(reporter, 2)
            client.dispatch("disconnect")
            client.latency = math.nan
            await asyncio.sleep(4 * INTERVAL)
            await pushes(reporter, 2)
            offline = await get(server, "/api/bot/estado/")
            resumen = await get(server, "/api/bot/resumen/")

            client.dispatch("connect")
            client.dispatch("resumed")
            await pushes(reporter, 2)
            back = await get(server, "/api/bot/estado/")

        assert offline["status"] == "offline"
        # The last latency measured, not NaN, which the contract refuses.
        assert offline["latencia_ms"] == 50.0
        assert 0 < resumen["uptime_porcentaje"] < 90
        assert back["status"] == "online"

    run(scenario())


def test_it_starts_at_once_when_the_client_is_already_ready(server):
    client = FakeClient(fake_guilds(2))
    client.ready = True

    async def scenario():
        # As called from on_ready: no connect or ready event follows.
        reporter = reporter_for(client, server)
        reporter.start()
        reporter.start()
        await pushes(reporter, 2)
        await reporter.close()
        return await get(server, "/api/bot/estado/")

    assert run(scenario())["status"] == "offline"


def test_close_reports_the_bot_offline_and_unregisters(server):
    client = FakeClient(fake_guilds(2))

    async def scenario():
        reporter = reporter_for(client, server)
        reporter.start()
        client.come_online()
        await pushes(reporter, 1)
        assert (await get(server, "/api/bot/estado/"))["status"] == "online"
        assert client.waiting() == 5

        await reporter.close()
        await reporter.close()
        attempted = reporter.stats.attempted
        await asyncio.sleep(3 * INTERVAL)

        assert reporter.stats.attempted == attempted
        assert client.waiting() == 0
        assert (await get(server, "/api/bot/estado/"))["status"] == "offline"

    run(scenario())


def failures_logged(caplog) -> list[tuple[float, float]]:
    """(when, retry delay) of each failed push the reporter logged."""
    return [
        (record.created, float(match))
        for record in caplog.records
        for match in re.findall(r"retrying in ([0-9.]+) s", record.getMessage())
    ]


def test_it_backs_off_while_botmon_is_down_and_picks_up_when_it_returns(server, caplog):
    client = FakeClient(fake_guilds(5))
    max_backoff = 1.0

    async def scenario():
        reporter = reporter_for(client, server, max_backoff=max_backoff)
        async with reporter:
            client.come_online()
            await pushes(reporter, 2)
            await asyncio.to_thread(server.stop)

            async def backed_off():
                return reporter.stats.failing_streak >= 6

            await eventually(backed_off, "six failed pushes")
            await asyncio.to_thread(server.start)
            await pushes(reporter, 1, "push after the restart")
            back = time.monotonic()
            await pushes(reporter, 5, "pushes at the normal pace")
            pace = (time.monotonic() - back) / 5
        return reporter, pace

    with caplog.at_level(logging.DEBUG, logger="botmon.reporter"):
        reporter, pace = run(scenario())

    failures = failures_logged(caplog)
    assert len(failures) >= 6
    # Doubling from the interval up to the cap, each with jitter of up to half
    # (the log rounds to a tenth of a second), and kept to.
    for number, (when, delay) in enumerate(failures, start=1):
        ceiling = min(max_backoff, INTERVAL * 2 ** (number - 1))
        assert ceiling / 2 - 0.05 <= delay <= ceiling + 0.05, (number, failures)
        if number < len(failures):
            assert failures[number][0] - when >= delay - 0.06, (number, failures)
    assert reporter.stats.failing_streak == 0
    assert pace < 2 * INTERVAL

    levels = [r.levelno for r in caplog.records if "cannot reach" in r.getMessage()]
    assert levels[0] == logging.WARNING
    assert set(levels[1:]) == {logging.DEBUG}, "a repeat logged at warning level"
    assert "botmon accepts the pushes again" in caplog.text


def test_a_refused_push_is_logged_with_botmons_message_and_does_not_stop_it(
    server, caplog
):
    client = FakeClient(fake_guilds(2))

    async def scenario():
        reporter = reporter_for(client, server, api_key="not-the-key")
        async with reporter:
            client.come_online()

            async def refused_three_times():
                return reporter.stats.refused >= 3

            await eventually(refused_three_times, "three refused pushes")
            assert not reporter._task.done()
        return reporter

    with caplog.at_level(logging.DEBUG, logger="botmon.reporter"):
        reporter = run(scenario())

    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, "a repeated refusal is logged once at error level"
    assert errors[0].getMessage() == (
        "botmon refused the push (401 unauthorized): the API key is not valid; "
        "use the key botmon was started with"
    )
    assert "not-the-key" not in caplog.text
    # A refusal is not an outage: the next try comes at the normal interval.
    assert reporter.stats.failing_streak == 0


def test_an_invalid_push_is_logged_with_the_fields_to_fix(start_server, caplog):
    server = start_server({"BOTMON_MAX_SERVERS": "2"})
    client = FakeClient(fake_guilds(3))

    async def scenario():
        async with reporter_for(client, server) as reporter:
            client.come_online()

            async def refused():
                return reporter.stats.refused >= 1

            await eventually(refused, "a refused push")

    with caplog.at_level(logging.ERROR, logger="botmon.reporter"):
        run(scenario())
    assert "botmon refused the push (400 invalid_payload)" in caplog.text
    assert "'servers'" in caplog.text


@pytest.mark.parametrize("status", [429, 503])
def test_it_waits_as_long_as_retry_after_says(status):
    """botmon's 503 and a proxy's 429 both say when to come back."""
    arrivals: list[float] = []

    async def metrics(request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        return web.json_response(
            {"error": "database_busy", "message": "busy"},
            status=status,
            headers={"Retry-After": "1"},
        )

    async def scenario():
        app = web.Application()
        app.router.add_post("/api/bot/metrics/", metrics)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            client = FakeClient(fake_guilds(1))
            reporter = BotmonReporter(
                client, f"http://127.0.0.1:{port}", api_key=API_KEY, interval=0.05
            )
            async with reporter:
                client.come_online()

                async def three():
                    return len(arrivals) >= 3

                await eventually(three, "three tries")
        finally:
            await runner.cleanup()

    run(scenario())
    gaps = [later - earlier for earlier, later in pairwise(arrivals)]
    assert min(gaps) >= 0.95, gaps


def test_a_10000_guild_bot_keeps_its_event_loop_responsive(server):
    """How long the loop is held at a time while 10,000 rows are built and sent.

    A ticker wakes every 5 ms; between two wake-ups the loop ran whatever else
    was ready. The CPU time of the loop's thread in that gap is how long the
    loop was held. Wall-clock lag also counts the time other processes took
    the CPU, which on a busy test machine alone reaches 100 ms.
    """
    client = FakeClient(fake_guilds(10_000))
    # A real bot's guilds are old objects by the time it reports; made just
    # now, they would get the collector to examine the whole heap during the
    # measurement, a pause of the test's making (about 90 ms here).
    gc.collect()
    tick = 0.005
    held: list[float] = []
    lags: list[float] = []

    async def ticker():
        loop = asyncio.get_running_loop()
        while True:
            cpu, wall = time.thread_time(), loop.time()
            await asyncio.sleep(tick)
            held.append(time.thread_time() - cpu)
            lags.append(loop.time() - wall - tick)

    async def scenario():
        watcher = asyncio.create_task(ticker())
        async with reporter_for(client, server, interval=0.5) as reporter:
            client.come_online()
            await pushes(reporter, 3, "10,000-guild pushes")
        watcher.cancel()
        return await get(server, "/api/bot/servers/")

    servers = run(scenario())
    assert len(servers) == 10_000
    assert len(held) > 100
    longest = max(held)
    assert longest < 0.025, (
        f"the loop was held for {longest * 1000:.1f} ms of CPU at once "
        f"(worst wall-clock lag {max(lags) * 1000:.1f} ms)"
    )


def test_every_payload_keeps_the_contract():
    """Names a guild owner may choose, and what discord.py has before ready."""
    client = FakeClient(
        [
            FakeGuild(1, "a\x00b", 3, 1),
            FakeGuild(2, "lone \ud800 surrogate", 3, 1),
            FakeGuild(3, "é" * 150, 3, 1),
            FakeGuild(4, "", None, 0, unavailable=True),
            FakeGuild(2**63 - 1, "🎮" * 100, 10**6, 500),
        ],
        latency=math.nan,
    )
    reporter = BotmonReporter(client, api_key=API_KEY)

    body = asyncio.run(reporter.encode_payload())

    metrics = metrics_schema(25_000).load(strictjson.loads(body))
    names = [row["server_name"] for row in metrics["servers"]]
    assert names == ["ab", "lone ? surrogate", "é" * 100, "4", "🎮" * 100]
    assert metrics["estado"]["status"] == "offline"
    assert metrics["estado"]["latencia_ms"] == 0
    assert json.loads(body)["resumen"]["servidores_conectados"] == 4


def test_the_event_count_starts_again_at_utc_midnight():
    now = datetime(2025, 11, 13, 23, 59, 58, tzinfo=UTC).timestamp()
    clock = [now]
    counter = DailyCounter(lambda: clock[0])

    for _ in range(3):
        counter.add()
    assert counter.today() == 3
    clock[0] += 2.0  # 00:00:00 UTC
    assert counter.today() == 0
    counter.add()
    clock[0] += 86_399.9  # 23:59:59.9 the same day
    counter.add()
    assert counter.today() == 2
    clock[0] += 0.1
    assert counter.today() == 0
    assert counter.total == 5


def test_uptime_is_time_connected_since_the_first_connection():
    clock = [1000.0]
    tracker = ConnectionTracker(lambda: clock[0])
    assert (tracker.uptime_percent(), tracker.uptime_days()) == (0.0, 0)

    tracker.connect()
    clock[0] += 90.0
    tracker.disconnect()
    clock[0] += 10.0
    assert tracker.uptime_percent() == 90.0
    tracker.connect()
    tracker.connect()
    clock[0] += 100.0
    assert tracker.uptime_percent() == 95.0
    clock[0] += 3 * 86_400
    assert tracker.uptime_days() == 3


def test_the_example_bot_compiles_and_uses_the_reporter_as_documented():
    source = EXAMPLE_PATH.read_text()
    tree = compile(source, str(EXAMPLE_PATH), "exec", ast.PyCF_ONLY_AST)
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "BotmonReporter"
    ]
    assert len(calls) == 1
    given = {keyword.arg for keyword in calls[0].keywords}
    assert given <= set(inspect.signature(BotmonReporter).parameters)
    code = [line for line in source.splitlines() if line.strip()]
    assert len(code) <= 10

    # The README and the reporter's documentation show this very file.
    for text in ((ROOT / "README.md").read_text(), reporter_docs()):
        assert source.strip() in text


def reporter_docs() -> str:
    """The reporter's section of docs/integrations.md."""
    page = (ROOT / "docs" / "integrations.md").read_text()
    return page.split("\n## discord.py reporter\n", 1)[1].split("\n## ", 1)[0]


def test_the_snippets_in_the_reporters_documentation_compile():
    snippets = re.findall(r"```python\n(.*?)```", reporter_docs(), re.S)
    assert len(snippets) >= 3
    for snippet in snippets:
        compile(snippet, "docs/integrations.md", "exec")


def test_it_counts_and_reports_through_a_real_discord_client(server):
    """With discord.py itself, which the dev extra installs."""
    import discord

    async def scenario():
        client = discord.Client(
            intents=discord.Intents.none(), enable_debug_events=True
        )
        # Entering the client sets up its loop and dispatch without connecting.
        async with client, reporter_for(client, server) as reporter:
            client.dispatch("connect")
            for kind in ("READY", "GUILD_CREATE", "MESSAGE_CREATE"):
                client.dispatch("socket_event_type", kind)
            client.dispatch("ready")
            await pushes(reporter, 1)
            resumen = await get(server, "/api/bot/resumen/")
            estado = await get(server, "/api/bot/estado/")
            listening = waiting(client)
        return resumen, estado, listening, waiting(client)

    def waiting(client) -> int:
        # discord.py drops a cancelled waiter at the next dispatch of its event.
        waiters = [
            future for items in client._listeners.values() for future, _ in items
        ]
        return sum(not future.done() for future in waiters)

    resumen, estado, listening, after_close = run(scenario())
    assert resumen["eventos_procesados_hoy"] == 3
    # No gateway: discord.py's latency is NaN, sent as 0.
    assert (estado["status"], estado["latencia_ms"]) == ("online", 0)
    assert listening == 5
    assert after_close == 0
