"""The OpenAPI document at /api/openapi.json, generated from the schemas."""

import pytest
import schemathesis
from conftest import LiveServer

MAX_INT64 = 2**63 - 1
PATHS = [
    "/api/bot/metrics/",
    "/api/bot/resumen/",
    "/api/bot/estado/",
    "/api/bot/servers/",
    "/api/bot/rechazos/",
    "/api/bot/history/",
    "/api/bot/config/",
    "/api/health/",
    "/api/openapi.json",
]
ERROR_STATUSES = {"400", "401", "404", "405", "413", "415", "500", "503"}


@pytest.fixture(scope="module")
def document(shared_server) -> dict:
    response = shared_server.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    return response.json()


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    env = {
        "BOTMON_MAX_SERVERS": "7",
        "BOTMON_HISTORY_MAX_POINTS": "42",
        "BOTMON_READ_TOKEN": "read-secret",
    }
    server = LiveServer(tmp_path_factory.mktemp("botmon-openapi"), env).start()
    yield server
    server.kill()


def objects_in(node):
    """Every JSON Schema object definition anywhere in `node`."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            yield node
        for child in node.values():
            yield from objects_in(child)
    elif isinstance(node, list):
        for child in node:
            yield from objects_in(child)


def test_it_lists_every_endpoint_once_in_its_slash_form(document):
    assert document["openapi"].startswith("3.")
    assert sorted(document["paths"]) == sorted(PATHS)


def test_it_describes_the_websocket_in_words(document):
    description = document["info"]["description"]

    assert "/ws/bot/metrics/" in description
    assert "1001" in description and "1008" in description


def test_the_push_takes_the_metrics_schema_with_the_bot_key(document):
    post = document["paths"]["/api/bot/metrics/"]["post"]

    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/Metrics"}
    assert post["security"] == [{"botKey": []}]
    assert set(post["responses"]) == {"201"} | ERROR_STATUSES - {"404"}


def test_contract_fields_carry_their_bounds(document):
    schemas = document["components"]["schemas"]
    resumen = schemas["Resumen"]["properties"]
    server = schemas["Server"]["properties"]
    estado = schemas["Estado"]["properties"]

    count = {"type": "integer", "minimum": 0, "maximum": MAX_INT64}
    assert {k: server["miembros"][k] for k in count} == count
    assert resumen["uptime_porcentaje"]["minimum"] == 0
    assert resumen["uptime_porcentaje"]["maximum"] == 100
    assert estado["latencia_ms"]["type"] == "number"
    assert resumen["ultima_sincronizacion"]["format"] == "date-time"
    assert server["server_name"]["maxLength"] == 100
    assert estado["status"]["minLength"] == 1
    assert estado["status"]["maxLength"] == 32
    assert server["server_id"]["oneOf"] == [
        {"type": "integer", "minimum": 1, "maximum": MAX_INT64},
        {"type": "string", "pattern": "^[1-9][0-9]{0,18}$"},
    ]
    assert schemas["Metrics"]["properties"]["servers"]["maxItems"] == 25_000


def test_every_object_refuses_unknown_keys(document):
    objects = list(objects_in(document["components"]["schemas"]))

    assert len(objects) >= 12
    for node in objects:
        if node["properties"].keys() != {"fields"}:
            assert node["additionalProperties"] is False, node


def test_every_error_shares_the_error_schema(document):
    responses = document["components"]["responses"]

    assert {name.removeprefix("E") for name in responses} == ERROR_STATUSES
    for response in responses.values():
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Error"}
    assert "WWW-Authenticate" in responses["E401"]["headers"]
    assert "Allow" in responses["E405"]["headers"]
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["error", "message"]
    assert "fields" in error["properties"]


def test_every_operation_names_only_documented_statuses(document):
    for path, operations in document["paths"].items():
        for operation in operations.values():
            statuses = set(operation["responses"])
            assert statuses <= {"200", "201"} | ERROR_STATUSES, path
            assert "405" in statuses and "500" in statuses, path


def test_estado_and_history_describe_their_extra_fields(document):
    schemas = document["components"]["schemas"]
    estado = schemas["EstadoResponse"]

    assert estado["properties"]["obsoleto"]["type"] == "boolean"
    assert {"recibido_en", "obsoleto"} <= set(estado["required"])
    history = document["paths"]["/api/bot/history/"]["get"]
    assert [p["name"] for p in history["parameters"]] == ["since", "until", "limit"]
    assert "400" in history["responses"]


def test_without_a_read_token_reads_need_no_credentials(document):
    get = document["paths"]["/api/bot/resumen/"]["get"]

    assert "security" not in get and "401" not in get["responses"]


def test_the_document_follows_the_configured_limits(limited):
    document = limited.get("/api/openapi.json").json()

    servers = document["components"]["schemas"]["Metrics"]["properties"]["servers"]
    assert servers["maxItems"] == 7
    history = document["paths"]["/api/bot/history/"]["get"]
    limit = next(p for p in history["parameters"] if p["name"] == "limit")
    assert limit["schema"]["maximum"] == 42


def test_with_a_read_token_the_reads_document_it(limited):
    document = limited.get("/api/openapi.json").json()

    for path in PATHS[1:7]:
        get = document["paths"][path]["get"]
        assert {"readToken": []} in get["security"], path
        assert "401" in get["responses"], path
    health = document["paths"]["/api/health/"]["get"]
    assert "security" not in health
    assert "read-secret" not in str(document)


def test_the_document_is_a_valid_openapi_schema(shared_server):
    schema = schemathesis.openapi.from_url(shared_server.url + "/api/openapi.json")

    # Schemathesis leaves out the path it loaded the document from.
    operations = {op.ok().label for op in schema.get_all_operations()}
    reads = {f"GET {path}" for path in PATHS[1:8]}
    assert operations == {"POST /api/bot/metrics/"} | reads
