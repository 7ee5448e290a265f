"""The HTTP API (SPEC section 3 and the key settings of section 6)."""

import json
import os
import re
import stat
import time
from datetime import datetime

import pytest
import requests
from conftest import API_KEY, LiveServer, wait_for

# The whole API is checked on each database botmon supports.
pytestmark = pytest.mark.both_backends

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
READ_PATHS = ["/api/bot/resumen/", "/api/bot/estado/", "/api/bot/servers/"]


def parse_time(text: str) -> float:
    assert TIMESTAMP.match(text), text
    return datetime.fromisoformat(text).timestamp()


def assert_json_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    if code is not None:
        assert body["error"] == code
    return body


def post_raw(server, body: bytes, headers: dict[str, str], path=None, **kwargs):
    """POST exactly these headers (requests adds only its defaults)."""
    url = server.url + (path or "/api/bot/metrics/")
    return requests.post(url, data=body, headers=headers, timeout=30, **kwargs)


# The seed payload, byte for byte.


def test_the_seed_payload_is_accepted_and_read_back_exactly(server, seed_bytes, seed):
    response = server.post(seed_bytes)

    assert response.status_code == 201, response.text
    assert server.get("/api/bot/resumen/").json() == seed["resumen"]
    assert server.get("/api/bot/servers/").json() == seed["servers"]
    estado = server.get("/api/bot/estado/").json()
    assert list(estado) == [*seed["estado"], "recibido_en", "obsoleto"]
    assert {key: estado[key] for key in seed["estado"]} == seed["estado"]


def test_the_seed_keeps_its_number_tokens(server, seed_bytes):
    server.post(seed_bytes)

    assert '"uptime_porcentaje":99.8,' in server.get("/api/bot/resumen/").text
    assert '"latencia_ms":45,' in server.get("/api/bot/estado/").text
    assert '"server_id":987654321,' in server.get("/api/bot/servers/").text


# 201: the stored snapshot's id and botmon's time of receipt.


def test_a_push_answers_201_with_the_snapshot_id_and_receipt_time(server, seed_bytes):
    before = time.time()
    first = server.post(seed_bytes)
    second = server.post(seed_bytes)
    after = time.time()

    assert first.status_code == second.status_code == 201
    assert first.headers["Content-Type"] == "application/json"
    assert set(first.json()) == {"id", "recibido_en"}
    assert isinstance(first.json()["id"], int)
    assert second.json()["id"] > first.json()["id"]
    received = parse_time(second.json()["recibido_en"])
    assert before - 0.01 <= received <= after + 0.01

    estado = server.get("/api/bot/estado/").json()
    assert estado["recibido_en"] == second.json()["recibido_en"]


# Before the first push.


@pytest.mark.parametrize(
    "path",
    ["/api/bot/resumen/", "/api/bot/estado/", "/api/bot/resumen", "/api/bot/estado"],
)
def test_resumen_and_estado_are_404_before_any_metrics(server, path):
    response = server.get(path, allow_redirects=False)

    body = assert_json_error(response, 404, "no_metrics_yet")
    assert "/api/bot/metrics/" in body["message"]


def test_servers_is_an_empty_list_before_any_metrics(server):
    response = server.get("/api/bot/servers/")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == []


# Paths with and without the trailing slash, never redirected.


@pytest.mark.parametrize("path", [*READ_PATHS, "/api/bot/rechazos/"])
@pytest.mark.parametrize("slash", ["/", ""])
def test_reads_answer_with_or_without_trailing_slash(server, seed_bytes, path, slash):
    server.post(seed_bytes)

    response = server.get(path.rstrip("/") + slash, allow_redirects=False)

    assert response.status_code == 200
    assert response.json() == server.get(path).json()


@pytest.mark.parametrize("path", ["/api/bot/metrics/", "/api/bot/metrics"])
def test_the_push_answers_with_or_without_trailing_slash(server, seed_bytes, path):
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    response = post_raw(server, seed_bytes, headers, path, allow_redirects=False)

    assert response.status_code == 201


# 401: the bearer key.


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-key",
        f"Bearer {API_KEY}x",
        f"Bearer {API_KEY[:-1]}",
        f"Bearer {API_KEY[:8]} {API_KEY[8:]}",
        f"Bearer {API_KEY} {API_KEY}",
        f"Basic {API_KEY}",
        f"Token {API_KEY}",
        API_KEY,
    ],
)
def test_a_push_without_the_right_bearer_key_is_401(
    shared_server, seed_bytes, authorization
):
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization

    response = post_raw(shared_server, seed_bytes, headers)

    assert_json_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_the_401_message_says_what_is_wrong(shared_server, seed_bytes):
    missing = shared_server.post(seed_bytes, key=None).json()["message"]
    wrong = shared_server.post(seed_bytes, key="nope").json()["message"]

    assert "missing" in missing and "Authorization" in missing
    assert missing != wrong


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(server, seed_bytes, scheme):
    headers = {
        "Authorization": f"{scheme} {API_KEY}",
        "Content-Type": "application/json",
    }

    assert post_raw(server, seed_bytes, headers).status_code == 201


