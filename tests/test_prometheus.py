"""Prometheus exposition at /metrics, parsed with prometheus_client's own parsers."""

import copy
import gzip
import json
import threading
import time
from datetime import datetime

import pytest
import requests
from conftest import API_KEY, wait_for
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from botmon.config import ConfigError, Settings
from botmon.database import DatabaseBusy
from botmon.hub import Hub
from botmon.telemetry import REFUSAL_REASONS, BotCollector, guild_figures

READ_TOKEN = "read-token-for-prometheus"
# What Prometheus 3 sends by default: OpenMetrics first.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,"
    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
HOSTILE_NAMES = [
    'quote " and backslash \\ end',
    "new\nline",
    "<script>alert(1)</script> & co",
    "\u202eمرحبا 🎉",
    "} 1\nfake_metric 42",
]


class Scrape:
    """One /metrics answer, parsed: samples by name and labels."""

    def __init__(self, text: str, families):
        self.text = text
        self.families = {family.name: family for family in families}
        self.samples = {}
        for family in self.families.values():
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                assert key not in self.samples, f"duplicate sample {key}"
                self.samples[key] = sample.value

    def value(self, name: str, **labels) -> float:
        return self.samples[(name, tuple(sorted(labels.items())))]

    def labelled(self, name: str) -> dict[tuple, float]:
        return {
            labels: value
            for (sample_name, labels), value in self.samples.items()
            if sample_name == name
        }

    def has(self, name: str) -> bool:
        return any(sample_name == name for sample_name, _ in self.samples)


