"""The wire format's field rules (SPEC section 2), pushed through the real server.

Accepted cases go to one server of this module and are read back through the
GETs; refused cases go to the shared server, which they leave untouched.
"""

import copy
import json
import uuid

import pytest
from conftest import LiveServer

# The whole API is checked on each database botmon supports.
pytestmark = pytest.mark.both_backends

MAX_INT64 = 2**63 - 1
PLACEHOLDER = "@@raw-token@@"

COUNT_FIELDS = [
    "resumen.servidores_conectados",
    "resumen.eventos_procesados_hoy",
    "estado.uptime_dias",
    "servers.0.miembros",
    "servers.0.canales",
]
TIMESTAMP_FIELDS = ["resumen.ultima_sincronizacion", "estado.ultima_conexion"]
STATUS_FIELDS = ["estado.status", "servers.0.status"]
READ_BACK = {
    "resumen": "/api/bot/resumen/",
    "estado": "/api/bot/estado/",
    "servers": "/api/bot/servers/",
}


@pytest.fixture(scope="module")
def accepting_server(tmp_path_factory, database_env, backend):
    """A server of this module's own, for pushes that are accepted."""
    path = tmp_path_factory.mktemp("botmon-accepting")
    server = LiveServer(path, database_env(backend)).start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def limits_server(tmp_path_factory, database_env, backend):
    """A server with small limits on servers per push and on error messages."""
    env = {
        **database_env(backend),
        "BOTMON_MAX_SERVERS": "3",
        "BOTMON_MAX_ERROR_MESSAGES": "2",
    }
    server = LiveServer(tmp_path_factory.mktemp("botmon-limits"), env).start()
    yield server
    server.kill()


def _walk(document, path: str):
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, int(last) if isinstance(node, list) else last


def body_with(seed: dict, path: str, raw: str) -> bytes:
    """The seed as JSON text, with the field at `path` set to the token `raw`."""
    document = copy.deepcopy(seed)
    node, key = _walk(document, path)
    node[key] = PLACEHOLDER
    return json.dumps(document).replace(f'"{PLACEHOLDER}"', raw).encode()


def body_without(seed: dict, path: str) -> bytes:
    """The seed as JSON text, without the field at `path`."""
    document = copy.deepcopy(seed)
    node, key = _walk(document, path)
    del node[key]
    return json.dumps(document).encode()


def read_back(server: LiveServer, path: str):
    """The value the GETs answer for the field at `path` of the last push."""
    section, _, rest = path.partition(".")
    response = server.get(READ_BACK[section])
    assert response.status_code == 200, response.text
    node, key = _walk({section: response.json()}, path)
    return node[key]


def assert_refused(response, *paths: str) -> dict:
    """A 400 naming exactly `paths` as the bad fields; returns its fields."""
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == "invalid_payload"
    assert body["message"]
    assert sorted(body["fields"]) == sorted(paths), body
    assert all(isinstance(text, str) and text for text in body["fields"].values())
    return body["fields"]


def assert_kept(server, seed, path, raw, expected):
    response = server.post(body_with(seed, path, raw))
    assert response.status_code == 201, response.text
    value = read_back(server, path)
    assert value == expected
    assert type(value) is type(expected)


def text(value: str) -> str:
    """`value` as a JSON string token (non-ASCII and surrogates escaped)."""
    return json.dumps(value)


# Integer counts: a JSON integer token from 0 to 2^63-1, nothing else.


@pytest.mark.parametrize("path", COUNT_FIELDS)
@pytest.mark.parametrize(
    "raw, expected", [("0", 0), ("87", 87), (str(MAX_INT64), MAX_INT64)]
)
def test_counts_accept_integer_tokens(accepting_server, seed, path, raw, expected):
    assert_kept(accepting_server, seed, path, raw, expected)


@pytest.mark.parametrize("path", COUNT_FIELDS)
@pytest.mark.parametrize(
    "raw",
    [
        "true",
        "false",
        '"87"',
        "87.0",
        "1e2",
        "87.5",
        "-1",
        str(MAX_INT64 + 1),
        "null",
        "[87]",
        "{}",
    ],
)
def test_counts_refuse_anything_but_non_negative_integer_tokens(
    shared_server, seed, path, raw
):
    assert_refused(shared_server.post(body_with(seed, path, raw)), path)


# uptime_porcentaje: a finite number from 0 to 100, kept as sent.


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("0", 0),
        ("100", 100),
        ("99.8", 99.8),
        ("0.0", 0.0),
        ("100.0", 100.0),
        ("37", 37),
    ],
)
def test_uptime_percentage_accepts_numbers_from_0_to_100(
    accepting_server, seed, raw, expected
):
    assert_kept(accepting_server, seed, "resumen.uptime_porcentaje", raw, expected)