def test_the_key_is_never_logged(server, seed_bytes):
    near_miss = API_KEY[:-1] + "Z"
    server.post(seed_bytes, key=near_miss)
    server.post(seed_bytes, key=None)
    server.post(seed_bytes)

    log = server.log()
    assert "refused a push" in log
    assert API_KEY not in log
    assert near_miss not in log


def test_a_key_from_the_environment_is_stripped(start_server, seed_bytes):
    server = start_server({"BOT_API_KEY": "  \tspaced-key \n"})

    assert server.post(seed_bytes, key="spaced-key").status_code == 201
    assert server.post(seed_bytes, key="spaced-key ").status_code == 201
    assert server.post(seed_bytes, key=API_KEY).status_code == 401


def test_a_generated_key_is_kept_private_and_reused(start_server, seed_bytes):
    server = start_server({"BOT_API_KEY": ""})
    key_file = server.instance_path / "api_key"
    key = key_file.read_text().strip()

    assert len(key) >= 32
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert server.post(seed_bytes, key=key).status_code == 201
    assert server.post(seed_bytes).status_code == 401
    assert str(key_file) in server.log()

    server.stop()
    server.start()

    assert key_file.read_text().strip() == key
    assert server.post(seed_bytes, key=key).status_code == 201
    assert server.log().count(str(key_file)) >= 2
    assert key not in server.log()


# 413 and 415: the body's size and type.


@pytest.fixture(scope="module")
def small_body_server(tmp_path_factory, database_env, backend):
    """A server that takes bodies of at most 4096 bytes."""
    path = tmp_path_factory.mktemp("botmon-small-body")
    env = {**database_env(backend), "BOTMON_MAX_BODY_BYTES": "4096"}
    server = LiveServer(path, env).start()
    yield server
    server.kill()


def test_a_body_at_the_size_limit_is_accepted(small_body_server, seed_bytes):
    body = seed_bytes + b" " * (4096 - len(seed_bytes))

    assert small_body_server.post(body).status_code == 201


def test_a_body_over_the_size_limit_is_413(small_body_server, seed_bytes):
    body = seed_bytes + b" " * (4097 - len(seed_bytes))

    response = small_body_server.post(body)

    body = assert_json_error(response, 413, "payload_too_large")
    assert "BOTMON_MAX_BODY_BYTES" in body["message"]


def chunked(*parts: bytes):
    """A body requests sends chunked, without Content-Length."""
    yield from parts


def test_a_chunked_body_over_the_size_limit_is_413(small_body_server, seed_bytes):
    # Cut at the limit, this body would be valid JSON: it must still be refused.
    body = chunked(seed_bytes, b" " * 2048, b" " * 2048)
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    response = post_raw(small_body_server, body, headers)

    assert_json_error(response, 413, "payload_too_large")


def test_a_chunked_body_at_the_size_limit_is_accepted(small_body_server, seed_bytes):
    padding = b" " * (4096 - len(seed_bytes))
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    response = post_raw(small_body_server, chunked(seed_bytes, padding), headers)

    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"],
)
def test_a_body_that_is_not_declared_json_is_415(
    shared_server, seed_bytes, content_type
):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    if content_type is not None:
        headers["Content-Type"] = content_type

    body = assert_json_error(post_raw(shared_server, seed_bytes, headers), 415)
    assert "application/json" in body["message"]


def test_json_with_a_charset_parameter_is_accepted(server, seed_bytes):
    headers = {
        "Authorization": f"Bearer {API_KEY}",
        "Content-Type": "application/json; charset=utf-8",
    }

    assert post_raw(server, seed_bytes, headers).status_code == 201


# 404 and 405: JSON under /api/, never an HTML page.


@pytest.mark.parametrize(
    "path", ["/api", "/api/", "/api/nothing", "/api/bot/", "/api/bot/nothing/"]
)
def test_unknown_api_paths_are_404_json(shared_server, path):
    response = shared_server.get(path, allow_redirects=False)

    assert_json_error(response, 404, "not_found")
    assert "<html" not in response.text.lower()


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/bot/metrics/"),
        ("PUT", "/api/bot/metrics/"),
        ("DELETE", "/api/bot/metrics"),
        ("POST", "/api/bot/resumen/"),
        ("PUT", "/api/bot/estado/"),
        ("DELETE", "/api/bot/servers/"),
        ("PATCH", "/api/bot/servers"),
    ],
)
def test_wrong_methods_are_405_json_with_allow(shared_server, method, path):
    response = requests.request(method, shared_server.url + path, timeout=30)

    assert_json_error(response, 405, "method_not_allowed")
    assert response.headers["Allow"]


# estado: botmon's clock decides when the bot has gone silent.