def scrape(server, **kwargs) -> Scrape:
    response = server.get("/metrics", **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"
    return Scrape(response.text, text_string_to_metric_families(response.text))


def with_servers(seed: dict, servers: list[dict], status: str = "online") -> dict:
    payload = copy.deepcopy(seed)
    payload["servers"] = servers
    payload["estado"]["status"] = status
    return payload


def guild(server_id: int, name: str, members: int, status="conectado") -> dict:
    return {
        "server_id": server_id,
        "server_name": name,
        "miembros": members,
        "canales": members % 7 + 1,
        "status": status,
    }


# The bot's numbers.


def test_before_any_push_only_botmons_own_series_are_exported(server):
    result = scrape(server)

    assert result.value("botmon_database_readable") == 1
    assert result.value("botmon_pushes_accepted_total") == 0
    assert result.value("botmon_listeners") == 0
    for reason in REFUSAL_REASONS:
        assert result.value("botmon_pushes_refused_total", reason=reason) == 0
    assert not [name for name, _ in result.samples if name.startswith("botmon_bot_")]
    assert result.has("process_open_fds")


def test_it_exports_the_seeds_numbers_in_base_units(server, seed_bytes):
    answer = server.post(seed_bytes)
    assert answer.status_code == 201
    received = datetime.fromisoformat(answer.json()["recibido_en"]).timestamp()

    result = scrape(server)

    assert result.value("botmon_bot_servers_connected") == 5
    assert result.value("botmon_bot_events_today") == 1230
    assert result.value("botmon_bot_uptime_ratio") == pytest.approx(0.998)
    assert result.value("botmon_bot_uptime_seconds") == 15 * 86_400
    assert result.value("botmon_bot_latency_seconds") == pytest.approx(0.045)
    assert result.labelled("botmon_bot_status") == {
        (("status", "online"),): 1,
        (("status", "idle"),): 0,
        (("status", "dnd"),): 0,
        (("status", "offline"),): 0,
        (("status", "invisible"),): 0,
    }
    assert result.value("botmon_bot_guild_rows") == 1
    assert result.labelled("botmon_bot_guilds") == {(("status", "conectado"),): 1}
    assert result.value("botmon_bot_stale") == 0
    assert 0 <= result.value("botmon_bot_seconds_since_last_push") < 60
    assert result.value("botmon_bot_last_push_timestamp_seconds") == pytest.approx(
        received, abs=1e-5
    )
    assert result.value("botmon_pushes_accepted_total") == 1
    # Per-guild series are off by default.
    assert not result.has("botmon_guild_members")
    assert not result.has("botmon_guilds_not_exported")
    for family in result.families.values():
        assert family.documentation, family.name


def test_the_numbers_follow_each_push(server, seed):
    first = with_servers(seed, [guild(1, "a", 3)], status="idle")
    second = with_servers(seed, [guild(1, "a", 3), guild(2, "b", 4)], status="Dnd")
    second["estado"]["latencia_ms"] = 1500.5

    assert server.post(first).status_code == 201
    assert scrape(server).value("botmon_bot_status", status="idle") == 1
    assert server.post(second).status_code == 201
    result = scrape(server)

    assert result.value("botmon_bot_status", status="idle") == 0
    assert result.value("botmon_bot_status", status="dnd") == 1
    assert result.value("botmon_bot_latency_seconds") == pytest.approx(1.5005)
    assert result.value("botmon_bot_guild_rows") == 2
    assert result.value("botmon_pushes_accepted_total") == 2


def test_an_unknown_status_word_is_exported_as_sent(server, seed):
    assert server.post(with_servers(seed, [], status='mantenimiento "x"')).ok

    statuses = scrape(server).labelled("botmon_bot_status")

    assert statuses[(("status", 'mantenimiento "x"'),)] == 1
    assert sum(statuses.values()) == 1
    assert len(statuses) == 6


def test_the_stale_flag_follows_botmons_clock(start_server, seed_bytes):
    server = start_server({"BOTMON_STALE_AFTER_SECONDS": "1"})
    assert server.post(seed_bytes).status_code == 201

    def consistent_scrape() -> Scrape:
        result = scrape(server)
        silent_for = result.value("botmon_bot_seconds_since_last_push")
        assert result.value("botmon_bot_stale") == int(silent_for > 1), silent_for
        return result

    consistent_scrape()
    wait_for(
        lambda: consistent_scrape().value("botmon_bot_stale") == 1,
        what="stale after 1 s",
    )
    assert server.get("/api/bot/estado/").json()["obsoleto"] is True
    # The numbers stay: they are the last known ones, flagged as stale.
    assert consistent_scrape().value("botmon_bot_servers_connected") == 5

    assert server.post(seed_bytes).status_code == 201
    assert consistent_scrape().value("botmon_bot_seconds_since_last_push") < 60


# botmon's own numbers.


def test_refused_pushes_are_counted_by_reason(start_server, seed_bytes):
    server = start_server({"BOTMON_MAX_BODY_BYTES": "4096"})

    answers = [
        server.post(b"{not json"),
        server.post(b'{"resumen": {}}'),
        server.post(seed_bytes, key="wrong-key"),
        server.post(seed_bytes, key=None),
        server.post(seed_bytes, headers={"Content-Type": "text/plain"}),
        server.post(b" " * 5000),
        server.post(seed_bytes),
    ]
    assert [answer.status_code for answer in answers] == [
        400,
        400,
        401,
        401,
        415,
        413,
        201,
    ]

    result = scrape(server)
    refused = {
        dict(labels)["reason"]: value
        for labels, value in result.labelled("botmon_pushes_refused_total").items()
    }
    assert refused == {
        **dict.fromkeys(REFUSAL_REASONS, 0),
        "invalid_payload": 2,
        "unauthorized": 2,
        "unsupported_media_type": 1,
        "payload_too_large": 1,
    }
    assert result.value("botmon_pushes_accepted_total") == 1
    # The same refusals the API keeps as evidence.
    assert server.get("/api/bot/rechazos/").json()["total"] == 6
    # Reading is not pushing: GETs and wrong methods count as neither.
    assert server.get("/api/bot/metrics/").status_code == 405
    assert server.get("/api/bot/resumen/").status_code == 200
    again = scrape(server)
    for key, value in result.samples.items():
        if key[0].startswith("botmon_pushes_") and key[0].endswith("_total"):
            assert again.samples[key] == value, key


def test_listeners_are_counted_and_broadcasts_timed(server, seed_bytes):
    assert scrape(server).value("botmon_broadcast_seconds_count") == 0

    with connect(server.ws_url, open_timeout=10) as first:
        with connect(server.ws_url, open_timeout=10):
            wait_for(
                lambda: scrape(server).value("botmon_listeners") == 2,
                what="two listeners",
            )
            assert server.post(seed_bytes).status_code == 201
            assert json.loads(first.recv(timeout=10))["estado"]["status"] == "online"

            result = wait_for(
                lambda: (
                    (r := scrape(server)).value("botmon_broadcast_seconds_count") == 1
                    and r
                ),
                what="one broadcast timed",
            )
            assert 0 < result.value("botmon_broadcast_seconds_sum") < 10
            assert result.value("botmon_broadcast_seconds_bucket", le="+Inf") == 1
        wait_for(
            lambda: scrape(server).value("botmon_listeners") == 1,
            what="one listener left",
        )
    wait_for(
        lambda: scrape(server).value("botmon_listeners") == 0,
        what="no listener left",
    )


# Per-guild series.


def test_per_guild_series_are_bounded_and_keep_hostile_names_exact(start_server, seed):
    server = start_server(
        {"BOTMON_METRICS_PER_GUILD": "true", "BOTMON_METRICS_MAX_GUILDS": "4"}
    )
    guilds = [
        guild(10**18 + index, name, members=1000 - index)
        for index, name in enumerate(HOSTILE_NAMES)
    ]
    guilds.append(guild(9223372036854775807, "tiny", members=1))
    guilds.append(guild(7, "biggest", members=5000, status="desconectado"))
    assert server.post(with_servers(seed, guilds)).status_code == 201

    result = scrape(server)

    members = {
        (dict(labels)["server_id"], dict(labels)["server_name"]): value
        for labels, value in result.labelled("botmon_guild_members").items()
    }
    expected = [guilds[-1], *guilds[:3]]
    assert members == {
        (str(row["server_id"]), row["server_name"]): row["miembros"] for row in expected
    }
    channels = result.labelled("botmon_guild_channels")
    assert len(channels) == 4 and set(channels.values()) <= set(range(1, 8))
    assert result.value("botmon_guilds_not_exported") == 3
    assert result.value("botmon_bot_guild_rows") == 7
    assert result.labelled("botmon_bot_guilds") == {
        (("status", "conectado"),): 6,
        (("status", "desconectado"),): 1,
    }
    # A name cannot forge a series of its own.
    assert not result.has("fake_metric")


def test_the_largest_guilds_are_exported_and_ties_break_by_id():
    servers = [guild(index, f"g{index}", members=index % 3) for index in range(1, 10)]

    figures = guild_figures(json.dumps(servers), 4)

    assert [row[0] for row in figures.largest] == [2, 5, 8, 1]
    assert figures.rows == 9
    assert guild_figures(json.dumps(servers), 0).largest == []


def test_only_the_most_common_guild_statuses_become_labels():
    servers = [guild(index, "g", 1, status=f"s{index % 15}") for index in range(1, 151)]
    servers += [guild(1000 + index, "g", 1, status="common") for index in range(20)]

    figures = guild_figures(json.dumps(servers), 0)

    assert len(figures.statuses) == 10
    assert figures.statuses[0] == ("common", 20)
    assert figures.rows == 170


def test_max_guilds_must_be_positive():
    with pytest.raises(ConfigError, match="BOTMON_METRICS_MAX_GUILDS"):
        Settings.from_environ({"BOTMON_METRICS_MAX_GUILDS": "0"})
    settings = Settings.from_environ({"BOTMON_METRICS_PER_GUILD": "yes"})
    assert settings.metrics_per_guild and settings.metrics_max_guilds == 1000


# Formats and access.


def test_openmetrics_is_served_when_prometheus_asks_for_it(server, seed_bytes):
    assert server.post(seed_bytes).status_code == 201

    response = server.get("/metrics", headers={"Accept": PROMETHEUS_ACCEPT})

    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    families = {f.name: f for f in openmetrics_families(response.text)}
    assert families["botmon_pushes_accepted"].type == "counter"
    assert families["botmon_bot_servers_connected"].samples[0].value == 5


def test_the_exposition_is_gzipped_when_the_scraper_accepts_it(server):
    raw = requests.get(
        server.url + "/metrics", headers={"Accept-Encoding": "gzip"}, stream=True
    )
    assert raw.headers["Content-Encoding"] == "gzip"
    text = gzip.decompress(raw.raw.read()).decode()
    assert "botmon_listeners 0.0" in text

    plain = server.get("/metrics", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers
    assert "Accept-Encoding" in plain.headers["Vary"]


def test_the_openapi_document_points_to_metrics_and_badges(shared_server):
    document = shared_server.get("/api/openapi.json").json()

    description = document["info"]["description"]
    assert "/metrics" in description and "/badge.svg" in description
    # Not JSON operations: they stay out of the paths schemathesis drives.
    assert not [path for path in document["paths"] if not path.startswith("/api/")]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    from conftest import LiveServer

    server = LiveServer(
        tmp_path_factory.mktemp("botmon-prometheus-read"),
        {"BOTMON_READ_TOKEN": READ_TOKEN},
    ).start()
    yield server
    server.kill()


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"headers": {"Authorization": "Bearer not-the-token"}},
        {"headers": {"Authorization": f"Basic {READ_TOKEN}"}},
        {"params": {"token": READ_TOKEN + "x"}},
    ],
)
def test_with_a_read_token_metrics_need_it(guarded, kwargs):
    response = guarded.get("/metrics", **kwargs)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert READ_TOKEN not in response.text and "not-the-token" not in response.text
    assert "botmon_" not in response.text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"headers": {"Authorization": f"Bearer {READ_TOKEN}"}},
        {"headers": {"Authorization": f"Bearer {API_KEY}"}},
        {"params": {"token": READ_TOKEN}},
    ],
)
def test_with_a_read_token_metrics_accept_it(guarded, kwargs):
    result = scrape(guarded, **kwargs)

    assert result.value("botmon_database_readable") == 1


