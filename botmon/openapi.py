"""The OpenAPI document, derived from the marshmallow schemas.

apispec's marshmallow plugin turns each schema into a JSON Schema; the field
types of the contract (counts, snowflakes, timestamps...) are taught to it
here, so the document states the same bounds the validation enforces. Only
the operations (paths, statuses, parameters) are written out by hand.
"""

import math
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from . import schemas
from .config import Settings
from .schemas import (
    MAX_INT64,
    Count,
    FiniteNumber,
    MetricsSchema,
    ServerList,
    Snowflake,
    Text,
    UtcTimestamp,
)

OPENAPI_VERSION = "3.1.0"
READ_COOKIE_NAME = "botmon_read"
SNOWFLAKE_PATTERN = "^[1-9][0-9]{0,18}$"

DESCRIPTION = """\
botmon watches a Discord bot: the bot pushes its metrics to
`POST /api/bot/metrics/`, and anyone reads the latest state from the GETs.

Every path also answers without its final slash; only the slash form is
listed. Every error under /api/ is JSON with the `Error` shape. A method a path
does not take is answered 405 with an `Allow` header.

**Live stream.** `GET /ws/bot/metrics/` upgrades to a WebSocket (OpenAPI has
no way to describe one). Every accepted push is sent to every listener as one
text frame holding the push in the `Metrics` shape, normalised: server ids as
integers, timestamps in UTC with `Z` and microseconds. A listener that joins
after metrics exist gets the latest snapshot at once. A listener that cannot
keep up skips to the newest snapshot. The server pings; a peer that neither
answers nor reads is closed with 1008, and shutdown closes with 1001. When
BOTMON_READ_TOKEN is set, the upgrade needs the read cookie, `?token=`, or an
`Authorization: Bearer` header, and is otherwise answered with HTTP 401.

**Prometheus and badges.** Outside /api/ and not listed below, as they answer
in other formats than JSON: `GET /metrics` is the Prometheus exposition (text
format 0.0.4, or OpenMetrics when the Accept header asks for it), and
`GET /badge.svg` and `GET /badge/latency.svg` are SVG status badges (`?label=`
renames the left half). When BOTMON_READ_TOKEN is set they need it as an
`Authorization: Bearer` header, `?token=` or the read cookie, and are
otherwise answered 401 with the `Error` shape; BOTMON_BADGE_PUBLIC=true frees
the badges. docs/integrations.md describes every series and badge.
"""

ERRORS = {
    400: "The request breaks the contract; `fields` names every bad field.",
    401: "Missing or wrong credentials; the message says which.",
    404: "Nothing to answer yet, or no such endpoint.",
    405: "This path does not take that method; `Allow` lists the ones it does.",
    413: "The body is longer than BOTMON_MAX_BODY_BYTES.",
    415: "The body is not declared as `application/json`.",
    500: "botmon failed unexpectedly; its log says why.",
    503: "The database is locked or unavailable; retry after `Retry-After`.",
}
ERROR_HEADERS = {
    401: {"WWW-Authenticate": "Bearer"},
    405: {"Allow": "the methods this path takes"},
    503: {"Retry-After": "seconds to wait before retrying"},
}


def _first_paragraph(doc: str | None) -> str:
    return " ".join((doc or "").strip().split("\n\n")[0].split())


def _contract_field(converter, field: fields.Field, **kwargs: Any) -> dict:
    """The JSON Schema of the contract's own field types."""
    if isinstance(field, Count):
        return {"type": "integer", "minimum": 0, "maximum": MAX_INT64}
    if isinstance(field, FiniteNumber):
        # A finite JSON number: the largest double bounds what "finite" means.
        maximum = math.inf if field.maximum is None else field.maximum
        return {
            "type": "number",
            "minimum": field.minimum,
            "maximum": min(maximum, 1.7976931348623157e308),
        }
    if isinstance(field, UtcTimestamp):
        return {"type": "string", "format": "date-time", "minLength": 1}
    if isinstance(field, Text):
        return {"type": "string", "minLength": 1, "maxLength": field.max_length}
    if isinstance(field, Snowflake):
        return {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_INT64},
                {"type": "string", "pattern": SNOWFLAKE_PATTERN},
            ]
        }
    if isinstance(field, ServerList):
        return {"maxItems": field.max_servers}
    return {}


def _describe_contract_field(converter, field: fields.Field, **kwargs: Any) -> dict:
    # The field class's docstring is the rule in words; say it once, there.
    contract_types = (Count, FiniteNumber, UtcTimestamp, Text, Snowflake)
    if "description" in field.metadata or not isinstance(field, contract_types):
        return {}
    return {"description": _first_paragraph(type(field).__doc__)}


def _json_body(schema_name: str, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _ref(schema_name)}}},
    }


def _ref(schema_name: str) -> str:
    return f"#/components/schemas/{schema_name}"


def _error_responses(*statuses: int) -> dict:
    return {
        str(status): {"$ref": f"#/components/responses/E{status}"}
        for status in statuses
    }


