"""The parts one botmon app is made of, reachable from any request."""

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

from .config import Settings
from .hub import Hub
from .schemas import MetricsSchema
from .storage import Store

if TYPE_CHECKING:
    from .backplane import Backplane


@dataclass
class Botmon:
    """Settings, the bot's key, storage, the schema and the broadcast hub.

    `backplane` links this worker's hub to the other workers' when
    BOTMON_REDIS_URL is set; gunicorn.conf.py starts it in each worker.
    """

    settings: Settings
    api_key: str
    store: Store
    schema: MetricsSchema
    hub: Hub
    backplane: "Backplane | None" = None


def service() -> Botmon:
    """The botmon parts of the app handling the current request."""
    return current_app.extensions["botmon"]