def test_the_read_cookie_of_the_page_opens_the_metrics(guarded):
    cookie = guarded.get(f"/?token={READ_TOKEN}", allow_redirects=False).cookies

    assert scrape(guarded, cookies=cookie).value("botmon_listeners") == 0


# The collector and the hub's timing, on their own.


class FailingStore:
    def latest_summary(self):
        raise DatabaseBusy("locked by another process")


def test_an_unreadable_database_leaves_botmons_own_figures(caplog):
    collector = BotCollector(Settings(), FailingStore(), time.time)

    families = list(collector.collect())

    assert [(f.name, f.samples[0].value) for f in families] == [
        ("botmon_database_readable", 0)
    ]
    assert "could not read" in caplog.text


def subscribe(hub: Hub):
    wake = threading.Event()
    return hub.subscribe(wake)


def test_a_broadcast_is_timed_until_every_listener_took_it():
    hub = Hub()
    timings = []
    hub.on_broadcast = timings.append
    first, second = subscribe(hub), subscribe(hub)

    hub.publish("a", 1)
    assert first.next_message().text == "a"
    assert timings == []
    late = subscribe(hub)
    hub.publish("b", 2)  # under way: not timed
    assert second.next_message().text == "b"

    assert len(timings) == 1 and timings[0] >= 0
    assert late.next_message().text == "b"
    assert first.next_message().text == "b"
    assert len(timings) == 1


def test_a_listener_leaving_ends_its_wait_and_quiet_hubs_time_nothing():
    hub = Hub()
    timings = []
    hub.on_broadcast = timings.append
    hub.publish("nobody listens", 1)
    assert timings == []

    staying, leaving = subscribe(hub), subscribe(hub)
    staying.next_message()
    leaving.next_message()
    hub.publish("x", 2)
    staying.next_message()
    leaving.close()
    leaving.close()

    assert len(timings) == 1
    hub.publish("y", 3)
    staying.next_message()
    assert len(timings) == 2


def test_a_failing_timing_callback_does_not_break_the_stream(caplog):
    hub = Hub()

    def broken(_seconds):
        raise RuntimeError("boom")

    hub.on_broadcast = broken
    subscription = subscribe(hub)
    hub.publish("a", 1)

    assert subscription.next_message().text == "a"
    assert "broadcast" in caplog.text
