"""The demo bot: its payloads keep the contract and it feeds a live botmon;
prune-history deletes old history and keeps the newest snapshot."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from conftest import API_KEY, ROOT, free_port, wait_for

from botmon import create_app, strictjson
from botmon.demo import DemoBot, encode
from botmon.schemas import metrics_schema
from botmon.storage import Store

RUN_TIMEOUT = 60.0
# A weekday afternoon, far from UTC midnight.
AFTERNOON = datetime(2025, 11, 13, 15, 30, 0, tzinfo=UTC)


def demo_env(instance_path, **extra: str) -> dict[str, str]:
    """The CLI's environment: its own instance folder and no inherited key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOT")}
    env["BOTMON_INSTANCE_PATH"] = str(instance_path)
    env.update(extra)
    return env


def flask_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "flask", "--app", "botmon", *args]


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        flask_command(*args),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


def scripts_of(text: str) -> set[str]:
    """The Unicode scripts a text uses, by the first word of each name."""
    return {
        unicodedata.name(char, "?").split()[0] for char in text if not char.isascii()
    }


def snapshot_rows(database_path) -> int:
    with sqlite3.connect(database_path) as connection:
        return connection.execute("SELECT count(*) FROM snapshots").fetchone()[0]


def test_demo_bot_feeds_a_live_server(server, tmp_path):
    result = run_cli(
        "demo-bot",
        "--url",
        server.url,
        "--key",
        API_KEY,
        "--guilds",
        "12",
        "--count",
        "3",
        "--interval",
        "0.2",
        "--seed",
        "42",
        env=demo_env(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(" accepted: snapshot ") == 3, result.stderr
    assert snapshot_rows(server.database_path) == 3

    # The same seed names the same guilds with the same ids.
    expected = DemoBot(guild_count=12, seed=42).next_payload(AFTERNOON)["servers"]
    response = server.get("/api/bot/servers/")
    servers = response.json()
    assert len(servers) == 12
    assert [row["server_name"] for row in servers] == [
        row["server_name"] for row in expected
    ]
    assert [row["server_id"] for row in servers] == [
        int(row["server_id"]) for row in expected
    ]

    names = " ".join(row["server_name"] for row in servers)
    assert {"ARABIC", "HEBREW", "CYRILLIC"} <= scripts_of(names)
    assert scripts_of(names) & {"HIRAGANA", "KATAKANA", "CJK"}
    non_latin = next(
        row["server_name"]
        for row in servers
        if "ARABIC" in scripts_of(row["server_name"])
    )
    assert non_latin.encode() in response.content  # sent as UTF-8, not escaped

    resumen = server.get("/api/bot/resumen/").json()
    assert 0 <= resumen["servidores_conectados"] <= 12
    assert resumen["eventos_procesados_hoy"] > 0
    synced = datetime.fromisoformat(resumen["ultima_sincronizacion"])
    assert abs(datetime.now(UTC) - synced) < timedelta(minutes=1)

    estado = server.get("/api/bot/estado/").json()
    assert estado["status"] in {"online", "idle"}
    assert isinstance(estado["latencia_ms"], float)
    assert estado["obsoleto"] is False


def test_demo_bot_finds_the_generated_key_without_configuration(start_server):
    server = start_server(env={"BOT_API_KEY": ""})
    env = demo_env(server.instance_path)

    result = run_cli(
        "demo-bot", "--url", server.url, "--count", "1", "--guilds", "3", env=env
    )
    assert result.returncode == 0, result.stderr
    assert str(server.instance_path / "api_key") in result.stderr
    assert len(server.get("/api/bot/servers/").json()) == 3

    key_path = run_cli("key-path", env=env)
    assert key_path.stdout.strip() == str(server.instance_path / "api_key")


def test_demo_bot_goes_silent_and_stops_on_ctrl_c(start_server, tmp_path):
    server = start_server(env={"BOTMON_STALE_AFTER_SECONDS": "0.5"})
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            flask_command(
                "demo-bot",
                "--url",
                server.url,
                "--key",
                API_KEY,
                "--interval",
                "0.1",
                "--silent-after",
                "2",
            ),
            cwd=ROOT,
            env=demo_env(tmp_path / "instance"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: "going silent" in log_path.read_text(), what="silence")
        wait_for(
            lambda: server.get("/api/bot/estado/").json()["obsoleto"],
            what="botmon to mark the silent bot obsoleto",
        )
        assert process.poll() is None, log_path.read_text()
        assert snapshot_rows(server.database_path) == 2

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0, log_path.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(5)

    output = log_path.read_text()
    assert "Traceback" not in output
    assert "stopping: 2 pushes sent, 2 accepted" in output


def test_demo_bot_backs_off_while_botmon_is_unreachable(tmp_path):
    result = run_cli(
        "demo-bot",
        "--url",
        f"http://127.0.0.1:{free_port()}",
        "--key",
        API_KEY,
        "--count",
        "3",
        "--interval",
        "0.05",
        env=demo_env(tmp_path),
    )
    assert result.returncode == 1
    assert result.stderr.count("failed: cannot reach") == 3
    # Each consecutive failure doubles the wait.
    assert "retrying in 0.1 s" in result.stderr
    assert "retrying in 0.2 s" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("seed", range(60))
def test_demo_payloads_keep_the_contract(seed):
    schema = metrics_schema(25_000)
    guilds = [0, 1, 7, 25, 60, 400][seed % 6]
    bot = DemoBot(guild_count=guilds, seed=seed)
    now = AFTERNOON + timedelta(hours=seed)

    for step in range(4):
        payload = bot.next_payload(now + timedelta(seconds=5 * step))
        metrics = schema.load(strictjson.loads(encode(payload)))

        servers = metrics["servers"]
        assert len(servers) == guilds
        assert all(len(str(row["server_id"])) in (18, 19) for row in servers)
        assert metrics["estado"]["status"] in {"online", "idle"}
        assert isinstance(metrics["estado"]["latencia_ms"], float)
        assert isinstance(metrics["resumen"]["uptime_porcentaje"], float)
        assert metrics["resumen"]["servidores_conectados"] <= guilds


def test_demo_payloads_look_like_a_real_bot():
    bot = DemoBot(guild_count=300, seed=5)
    payloads = [
        bot.next_payload(AFTERNOON + timedelta(seconds=30 * step))
        for step in range(300)
    ]
    rows = payloads[-1]["servers"]
    assert any(isinstance(row["server_id"], str) for row in rows)
    assert any(isinstance(row["server_id"], int) for row in rows)
    assert len({int(row["server_id"]) for row in rows}) == 300

    statuses = [payload["estado"]["status"] for payload in payloads]
    assert 0.8 < statuses.count("online") / len(statuses) < 1.0
    guild_statuses = [
        row["status"] for payload in payloads for row in payload["servers"]
    ]
    assert guild_statuses.count("conectado") / len(guild_statuses) > 0.95

    latencies = {payload["estado"]["latencia_ms"] for payload in payloads}
    assert len(latencies) > 250  # jitter, not a constant
    members = [row["miembros"] for row in payloads[0]["servers"]]
    assert members != [row["miembros"] for row in rows]  # guilds drift


def test_events_grow_through_the_day_and_reset_at_utc_midnight():
    bot = DemoBot(guild_count=25, seed=3)
    before_midnight = datetime(2025, 11, 13, 23, 58, 0, tzinfo=UTC)
    counts = [
        bot.next_payload(before_midnight + timedelta(seconds=5 * step))["resumen"][
            "eventos_procesados_hoy"
        ]
        for step in range(20)
    ]
    assert all(later > earlier for earlier, later in pairwise(counts))

    after_midnight = datetime(2025, 11, 14, 0, 0, 3, tzinfo=UTC)
    reset = bot.next_payload(after_midnight)["resumen"]["eventos_procesados_hoy"]
    assert reset < counts[-1] / 100
    grown = bot.next_payload(after_midnight + timedelta(seconds=5))
    assert grown["resumen"]["eventos_procesados_hoy"] > reset


def test_same_seed_same_payloads():
    def run(seed):
        bot = DemoBot(guild_count=30, seed=seed)
        return [
            bot.next_payload(AFTERNOON + timedelta(seconds=5 * step))
            for step in range(5)
        ]

    assert run(11) == run(11)
    assert run(11) != run(12)


@pytest.fixture
def app(tmp_path):
    return create_app({"BOTMON_INSTANCE_PATH": str(tmp_path), "BOT_API_KEY": "k"})


def insert_snapshots(app, times: list[float]) -> list[int]:
    # A store that never prunes on its own, so the old rows stay for the CLI.
    store = Store(lock_timeout=5.0, retention_seconds=10**12)
    with app.app_context():
        return [
            store.save_snapshot(
                at,
                '{"eventos_procesados_hoy":1}',
                '{"status":"online"}',
                "[]",
                0,
            )
            for at in times
        ]


def test_prune_history_deletes_old_rows_and_keeps_the_newest(app):
    now = time.time()
    old = [now - 40 * 86_400 + minute * 60 for minute in range(5)]
    recent = [now - 3600 + minute * 60 for minute in range(3)]
    ids = insert_snapshots(app, old + recent)
    store = app.extensions["botmon"].store
    runner = app.test_cli_runner()

    result = runner.invoke(args=["prune-history"])
    assert result.exit_code == 0, result.output
    assert "deleted 5 snapshot(s)" in result.output
    assert "(older than 30 days); 3 remain" in result.output

    result = runner.invoke(args=["prune-history", "--days", "0"])
    assert result.exit_code == 0, result.output
    assert "deleted 2 snapshot(s)" in result.output
    with app.app_context():
        assert store.snapshot_count() == 1
        assert store.latest().id == ids[-1]


def test_prune_history_with_nothing_old_deletes_nothing(app):
    insert_snapshots(app, [time.time() - 60])
    result = app.test_cli_runner().invoke(args=["prune-history", "--days", "1"])
    assert result.exit_code == 0, result.output
    assert "deleted 0 snapshot(s)" in result.output
