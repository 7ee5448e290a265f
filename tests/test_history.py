"""GET /api/bot/history/ and /api/bot/config/: what the page's charts read."""

import copy
from datetime import UTC, datetime, timedelta

import pytest

# The whole API is checked on each database botmon supports.
pytestmark = pytest.mark.both_backends


def push_latencies(server, seed, latencies):
    """Push one snapshot per latency; return the receipt times botmon gave."""
    received = []
    for index, latency in enumerate(latencies):
        payload = copy.deepcopy(seed)
        payload["estado"]["latencia_ms"] = latency
        payload["resumen"]["servidores_conectados"] = index
        response = server.post(payload)
        assert response.status_code == 201, response.text
        received.append(response.json()["recibido_en"])
    return received


def latencies_of(body):
    return [point["estado"]["latencia_ms"] for point in body["points"]]


def test_it_returns_points_oldest_first_in_the_wire_format(server, seed):
    received = push_latencies(server, seed, [10, 20.5, 30])

    response = server.get("/api/bot/history/")

    assert response.status_code == 200
    body = response.json()
    assert body["truncated"] is False
    assert [point["recibido_en"] for point in body["points"]] == received
    assert latencies_of(body) == [10, 20.5, 30]
    first = body["points"][0]
    assert set(first) == {"recibido_en", "resumen", "estado", "servers"}
    assert first["resumen"]["servidores_conectados"] == 0
    assert first["servers"] == len(seed["servers"])
    assert "recibido_en" not in first["estado"]


def test_it_answers_an_empty_list_before_any_push(server):
    body = server.get("/api/bot/history").json()
    assert body["points"] == []
    assert body["truncated"] is False


def test_since_and_until_bound_the_range(server, seed):
    received = push_latencies(server, seed, [1, 2, 3, 4])

    middle = server.get(
        "/api/bot/history/",
        params={"since": received[1], "until": received[2]},
    ).json()
    after = server.get("/api/bot/history/", params={"since": received[3]}).json()
    long_ago = datetime.now(UTC) - timedelta(days=3)
    before = server.get(
        "/api/bot/history/", params={"until": long_ago.isoformat()}
    ).json()

    assert latencies_of(middle) == [2, 3]
    assert latencies_of(after) == [4]
    assert before["points"] == []


def test_a_naive_time_is_taken_as_utc(server, seed):
    received = push_latencies(server, seed, [7])
    naive = received[0].removesuffix("Z")
    body = server.get("/api/bot/history/", params={"since": naive}).json()
    assert latencies_of(body) == [7]


def test_limit_keeps_the_newest_points_and_says_so(start_server, seed):
    server = start_server(env={"BOTMON_HISTORY_MAX_POINTS": "3"})
    push_latencies(server, seed, [1, 2, 3, 4, 5])

    default = server.get("/api/bot/history/").json()
    two = server.get("/api/bot/history/", params={"limit": "2"}).json()
    all_of_it = server.get("/api/bot/history/", params={"limit": "3"}).json()

    assert default["limit"] == 3
    assert latencies_of(default) == [3, 4, 5]
    assert default["truncated"] is True
    assert latencies_of(two) == [4, 5]
    assert latencies_of(all_of_it) == [3, 4, 5]

    too_many = server.get("/api/bot/history/", params={"limit": "4"})
    assert too_many.status_code == 400
    assert "from 1 to 3" in too_many.json()["message"]


@pytest.mark.parametrize(
    "params, parameter",
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "2.5"}, "limit"),
        ({"limit": "9" * 50}, "limit"),
        ({"limit": "2001"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-40T00:00:00Z"}, "until"),
        ({"since": "0001-01-01T00:00:00+14:00"}, "since"),
    ],
)
def test_bad_parameters_are_a_400_naming_the_parameter(
    shared_server, params, parameter
):
    response = shared_server.get("/api/bot/history/", params=params)

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_parameter"
    assert body["parameter"] == parameter
    assert parameter in body["message"]


def test_a_range_that_ends_before_it_starts_is_a_400(shared_server):
    response = shared_server.get(
        "/api/bot/history/",
        params={"since": "2025-11-14T00:00:00Z", "until": "2025-11-13T00:00:00Z"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_range"


def test_config_tells_the_page_the_stale_limit_and_the_time(start_server):
    server = start_server(env={"BOTMON_STALE_AFTER_SECONDS": "42"})

    body = server.get("/api/bot/config/").json()

    assert body["stale_after_seconds"] == 42
    assert body["history_max_points"] == 2000
    assert body["history_retention_days"] == 30
    now = datetime.fromisoformat(body["now"])
    assert abs((datetime.now(UTC) - now).total_seconds()) < 5
