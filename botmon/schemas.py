"""The wire format: one marshmallow schema per object of the contract.

These schemas are the single source of the field rules, of the normalised
values that are stored and broadcast, and of the OpenAPI document.
"""

import math
from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

MAX_INT64 = 2**63 - 1
STATUS_MAX_LENGTH = 32
SERVER_NAME_MAX_LENGTH = 100

_COMMON_ERRORS = {
    "required": "missing: this field is required",
    "null": "must not be null",
}


def _is_json_integer(value: Any) -> bool:
    # bool is a subclass of int in Python, but `true` is not an integer in JSON.
    return isinstance(value, int) and not isinstance(value, bool)


def check_text(value: Any, max_length: int) -> str:
    """Return `value` if it is text the contract accepts, else raise."""
    if not isinstance(value, str):
        raise ValidationError("must be a string")
    if not value:
        raise ValidationError("must not be empty")
    if len(value) > max_length:
        raise ValidationError(f"must be at most {max_length} characters long")
    if "\x00" in value:
        raise ValidationError("must not contain the NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("must not contain lone surrogates") from None
    return value


class Count(fields.Field):
    """A JSON integer token from 0 to 2^63-1 (not a boolean, float or string)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        if not _is_json_integer(value):
            raise ValidationError(
                "must be a JSON integer such as 12 (not a boolean, string or decimal)"
            )
        if value < 0:
            raise ValidationError("must be 0 or greater")
        if value > MAX_INT64:
            raise ValidationError(f"must be at most {MAX_INT64}")
        return value


class FiniteNumber(fields.Field):
    """A finite JSON number, returned exactly as sent (an int stays an int)."""

    def __init__(self, *, minimum: float, maximum: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.minimum = minimum
        self.maximum = maximum

    def _deserialize(
        self, value: Any, attr: Any, data: Any, **kwargs: Any
    ) -> int | float:
        if not (_is_json_integer(value) or isinstance(value, float)):
            raise ValidationError("must be a JSON number")
        try:
            as_float = float(value)
        except OverflowError:
            raise ValidationError("must be a finite number") from None
        if not math.isfinite(as_float):
            raise ValidationError("must be a finite number")
        if value < self.minimum:
            raise ValidationError(f"must be {self.minimum:g} or greater")
        if self.maximum is not None and value > self.maximum:
            raise ValidationError(f"must be at most {self.maximum:g}")
        return value


def utc_text(moment: datetime) -> str:
    """`moment` in UTC as the wire format writes it: microseconds and `Z`.

    isoformat, unlike strftime's %Y, always writes the year with four digits.
    """
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text.removesuffix("+00:00") + "Z"


class UtcTimestamp(fields.Field):
    """An ISO-8601 date-time, normalised to UTC with microseconds and `Z`.

    A naive time is taken as UTC. The normalised text is what is stored and
    sent back, so it is identical before and after a restart.
    """

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        check_text(value, 64)
        if "T" not in value.upper() and " " not in value.strip():
            raise ValidationError(
                "must be an ISO-8601 date-time such as 2025-11-13T18:00:00Z"
            )
        try:
            moment = datetime.fromisoformat(value.replace("z", "Z"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return utc_text(moment)
        except (ValueError, OverflowError):
            raise ValidationError(
                "must be a valid ISO-8601 date-time such as 2025-11-13T18:00:00Z"
            ) from None


class Text(fields.Field):
    """A non-empty string of at most `max_length` code points."""

    def __init__(self, *, max_length: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.max_length = max_length

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        return check_text(value, self.max_length)


def parse_snowflake(value: Any) -> int:
    """A Discord id as an int, from a JSON integer or a string of digits.

    It never passes through a float, so ids above 2^53 stay exact.
    """
    if isinstance(value, str):
        is_plain_digits = value.isascii() and value.isdigit()
        if not is_plain_digits or value.startswith("0") or len(value) > 19:
            raise ValidationError(
                "must be a snowflake: an integer, or a string of digits "
                "without sign, spaces or leading zeros"
            )
        value = int(value)
    elif not _is_json_integer(value):
        raise ValidationError("must be a snowflake: an integer or digit string")
    if not 1 <= value <= MAX_INT64:
        raise ValidationError(f"must be between 1 and {MAX_INT64}")
    return value


class Snowflake(fields.Field):
    """A Discord id, always returned as a Python int (JSON encodes it exactly)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> int:
        return parse_snowflake(value)


class StrictSchema(Schema):
    """Refuses unknown keys and speaks the contract's language in errors."""

    class Meta:
        unknown = RAISE

    error_messages = {
        "unknown": "unknown field: remove it",
        "type": "must be a JSON object",
    }


class ResumenSchema(StrictSchema):
    servidores_conectados = Count(required=True, error_messages=_COMMON_ERRORS)
    eventos_procesados_hoy = Count(required=True, error_messages=_COMMON_ERRORS)
    uptime_porcentaje = FiniteNumber(
        minimum=0, maximum=100, required=True, error_messages=_COMMON_ERRORS
    )
    ultima_sincronizacion = UtcTimestamp(required=True, error_messages=_COMMON_ERRORS)


class EstadoSchema(StrictSchema):
    status = Text(
        max_length=STATUS_MAX_LENGTH, required=True, error_messages=_COMMON_ERRORS
    )
    uptime_dias = Count(required=True, error_messages=_COMMON_ERRORS)
    latencia_ms = FiniteNumber(minimum=0, required=True, error_messages=_COMMON_ERRORS)
    ultima_conexion = UtcTimestamp(required=True, error_messages=_COMMON_ERRORS)


class ServerSchema(StrictSchema):
    server_id = Snowflake(required=True, error_messages=_COMMON_ERRORS)
    server_name = Text(
        max_length=SERVER_NAME_MAX_LENGTH,
        required=True,
        error_messages=_COMMON_ERRORS,
    )
    miembros = Count(required=True, error_messages=_COMMON_ERRORS)
    canales = Count(required=True, error_messages=_COMMON_ERRORS)
    status = Text(
        max_length=STATUS_MAX_LENGTH, required=True, error_messages=_COMMON_ERRORS
    )


class ServerList(fields.List):
    """The guild rows: bounded in number, each server id at most once.

    Each row is checked by ServerSchema's own fields, called directly: going
    through marshmallow's Nested machinery for every one of 25,000 rows costs
    about eight times as much, for the same rules and the same messages.
    """

    def __init__(self, *, max_servers: int, **kwargs: Any):
        super().__init__(fields.Nested(ServerSchema), **kwargs)
        self.max_servers = max_servers
        row_schema = ServerSchema()
        self._row_fields = tuple(row_schema.fields.items())
        self._row_keys = frozenset(row_schema.fields)
        self._unknown_message = row_schema.error_messages["unknown"]
        self._type_message = row_schema.error_messages["type"]

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list:
        if not isinstance(value, list):
            raise ValidationError("must be a JSON array of server objects")
        # Checked before the rows so an oversized list costs no validation work.
        if len(value) > self.max_servers:
            raise ValidationError(
                f"must hold at most {self.max_servers} servers; got {len(value)}"
            )

        servers = []
        errors: dict[int, Any] = {}
        first_seen: dict[int, int] = {}
        for index, row in enumerate(value):
            server, row_errors = self._check_row(row)
            # Checked on bad rows too: the bot gets every problem in one answer.
            server_id = server.get("server_id")
            if server_id is not None:
                first = first_seen.setdefault(server_id, index)
                if first != index:
                    message = f"duplicate server_id: servers.{first} has it too"
                    row_errors.setdefault("server_id", [message])
            if row_errors:
                errors[index] = row_errors
            else:
                servers.append(server)

        if errors:
            raise ValidationError(errors)
        return servers

    def _check_row(self, row: Any) -> tuple[dict, dict]:
        if not isinstance(row, dict):
            return {}, {"_schema": [self._type_message]}

        server: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        if row.keys() != self._row_keys:
            for key in row.keys() - self._row_keys:
                errors[key] = [self._unknown_message]
        for name, field in self._row_fields:
            if name not in row:
                errors[name] = [field.error_messages["required"]]
                continue
            try:
                server[name] = field._deserialize(row[name], name, row)
            except ValidationError as error:
                errors[name] = error.messages
        return server, errors


class MetricsSchema(StrictSchema):
    """One push from the bot: summary, own state, and one row per guild."""

    resumen = fields.Nested(ResumenSchema, required=True, error_messages=_COMMON_ERRORS)
    estado = fields.Nested(EstadoSchema, required=True, error_messages=_COMMON_ERRORS)
    servers = ServerList(
        max_servers=25_000, required=True, error_messages=_COMMON_ERRORS
    )


def metrics_schema(max_servers: int) -> MetricsSchema:
    """A metrics schema that accepts at most `max_servers` guild rows."""
    schema = MetricsSchema()
    schema.fields["servers"].max_servers = max_servers
    return schema


def flatten_errors(messages: Any, limit: int) -> tuple[dict[str, str], int]:
    """Turn marshmallow's nested errors into `{"servers.3.miembros": "..."}`.

    Returns at most `limit` entries and the total number of bad fields, so a
    payload with 25,000 bad rows still gets a short answer.
    """
    flat: dict[str, str] = {}
    total = 0
    stack = [("", messages)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, dict):
            for key, child in reversed(list(node.items())):
                segment = "" if key == "_schema" else _path_segment(key)
                joined = ".".join(part for part in (path, segment) if part)
                stack.append((joined, child))
            continue
        path = path or "body"
        if path in flat:
            continue
        total += 1
        if len(flat) < limit:
            flat[path] = node[0] if isinstance(node, list) and node else str(node)
    return flat, total


def _path_segment(key: Any) -> str:
    # An unknown key is the bot's text: name it, but short, and with any lone
    # surrogate escaped so that the answer is always valid UTF-8.
    return str(key)[:64].encode("utf-8", "backslashreplace").decode("utf-8")


# What the API answers. These schemas validate nothing on the way in; they
# describe each response body for the OpenAPI document, so that the document
# is derived from the same definitions as the payload it describes.


class ErrorSchema(StrictSchema):
    """Every error under /api/: a short code, a sentence, and the bad fields."""

    error = fields.String(
        required=True, metadata={"description": "a short code, such as unauthorized"}
    )
    message = fields.String(
        required=True, metadata={"description": "what went wrong and what to do"}
    )
    field_messages = fields.Dict(
        data_key="fields",
        keys=fields.String(),
        values=fields.String(),
        metadata={
            "description": "on a refused push: one message per bad field, by path "
            "(servers.3.miembros), at most BOTMON_MAX_ERROR_MESSAGES of them"
        },
    )
    fields_omitted = fields.Integer(
        strict=True,
        validate=validate.Range(min=1),
        metadata={"description": "how many more bad fields were left out"},
    )
    parameter = fields.String(
        metadata={"description": "the query parameter that was refused"}
    )


class AcceptedSchema(StrictSchema):
    """A committed push: the stored snapshot's id and botmon's time of receipt."""

    id = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))
    recibido_en = UtcTimestamp(required=True)


