"""The ingest use case: validate a push, commit it, then tell the listeners."""

import logging
import time
from dataclasses import dataclass

from marshmallow import ValidationError

from . import strictjson
from .schemas import flatten_errors
from .service import Botmon

log = logging.getLogger(__name__)


class InvalidPayload(ValueError):
    """The push breaks the contract; nothing of it was stored or sent."""

    def __init__(self, message: str, fields: dict[str, str], total: int):
        super().__init__(message)
        self.message = message
        self.fields = fields
        self.total = total

    @classmethod
    def whole_body(cls, reason: str) -> "InvalidPayload":
        """The body as a whole is wrong: its one bad "field" is `body`."""
        return cls(reason, {"body": reason}, 1)


@dataclass(frozen=True)
class Accepted:
    """A committed snapshot: its id and when botmon received it."""

    snapshot_id: int
    received_at: float


def compose(resumen_json: str, estado_json: str, servers_json: str) -> str:
    """The wire-format text of a snapshot, from its three encoded parts."""
    return (
        f'{{"resumen":{resumen_json},"estado":{estado_json},"servers":{servers_json}}}'
    )


def accept(botmon: Botmon, body: bytes) -> Accepted:
    """Validate `body`, commit it, publish it; raise InvalidPayload if bad."""
    metrics = _validate(botmon, body)

    resumen_json = strictjson.dumps(metrics["resumen"])
    estado_json = strictjson.dumps(metrics["estado"])
    servers_json = strictjson.dumps(metrics["servers"])
    received_at = time.time()

    snapshot_id = botmon.store.save_snapshot(
        received_at, resumen_json, estado_json, servers_json, len(metrics["servers"])
    )

    # Only after the commit: a listener never hears of an unsaved snapshot.
    text = compose(resumen_json, estado_json, servers_json)
    botmon.hub.publish(text, snapshot_id)
    if botmon.backplane is not None:
        botmon.backplane.send(snapshot_id, text)
    return Accepted(snapshot_id, received_at)


def _validate(botmon: Botmon, body: bytes) -> dict:
    try:
        document = strictjson.loads(body)
    except strictjson.JSONRejected as error:
        raise InvalidPayload.whole_body(str(error)) from None

    if not isinstance(document, dict):
        raise InvalidPayload.whole_body(
            "the body must be a JSON object with resumen, estado and servers"
        )

    try:
        return botmon.schema.load(document)
    except ValidationError as error:
        limit = botmon.settings.max_error_messages
        fields, total = flatten_errors(error.messages, limit)
        raise InvalidPayload(
            f"{total} field(s) break the metrics contract; fix them and resend",
            fields,
            total,
        ) from None