@pytest.mark.parametrize(
    "raw", ["-0.1", "-1", "100.1", "101", "1e3", '"99.8"', "true", "null", "[]"]
)
def test_uptime_percentage_refuses_out_of_range_and_non_numbers(
    shared_server, seed, raw
):
    path = "resumen.uptime_porcentaje"
    assert_refused(shared_server.post(body_with(seed, path, raw)), path)


# latencia_ms: a finite number >= 0, returned exactly as sent.


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("45", 45),
        ("45.5", 45.5),
        ("0", 0),
        ("0.001", 0.001),
        ("123.456", 123.456),
        ("250000", 250000),
    ],
)
def test_latency_is_returned_as_sent_not_rounded(accepting_server, seed, raw, expected):
    assert_kept(accepting_server, seed, "estado.latencia_ms", raw, expected)


def test_integer_latency_stays_an_integer_token(accepting_server, seed):
    assert accepting_server.post(body_with(seed, "estado.latencia_ms", "45")).ok
    assert '"latencia_ms":45,' in accepting_server.get("/api/bot/estado/").text

    assert accepting_server.post(body_with(seed, "estado.latencia_ms", "45.5")).ok
    assert '"latencia_ms":45.5,' in accepting_server.get("/api/bot/estado/").text


@pytest.mark.parametrize(
    "raw", ["-1", "-0.5", '"45"', "true", "false", "null", "[45]", "{}"]
)
def test_latency_refuses_negative_and_non_numbers(shared_server, seed, raw):
    path = "estado.latencia_ms"
    assert_refused(shared_server.post(body_with(seed, path, raw)), path)


# Date-times: ISO-8601, normalised to UTC with microseconds and Z.


@pytest.mark.parametrize("path", TIMESTAMP_FIELDS)
@pytest.mark.parametrize(
    "sent, normalised",
    [
        ("2025-11-13T18:00:00.831984Z", "2025-11-13T18:00:00.831984Z"),
        ("2025-11-13T18:00:00Z", "2025-11-13T18:00:00.000000Z"),
        ("2025-11-13T20:00:00+02:00", "2025-11-13T18:00:00.000000Z"),
        ("2025-11-13T13:30:00-04:30", "2025-11-13T18:00:00.000000Z"),
        ("2025-11-14T03:00:00.5+09:00", "2025-11-13T18:00:00.500000Z"),
        ("2025-11-13T18:00:00", "2025-11-13T18:00:00.000000Z"),
        ("2025-11-13T18:00:00.831984", "2025-11-13T18:00:00.831984Z"),
        ("2024-02-29T23:59:59Z", "2024-02-29T23:59:59.000000Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000000Z"),
        ("0999-12-31T23:00:00-00:30", "0999-12-31T23:30:00.000000Z"),
    ],
)
def test_timestamps_come_back_in_utc_with_z_and_microseconds(
    accepting_server, seed, path, sent, normalised
):
    assert_kept(accepting_server, seed, path, text(sent), normalised)


@pytest.mark.parametrize("path", TIMESTAMP_FIELDS)
@pytest.mark.parametrize(
    "raw",
    [
        text("2025-02-30T00:00:00Z"),
        text("2023-02-29T00:00:00Z"),
        text("2025-13-01T00:00:00Z"),
        text("2025-11-13T25:00:00Z"),
        text("2025-11-13T24:00:00Z"),
        text("2025-11-13T18:60:00Z"),
        text("2025-11-13T18:00:00+25:00"),
        text("2025-11-13"),
        text("18:00:00Z"),
        text("yesterday"),
        text(""),
        text("2025-11-13T18:00:00Z\u0000"),
        text("2025-11-13T18:00:00Z\ud800"),
        text("0001-01-01T00:00:00+01:00"),
        text("9999-12-31T23:00:00-02:00"),
        "1763056800",
        "null",
        "true",
    ],
)
def test_timestamps_refuse_impossible_dates_and_non_date_times(
    shared_server, seed, path, raw
):
    assert_refused(shared_server.post(body_with(seed, path, raw)), path)


# Status words: any non-empty string of at most 32 code points.


@pytest.mark.parametrize("path", STATUS_FIELDS)
@pytest.mark.parametrize(
    "value", ["online", "conectado", "x", "en mantenimiento", "a" * 32, "🟢" * 32]
)
def test_status_accepts_any_word_up_to_32_characters(
    accepting_server, seed, path, value
):
    assert_kept(accepting_server, seed, path, text(value), value)