class EstadoResponseSchema(EstadoSchema):
    """The latest `estado` as sent, plus when it arrived and whether it is stale."""

    recibido_en = UtcTimestamp(
        required=True, metadata={"description": "when botmon received it"}
    )
    obsoleto = fields.Boolean(
        required=True,
        metadata={
            "description": "true when nothing arrived for longer than "
            "BOTMON_STALE_AFTER_SECONDS, on botmon's clock"
        },
    )


class RefusalSchema(StrictSchema):
    """The last refused push: when, its status, and the answer it was given."""

    en = UtcTimestamp(required=True)
    status = fields.Integer(
        strict=True, required=True, validate=validate.Range(min=400, max=499)
    )
    error = fields.String(required=True)
    message = fields.String(required=True)


class RefusalsSchema(StrictSchema):
    """How many pushes were refused, and the last one (null before any)."""

    total = Count(required=True)
    ultimo = fields.Nested(RefusalSchema, required=True, allow_none=True)


class HistoryPointSchema(StrictSchema):
    """One snapshot of the history: its summary, state and number of guilds."""

    recibido_en = UtcTimestamp(required=True)
    resumen = fields.Nested(ResumenSchema, required=True)
    estado = fields.Nested(EstadoSchema, required=True)
    servers = Count(required=True, metadata={"description": "how many guild rows"})


