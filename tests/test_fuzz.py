"""Property-based and schema-driven fuzzing of the push, against one live server.

Hypothesis builds payloads that the contract accepts and payloads it refuses,
and checks three invariants through the real server: nothing answers 5xx; a
refused push changes nothing that can be read or heard; an accepted push reads
back and is broadcast exactly as normalised. Schemathesis then drives every
operation of the served OpenAPI document and checks each answer against it.

Runs are short by default; docs/testing.md tells how to run them longer
(BOTMON_FUZZ=long, BOTMON_FUZZ_EXAMPLES=N).
"""

import json
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests
import schemathesis
from conftest import API_KEY, SEED_PATH, LiveServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

MAX_INT64 = 2**63 - 1
MAX_SERVERS = 40
LONG = os.environ.get("BOTMON_FUZZ") == "long"
EXAMPLES = int(os.environ.get("BOTMON_FUZZ_EXAMPLES") or (2000 if LONG else 150))
SCHEMATHESIS_EXAMPLES = max(EXAMPLES // 6, 20)
# How often a refused push is followed by listening for a message that must
# not come: each such check waits SILENCE_SECONDS.
SILENCE_EVERY = 10
SILENCE_SECONDS = 0.15

settings.register_profile(
    "botmon-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    # The examples run against a live server, which is why each takes a while.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # A failing example is printed whole; CI keeps no example database.
    database=None if os.environ.get("CI") else settings.default.database,
    print_blob=True,
)
FUZZ = settings.get_profile("botmon-fuzz")

# ---- valid payloads --------------------------------------------------------

# Any code point but surrogates (Cs) and NUL; UTF-8 can carry all the others.
TEXT_ALPHABET = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
counts = st.one_of(
    st.integers(0, 1000), st.integers(0, MAX_INT64), st.sampled_from([0, MAX_INT64])
)


def bounded_number(low: float, high: float | None):
    floats = st.floats(low, high, allow_nan=False, allow_infinity=False)
    ints = st.integers(int(low), int(high) if high is not None else MAX_INT64)
    return st.one_of(ints, floats)


@st.composite
def timestamps(draw) -> tuple[str, str]:
    """A date-time as a bot may write it, and as botmon must send it back."""
    moment = draw(
        st.datetimes(
            min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31, 23, 59, 59)
        )
    )
    offset_minutes = draw(st.none() | st.integers(-23 * 60 - 59, 23 * 60 + 59))
    separator = draw(st.sampled_from(["T", " "]))
    precision = draw(st.sampled_from(["seconds", "milliseconds", "microseconds"]))
    if offset_minutes is None:
        text = moment.isoformat(sep=separator, timespec=precision)
        utc = moment.replace(tzinfo=UTC)
    else:
        zone = timezone(timedelta(minutes=offset_minutes))
        aware = moment.replace(tzinfo=zone)
        text = aware.isoformat(sep=separator, timespec=precision)
        if offset_minutes == 0 and draw(st.booleans()):
            text = text.removesuffix("+00:00") + draw(st.sampled_from(["Z", "z"]))
        utc = aware.astimezone(UTC)
    if precision == "milliseconds":
        utc = utc.replace(microsecond=utc.microsecond // 1000 * 1000)
    elif precision == "seconds":
        utc = utc.replace(microsecond=0)
    expected = (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:"
        f"{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}Z"
    )
    return text, expected


def text(max_size: int):
    return st.text(TEXT_ALPHABET, min_size=1, max_size=max_size)


snowflake_numbers = st.one_of(
    st.integers(1, MAX_INT64),
    st.sampled_from([1, 2**53 + 1, MAX_INT64]),
)


@st.composite
def snowflakes(draw) -> tuple[int | str, int]:
    number = draw(snowflake_numbers)
    return (str(number) if draw(st.booleans()) else number), number


@st.composite
def valid_payloads(draw) -> tuple[dict, dict]:
    """A payload the contract accepts, and its normalised form."""
    sync_sent, sync_back = draw(timestamps())
    conn_sent, conn_back = draw(timestamps())
    resumen = {
        "servidores_conectados": draw(counts),
        "eventos_procesados_hoy": draw(counts),
        "uptime_porcentaje": draw(bounded_number(0, 100)),
        "ultima_sincronizacion": sync_sent,
    }
    estado = {
        "status": draw(text(32)),
        "uptime_dias": draw(counts),
        "latencia_ms": draw(bounded_number(0, None)),
        "ultima_conexion": conn_sent,
    }
    ids = draw(
        st.lists(snowflakes(), max_size=MAX_SERVERS, unique_by=lambda pair: pair[1])
    )
    servers = [
        {
            "server_id": sent,
            "server_name": draw(text(100)),
            "miembros": draw(counts),
            "canales": draw(counts),
            "status": draw(text(32)),
        }
        for sent, _ in ids
    ]
    payload = {"resumen": resumen, "estado": estado, "servers": servers}

    expected = json.loads(json.dumps(payload))
    expected["resumen"]["ultima_sincronizacion"] = sync_back
    expected["estado"]["ultima_conexion"] = conn_back
    for row, (_, number) in zip(expected["servers"], ids, strict=True):
        row["server_id"] = number
    return payload, expected


# ---- invalid payloads ------------------------------------------------------

COUNT_PATHS = [
    ("resumen", "servidores_conectados"),
    ("resumen", "eventos_procesados_hoy"),
    ("estado", "uptime_dias"),
    ("servers", 0, "miembros"),
    ("servers", 0, "canales"),
]
NUMBER_PATHS = [("resumen", "uptime_porcentaje"), ("estado", "latencia_ms")]
TIME_PATHS = [("resumen", "ultima_sincronizacion"), ("estado", "ultima_conexion")]
TEXT_PATHS = [
    ("estado", "status"),
    ("servers", 0, "status"),
    ("servers", 0, "server_name"),
]
ID_PATH = ("servers", 0, "server_id")
ALL_PATHS = [*COUNT_PATHS, *NUMBER_PATHS, *TIME_PATHS, *TEXT_PATHS, ID_PATH]
RAW = "@@raw@@"

wrong_types = st.one_of(
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
bad_counts = st.one_of(
    wrong_types,
    st.integers(max_value=-1),
    st.integers(min_value=MAX_INT64 + 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(0, 10**6).map(str),
)
bad_snowflakes = st.one_of(
    wrong_types,
    st.integers(max_value=0),
    st.integers(min_value=MAX_INT64 + 1),
    st.integers(min_value=MAX_INT64 + 1).map(str),
    st.integers(1, MAX_INT64).map(lambda n: f"0{n}"),
    st.integers(1, MAX_INT64).map(lambda n: f"+{n}"),
    st.integers(1, MAX_INT64).map(lambda n: f" {n}"),
    st.integers(1, MAX_INT64).map(lambda n: f"{n:,}"),
    st.sampled_from(["", "0", "٣", "1e5", "1.0", str(MAX_INT64 + 1), "9" * 20]),
    st.floats(allow_nan=False, allow_infinity=False),
)
bad_texts = st.one_of(
    wrong_types,
    st.just(""),
    st.text(TEXT_ALPHABET, min_size=101, max_size=140),
    st.text(TEXT_ALPHABET, max_size=10).map(lambda t: t + "\x00"),
    st.integers(),
)
bad_times = st.one_of(
    wrong_types,
    st.integers(),
    st.sampled_from(
        [
            "",
            "2025-02-30T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-11-13",
            "18:00:00",
            "yesterday",
            "2025-11-13T25:00:00Z",
            "0001-01-01T00:00:00+05:00",
            "9999-12-31T23:59:59-05:00",
        ]
    ),
    st.text(TEXT_ALPHABET, max_size=20),
)
raw_number_tokens = st.sampled_from(
    ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "nan", "087", "1.", ".5"]
)


def _set(document: dict, path: tuple, value) -> None:
    node = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


@st.composite
def invalid_bodies(draw) -> bytes:
    """A body the contract refuses, built by breaking one valid payload."""
    payload, _ = draw(valid_payloads())
    if not payload["servers"]:
        payload["servers"].append(
            {
                "server_id": 1,
                "server_name": "x",
                "miembros": 1,
                "canales": 1,
                "status": "ok",
            }
        )
    breakage = draw(
        st.sampled_from(
            [
                "count",
                "number",
                "time",
                "text",
                "snowflake",
                "raw number",
                "surrogate",
                "unknown key",
                "missing key",
                "duplicate id",
                "duplicate key",
                "deep nesting",
                "not an object",
                "not utf-8",
                "too many servers",
            ]
        )
    )
    raw = None

    if breakage == "count":
        _set(payload, draw(st.sampled_from(COUNT_PATHS)), draw(bad_counts))
    elif breakage == "number":
        path = draw(st.sampled_from(NUMBER_PATHS))
        low = st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False)
        value = draw(wrong_types | low | st.integers(max_value=-1))
        if path[1] == "uptime_porcentaje" and draw(st.booleans()):
            value = draw(st.integers(101) | st.floats(100.0001, 1e300))
        _set(payload, path, value)
    elif breakage == "time":
        value = draw(bad_times)
        _set(payload, draw(st.sampled_from(TIME_PATHS)), value)
        if isinstance(value, str) and _is_valid_time(value):
            value = None
            _set(payload, TIME_PATHS[0], "2025-02-30T00:00:00Z")
    elif breakage == "text":
        path = draw(st.sampled_from(TEXT_PATHS))
        value = draw(bad_texts)
        if path[-1] == "status" and value == "":
            value = "x" * 33
        _set(payload, path, value)
        if isinstance(value, str) and 0 < len(value) <= 32 and "\x00" not in value:
            _set(payload, path, "x" * 101)
    elif breakage == "snowflake":
        _set(payload, ID_PATH, draw(bad_snowflakes))
    elif breakage == "raw number":
        _set(payload, draw(st.sampled_from([*COUNT_PATHS, *NUMBER_PATHS])), RAW)
        raw = draw(raw_number_tokens)
    elif breakage == "surrogate":
        _set(payload, draw(st.sampled_from([*TEXT_PATHS, *TIME_PATHS])), RAW)
        raw = json.dumps(draw(st.sampled_from(["\ud800", "a\udfff", "\udc00x"])))
    elif breakage == "unknown key":
        place = draw(st.sampled_from([(), ("resumen",), ("estado",), ("servers", 0)]))
        node = payload
        for part in place:
            node = node[part]
        key = draw(st.text(max_size=10).filter(lambda k: k not in node))
        node[key] = draw(st.integers() | st.text(max_size=5) | st.none())
    elif breakage == "missing key":
        path = draw(st.sampled_from([*ALL_PATHS, ("resumen",), ("servers",)]))
        node = payload
        for part in path[:-1]:
            node = node[part]
        del node[path[-1]]
    elif breakage == "duplicate id":
        first = payload["servers"][0]
        twin = dict(
            first, server_id=draw(st.sampled_from([int, str]))(int(first["server_id"]))
        )
        payload["servers"].insert(draw(st.integers(1, len(payload["servers"]))), twin)
    elif breakage == "duplicate key":
        section = draw(st.sampled_from(["resumen", "estado"]))
        text_body = json.dumps(payload)
        key = next(iter(payload[section]))
        marker = f'"{section}": {{'
        return text_body.replace(marker, f'{marker}"{key}": 0, ', 1).encode()
    elif breakage == "deep nesting":
        depth = draw(st.sampled_from([50, 900, 5000, 100_000]))
        _set(payload, draw(st.sampled_from(ALL_PATHS)), RAW)
        raw = "[" * depth + "]" * depth
    elif breakage == "not an object":
        return json.dumps(
            draw(st.lists(st.integers()) | st.text() | st.integers())
        ).encode()
    elif breakage == "not utf-8":
        return json.dumps(payload).encode().replace(b"{", b"{\xff", 1)
    elif breakage == "too many servers":
        row = payload["servers"][0]
        payload["servers"] = [
            dict(row, server_id=index + 1) for index in range(MAX_SERVERS + 1)
        ]

    body = json.dumps(payload, ensure_ascii=draw(st.booleans()))
    if raw is not None:
        body = body.replace(f'"{RAW}"', raw)
    return body.encode("utf-8", "surrogatepass")


def _is_valid_time(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return "T" in value.upper() or " " in value.strip()


# ---- the server, its state, and a listener ---------------------------------


class Listener:
    """A WebSocket client that must hear exactly the accepted pushes."""

    def __init__(self, ws):
        self.ws = ws

    def drain(self) -> None:
        while True:
            try:
                self.ws.recv(timeout=SILENCE_SECONDS)
            except TimeoutError:
                return

    def expect(self, expected: dict) -> None:
        received = json.loads(self.ws.recv(timeout=10))
        assert canonical(received) == canonical(expected)

    def expect_silence(self) -> None:
        try:
            message = self.ws.recv(timeout=SILENCE_SECONDS)
        except TimeoutError:
            return
        raise AssertionError(f"a refused push was broadcast: {message[:200]}")


def canonical(value) -> str:
    """One text per value, telling 1 from 1.0 and keeping key order out of it."""
    return json.dumps(value, sort_keys=True)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    env = {"BOTMON_MAX_SERVERS": str(MAX_SERVERS)}
    server = LiveServer(tmp_path_factory.mktemp("botmon-fuzz"), env).start()
    assert server.post(SEED_PATH.read_bytes()).status_code == 201
    yield server
    server.kill()


@pytest.fixture(scope="module")
def http() -> requests.Session:
    with requests.Session() as session:
        yield session


@pytest.fixture
def listener(fuzz_server):
    with connect(fuzz_server.ws_url, open_timeout=10, max_size=None) as ws:
        client = Listener(ws)
        client.drain()
        yield client


def push(http: requests.Session, server: LiveServer, body: bytes) -> requests.Response:
    return http.post(
        server.url + "/api/bot/metrics/",
        data=body,
        headers={
            "Authorization": f"Bearer {API_KEY}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )


def readable_state(http: requests.Session, server: LiveServer) -> dict:
    """All that the GETs tell of the latest push, less botmon's own clock."""
    state = {}
    for section in ("resumen", "estado", "servers"):
        response = http.get(f"{server.url}/api/bot/{section}/", timeout=30)
        assert response.status_code == 200, response.text
        state[section] = response.json()
    state["estado"].pop("recibido_en")
    state["estado"].pop("obsoleto")
    return state


# ---- the properties --------------------------------------------------------


def test_an_accepted_push_reads_back_and_is_heard_exactly(fuzz_server, http, listener):
    @FUZZ
    @given(valid_payloads(), st.booleans())
    def accepted(pair, ascii_only):
        payload, expected = pair
        body = json.dumps(payload, ensure_ascii=ascii_only).encode()

        response = push(http, fuzz_server, body)

        assert response.status_code == 201, response.text
        assert canonical(readable_state(http, fuzz_server)) == canonical(expected)
        listener.expect(expected)

    accepted()


def test_a_refused_push_changes_nothing(fuzz_server, http, listener):
    counter = {"examples": 0}

    @FUZZ
    @given(invalid_bodies())
    def refused(body):
        before = readable_state(http, fuzz_server)

        response = push(http, fuzz_server, body)

        assert response.status_code == 400, response.text[:500]
        answer = response.json()
        assert answer["error"] == "invalid_payload" and answer["message"]
        assert answer["fields"]
        assert readable_state(http, fuzz_server) == before
        counter["examples"] += 1
        if counter["examples"] % SILENCE_EVERY == 0:
            listener.expect_silence()

    refused()
    listener.expect_silence()


def test_any_bytes_never_get_a_server_error(fuzz_server, http):
    @FUZZ
    @given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
    def any_body(body):
        response = push(http, fuzz_server, body)

        assert response.status_code in {201, 400}, response.text[:500]

    any_body()


@pytest.mark.parametrize("name", ["since", "until", "limit"])
def test_history_parameters_never_get_a_server_error(fuzz_server, http, name):
    values = st.one_of(
        st.text(max_size=40),
        timestamps().map(lambda pair: pair[0]),
        st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "0", "-1"]),
        st.integers().map(str),
    )

    @FUZZ
    @given(values)
    def history(value):
        response = http.get(
            f"{fuzz_server.url}/api/bot/history/", params={name: value}, timeout=30
        )

        assert response.status_code in {200, 400}, response.text[:500]
        assert response.headers["Content-Type"] == "application/json"

    history()


# ---- schemathesis against the served document ------------------------------


def test_every_operation_conforms_to_the_served_document(fuzz_server, http):
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/api/openapi.json")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    deadline = time.monotonic() + (600 if LONG else 40)
    answers = Counter()

    for result in schema.get_all_operations():
        operation = result.ok()
        modes = [GenerationMode.POSITIVE]
        # Only a body or parameters can be made invalid.
        if operation.body or operation.query:
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @settings(FUZZ, max_examples=SCHEMATHESIS_EXAMPLES)
            @given(case=operation.as_strategy(generation_mode=mode))
            def conforms(case):
                response = case.call_and_validate(
                    base_url=fuzz_server.url,
                    session=http,
                    headers=headers,
                    checks=checks,
                )
                answers[case.operation.label, response.status_code] += 1

            conforms()
            assert time.monotonic() < deadline, "the schemathesis run took too long"

    # The run reached the server and saw pushes both accepted and refused.
    assert answers["POST /api/bot/metrics/", 201] > 0, answers
    assert answers["POST /api/bot/metrics/", 400] > 0, answers
    assert answers["GET /api/bot/history/", 200] > 0, answers


def test_the_listener_survived_the_whole_run(fuzz_server):
    try:
        with connect(fuzz_server.ws_url, open_timeout=10, max_size=None) as ws:
            latest = json.loads(ws.recv(timeout=10))
    except ConnectionClosed as error:
        raise AssertionError(f"the stream is broken: {error}") from None
    assert set(latest) == {"resumen", "estado", "servers"}
    assert "Traceback" not in fuzz_server.log()