@pytest.mark.parametrize("path", STATUS_FIELDS)
@pytest.mark.parametrize(
    "raw",
    [
        text(""),
        text("a" * 33),
        text("🟢" * 33),
        text("on\u0000line"),
        text("\ud800"),
        "1",
        "true",
        "null",
        '["online"]',
    ],
)
def test_status_refuses_empty_long_and_non_strings(shared_server, seed, path, raw):
    assert_refused(shared_server.post(body_with(seed, path, raw)), path)


# server_name: untrusted text, 1 to 100 code points.


@pytest.mark.parametrize(
    "value",
    [
        "RPSOFT",
        "a" * 100,
        "😀" * 100,
        "<script>alert('hi')</script> & \"friends\"",
        "Ελληνικά 日本語 عربي",
    ],
)
def test_server_name_accepts_up_to_100_code_points(accepting_server, seed, value):
    assert_kept(accepting_server, seed, "servers.0.server_name", text(value), value)


def test_server_name_of_100_emoji_is_accepted_as_raw_utf8(accepting_server, seed):
    document = copy.deepcopy(seed)
    document["servers"][0]["server_name"] = "😀" * 100
    body = json.dumps(document, ensure_ascii=False).encode()

    assert accepting_server.post(body).status_code == 201
    assert read_back(accepting_server, "servers.0.server_name") == "😀" * 100


@pytest.mark.parametrize(
    "raw",
    [
        text(""),
        text("a" * 101),
        text("😀" * 101),
        text("\u0000"),
        text("guild\u0000name"),
        text("\ud800"),
        text("guild\udfff"),
        text("\ude00\ud83d"),
        "42",
        "null",
        "false",
    ],
)
def test_server_name_refuses_empty_long_nul_surrogates_and_non_strings(
    shared_server, seed, raw
):
    path = "servers.0.server_name"
    assert_refused(shared_server.post(body_with(seed, path, raw)), path)


# server_id: a Discord snowflake, sent back as an exact JSON integer.


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("1", 1),
        ("987654321", 987654321),
        (text("987654321"), 987654321),
        (str(MAX_INT64), MAX_INT64),
        (text(str(MAX_INT64)), MAX_INT64),
        ("1234567890123456789", 1234567890123456789),
    ],
)
def test_server_id_is_kept_exact_and_returned_as_an_integer(
    accepting_server, seed, raw, expected
):
    assert_kept(accepting_server, seed, "servers.0.server_id", raw, expected)


def test_largest_server_id_is_sent_back_as_an_integer_token(accepting_server, seed):
    body = body_with(seed, "servers.0.server_id", text(str(MAX_INT64)))
    assert accepting_server.post(body).status_code == 201

    answer = accepting_server.get("/api/bot/servers/").text
    assert f'"server_id":{MAX_INT64},' in answer


@pytest.mark.parametrize(
    "raw",
    [
        "0",
        "-1",
        str(MAX_INT64 + 1),
        "1.0",
        "1e2",
        "true",
        "null",
        text("0"),
        text("-5"),
        text("+5"),
        text(" 5"),
        text("5 "),
        text("1_000"),
        text("1,000"),
        text("1 000"),
        text("1.0"),
        text("0123"),
        text(""),
        text("abc"),
        text("١٢٣"),
        text("１２３"),
        text(str(MAX_INT64 + 1)),
        text("9" * 40),
        text("5\u0000"),
        text("5\ud800"),
    ],
)
def test_server_id_refuses_anything_but_a_snowflake(shared_server, seed, raw):
    path = "servers.0.server_id"
    assert_refused(shared_server.post(body_with(seed, path, raw)), path)


@pytest.mark.parametrize(
    "first, second",
    [(5, 5), (5, "5"), ("5", 5), ("5", "5"), (MAX_INT64, str(MAX_INT64))],
)
def test_server_ids_are_unique_compared_as_numbers(shared_server, seed, first, second):
    row = seed["servers"][0]
    seed["servers"] = [{**row, "server_id": first}, {**row, "server_id": second}]

    fields = assert_refused(shared_server.post(seed), "servers.1.server_id")
    assert "duplicate" in fields["servers.1.server_id"]


def test_duplicate_ids_are_named_alongside_other_bad_rows(shared_server, seed):
    row = seed["servers"][0]
    seed["servers"] = [
        {**row, "server_id": 7, "miembros": -1},
        {**row, "server_id": 8},
        {**row, "server_id": "7"},
    ]

    fields = assert_refused(
        shared_server.post(seed), "servers.0.miembros", "servers.2.server_id"
    )
    assert "servers.0" in fields["servers.2.server_id"]