def test_estado_is_fresh_right_after_a_push(server, seed_bytes):
    server.post(seed_bytes)

    assert server.get("/api/bot/estado/").json()["obsoleto"] is False


def test_estado_turns_stale_on_botmons_clock_whatever_the_bots_says(start_server, seed):
    server = start_server({"BOTMON_STALE_AFTER_SECONDS": "1"})
    seed["estado"]["ultima_conexion"] = "2099-01-01T00:00:00Z"
    seed["resumen"]["ultima_sincronizacion"] = "2099-01-01T00:00:00Z"

    before = time.time()
    assert server.post(seed).status_code == 201
    after = time.time()

    estado = server.get("/api/bot/estado/").json()
    assert estado["obsoleto"] is False
    assert before - 0.01 <= parse_time(estado["recibido_en"]) <= after + 0.01
    assert estado["ultima_conexion"] == "2099-01-01T00:00:00.000000Z"

    wait_for(lambda: server.get("/api/bot/estado/").json()["obsoleto"], timeout=5)
    assert time.time() - before >= 1

    assert server.post(seed).status_code == 201
    assert server.get("/api/bot/estado/").json()["obsoleto"] is False


def test_bot_timestamps_in_the_past_do_not_make_a_fresh_push_stale(start_server, seed):
    server = start_server({"BOTMON_STALE_AFTER_SECONDS": "60"})
    seed["estado"]["ultima_conexion"] = "2001-01-01T00:00:00Z"

    server.post(seed)

    assert server.get("/api/bot/estado/").json()["obsoleto"] is False


# Refused pushes are remembered: a bot that is refused is not a silent bot.


def test_refused_pushes_are_counted_with_the_last_reason(server, seed_bytes, seed):
    assert server.get("/api/bot/rechazos/").json() == {"total": 0, "ultimo": None}

    before = time.time()
    server.post(seed_bytes, key="wrong")
    first = server.get("/api/bot/rechazos/").json()
    assert first["total"] == 1
    assert first["ultimo"]["status"] == 401
    assert first["ultimo"]["error"] == "unauthorized"
    assert first["ultimo"]["message"]
    assert before - 0.01 <= parse_time(first["ultimo"]["en"]) <= time.time() + 0.01

    seed["estado"]["latencia_ms"] = -1
    server.post(seed)
    second = server.get("/api/bot/rechazos/").json()
    assert second["total"] == 2
    assert second["ultimo"]["status"] == 400
    assert second["ultimo"]["error"] == "invalid_payload"

    server.post(seed_bytes, headers={"Content-Type": "text/plain"})
    assert server.get("/api/bot/rechazos/").json()["ultimo"]["status"] == 415

    server.post(seed_bytes)
    assert server.get("/api/bot/rechazos/").json()["total"] == 3


def test_a_refused_push_record_does_not_echo_the_body(server, seed):
    marker = "marker-" + "9" * 20
    seed["servers"][0]["server_name"] = marker * 20

    server.post(seed)

    record = server.get("/api/bot/rechazos/")
    assert record.json()["total"] == 1
    assert marker not in record.text


# A refused payload changes nothing.


def refused_bodies(seed: dict) -> list[tuple[bytes, dict]]:
    bad_field = json.loads(json.dumps(seed))
    bad_field["resumen"]["servidores_conectados"] = 999
    bad_field["servers"][0]["miembros"] = -1
    bad_json = json.dumps(bad_field).replace("999", "NaN").encode()
    good = json.dumps(seed).encode()
    return [
        (json.dumps(bad_field).encode(), {}),
        (bad_json, {}),
        (b"[]", {}),
        (good, {"Authorization": "Bearer wrong"}),
        (good, {"Content-Type": "text/plain"}),
    ]


def test_a_refused_push_changes_nothing(server, seed_bytes, seed):
    assert server.post(seed_bytes).status_code == 201
    answers = [server.get(path).text for path in READ_PATHS]

    for body, headers in refused_bodies(seed):
        response = server.post(body, headers=headers)
        assert 400 <= response.status_code < 500

    assert [server.get(path).text for path in READ_PATHS] == answers


def test_a_refused_first_push_leaves_botmon_without_metrics(server, seed):
    for body, headers in refused_bodies(seed):
        server.post(body, headers=headers)

    assert server.get("/api/bot/resumen/").status_code == 404
    assert server.get("/api/bot/estado/").status_code == 404
    assert server.get("/api/bot/servers/").json() == []


# Found by fuzzing the history parameters: a range at the start of year 1.


@pytest.mark.parametrize(
    "query",
    [
        "until=0001-01-01T00:00:00Z",
        "until=0001-01-01T12:00:00",
        "since=0001-01-01T00:00:00Z&until=0001-01-01T00:00:00Z",
    ],
)
def test_history_at_the_earliest_time_is_an_empty_range_not_an_error(
    shared_server, query
):
    response = shared_server.get(f"/api/bot/history/?{query}")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["since"] == "0001-01-01T00:00:00.000000Z"
    assert body["points"] == []