def build_openapi(metrics_schema: MetricsSchema, settings: Settings) -> dict:
    """The OpenAPI document of a botmon running with these settings."""
    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    spec = APISpec(
        title="botmon",
        version="1",
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": DESCRIPTION},
    )
    plugin.converter.add_attribute_function(_contract_field)
    plugin.converter.add_attribute_function(_describe_contract_field)

    _add_schemas(spec, metrics_schema)
    _add_security(spec)
    _add_error_responses(spec)
    _add_paths(spec, settings)
    return spec.to_dict()


def _schema_name(schema: Any) -> str:
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__.removesuffix("Schema")


def _add_schemas(spec: APISpec, metrics_schema: MetricsSchema) -> None:
    # The app's own metrics schema carries the configured maximum of servers.
    spec.components.schema("Metrics", schema=metrics_schema)
    for cls in (
        schemas.ErrorSchema,
        schemas.AcceptedSchema,
        schemas.EstadoResponseSchema,
        schemas.RefusalsSchema,
        schemas.HistorySchema,
        schemas.PageConfigSchema,
        schemas.HealthSchema,
    ):
        spec.components.schema(_schema_name(cls), schema=cls)


def _add_security(spec: APISpec) -> None:
    spec.components.security_scheme(
        "botKey",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "BOT_API_KEY; also accepted for every read",
        },
    )
    spec.components.security_scheme(
        "readToken",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "BOTMON_READ_TOKEN, for reads when it is set",
        },
    )
    spec.components.security_scheme(
        "readCookie",
        {
            "type": "apiKey",
            "in": "cookie",
            "name": READ_COOKIE_NAME,
            "description": "set by opening /?token=<read token> in a browser",
        },
    )


def _add_error_responses(spec: APISpec) -> None:
    for status, description in ERRORS.items():
        response = _json_body("Error", description)
        headers = ERROR_HEADERS.get(status)
        if headers:
            response["headers"] = {
                name: {"description": text, "schema": {"type": "string"}}
                for name, text in headers.items()
            }
        spec.components.response(f"E{status}", response)


def _read(
    settings: Settings, summary: str, schema_name: str, *errors: int, **extra
) -> dict:
    """A GET operation: protected by the read token when one is set."""
    statuses = {*errors, 405, 500, 503}
    if settings.read_token:
        statuses.add(401)
    operation = {
        "summary": summary,
        "responses": {
            "200": _json_body(schema_name, summary),
            **_error_responses(*sorted(statuses)),
        },
        **extra,
    }
    if settings.read_token:
        operation["security"] = [{"readToken": []}, {"readCookie": []}, {"botKey": []}]
    return operation


def _add_paths(spec: APISpec, settings: Settings) -> None:
    spec.path(
        path="/api/bot/metrics/",
        operations={
            "post": {
                "summary": "Push the bot's metrics; 201 once they are committed",
                "security": [{"botKey": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": _ref("Metrics")}}
                    },
                },
                "responses": {
                    "201": _json_body("Accepted", "committed and broadcast"),
                    **_error_responses(400, 401, 405, 413, 415, 500, 503),
                },
            }
        },
    )
    spec.path(
        path="/api/bot/resumen/",
        operations={
            "get": _read(settings, "The latest resumen, as sent", "Resumen", 404)
        },
    )
    spec.path(
        path="/api/bot/estado/",
        operations={
            "get": _read(
                settings,
                "The latest estado, when it arrived, and whether it is stale",
                "EstadoResponse",
                404,
            )
        },
    )
    servers = _read(settings, "The guild rows of the latest push", "Server")
    servers["responses"]["200"]["content"]["application/json"]["schema"] = {
        "type": "array",
        "items": {"$ref": _ref("Server")},
    }
    spec.path(path="/api/bot/servers/", operations={"get": servers})
    spec.path(
        path="/api/bot/rechazos/",
        operations={
            "get": _read(settings, "How many pushes were refused, and why", "Refusals")
        },
    )
    spec.path(
        path="/api/bot/history/",
        operations={
            "get": _read(
                settings,
                "resumen and estado received in a time range, oldest first",
                "History",
                400,
                parameters=_history_parameters(settings),
            )
        },
    )
    spec.path(
        path="/api/bot/config/",
        operations={
            "get": _read(settings, "The page's limits and botmon's clock", "PageConfig")
        },
    )
    spec.path(
        path="/api/health/",
        operations={
            "get": {
                "summary": "For load balancers: 200 while the database answers",
                "responses": {
                    "200": _json_body("Health", "the database answers"),
                    **_error_responses(405, 500, 503),
                },
            }
        },
    )
    spec.path(
        path="/api/openapi.json",
        operations={
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "the OpenAPI document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_error_responses(405, 500),
                },
            }
        },
    )


def _history_parameters(settings: Settings) -> list[dict]:
    moment = {"type": "string", "format": "date-time"}
    return [
        {
            "name": "since",
            "in": "query",
            "description": "oldest receipt time (default: 24 hours before until)",
            "schema": moment,
        },
        {
            "name": "until",
            "in": "query",
            "description": "newest receipt time (default: now)",
            "schema": moment,
        },
        {
            "name": "limit",
            "in": "query",
            "description": "at most this many points, the newest "
            "(BOTMON_HISTORY_MAX_POINTS)",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": settings.history_max_points,
            },
        },
    ]