# The servers list: possibly empty, bounded by BOTMON_MAX_SERVERS.


def test_an_empty_servers_list_is_accepted(accepting_server, seed):
    seed["servers"] = []

    assert accepting_server.post(seed).status_code == 201
    assert accepting_server.get("/api/bot/servers/").json() == []


def test_servers_up_to_the_configured_maximum_are_accepted(limits_server, seed):
    row = seed["servers"][0]
    seed["servers"] = [{**row, "server_id": n} for n in range(1, 4)]

    assert limits_server.post(seed).status_code == 201
    assert len(limits_server.get("/api/bot/servers/").json()) == 3


def test_servers_over_the_configured_maximum_are_refused(limits_server, seed):
    row = seed["servers"][0]
    seed["servers"] = [{**row, "server_id": n} for n in range(1, 5)]

    fields = assert_refused(limits_server.post(seed), "servers")
    assert "3" in fields["servers"]


@pytest.mark.parametrize(
    "raw, path",
    [
        ("{}", "servers"),
        ('"servers"', "servers"),
        ("5", "servers"),
        ("null", "servers"),
        ("[5]", "servers.0"),
        ('["x"]', "servers.0"),
        ("[[]]", "servers.0"),
        ("[null]", "servers.0"),
    ],
)
def test_servers_must_be_an_array_of_objects(shared_server, seed, raw, path):
    assert_refused(shared_server.post(body_with(seed, "servers", raw)), path)


# Unknown, missing and mistyped keys, at every level.


@pytest.mark.parametrize(
    "path", ["extra", "resumen.extra", "estado.extra", "servers.0.extra"]
)
def test_unknown_keys_are_refused_at_any_level(shared_server, seed, path):
    node, key = _walk(seed, path)
    node[key] = 1

    assert_refused(shared_server.post(seed), path)


@pytest.mark.parametrize(
    "path",
    [
        "resumen",
        "estado",
        "servers",
        *COUNT_FIELDS,
        *TIMESTAMP_FIELDS,
        *STATUS_FIELDS,
        "resumen.uptime_porcentaje",
        "estado.latencia_ms",
        "servers.0.server_id",
        "servers.0.server_name",
    ],
)
def test_every_field_is_required(shared_server, seed, path):
    fields = assert_refused(shared_server.post(body_without(seed, path)), path)
    assert "missing" in fields[path]


@pytest.mark.parametrize("section", ["resumen", "estado"])
@pytest.mark.parametrize("raw", ["[]", '"x"', "5", "null", "true"])
def test_sections_must_be_objects(shared_server, seed, section, raw):
    assert_refused(shared_server.post(body_with(seed, section, raw)), section)


def test_every_bad_field_is_named_by_its_path(shared_server, seed):
    row = seed["servers"][0]
    seed["servers"] = [{**row, "server_id": n} for n in range(1, 6)]
    seed["servers"][3]["miembros"] = -4
    seed["servers"][1]["status"] = ""
    seed["resumen"]["uptime_porcentaje"] = 120
    seed["estado"]["latencia_ms"] = "fast"

    assert_refused(
        shared_server.post(seed),
        "resumen.uptime_porcentaje",
        "estado.latencia_ms",
        "servers.1.status",
        "servers.3.miembros",
    )


# Documents that are not JSON the contract accepts: the whole body is bad.


def _seed_text(seed: dict) -> str:
    return json.dumps(seed)


BAD_DOCUMENTS = {
    "array": b"[]",
    "array of the payload": lambda seed: f"[{_seed_text(seed)}]".encode(),
    "number": b"5",
    "string": b'"metrics"',
    "null": b"null",
    "true": b"true",
    "empty": b"",
    "whitespace": b" \n ",
    "truncated": lambda seed: _seed_text(seed)[:-3].encode(),
    "trailing garbage": lambda seed: (_seed_text(seed) + " x").encode(),
    "two documents": lambda seed: (_seed_text(seed) * 2).encode(),
    "single quotes": b"{'resumen': {}}",
    "comment": lambda seed: ("// hi\n" + _seed_text(seed)).encode(),
    "invalid utf-8": lambda seed: (
        _seed_text(seed).encode().replace(b"RPSOFT", b"RP\xff\xfeSOFT")
    ),
    "overlong utf-8": lambda seed: (
        _seed_text(seed).encode().replace(b"RPSOFT", b"RP\xc0\xafSOFT")
    ),
    "utf-8 encoded surrogate": lambda seed: (
        _seed_text(seed).encode().replace(b"RPSOFT", b"RP\xed\xa0\x80SOFT")
    ),
    "utf-16": lambda seed: _seed_text(seed).encode("utf-16"),
    "NaN": lambda seed: body_with(seed, "resumen.uptime_porcentaje", "NaN"),
    "Infinity": lambda seed: body_with(seed, "estado.latencia_ms", "Infinity"),
    "-Infinity": lambda seed: body_with(seed, "estado.latencia_ms", "-Infinity"),
    "1e999": lambda seed: body_with(seed, "estado.latencia_ms", "1e999"),
    "-1e999": lambda seed: body_with(seed, "resumen.uptime_porcentaje", "-1e999"),
    "5000 digits": lambda seed: body_with(seed, "servers.0.miembros", "9" * 5000),
    "duplicate top-level key": lambda seed: (
        _seed_text(seed)[:-1].encode() + b', "servers": []}'
    ),
    "duplicate nested key": lambda seed: body_with(
        seed, "resumen.servidores_conectados", '5, "servidores_conectados": 6'
    ),
    "duplicate key in a row": lambda seed: body_with(
        seed, "servers.0.miembros", '87, "miembros": 88'
    ),
    "deeply nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "deeply nested objects": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "deep nesting in a field": lambda seed: body_with(
        seed, "servers.0.server_name", "[" * 50_000 + "]" * 50_000
    ),
}