class HistorySchema(StrictSchema):
    """Snapshots received in a time range, oldest first."""

    since = UtcTimestamp(required=True)
    until = UtcTimestamp(required=True)
    limit = fields.Integer(strict=True, required=True, validate=validate.Range(min=1))
    truncated = fields.Boolean(
        required=True,
        metadata={"description": "true when older points of the range were left out"},
    )
    points = fields.List(fields.Nested(HistoryPointSchema), required=True)


class PageConfigSchema(StrictSchema):
    """The limits a client needs to judge freshness, and botmon's clock."""

    now = UtcTimestamp(required=True)
    stale_after_seconds = fields.Float(required=True, validate=validate.Range(min=0))
    history_retention_days = fields.Float(required=True, validate=validate.Range(min=0))
    history_max_points = fields.Integer(
        strict=True, required=True, validate=validate.Range(min=1)
    )


class HealthSchema(StrictSchema):
    """The health check: the database answered, and how many are listening."""

    status = fields.String(required=True, validate=validate.OneOf(["ok"]))
    listeners = Count(required=True)
    backplane = fields.String(
        validate=validate.OneOf(["up", "down"]),
        metadata={
            "description": "only with BOTMON_REDIS_URL set: whether the worker "
            "that answered reaches Redis"
        },
    )
