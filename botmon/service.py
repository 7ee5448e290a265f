"""The parts one botmon app is made of, reachable from any request."""

from dataclasses import dataclass

from flask import current_app

from .config import Settings
from .hub import Hub
from .schemas import MetricsSchema
from .storage import Store


@dataclass
class Botmon:
    """Settings, the bot's key, storage, the schema and the broadcast hub."""

    settings: Settings
    api_key: str
    store: Store
    schema: MetricsSchema
    hub: Hub


def service() -> Botmon:
    """The botmon parts of the app handling the current request."""
    return current_app.extensions["botmon"]