@pytest.mark.parametrize("name", BAD_DOCUMENTS)
def test_documents_the_contract_refuses_get_a_400_about_the_body(
    shared_server, seed, name
):
    body = BAD_DOCUMENTS[name]
    if callable(body):
        body = body(seed)

    fields = assert_refused(shared_server.post(body), "body")
    assert len(fields["body"]) < 200


# The 400 answer: bounded, by path, never the bot's own text.


def test_thousands_of_bad_rows_get_a_capped_answer(shared_server, seed):
    row = seed["servers"][0]
    seed["servers"] = [{**row, "server_id": n, "miembros": "x"} for n in range(1, 3001)]

    response = shared_server.post(seed)

    assert response.status_code == 400
    body = response.json()
    assert len(body["fields"]) == 50
    assert list(body["fields"])[:3] == [
        "servers.0.miembros",
        "servers.1.miembros",
        "servers.2.miembros",
    ]
    assert body["fields_omitted"] == 3000 - 50
    assert "3000" in body["message"]
    assert len(response.content) < 10_000


def test_the_message_cap_is_a_setting(limits_server, seed):
    row = seed["servers"][0]
    seed["servers"] = [{**row, "server_id": n, "canales": -1} for n in range(1, 4)]

    body = limits_server.post(seed).json()

    assert list(body["fields"]) == ["servers.0.canales", "servers.1.canales"]
    assert body["fields_omitted"] == 1


def test_an_answer_within_the_cap_omits_nothing(shared_server, seed):
    seed["estado"]["uptime_dias"] = -1

    body = shared_server.post(seed).json()

    assert set(body) == {"error", "message", "fields"}


@pytest.mark.parametrize(
    "path, template",
    [
        ("servers.0.server_name", "{marker}" * 10),
        ("servers.0.server_name", "{marker}\u0000"),
        ("servers.0.status", "{marker}" * 2),
        ("servers.0.server_id", "{marker}"),
        ("estado.status", "{marker}" * 2),
        ("estado.ultima_conexion", "{marker}"),
        ("resumen.ultima_sincronizacion", "2025-11-13T18:00:00Z{marker}"),
        ("resumen.servidores_conectados", "{marker}"),
        ("estado.latencia_ms", "{marker}"),
    ],
)
def test_the_answer_never_echoes_the_bad_value(shared_server, seed, path, template):
    marker = uuid.uuid4().hex
    node, key = _walk(seed, path)
    node[key] = template.format(marker=marker)

    response = shared_server.post(seed)

    assert_refused(response, path)
    assert marker not in response.text


def test_the_answer_never_echoes_a_body_that_is_not_json(shared_server):
    marker = uuid.uuid4().hex
    response = shared_server.post(f'{{"resumen": {marker}}}'.encode())

    assert_refused(response, "body")
    assert marker not in response.text


def test_an_unknown_key_with_a_lone_surrogate_is_named_safely(shared_server, seed):
    body = body_with(seed, "resumen.servidores_conectados", '5, "bad\\ud800key": 1')

    response = shared_server.post(body)

    fields = assert_refused(response, "resumen.bad\\ud800key")
    assert "unknown" in fields["resumen.bad\\ud800key"]


def test_an_unknown_key_is_named_by_at_most_64_characters(shared_server, seed):
    seed["estado"]["k" * 10_000] = 1

    assert_refused(shared_server.post(seed), "estado." + "k" * 64)
